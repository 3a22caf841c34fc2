"""The trainer's guarantees for each of these tasks: validation keeps the best checkpoint (the
highest accuracy, or for regression the lowest error) and tests it; a run stopped by SIGTERM and
resumed equals the run trained straight, bit for bit; a changed config is refused with every file
of the run unchanged; ``evaluate`` reproduces the run's test; a bad test or validation setting
fails before any work; two-process gloo DDP equals one process.

Run as a script under torchrun, this file trains every task's run in one process group."""
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from metafwp.evaluate import main as evaluate_main
from metafwp.tasks import TASKS
from metafwp.train import load_config, train
from metafwp.train.__main__ import main as train_main
from metafwp.train.checkpoint import load_checkpoint
from tests.helpers import ROOT, TINY, TINY_SEQUENCE, assert_identical, learner_of, stop_after, tiny_classifier

RUN = [setting for setting in TINY if not setting.startswith("model.")] + TINY_SEQUENCE + [
    "train.steps=4", "train.checkpoint_every=100", "eval.val_every=1", "eval.val_episodes=6", "optim.lr=0.01",
    "eval.baselines=[]"]
# glyph learners normalise per frame: BatchNorm's statistics would differ between one rank's half
# batch and the whole batch, so DDP could not equal one process
GLYPHS = RUN + ["model.filters=8", "model.norm=instance"]
RUNS = {  # task: (recipe, overrides of a tiny run that validates on held-out classes or fresh tasks)
    "few_shot": ("glyphs_5way1shot_srwm", GLYPHS + ["data.train_split=train", "data.val_split=val"]),
    "bootstrap": ("glyphs_bootstrap_10way1shot_srwm", GLYPHS + ["data.n_way=3", "data.train_split=train",
                                                                "data.val_split=val"]),
    "multitask": ("glyphs_multitask_srwm", GLYPHS + ["data.n_way=3", "data.k_shots=[2,3]", "data.min_segment_steps=4",
                                                     "data.train_splits=[train,train]", "data.val_splits=[val,val]"]),
    "continual": ("glyphs_continual_domain_acl", GLYPHS + ["data.num_tasks=3", "data.k_shot=2", "data.test_k_shot=3",
                                                           "data.train_splits=[train]", "data.val_splits=[val]"]),
    "regression": ("regression_linear", RUN + ["data.dim=3", "data.num_support=6"]),
    "expressivity": ("expressivity_parity", RUN + ["data.train_length=6"]),
    "copy": ("copy_elstm", [s for s in RUN if s != "model.num_heads=2"] + ["data.length=3"]),  # online RTRL
    "char_lm": ("char_lm_delta", RUN + ["data.segment_length=8"]),  # the state carried across batches
    # two models trained; Adam's eps keeps the penalty's near-zero second-order gradients, whose sign float
    # summation order may flip, from moving a weight of the tiny discriminator by a whole lr under DDP
    "gan": ("gan_mnist5k_painter", [s for s in RUN if not s.startswith("model.")]
            + ["model.hidden=8", "model.steps=4", "model.latent=4", "data.discriminator_width=4", "optim.eps=1e-4"]),
}
METRICS = {"regression": ("error", False), "char_lm": ("bpc", False), "gan": ("frechet", False)}  # else accuracy


@pytest.fixture(autouse=True, scope="module")
def gan_classifier():
    """The gan run's Fréchet features: a tiny classifier, trained before any run of this module."""
    tiny_classifier()


def command(task: str, out_dir: Path, name: str, *overrides) -> list[str]:
    """The ``python -m metafwp.train`` arguments of ``task``'s tiny run ``out_dir/name``."""
    recipe, options = RUNS[task]
    features = [f"data.classifier={tiny_classifier()}"] if task == "gan" else []
    return [str(ROOT / "recipes" / f"{recipe}.yaml"), *options, *features, f"train.out_dir={out_dir}",
            f"train.name={name}", *overrides]


