"""The dual form against the trained network itself (float64): every layer's output on new inputs,
rebuilt from its initial weights and recorded training inputs and gradients, equals the layer's
output after plain SGD, momentum 0.9, weight decay, both together, gradient clipping and a learning
rate schedule, to 1e-10; Adam is refused, or measured by its residual; bad input."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from metafwp.analysis import DualFormRecorder

LAYERS = ["0", "2", "4"]


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3)).double()


def data(seed, n=24):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 12, generator=gen, dtype=torch.float64), torch.randint(0, 3, (n,), generator=gen)


def train(model, optimizer, recorder, steps=25, clip=None, scheduler=None):
    for step in range(steps):
        x, y = data(step)
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        recorder.end_step()
        if scheduler is not None:
            scheduler.step()


def layer_inputs(model, x) -> dict[str, torch.Tensor]:
    """Each linear layer's input when the trained network reads ``x``."""
    seen, handles = {}, []
    for name in LAYERS:
        handles.append(model.get_submodule(name).register_forward_hook(
            lambda m, inputs, out, name=name: seen.__setitem__(name, inputs[0])))
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    return seen


SETTINGS = {
    "sgd": (dict(lr=0.1), None, False),
    "momentum": (dict(lr=0.05, momentum=0.9), None, False),
    "weight decay": (dict(lr=0.1, weight_decay=0.05), None, False),
    "momentum and weight decay": (dict(lr=0.05, momentum=0.9, weight_decay=0.05), None, False),
    "clipping": (dict(lr=0.1, momentum=0.9), 0.05, False),
    "schedule": (dict(lr=0.1, momentum=0.5, weight_decay=0.01), 0.1, True),
}


@pytest.mark.parametrize("name", SETTINGS)
def test_every_layer_is_its_initial_output_plus_attention_over_its_training_inputs(name):
    options, clip, schedule = SETTINGS[name]
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), **options)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 5, gamma=0.5) if schedule else None
    recorder = DualFormRecorder(model, optimizer)
    train(model, optimizer, recorder, clip=clip, scheduler=scheduler)
    if clip is not None:
        assert min(s.clip for s in recorder.steps["0"]) < 0.99, "the clipping should be active"
    for layer, x in layer_inputs(model, data(99, n=7)[0]).items():
        with torch.no_grad():
            trained = model.get_submodule(layer)(x)
        dual = recorder.dual_output(layer, x)
        assert (dual - trained).abs().max() < 1e-10 * max(1.0, trained.abs().max().item()), (name, layer)
    assert not torch.equal(model[0].weight, recorder.records["0"].weight), "the layer must have moved"


def test_adam_is_refused_or_measured_by_its_residual():
    model = mlp()
    adam = torch.optim.Adam(model.parameters(), lr=1e-2)
    with pytest.raises(ValueError, match="Adam normalises its steps elementwise: the dual form is not exact; "
                                         "pass inexact=True"):
        DualFormRecorder(model, adam)
    recorder = DualFormRecorder(model, adam, inexact=True)
    train(model, adam, recorder, steps=10)
    x = layer_inputs(model, data(99, n=7)[0])["2"]
    assert recorder.residual("2", x).abs().max() > 1e-3


def test_bad_input():
    model = mlp()
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="no nn.Linear layer named 7 in the model; its linear layers: 0, 2, 4"):
        DualFormRecorder(model, sgd, layers=["7"])
    with pytest.raises(ValueError, match="Nesterov"):
        DualFormRecorder(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True))
    recorder = DualFormRecorder(model, sgd, max_bytes=10_000)
    # 24 examples x (12 + 16, 16 + 16, 16 + 3 inputs and output gradients) x 8 bytes = 15,168
    with pytest.raises(ValueError, match="recording step 0 needs 15,168 bytes, more than max_bytes=10,000"):
        train(model, sgd, recorder, steps=1)
    recorder.close()
    recorder = DualFormRecorder(model, sgd)
    x, y = data(0)
    sgd.zero_grad()
    (F.cross_entropy(model(x), y) + model[2].weight.square().sum()).backward()   # a term the records miss
    sgd.step()
    with pytest.raises(ValueError, match="gradient is not the recorded errors' sum"):
        recorder.end_step()


