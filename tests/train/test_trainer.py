"""The trainer end to end on the embedded glyphs: artefacts, exact resume (after a crash or a
signal), what resume refuses, validation and best.pt against hand-computed accuracies, errors a user
can cause, evaluation. What every task guarantees (DDP included) is in test_every_task.py."""
import json
import math
import os
import re
import signal
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from episodes import FewShotSampler, Glyphs
from metafwp.errors import CheckpointError, DataError
from metafwp.train import ConfigError, TrainingDiverged, TrainingInterrupted, confidence_interval, load_config, \
    loop, train
from metafwp.train.__main__ import main as train_main
from metafwp.train.checkpoint import load_checkpoint, save_checkpoint
from tests.helpers import (RECIPE, ROOT, TINY, TINY_SEQUENCE, accuracy_by_hand, assert_identical, learner_of,
                           stop_after, tiny, write_mini_imagenet_pickle)


def test_a_run_writes_its_artefacts_and_its_test_accuracy_is_the_accuracy_of_its_weights(tmp_path):
    run_dir = train(tiny(tmp_path, "train.steps=3"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [record["step"] for record in metrics["history"]] == [1, 2, 3]
    assert set(metrics["test"]) == {"srwm", "pixel_nn"}
    for name in ("config.yaml", "checkpoint.pt", "learning_curves.png", "accuracy_by_shot.png"):
        assert (run_dir / name).stat().st_size > 0
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert not list(run_dir.glob(".*.tmp"))
    config, model = learner_of(run_dir)
    batch = FewShotSampler(Glyphs("evaluation", progress=False), 5, 1, 1, seed=config.eval.seed).sample(range(12))
    accuracy, ci95 = accuracy_by_hand(model, batch)
    assert metrics["test"]["srwm"]["accuracy"] == pytest.approx(accuracy)
    assert metrics["test"]["srwm"]["ci95"] == pytest.approx(ci95)
    with pytest.raises(ConfigError, match="train.resume=true"):
        train(tiny(tmp_path, "train.steps=3"))


def crash():
    raise KeyboardInterrupt  # the process dies here: nothing after this step is saved


def assert_same_run(resumed: dict, straight: dict) -> None:
    assert resumed["step"] == straight["step"]
    for key in ("model", "models", "optimizers", "task_state"):
        assert_identical(key, resumed[key], straight[key])
    for ours, theirs in zip(resumed["history"], straight["history"], strict=True):
        for key in ("step", "loss", "accuracy", "episodes", "by_shot"):
            assert ours[key] == theirs[key], key


@pytest.mark.parametrize("mixer", ["srwm", "delta"])
def test_resume_after_a_crash_is_bit_exact_and_keeps_the_tallies_and_tensorboard(tmp_path, monkeypatch, mixer):
    """A run killed at step 4 (its step-2 checkpoint kept, step 3 already logged) and resumed equals
    the straight run, with the cosine schedule (which depends on train.steps) and dropout; the log
    line of step 3 still counts steps 1-2 from before the crash; tensorboard holds each step once."""
    options = ["train.steps=60", "train.log_every=3", f"model.mixer={mixer}", "model.dropout=0.2",
               "model.backbone_dropout=0.2", "train.checkpoint_every=2", "eval.baselines=[]", "eval.episodes=5"]
    assert tiny(tmp_path).optim.schedule == "cosine"
    straight = load_checkpoint(train(tiny(tmp_path, *options, name="straight")) / "checkpoint.pt")
    stop_after(monkeypatch, 4, crash)
    with pytest.raises(KeyboardInterrupt):
        train(tiny(tmp_path, *options, name="halves"))
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "halves" / "checkpoint.pt")["step"] == 2
    time.sleep(1.1)  # event files sort by the second they were opened in, as they do across processes
    resumed = load_checkpoint(train(tiny(tmp_path, *options, "train.resume=true", name="halves")) / "checkpoint.pt")
    assert_same_run(resumed, straight)
    assert [r["episodes"] for r in resumed["history"]] == [12] * 20
    events = EventAccumulator(str(tmp_path / "halves" / "tensorboard")).Reload()
    assert [event.step for event in events.Scalars("train/loss")] == list(range(3, 61, 3))


def test_sigterm_saves_a_checkpoint_at_the_current_step_and_resuming_it_is_exact(tmp_path, monkeypatch, capsys):
    options = ["train.steps=5", "model.dropout=0.2", "train.checkpoint_every=100"]
    straight = load_checkpoint(train(tiny(tmp_path, *options, name="straight")) / "checkpoint.pt")
    stop_after(monkeypatch, 3)
    command = [str(RECIPE), *TINY, *TINY_SEQUENCE, *options, f"train.out_dir={tmp_path}", "train.name=stopped"]
    assert train_main(command) == 128 + signal.SIGTERM
    message = capsys.readouterr().err
    assert message.count("\n") == 1 and "SIGTERM at step 3: checkpoint saved in" in message
    monkeypatch.undo()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the trainer's handler is gone
    assert load_checkpoint(tmp_path / "stopped" / "checkpoint.pt")["step"] == 3
    resumed = load_checkpoint(train(tiny(tmp_path, *options, "train.resume=true", name="stopped")) / "checkpoint.pt")
    assert_same_run(resumed, straight)


def test_sigint_stops_training_the_same_way(tmp_path, monkeypatch):
    stop_after(monkeypatch, 2, lambda: signal.raise_signal(signal.SIGINT))
    with pytest.raises(TrainingInterrupted, match="SIGINT at step 2"):
        train(tiny(tmp_path, "train.steps=5"))
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 2


def test_resume_refuses_a_config_that_changes_the_run_and_touches_nothing(tmp_path):
    run_dir = train(tiny(tmp_path, "train.steps=2", "eval.baselines=[]"))
    before = {path.name: path.read_bytes() for path in run_dir.iterdir() if path.is_file()}
    for changes, named in ((["train.steps=4"], "train.steps (2 -> 4)"), (["optim.lr=0.01"], "optim.lr (0.003 -> 0.01)"),
                           (["model.dropout=0.1", "train.seed=1"], "model.dropout (0.0 -> 0.1); train.seed (0 -> 1)")):
        with pytest.raises(ConfigError, match=rf"differs from the run's own .* {re.escape(named)}.* train.init_from="):
            train(tiny(tmp_path, "train.steps=2", "eval.baselines=[]", "train.resume=true", *changes))
        assert {path.name: path.read_bytes() for path in run_dir.iterdir() if path.is_file()} == before
    # what does not shape training may change: more test episodes, another progress display
    train(tiny(tmp_path, "train.steps=2", "eval.baselines=[]", "train.resume=true", "eval.episodes=7",
               "train.progress=lines"))
    assert json.loads((run_dir / "metrics.json").read_text())["test"]["srwm"]["episodes"] == 7


def test_resume_true_needs_a_run_to_continue_and_auto_starts_one(tmp_path):
    with pytest.raises(ConfigError, match=r"train.resume=true, but .*runn holds no run to continue"):
        train(tiny(tmp_path, "train.steps=2", "eval.baselines=[]", "train.resume=true", name="runn"))
    assert not (tmp_path / "runn").exists()
    run_dir = train(tiny(tmp_path, "train.steps=2", "eval.baselines=[]", "train.resume=auto"))  # starts it
    assert load_checkpoint(run_dir / "checkpoint.pt")["step"] == 2
    train(tiny(tmp_path, "train.steps=2", "eval.baselines=[]", "train.resume=auto", "eval.episodes=7"))  # re-tests it
    assert json.loads((run_dir / "metrics.json").read_text())["test"]["srwm"]["episodes"] == 7


def test_training_longer_is_a_new_run_from_the_weights_of_the_old(tmp_path):
    first = train(tiny(tmp_path, "train.steps=2", "eval.baselines=[]", name="first"))
    config = tiny(tmp_path, "train.steps=4", "eval.baselines=[]", f"train.init_from={first}", name="longer")
    longer = loop.setup(config, loop.start_distributed("cpu"))
    for key, value in load_checkpoint(first / "checkpoint.pt")["model"].items():
        assert torch.equal(longer.model.state_dict()[key], value), key
    assert longer.step == 0
    with pytest.raises(ConfigError, match="do not fit this model"):
        train(tiny(tmp_path, "train.steps=1", "model.d_model=32", f"train.init_from={first}", name="other"))


def test_a_folder_left_before_the_first_checkpoint_is_not_reused(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("train:\n  steps: 3\n")
    with pytest.raises(ConfigError, match="holds files but no checkpoint.pt"):
        train(tiny(tmp_path, "train.steps=3", "train.resume=true"))


def test_without_a_terminal_the_run_logs_one_plain_line_per_record(tmp_path, capsys):
    train(tiny(tmp_path, "train.steps=3", "train.progress=auto", "eval.baselines=[]"))
    printed = capsys.readouterr()
    lines = [line for line in printed.out.splitlines() if " step " in line]
    assert len(lines) == 3 and "\r" not in printed.out + printed.err
    assert lines[-1].startswith("run step 3/3  loss ") and "episodes/s  ETA 0m00s" in lines[-1]


def test_short_runs_log_at_least_20_points():
    config = load_config(RECIPE, ["train.steps=100", "train.log_every=50"])
    assert loop.log_interval(config) == 5 and loop.log_interval(load_config(RECIPE)) == 50


def test_validation_scores_held_out_classes_and_the_test_scores_the_best_checkpoint(tmp_path):
    options = ["train.steps=6", "data.train_split=train", "data.val_split=val", "eval.val_every=2",
               "eval.val_episodes=10", "optim.lr=0.01", "eval.baselines=[]"]
    run_dir = train(tiny(tmp_path, *options))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    validation = metrics["validation"]
    assert [record["step"] for record in validation] == [2, 4, 6]
    best = max(validation, key=lambda record: record["accuracy"])  # the first of equals stays
    assert metrics["best"] == {"step": best["step"], "accuracy": best["accuracy"]}
    assert metrics["tested"] == f"best.pt (step {best['step']})"
    config, model = learner_of(run_dir, "best.pt")
    assert load_checkpoint(run_dir / "best.pt")["step"] == best["step"]
    val_batch = FewShotSampler(Glyphs("val", progress=False), 5, 1, 1, seed=config.eval.val_seed).sample(range(10))
    assert best["accuracy"] == pytest.approx(accuracy_by_hand(model, val_batch)[0])
    test_batch = FewShotSampler(Glyphs("evaluation", progress=False), 5, 1, 1, seed=config.eval.seed).sample(range(12))
    assert metrics["test"]["srwm"]["accuracy"] == pytest.approx(accuracy_by_hand(model, test_batch)[0])


def test_validation_needs_a_validation_split():
    with pytest.raises(ConfigError, match="eval.val_every=100 needs data.val_split"):
        load_config(RECIPE, ["eval.val_every=100"])


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
    with pytest.raises(CheckpointError, match="not a readable metafwp checkpoint"):
        load_checkpoint(path)
    assert not (tmp_path / "hacked").exists()


def one_line_error(capsys, argv) -> str:
    assert train_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_ordinary_mistakes_print_one_line(tmp_path, capsys):
    base = [str(RECIPE), *TINY, *TINY_SEQUENCE, f"train.out_dir={tmp_path}", "train.steps=2"]
    assert "n_way must be an int >= 1, got 0" in one_line_error(capsys, base + ["data.n_way=0"])
    assert "larger than the 511 classes" in one_line_error(capsys, base + ["data.n_way=600"])
    broken = tmp_path / "broken.yaml"
    broken.write_text("model:\n  mixer: [srwm\n")
    assert "is not valid YAML" in one_line_error(capsys, [str(broken)])
    (tmp_path / "mini").mkdir()
    for split in ("train", "test"):  # both there (checked when the config loads), the training one garbage
        (tmp_path / "mini" / f"mini-imagenet-cache-{split}.pkl").write_bytes(b"garbage, not a pickle")
    assert "mini-imagenet-cache-train.pkl" in one_line_error(capsys, base + [
        "data.dataset=mini_imagenet", f"data.root={tmp_path / 'mini'}", "data.train_split=train",
        "data.test_split=test"])
    if not torch.cuda.is_available():
        assert "CUDA is not available here" in one_line_error(capsys, base + ["train.device=cuda"])
    run_dir = train(tiny(tmp_path, "train.steps=2", "eval.baselines=[]", name="truncated"))
    checkpoint = run_dir / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    err = one_line_error(capsys, base + ["eval.baselines=[]", "train.name=truncated",
                                         "train.resume=true"])
    assert "not a readable metafwp checkpoint" in err and "Keep the file" in err and "delete" not in err
    save_checkpoint(checkpoint, {"model": {}, "step": 2, "sampler": {}})  # an older version's layout
    err = one_line_error(capsys, base + ["eval.baselines=[]", "train.name=truncated", "train.resume=true"])
    assert "written by another version of metafwp" in err and "train.init_from=" in err
    binary = tmp_path / "recipe.yaml"
    binary.write_bytes(bytes(range(128, 256)))
    assert "is not a text file" in one_line_error(capsys, [str(binary)])
    (tmp_path / "a_file").write_text("")
    assert "train.out_dir: " in one_line_error(capsys, base[:-2] + [f"train.out_dir={tmp_path / 'a_file'}"])


def test_the_cli_labels_baselines_and_init_from_says_what_it_loaded(tmp_path, capsys):
    base = [str(RECIPE), *TINY, *TINY_SEQUENCE, f"train.out_dir={tmp_path}", "train.steps=2"]
    assert train_main(base + ["train.name=first"]) == 0
    out = capsys.readouterr().out
    assert "srwm: accuracy" in out and "last weights)" in out and "pixel_nn: accuracy" in out and "baseline)" in out
    assert train_main(base + ["train.name=second", f"train.init_from={tmp_path / 'first'}"]) == 0
    assert f"train.init_from: the learner's weights of {tmp_path / 'first' / 'checkpoint.pt'} (step 2)" in \
        capsys.readouterr().err


def test_confidence_interval_is_1_96_std_over_sqrt_n():
    values = torch.tensor([0.2, 0.6, 1.0, 0.8])
    mean, ci = confidence_interval(values)
    std = math.sqrt(sum((v - 0.65) ** 2 for v in [0.2, 0.6, 1.0, 0.8]) / 3)
    assert mean == pytest.approx(0.65) and ci == pytest.approx(1.96 * std / 2)


def test_user_data_that_is_missing_says_where_to_get_it(tmp_path):
    config = tiny(tmp_path, "data.dataset=omniglot", "data.train_split=train", "data.test_split=test")
    with pytest.raises(ConfigError, match="needs data.root.*torchvision.datasets.Omniglot"):
        train(config)
    with pytest.raises(FileNotFoundError, match="mini-imagenet-cache-train.pkl.*How to get it"):
        tiny(tmp_path, "data.dataset=mini_imagenet", f"data.root={tmp_path / 'none'}", "data.train_split=train",
             "data.test_split=test")  # found missing when the config loads, before any work


def test_the_test_and_validation_files_are_checked_when_the_config_loads(tmp_path):
    """A missing test or validation split of the user's copy fails before training, not after it."""
    (tmp_path / "mini").mkdir()
    write_mini_imagenet_pickle(tmp_path / "mini" / "mini-imagenet-cache-train.pkl", {"a": 2, "b": 2})
    mini = ["data.dataset=mini_imagenet", f"data.root={tmp_path / 'mini'}", "data.train_split=train",
            "data.test_split=test"]
    with pytest.raises(FileNotFoundError, match="Mini-ImageNet test not found: .*mini-imagenet-cache-test.pkl"):
        tiny(tmp_path, *mini)
    write_mini_imagenet_pickle(tmp_path / "mini" / "mini-imagenet-cache-test.pkl", {"c": 2, "d": 2})
    with pytest.raises(FileNotFoundError, match="Mini-ImageNet val not found"):
        tiny(tmp_path, *mini, "data.val_split=val")
    (tmp_path / "mini" / "mini-imagenet-cache-validation.pkl").write_text("<!DOCTYPE html><html>quota exceeded</html>")
    with pytest.raises(DataError, match=r"mini-imagenet-cache-validation.pkl is not a pickle file .*How to get it"):
        tiny(tmp_path, *mini, "data.val_split=val")  # a failed download, found by its first bytes
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "train.csv").write_text("file,class\n")
    with pytest.raises(DataError, match="expected a header 'filename,label'"):
        tiny(tmp_path, "data.dataset=mini_imagenet", f"data.root={tmp_path / 'csv'}", "data.train_split=train",
             "data.test_split=test")
    (tmp_path / "omniglot" / "omniglot-py" / "images_background").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="Omniglot half 'images_evaluation' missing.*How to get it"):
        tiny(tmp_path, "data.dataset=omniglot", f"data.root={tmp_path / 'omniglot'}")
    assert not any((tmp_path / "run").glob("*"))


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
    assert "Did you mean 'model.mixer'" in one_line_error(capsys, [str(RECIPE), "model.mixr=delta"])


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
    run_dir = train(tiny(tmp_path, "train.steps=40", "train.batch_size=8", "eval.episodes=100", "eval.batch_size=50",
                         "train.log_every=10", recipe=ROOT / "recipes/glyphs_5way1shot_protonet.yaml"))
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


