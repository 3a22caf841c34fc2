"""The trainer on CUDA: bf16 autocast, and resume with the GPU's random state (skipped without a GPU;
run it where one is lent)."""
import json

import pytest
import torch

from metafwp.train import TrainingInterrupted, train
from metafwp.train.checkpoint import load_checkpoint
from tests.helpers import stop_after, tiny

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("mixer", ["srwm", "delta", "attention"])
def test_bf16_training_on_the_gpu_learns_and_matches_float32(tmp_path, mixer):
    runs = {}
    for bf16 in (True, False):
        run_dir = train(tiny(tmp_path, "train.steps=30", f"model.mixer={mixer}", "train.device=cuda",
                             f"train.bf16={str(bf16).lower()}", "optim.lr=3e-3", name=f"bf16_{bf16}"))
        runs[bf16] = json.loads((run_dir / "metrics.json").read_text())
    first, last = runs[True]["history"][0]["loss"], runs[True]["history"][-1]["loss"]
    assert last < first
    assert last == pytest.approx(runs[False]["history"][-1]["loss"], rel=0.25)


def test_a_run_stopped_on_the_gpu_and_resumed_draws_the_same_dropout_masks(tmp_path, monkeypatch):
    """Dropout on CUDA draws from the GPU's generator, saved per rank in the checkpoint: the resumed
    run equals the straight one up to the GPU's float summation order (without that state its masks,
    and so its weights, would differ by far more than the tolerance)."""
    options = ["train.steps=6", "model.dropout=0.3", "model.backbone_dropout=0.3", "train.device=cuda",
               "train.checkpoint_every=100", "eval.baselines=[]"]
    straight = load_checkpoint(train(tiny(tmp_path, *options, name="straight")) / "checkpoint.pt")
    with monkeypatch.context() as patch:
        stop_after(patch, 3)
        with pytest.raises(TrainingInterrupted):
            train(tiny(tmp_path, *options, name="stopped"))
    assert load_checkpoint(tmp_path / "stopped" / "checkpoint.pt")["cuda_rng"][0] is not None
    resumed = load_checkpoint(train(tiny(tmp_path, *options, "train.resume=true", name="stopped")) / "checkpoint.pt")
    for key, value in straight["model"].items():
        assert torch.allclose(resumed["model"][key].float(), value.float(), rtol=1e-4, atol=1e-6), key
