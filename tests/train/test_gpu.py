"""The trainer on CUDA with bf16 autocast (skipped without a GPU; run it where one is lent)."""
import json

import pytest
import torch

from metafwp.train import train
from tests.helpers import tiny

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