def test_evaluate_writes_a_file_per_split_and_setting_and_tests_prototypes_on_the_backbone(tmp_path, capsys):
    from metafwp.evaluate import main

    run_dir = train(tiny(tmp_path, "train.steps=2", "eval.baselines=[]", "data.train_split=train"))  # val held out
    assert main([str(run_dir), "eval.baselines=[prototypes_on_backbone]"]) == 0
    assert "prototypes_on_backbone: accuracy" in capsys.readouterr().out
    written = json.loads((run_dir / "evaluation_evaluation_12ep_seed1000003.json").read_text())
    assert {k: written[k] for k in ("split", "episodes", "seed", "weights")} == {
        "split": "evaluation", "episodes": 12, "seed": 1000003, "weights": "checkpoint.pt"}
    config, model = learner_of(run_dir)
    batch = FewShotSampler(Glyphs("evaluation", progress=False), 5, 1, 1, seed=config.eval.seed).sample(range(12))
    with torch.no_grad():
        expected = nearest_prototype_accuracy(model.backbone, batch)
    assert written["results"]["prototypes_on_backbone"]["accuracy"] == pytest.approx(expected)
    assert written["results"]["srwm"]["accuracy"] == pytest.approx(accuracy_by_hand(model, batch)[0])
    assert main([str(run_dir), "data.test_split=val", "eval.episodes=6"]) == 0
    assert json.loads((run_dir / "evaluation_val_6ep_seed1000003.json").read_text())["split"] == "val"
    assert json.loads((run_dir / "evaluation_evaluation_12ep_seed1000003.json").read_text()) == written
    assert main([str(run_dir), "model.mixer=delta"]) == 2
    assert "would change the trained run" in capsys.readouterr().err
    assert main([str(run_dir), "data.test_splits=[val,val]"]) == 2  # multi-task's key, not few-shot's
    assert "evaluate takes eval.episodes, eval.batch_size, eval.seed, eval.baselines, data.test_split, " \
           "train.device, train.progress for a few_shot run" in capsys.readouterr().err

    protonet_dir = train(tiny(tmp_path, "train.steps=2", "eval.baselines=[prototypes_on_backbone]", name="protonet",
                              recipe=ROOT / "recipes/glyphs_5way1shot_protonet.yaml"))
    both = json.loads((protonet_dir / "metrics.json").read_text())["test"]  # the same classifier, same episodes
    assert both["prototypes_on_backbone"]["accuracy"] == both["prototypical"]["accuracy"]


