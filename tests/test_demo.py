"""`make demo`'s job end to end in a few steps: every learner trained, tested and summarised, and
the summary's numbers are the runs' own, the evaluate CLI's and a hand-written loop's."""
import json
from pathlib import Path

import pytest
import torch

from episodes import FewShotSampler, Glyphs
from metafwp.demo import LEARNERS, main
from metafwp.evaluate import evaluate_run
from tests.helpers import accuracy_by_hand, learner_of


def test_demo_trains_tests_and_summarises(tmp_path, capsys):
    main(["--out", str(tmp_path), "--steps", "2", "--episodes", "10"])
    rows = json.loads((tmp_path / "summary.json").read_text())
    assert [row["learner"] for row in rows] == [*LEARNERS, "pixel nearest neighbour"]
    for name in ("summary.png", "episode.png", "srwm/metrics.json", "protonet/learning_curves.png"):
        assert (tmp_path / name).stat().st_size > 0
    printed = capsys.readouterr().out
    assert "pixel nearest neighbour" in printed and "Tensorboard: tensorboard --logdir" in printed
    comparison = json.loads((tmp_path / "gd_study/gd_comparison.json").read_text())
    assert f"trained linear self-attention      loss {comparison['loss_learner']:.4f}" in printed
    assert f"cosine {comparison['sensitivity_cosine']:.4f}" in printed and comparison["episodes"] == 10
    assert "Demo wall time:" in printed
    for row in rows:
        run_dir = Path(row["run"])
        metrics = json.loads((run_dir / "metrics.json").read_text())
        name = "pixel_nn" if row["learner"] == "pixel nearest neighbour" else metrics["learner"]
        assert row["accuracy"] == metrics["test"][name]["accuracy"] and row["ci95"] == metrics["test"][name]["ci95"]
        retest = evaluate_run(run_dir, ["eval.baselines=[pixel_nn]"], progress=False)["results"][name]
        assert retest["accuracy"] == pytest.approx(row["accuracy"]) and retest["ci95"] == pytest.approx(row["ci95"])
    config, model = learner_of(tmp_path / "delta")
    batch = FewShotSampler(Glyphs("evaluation", progress=False), 5, 1, 1, seed=config.eval.seed).sample(range(10))
    with torch.no_grad():
        delta_row = next(row for row in rows if row["learner"] == "DeltaNet")
        assert delta_row["accuracy"] == pytest.approx(accuracy_by_hand(model, batch)[0])
    main(["--out", str(tmp_path), "--steps", "2", "--episodes", "10"])  # finished runs are re-tested, not retrained
    assert [row["accuracy"] for row in json.loads((tmp_path / "summary.json").read_text())] == \
        [row["accuracy"] for row in rows]


def test_a_mistake_inside_a_training_job_is_one_line(tmp_path):
    """A user's error raised in a worker process (here a truncated checkpoint of the first learner)
    reaches the command line as ``error: ...``, not as a traceback around the worker's."""
    import subprocess
    import sys

    from tests.helpers import ROOT
    (tmp_path / "srwm").mkdir()
    (tmp_path / "srwm" / "checkpoint.pt").write_bytes(b"cut short")
    command = [sys.executable, "-m", "metafwp.demo", "--out", str(tmp_path), "--steps", "1", "--episodes", "2",
               "--jobs", "1"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stderr.startswith("error: ") and "Traceback" not in done.stderr, done.stderr
    assert "is not a readable metafwp checkpoint" in done.stderr
