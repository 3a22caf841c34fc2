"""Learners on real EpisodeBatches: state continuation, causality, and the baselines against plain loops."""
import pytest
import torch
import torch.nn.functional as F

from episodes import EpisodeBatch, FewShotSampler
from metafwp.models import Conv4, PixelNearestNeighbour, PrototypicalNetwork, ResNet12, SequenceLearner, \
    build_backbone, feature_size
from metafwp.nn import CausalAttentionLayer, FastWeightLayer, SRWMLayer
from tests.helpers import assert_close, learner, toy_classes, toy_episodes


@pytest.mark.parametrize("size,filters,features", [(28, 64, 64), (84, 32, 800), (16, None, 64)])
def test_conv4_feature_sizes(size, filters, features):
    backbone = build_backbone("conv4", 3, filters, image_size=size)
    assert feature_size(backbone, (3, size, size)) == features


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_resnet12_pools_to_its_last_width(norm):
    backbone = ResNet12(3, norm=norm)
    assert backbone(torch.rand(2, 3, 32, 32)).shape == (2, 256)


@pytest.mark.parametrize("make,shape", [(lambda: Conv4(1, 8), (4, 1, 28, 28)), (lambda: Conv4(3, 4), (2, 3, 84, 84)),
                                        (lambda: ResNet12(3, (4, 6, 8, 8)), (2, 3, 32, 32))])
def test_backbones_run_channels_last_and_equal_the_standard_layout(make, shape):
    torch.manual_seed(0)
    backbone, images = make(), torch.rand(shape, requires_grad=True)
    first_outputs = []
    backbone.blocks[0].register_forward_hook(lambda module, inputs, output: first_outputs.append(output))
    features = backbone(images)
    assert first_outputs[0].is_contiguous(memory_format=torch.channels_last) and not first_outputs[0].is_contiguous()
    pooled = backbone.blocks(images)  # a contiguous batch runs in the standard layout, (C, H, W) order
    assert pooled.is_contiguous()
    expected = pooled.flatten(1) if isinstance(backbone, Conv4) else pooled.mean((2, 3))
    assert_close("features", features, expected, 1e-4)
    inputs = [images, *backbone.parameters()]
    for actual_grad, expected_grad in zip(torch.autograd.grad(features.square().sum(), inputs),
                                          torch.autograd.grad(expected.square().sum(), inputs)):
        assert_close("gradient", actual_grad, expected_grad, 1e-4)


def test_backbone_choices_are_checked():
    with pytest.raises(ValueError, match="Unknown backbone 'conv5'. Valid: conv4, resnet12"):
        build_backbone("conv5", 1)
    with pytest.raises(ValueError, match="at least 16x16"):
        build_backbone("conv4", 1, image_size=12)
    with pytest.raises(ValueError, match="Unknown norm 'layer'"):
        Conv4(1, norm="layer")


MIXERS = ["srwm", "delta", "gated_delta", "hebbian", "lstm", "attention", "mesa", "delta_rnn", "delta_lstm",
          "recurrent_delta", "delta_mlp", "delta_delta", "elstm", "window_attention", "hqlt", "dct_lstm",
          "fast_dct_rnn"]


@pytest.mark.parametrize("mixer", MIXERS)
@pytest.mark.parametrize("feedback", ["synchronous", "delayed"])
def test_continuing_from_a_state_equals_one_pass(mixer, feedback):
    batch = toy_episodes(feedback)
    model = learner(mixer, batch)
    whole, _ = model(batch)
    split = 3
    first, state = model(batch.steps(0, split))
    rest, _ = model(batch.steps(split, batch.num_steps), state)
    assert_close(f"{mixer} continued", torch.cat([first, rest], 1), whole, 1e-5)


@pytest.mark.parametrize("mixer", MIXERS)
def test_outputs_never_read_later_steps(mixer):
    batch = toy_episodes()
    model = learner(mixer, batch)
    before, _ = model(batch)
    changed = batch.steps(0, batch.num_steps)
    changed.inputs = changed.inputs.clone()
    changed.inputs[:, 4:] = 255 - changed.inputs[:, 4:]
    changed.feedback = changed.feedback.clone()
    changed.feedback[:, 4:] = 0
    after, _ = model(changed)
    assert torch.equal(after[:, :4], before[:, :4])
    assert not torch.allclose(after[:, 4:], before[:, 4:])


def test_matched_init_starts_keys_at_queries():
    layer = FastWeightLayer(16, 2, rule="delta", num_householder=2)
    layer.match_keys_to_queries()
    keys = layer.k_proj.weight.view(2, 2, 8, 16)
    assert torch.equal(keys[:, 0], layer.q_proj.weight.view(2, 8, 16))
    assert torch.equal(keys[:, 1], layer.q_proj.weight.view(2, 8, 16))
    attention = CausalAttentionLayer(16, 2)
    attention.match_keys_to_queries()
    assert torch.equal(attention.qkv_proj.weight[16:32], attention.qkv_proj.weight[:16])
    srwm = SRWMLayer(16, 2)
    before = srwm.W0.detach().clone()
    srwm.match_keys_to_queries(scale=3.0)
    added = srwm.W0.detach() - before
    assert torch.allclose(added[:, :, 16:24], 3.0 * torch.eye(8).expand(2, 8, 8))
    assert added[:, :, :16].abs().max() == 0 and added[:, :, 24:].abs().max() == 0


