"""Masked episode losses against hand computations."""
import pytest
import torch
import torch.nn.functional as F

from episodes import EpisodeBatch
from episodes.feedback import delayed, synchronous
from metafwp.losses import episode_loss


def classification_batch(targets, feedback_mode):
    if feedback_mode == "synchronous":
        feedback, mask, shot = synchronous(targets, 3, 3)
    else:
        feedback, mask, shot = delayed(targets, 3)
    B, T = targets.shape
    return EpisodeBatch(torch.zeros(B, T, 1, 4, 4, dtype=torch.uint8), feedback, targets, mask, shot,
                        torch.zeros_like(targets), torch.arange(B), 3)


@pytest.mark.parametrize("feedback_mode", ["synchronous", "delayed"])
def test_cross_entropy_on_the_masked_steps_and_accuracy_by_shot(feedback_mode):
    targets = torch.tensor([[0, 1, 2, 1, 0, 2], [2, 0, 1, 0, 0, 1]])
    batch = classification_batch(targets, feedback_mode)
    logits = torch.randn(2, 6, 3, generator=torch.Generator().manual_seed(0))
    result = episode_loss(logits, batch, num_shots=5)
    scored = [(b, t) for b in range(2) for t in range(6) if batch.loss_mask[b, t]]
    expected_loss = sum(F.cross_entropy(logits[b, t], targets[b, t]) for b, t in scored) / len(scored)
    assert torch.allclose(result.loss, expected_loss)
    correct, count = torch.zeros(5), torch.zeros(5)
    for b, t in scored:
        count[batch.shot[b, t]] += 1
        correct[batch.shot[b, t]] += float(logits[b, t].argmax() == targets[b, t])
    assert torch.equal(result.correct, correct) and torch.equal(result.count, count)
    for b in range(2):
        steps = [t for bb, t in scored if bb == b]
        assert result.episode_count[b] == len(steps)
        assert result.episode_correct[b] == sum(float(logits[b, t].argmax() == targets[b, t]) for t in steps)
    if feedback_mode == "synchronous":
        assert count.nonzero().flatten().tolist() == [2]   # 1-shot support: every query is shot 2


def test_regression_mse_on_masked_steps():
    targets = torch.randn(2, 5, 2)
    feedback, mask, shot = synchronous(targets, 3)
    batch = EpisodeBatch(torch.randn(2, 5, 4), feedback, targets, mask, shot, torch.zeros(2, 5, dtype=torch.int64),
                         torch.arange(2), None)
    outputs = torch.randn(2, 5, 2)
    result = episode_loss(outputs, batch, num_shots=6)
    expected = (outputs[:, 3:] - targets[:, 3:]).square().mean()
    assert torch.allclose(result.loss, expected)
    assert result.count.sum() == 4 and result.correct.sum() == 0


def test_shot_beyond_the_tally_is_an_error():
    batch = classification_batch(torch.tensor([[0, 1, 2, 0, 1, 2]]), "delayed")
    with pytest.raises(ValueError, match="num_shots=2"):
        episode_loss(torch.zeros(1, 6, 3), batch, num_shots=2)


def test_outputs_of_the_wrong_shape_are_an_error_not_a_broadcast():
    targets = torch.randn(5, 5, 1)  # B == T: [B, T] outputs would broadcast against [B, T, 1] silently
    feedback, mask, shot = synchronous(targets, 3)
    batch = EpisodeBatch(torch.randn(5, 5, 4), feedback, targets, mask, shot, torch.zeros(5, 5, dtype=torch.int64),
                         torch.arange(5), None)
    with pytest.raises(ValueError, match=r"outputs have shape \(5, 5\); expected \(5, 5, 1\)"):
        episode_loss(torch.zeros(5, 5), batch, num_shots=6)
    from metafwp.tasks.regression import squared_error_by_examples
    with pytest.raises(ValueError, match=r"expected \(5, 5, 1\)"):
        squared_error_by_examples(torch.zeros(5, 5), batch)
    classes = classification_batch(torch.tensor([[0, 1, 2, 0, 1, 2]]), "delayed")
    with pytest.raises(ValueError, match=r"outputs have shape \(1, 6\); expected \(1, 6, 'N'\)"):
        episode_loss(torch.zeros(1, 6), classes, num_shots=4)
