"""The trainer end to end on the embedded glyphs: artefacts, exact resume, NaN stop, DDP, evaluation."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tqdm import tqdm

from metafwp.evaluate import evaluate_run
from metafwp.train import ConfigError, TrainingDiverged, confidence_interval, load_config, loop, train
from metafwp.train.build import build_model
from metafwp.train.checkpoint import load_checkpoint, save_checkpoint
from metafwp.train.data import build_sampler, frame_shape, load_split

ROOT = Path(__file__).parents[2]
TINY = ["model.filters=8", "model.d_model=16", "model.num_heads=2", "model.num_layers=1", "train.batch_size=4",
        "train.log_every=1", "train.checkpoint_every=2", "train.progress=false", "eval.episodes=12",
        "eval.batch_size=5", "train.threads=1"]


def tiny(tmp_path, *overrides, name="run"):
    return load_config(ROOT / "recipes/glyphs_5way1shot_srwm.yaml",
                       TINY + [f"train.out_dir={tmp_path}", f"train.name={name}", *overrides])


def test_a_run_writes_its_artefacts_and_reports_test_accuracy(tmp_path):
    run_dir = train(tiny(tmp_path, "train.steps=3"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [record["step"] for record in metrics["history"]] == [1, 2, 3]
    assert set(metrics["test"]) == {"srwm", "pixel_nn"}
    for result in metrics["test"].values():
        assert result["episodes"] == 12 and 0 <= result["accuracy"] <= 100 and result["ci95"] >= 0
    assert metrics["test"]["pixel_nn"]["ci95"] > 0
    for name in ("config.yaml", "checkpoint.pt", "learning_curves.png", "accuracy_by_shot.png"):
        assert (run_dir / name).stat().st_size > 0
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert not list(run_dir.glob(".*.tmp"))
    again = evaluate_run(run_dir, progress=False)  # the same fixed episodes give the same numbers
    assert again["srwm"]["accuracy"] == pytest.approx(metrics["test"]["srwm"]["accuracy"])
    with pytest.raises(ConfigError, match="train.resume=true"):
        train(tiny(tmp_path, "train.steps=3"))


class BarKilledAtStep3(tqdm):
    """The training progress bar of a run killed during its third step (after the step-2 checkpoint)."""
    updates = 0

    def update(self, n=1):
        self.updates += 1
        if self.updates == 3:
            raise KeyboardInterrupt
        return super().update(n)


@pytest.mark.parametrize("mixer", ["srwm", "delta"])
def test_resume_is_bit_exact(tmp_path, monkeypatch, mixer):
    """A run killed after its step-2 checkpoint and resumed equals the straight run, with the recipe's
    cosine learning-rate schedule (which depends on train.steps) and dropout."""
    options = ["train.steps=4", f"model.mixer={mixer}", "model.dropout=0.2", "model.backbone_dropout=0.2"]
    assert tiny(tmp_path).optim.schedule == "cosine"
    straight = load_checkpoint(train(tiny(tmp_path, *options, name="straight")) / "checkpoint.pt")
    monkeypatch.setattr(loop, "tqdm", BarKilledAtStep3)
    with pytest.raises(KeyboardInterrupt):
        train(tiny(tmp_path, *options, name="halves"))
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "halves" / "checkpoint.pt")["step"] == 2
    resumed = load_checkpoint(train(tiny(tmp_path, *options, "train.resume=true", name="halves")) / "checkpoint.pt")
    assert resumed["step"] == straight["step"] == 4
    for key, value in straight["model"].items():
        assert torch.equal(resumed["model"][key], value), key
    for key, value in straight["optimizer"]["state"].items():
        assert all(torch.equal(resumed["optimizer"]["state"][key][k], v) for k, v in value.items())
    assert [r["loss"] for r in resumed["history"]] == [r["loss"] for r in straight["history"]]
    assert resumed["sampler"]["next_batch"] == 4
    with pytest.raises(ConfigError, match="resume with the run's data, seed and batch size"):
        train(tiny(tmp_path, *options, "train.resume=true", "train.seed=1", name="halves"))


def test_a_diverging_run_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    config = tiny(tmp_path, "train.steps=50", "optim.lr=1e30", "model.mixer=delta", "train.checkpoint_every=1")
    with pytest.raises(TrainingDiverged, match=r"step 2: loss nan.* the last good checkpoint is kept: "
                                               r".*checkpoint.pt \(step 1\)"):
        train(config)
    kept = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert kept["step"] == 1 and all(torch.isfinite(v).all() for v in kept["model"].values())


def test_checkpoints_are_replaced_atomically(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"step": 1})

    def crash(state, file):
        Path(file).write_bytes(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"step": 2})
    assert load_checkpoint(path) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_foreign_checkpoint_is_refused_without_running_it(tmp_path):
    import pickle

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo hacked > " + str(tmp_path / "hacked"),))

    path = tmp_path / "checkpoint.pt"
    path.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(ValueError, match="not a readable metafwp checkpoint"):
        load_checkpoint(path)
    assert not (tmp_path / "hacked").exists()


def test_confidence_interval_is_1_96_std_over_sqrt_n():
    values = torch.tensor([0.2, 0.6, 1.0, 0.8])
    mean, ci = confidence_interval(values)
    std = math.sqrt(sum((v - 0.65) ** 2 for v in [0.2, 0.6, 1.0, 0.8]) / 3)
    assert mean == pytest.approx(0.65) and ci == pytest.approx(1.96 * std / 2)


def test_user_data_that_is_missing_says_where_to_get_it(tmp_path):
    config = tiny(tmp_path, "data.dataset=omniglot", "data.train_split=train", "data.test_split=test")
    with pytest.raises(ConfigError, match="needs data.root.*torchvision.datasets.Omniglot"):
        train(config)
    config = tiny(tmp_path, "data.dataset=mini_imagenet", f"data.root={tmp_path / 'none'}",
                  "data.train_split=train", "data.test_split=test")
    with pytest.raises(FileNotFoundError, match="mini-imagenet-cache-train.pkl.*How to get it"):
        train(config)


def test_ddp_on_two_processes_equals_one_process_with_the_same_global_batch(tmp_path):
    options = ["train.steps=3", "model.norm=instance", "model.mixer=delta", "eval.baselines=[]"]
    single = load_checkpoint(train(tiny(tmp_path, *options, name="single")) / "checkpoint.pt")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "metafwp.train", str(ROOT / "recipes/glyphs_5way1shot_srwm.yaml"),
               *TINY, *options, f"train.out_dir={tmp_path}", "train.name=ddp", "train.device=cpu"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ddp = load_checkpoint(tmp_path / "ddp" / "checkpoint.pt")
    for key, value in single["model"].items():
        assert torch.allclose(ddp["model"][key], value, rtol=1e-4, atol=1e-6), key
    for a, b in zip(ddp["history"], single["history"]):  # metrics all-reduced over the two ranks
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5) and a["episodes"] == b["episodes"] == 4


def test_noam_warm_up_follows_the_reference_formula():
    config = load_config(ROOT / "recipes/mini_imagenet_5way1shot_srwm_conv4.yaml")
    for step in (1, 100, 5000, 20000):
        expected = 256 ** -0.5 * min(step ** -0.5, step * 5000 ** -1.5)
        assert loop.learning_rate_factor(config, step - 1) == pytest.approx(expected)
    assert loop.learning_rate_factor(load_config(None), 123) == 1.0


def test_cosine_schedule_decays_the_learning_rate_to_zero_over_the_run():
    config = load_config(None, ["optim.schedule=cosine", "train.steps=400"])
    factors = [loop.learning_rate_factor(config, step) for step in range(401)]
    assert factors[0] == 1.0 and factors[100] == pytest.approx(0.5 + 0.5 ** 0.5 / 2)
    assert factors[200] == pytest.approx(0.5) and factors[400] == pytest.approx(0.0, abs=1e-12)
    assert all(a > b for a, b in zip(factors, factors[1:]))


def test_the_command_line_reports_bad_settings(capsys):
    from metafwp.train.__main__ import main

    assert main([str(ROOT / "recipes/glyphs_5way1shot_srwm.yaml"), "model.mixr=delta"]) == 2
    assert "Did you mean 'model.mixer'" in capsys.readouterr().err


def test_delayed_feedback_runs_score_every_shot(tmp_path):
    run_dir = train(tiny(tmp_path, "train.steps=2", "data.feedback=delayed", "data.k_shot=3", "data.n_query=0",
                         "eval.baselines=[]", "model.mixer=gated_delta"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert sorted(metrics["test"]["gated_delta"]["by_shot"], key=int) == ["1", "2", "3"]
    assert sorted(metrics["history"][-1]["by_shot"], key=int) == ["1", "2", "3"]
    assert (run_dir / "accuracy_by_shot.png").stat().st_size > 0


def test_training_learns_held_out_classes(tmp_path):
    """A Prototypical Network trained for 40 small steps beats chance (20%) by far on new classes,
    and its training loss falls: the loop's forward, backward and step really train."""
    run_dir = train(tiny(tmp_path, "train.steps=40", "model.kind=prototypical", "train.batch_size=8",
                         "eval.episodes=100", "eval.batch_size=50", "train.log_every=10"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["history"][-1]["loss"] < 0.7 * metrics["history"][0]["loss"]
    assert metrics["test"]["prototypical"]["accuracy"] > 50


def nearest_prototype_accuracy(backbone, batch) -> float:
    """Percent of query steps classified by the nearest support-class mean, averaged over episodes:
    a plain loop, independent of PrototypicalNetwork."""
    per_episode = []
    for episode in range(batch.batch_size):
        features = backbone(batch.inputs[episode].float() / 255)
        query = batch.loss_mask[episode]
        labels = batch.targets[episode]
        means = torch.stack([features[~query & (labels == n)].mean(0) for n in range(batch.num_classes)])
        guesses = [min(range(batch.num_classes), key=lambda n: (f - means[n]).square().sum().item())
                   for f in features[query]]
        per_episode.append(sum(g == y for g, y in zip(guesses, labels[query].tolist())) / len(guesses))
    return 100 * sum(per_episode) / len(per_episode)


def test_evaluate_tests_nearest_prototypes_on_a_learners_backbone(tmp_path, capsys):
    from metafwp.evaluate import main

    run_dir = train(tiny(tmp_path, "train.steps=2", "eval.baselines=[]"))
    assert main([str(run_dir), "--prototypes"]) == 0
    assert "prototypes_on_backbone:" in capsys.readouterr().out
    results = json.loads((run_dir / "evaluation.json").read_text())
    config = load_config(run_dir / "config.yaml")
    test_set = load_split(config.data, config.data.test_split, progress=False)
    model = build_model(config, frame_shape(config.data, test_set)).eval()
    model.load_state_dict(load_checkpoint(run_dir / "checkpoint.pt")["model"])
    batch = build_sampler(config.data, test_set, seed=config.eval.seed).sample(range(config.eval.episodes))
    with torch.no_grad():
        expected = nearest_prototype_accuracy(model.backbone, batch)
    assert results["prototypes_on_backbone"]["accuracy"] == pytest.approx(expected)
    assert results["srwm"]["accuracy"] == pytest.approx(evaluate_run(run_dir, progress=False)["srwm"]["accuracy"])

    protonet_dir = train(tiny(tmp_path, "train.steps=2", "model.kind=prototypical", name="protonet"))
    both = evaluate_run(protonet_dir, progress=False, prototypes=True)  # the same classifier on the same episodes
    assert both["prototypes_on_backbone"]["accuracy"] == both["prototypical"]["accuracy"]
    pixel_dir = train(tiny(tmp_path, "model.kind=pixel_nn", name="pixels"))
    with pytest.raises(ValueError, match="--prototypes needs a run with an image backbone"):
        evaluate_run(pixel_dir, progress=False, prototypes=True)