def test_prototypical_network_matches_a_loop():
    batch = toy_episodes(k_shot=2, n_query=2)
    torch.manual_seed(0)
    model = PrototypicalNetwork(Conv4(1, 8)).eval()
    logits, _ = model(batch)
    embeddings = model.backbone(batch.inputs.flatten(0, 1).float() / 255).view(batch.batch_size, batch.num_steps, -1)
    for b in range(batch.batch_size):
        support = [t for t in range(batch.num_steps) if batch.feedback[b, t] != batch.unknown_label]
        assert len(support) == 6
        for t in range(batch.num_steps):
            for n in range(3):
                members = [s for s in support if batch.feedback[b, s] == n]
                prototype = embeddings[b, members].mean(0)
                expected = -(embeddings[b, t] - prototype).square().sum()
                assert torch.allclose(logits[b, t, n], expected, rtol=1e-4, atol=1e-4)


def test_pixel_nearest_neighbour_matches_a_loop():
    batch = toy_episodes(k_shot=2, n_query=2)
    logits, _ = PixelNearestNeighbour()(batch)
    pixels = batch.inputs.flatten(2).double() / 255
    for b in range(batch.batch_size):
        for t in range(batch.num_steps):
            for n in range(3):
                distances = [(pixels[b, t] - pixels[b, s]).norm() for s in range(batch.num_steps)
                             if batch.feedback[b, s] == n]
                assert torch.allclose(logits[b, t, n].double(), -min(distances), atol=1e-4)
    # the toy classes are well separated: every query finds its class
    predictions = logits.argmax(-1)[batch.loss_mask]
    assert torch.equal(predictions, batch.targets[batch.loss_mask])


def test_baselines_refuse_delayed_feedback():
    with pytest.raises(ValueError, match="data.feedback=synchronous"):
        PixelNearestNeighbour()(toy_episodes("delayed"))


def test_feedback_is_one_hot_with_an_unknown_slot():
    batch = toy_episodes()
    model = learner("delta", batch)
    encoded = model.encode_feedback(batch)
    assert encoded.shape == (*batch.feedback.shape, 4)
    assert torch.equal(encoded, F.one_hot(batch.feedback, 4).float())
    assert torch.equal(encoded[~batch.loss_mask][:, 3], torch.zeros((~batch.loss_mask).sum()))
    assert torch.equal(encoded[batch.loss_mask][:, 3], torch.ones(batch.loss_mask.sum()))


def test_regression_learner_reads_target_vectors_and_learns_linear_tasks():
    from episodes import RegressionSampler
    from metafwp.losses import episode_loss

    sampler = RegressionSampler("linear", num_support=10, num_query=0, dim=2, feedback="delayed", seed=0)
    torch.manual_seed(0)
    model = SequenceLearner(None, 2, 1, 2, mixer="delta", d_model=32, num_heads=2, num_layers=1)
    batch = sampler.sample(range(8))
    assert torch.equal(model.encode_feedback(batch), batch.feedback)  # the target then the unknown flag
    optimizer = torch.optim.Adam(model.parameters(), 3e-3)
    losses = []
    for step in range(150):
        batch = sampler.sample(range(64 * step, 64 * (step + 1)))
        loss = episode_loss(model(batch)[0], batch, num_shots=12).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    # w is drawn per episode, so without the feedback the best guess is 0, scoring E[y^2] = dim = 2;
    # going well below that needs the targets shown in earlier steps
    assert sum(losses[:10]) / 10 > 1.6 and sum(losses[-10:]) / 10 < 1.5


def test_a_batch_of_another_way_is_refused():
    model = learner("delta", toy_episodes())
    batch = FewShotSampler(toy_classes(), 4, 1, 1, seed=0).sample(range(2))
    with pytest.raises(ValueError, match="reads 3-way episodes .* got a 4-way batch"):
        model(batch)


def test_token_ids_read_what_one_hot_tokens_through_the_input_projection_give():
    """Ids select their column of the input projection (padding, -1, a zero vector): the outputs of a
    one-hot batch through the plain Linear, and the same gradients."""
    from episodes.formal import FormalLanguageSampler
    batch = FormalLanguageSampler("mod_add", 9, min_length=2, modulus=4, seed=3).sample(range(6))
    assert (batch.inputs == -1).any()  # some strings are padded
    one_hot = EpisodeBatch(**{**vars(batch), "inputs": F.one_hot(batch.inputs.clamp_min(0), 4).float()
                              * (batch.inputs >= 0)[..., None]})
    torch.manual_seed(0)
    model = SequenceLearner(None, 4, 4, 0, mixer=["delta", "lstm"], d_model=16, num_heads=2, num_layers=2)
    cotangent = torch.randn(6, 9, 4)
    by_ids, _ = model(batch)
    (grad_ids,) = torch.autograd.grad((by_ids * cotangent).sum(), model.input_proj.weight)
    by_one_hot, _ = model(one_hot)
    (grad_one_hot,) = torch.autograd.grad((by_one_hot * cotangent).sum(), model.input_proj.weight)
    assert torch.equal(by_ids, by_one_hot)
    assert_close("input projection gradient", grad_ids, grad_one_hot, 1e-6)
    with pytest.raises(ValueError, match="token id 4 is outside this learner's vocabulary of 4"):
        model(EpisodeBatch(**{**vars(batch), "inputs": batch.inputs.clamp_max(4) + 1}))