def test_a_subset_of_steps_and_examples_bounds_the_spotlight_and_refuses_the_dual_form():
    model = mlp()
    sgd = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    whole = DualFormRecorder(model, sgd, layers=["4"])
    subset = DualFormRecorder(model, sgd, layers=["4"], every=3, examples=5)
    train_on_clusters(model, sgd, [whole, subset], steps=10)
    assert subset.recorded_steps == [0, 3, 6, 9] and subset.bytes * 16 * 10 == whole.bytes * 5 * 4
    test_x = layer_inputs(model, clusters(99, 3)[0])["4"]
    spot = subset.spotlight("4", test_x, num_classes=2, k=3)
    by_hand = [[(abs(float(whole.records["4"].inputs[t][n] @ x)), t, n) for t in (0, 3, 6, 9) for n in range(5)]
               for x in test_x]
    for i, scores in enumerate(by_hand):
        best = sorted(scores, reverse=True)[:3]
        assert spot.top_scores[i].tolist() == pytest.approx([b[0] for b in best])
        assert [(int(t), int(n)) for t, n in zip(spot.top_steps[i], spot.top_examples[i])] == [b[1:] for b in best]
    with pytest.raises(ValueError, match=r"dual_output needs every example of every step; .* \(every=3, examples=5\)"):
        subset.dual_output("4", test_x)
    with pytest.raises(ValueError, match="every and examples must be >= 1"):
        DualFormRecorder(model, sgd, every=0)


def clusters(seed, n):
    """Two well-separated classes in 12 dimensions."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=gen)
    centre = torch.zeros(2, 12, dtype=torch.float64)
    centre[0, :6], centre[1, 6:] = 2.0, 2.0
    return centre[y] + torch.randn(n, 12, generator=gen, dtype=torch.float64), y


def train_on_clusters(model, sgd, recorders, steps):
    """``steps`` SGD steps on 16 points of ``clusters`` each, every recorder told the labels."""
    for step in range(steps):
        x, y = clusters(step, 16)
        sgd.zero_grad()
        F.cross_entropy(model(x), y).backward()
        sgd.step()
        for recorder in recorders:
            recorder.end_step(labels=y)


def test_the_spotlight_scores_every_training_example_and_votes_with_the_model():
    model = mlp()
    sgd = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    recorder = DualFormRecorder(model, sgd, layers=["4"])
    train_on_clusters(model, sgd, [recorder], steps=30)
    test_x, _ = clusters(99, 40)
    inputs = layer_inputs(model, test_x)["4"]
    with torch.no_grad():
        outputs = model(test_x).argmax(-1)
    agree = 0
    for i in range(40):
        spot = recorder.spotlight("4", inputs[i], num_classes=2, k=4)
        by_hand = [(abs(float(recorder.records["4"].inputs[t][n] @ inputs[i])), t, n, int(clusters(t, 16)[1][n]))
                   for t in range(30) for n in range(16)]
        totals = [sum(score for score, _, _, label in by_hand if label == c) for c in range(2)]
        assert spot.class_scores.tolist() == pytest.approx(totals)
        best = sorted(by_hand, reverse=True)[:4]
        assert spot.top_scores.tolist() == pytest.approx([b[0] for b in best])
        top = zip(spot.top_steps, spot.top_examples, spot.top_labels)
        assert [(int(t), int(n), int(label)) for t, n, label in top] == [b[1:] for b in best]
        agree += spot.vote == int(outputs[i])
    assert agree >= 36, f"the last layer's class vote agrees with the model on {agree} of 40 test points"
    batched = recorder.spotlight("4", inputs, num_classes=2, k=4, chunk=7)  # 40 inputs in chunks of 7
    for i in range(40):
        one = recorder.spotlight("4", inputs[i], num_classes=2, k=4)
        assert int(batched.vote[i]) == one.vote  # a batch of dot products rounds differently from one
        assert torch.allclose(batched.class_scores[i], one.class_scores, rtol=1e-5)
        assert torch.allclose(batched.top_scores[i], one.top_scores, rtol=1e-5)
        for field in ("top_steps", "top_examples", "top_labels"):
            assert torch.equal(getattr(batched, field)[i], getattr(one, field)), field