def test_the_mini_imagenet_recipe_validates_on_its_val_split_and_tests_the_best(tmp_path):
    """The paper recipe on a small Mini-ImageNet written in its pickle format: validation on the
    `val` classes every step, best.pt tested."""
    root = tmp_path / "mini"
    root.mkdir()
    for index, split in enumerate(("train", "validation", "test")):
        write_mini_imagenet_pickle(root / f"mini-imagenet-cache-{split}.pkl",
                                   {f"n{index}{c:07d}": 4 for c in range(6)}, seed=index)
    run_dir = train(tiny(tmp_path, "train.steps=3", f"data.root={root}", "data.num_workers=0", "model.filters=4",
                         "eval.val_every=1", "eval.val_episodes=4", "eval.episodes=4", "train.batch_size=2",
                         recipe=ROOT / "recipes/mini_imagenet_5way1shot_srwm_conv4.yaml"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [record["step"] for record in metrics["validation"]] == [1, 2, 3]
    assert metrics["tested"] == f"best.pt (step {metrics['best']['step']})"
    assert load_checkpoint(run_dir / "best.pt")["step"] == metrics["best"]["step"]


def test_a_test_that_fails_after_training_says_the_weights_are_saved(tmp_path, monkeypatch):
    from metafwp.tasks import FewShotTask

    def test_data_gone(task):
        raise FileNotFoundError("image folder not found: /data/test")

    monkeypatch.setattr(FewShotTask, "test_episodes", test_data_gone)  # deleted while the run trained
    with pytest.raises(FileNotFoundError, match=r"/data/test\. Training finished and its weights are saved in .*run; "
                                                r"once this is fixed, test them with: python -m metafwp.evaluate"):
        train(tiny(tmp_path, "train.steps=2"))
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 2
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["test"] is None