def config_of(task: str, out_dir: Path, name: str, *overrides):
    recipe, *overrides = command(task, out_dir, name, *overrides)
    return load_config(recipe, overrides)


def files_of(run_dir: Path) -> dict[str, bytes]:
    return {str(path.relative_to(run_dir)): path.read_bytes() for path in sorted(run_dir.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def straight_runs(tmp_path_factory):
    """``straight(task)``: the folder of ``task``'s tiny run trained without a stop (once per task)."""
    out_dir, done = tmp_path_factory.mktemp("straight"), {}

    def straight(task: str) -> Path:
        if task not in done:
            done[task] = train(config_of(task, out_dir, task))
        return done[task]

    return straight


@pytest.mark.parametrize("task", RUNS)
def test_validation_keeps_the_best_checkpoint_and_the_test_uses_it(task, straight_runs):
    run_dir = straight_runs(task)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metric, higher_is_better = TASKS[task].metric, TASKS[task].higher_is_better
    assert (metric, higher_is_better) == METRICS.get(task, ("accuracy", True))
    validation = metrics["validation"]
    assert [record["step"] for record in validation] == [1, 2, 3, 4]
    scores = [record[metric] if higher_is_better else -record[metric] for record in validation]
    best = validation[scores.index(max(scores))]  # the first of equals stays
    assert metrics["best"] == {"step": best["step"], metric: best[metric]}
    assert metrics["tested"] == f"best.pt (step {best['step']})"
    assert load_checkpoint(run_dir / "best.pt")["step"] == best["step"]
    config, model = learner_of(run_dir, "best.pt")  # best.pt holds the weights that scored the best
    assert TASKS[task](config, progress=False).validate(model, torch.device("cpu"))[metric] == best[metric]


@pytest.mark.parametrize("task", RUNS)
def test_a_run_stopped_by_sigterm_and_resumed_equals_the_straight_run(task, straight_runs, tmp_path, monkeypatch,
                                                                      capsys):
    straight = straight_runs(task)
    stop_after(monkeypatch, 3)
    assert train_main(command(task, tmp_path, "stopped")) == 128 + signal.SIGTERM
    assert "SIGTERM at step 3: checkpoint saved" in capsys.readouterr().err
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "stopped" / "checkpoint.pt")["step"] == 3
    resumed = train(config_of(task, tmp_path, "stopped", "train.resume=true"))
    ours, theirs = load_checkpoint(resumed / "checkpoint.pt"), load_checkpoint(straight / "checkpoint.pt")
    for key in ("step", "model", "models", "optimizers", "schedulers", "task_state", "validation", "best"):
        assert_identical(key, ours[key], theirs[key])
    timing = ("seconds", "episodes_per_second")  # wall-clock figures, the only ones that may differ
    assert_identical("history", [{k: v for k, v in record.items() if k not in timing} for record in ours["history"]],
                     [{k: v for k, v in record.items() if k not in timing} for record in theirs["history"]])
    assert_identical("best.pt", load_checkpoint(resumed / "best.pt")["model"],
                     load_checkpoint(straight / "best.pt")["model"])
    ours, theirs = (json.loads((folder / "metrics.json").read_text())["test"] for folder in (resumed, straight))
    assert ours == theirs


@pytest.mark.parametrize("task", RUNS)
def test_a_changed_config_is_refused_and_evaluate_reproduces_the_test(task, straight_runs, capsys):
    run_dir = straight_runs(task)
    out_dir, before = run_dir.parent, files_of(run_dir)
    assert train_main(command(task, out_dir, task, "train.resume=true", "optim.lr=0.02")) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "optim.lr (0.01 -> 0.02)" in error
    assert files_of(run_dir) == before

    tested = json.loads((run_dir / "metrics.json").read_text())["test"]
    assert evaluate_main([str(run_dir)]) == 0
    written = [json.loads(path.read_text()) for path in run_dir.glob("evaluation_*.json")]
    assert len(written) == 1 and written[0]["weights"] == "best.pt"
    assert {name: result[TASKS[task].metric] for name, result in written[0]["results"].items()} == \
        {name: result[TASKS[task].metric] for name, result in tested.items()}
    assert evaluate_main([str(run_dir), "eval.episodes=5", "eval.seed=7"]) == 0  # settings of the test only
    assert {result["episodes"] for result in json.loads(next(run_dir.glob("evaluation_*5ep_seed7.json")).read_text())
            ["results"].values()} == {5}


BAD_HELD_OUT_SETTINGS = [
    ("few_shot", "data.test_split=evaluaton", "Unknown glyphs split 'evaluaton' for data.test_split"),
    ("few_shot", "data.val_split=vall", "Unknown glyphs split 'vall' for data.val_split"),
    ("bootstrap", "data.test_split=evaluaton", "Unknown glyphs split 'evaluaton' for data.test_split"),
    ("bootstrap", "data.val_split=background", "data.val_split=background shares classes with the training split"),
    ("multitask", "data.test_splits=[evaluation,evaluaton]",
     r"Unknown glyphs split 'evaluaton' for data.test_splits\[1\]"),
    ("multitask", "data.val_splits=[vall,val]", r"Unknown glyphs split 'vall' for data.val_splits\[0\]"),
    ("continual", "data.val_splits=[vall]", r"Unknown glyphs split 'vall' for data.val_splits\[0\]"),
    ("continual", "data.test_dataset=mnist", "data.test_dataset=mnist needs data.test_root"),
    ("regression", "data.gd_steps=0", "data.gd_steps must be >= 1"),
    ("expressivity", "data.test_length=3", "data.test_length=3 is shorter than data.train_length=6"),
    ("copy", "model.mixer=delta", "data.update=rtrl needs an e-LSTM learner"),
    ("gan", "eval.episodes=4001", "eval.episodes=4001: the floor compares as many training images"),
]


@pytest.mark.parametrize("task,override,message", BAD_HELD_OUT_SETTINGS)
def test_a_bad_test_or_validation_setting_fails_before_any_work(task, override, message, tmp_path, capsys):
    assert train_main(command(task, tmp_path, "run", override)) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("error: ")
    assert re.search(message, error), error
    assert not (tmp_path / "run").exists()  # no folder, no checkpoint


def test_two_process_ddp_equals_one_process_for_every_task(tmp_path, straight_runs):
    """One torchrun of two gloo processes trains every task's run through the command line, in one
    process group (this file as a script); each equals the one-process run up to float summation
    order, its log records count the episodes of both ranks, and it prints its results once."""
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
              "tests.train.test_every_task", str(tmp_path)]
    done = subprocess.run(launch, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = sum(len(json.loads((straight_runs(task) / "metrics.json").read_text())["test"]) for task in RUNS)
    assert done.stdout.count("Run folder:") == len(RUNS) and done.stdout.count(" test episodes, ") == results
    for task in RUNS:
        single, ddp = (load_checkpoint(folder / "checkpoint.pt") for folder in (straight_runs(task), tmp_path / task))
        for key, value in single["model"].items():
            # Adam scales every gradient entry to about lr, so float summation order can move a weight whose
            # gradient is near zero by a few 1e-6 after four steps (seen: 1.9e-6 in multitask's first conv)
            assert torch.allclose(ddp["model"][key], value, rtol=1e-4, atol=1e-5), f"{task}: {key}"
        for ours, theirs in zip(ddp["history"], single["history"], strict=True):
            assert ours["loss"] == pytest.approx(theirs["loss"], rel=1e-5), f"{task}: step {ours['step']}"
            assert ours["episodes"] == theirs["episodes"], task
        assert [record["step"] for record in ddp["validation"]] == [1, 2, 3, 4]


if __name__ == "__main__":  # under torchrun: every task's run, in the process group joined once
    from metafwp.train.distributed import start_distributed, stop_distributed

    ranks = start_distributed("cpu")
    for name in RUNS:
        assert train_main(command(name, Path(sys.argv[1]), name, "train.device=cpu")) == 0
    stop_distributed(ranks)
