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
