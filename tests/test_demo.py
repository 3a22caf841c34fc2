"""`make demo`'s job end to end in a few steps: every learner trained, tested and summarised."""
import json

from metafwp.demo import LEARNERS, main


def test_demo_trains_tests_and_summarises(tmp_path, capsys):
    main(["--out", str(tmp_path), "--steps", "2", "--episodes", "10"])
    rows = json.loads((tmp_path / "summary.json").read_text())
    assert [row["learner"] for row in rows] == [*LEARNERS, "pixel nearest neighbour"]
    assert all(0 <= row["accuracy"] <= 100 for row in rows)
    for name in ("summary.png", "episode.png", "srwm/metrics.json", "protonet/learning_curves.png"):
        assert (tmp_path / name).stat().st_size > 0
    printed = capsys.readouterr().out
    assert "pixel nearest neighbour" in printed and "Tensorboard: tensorboard --logdir" in printed
    main(["--out", str(tmp_path), "--steps", "2", "--episodes", "10"])  # finished runs are re-tested, not retrained
    assert json.loads((tmp_path / "summary.json").read_text()) == rows
