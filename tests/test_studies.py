"""Declared studies: every declaration plans loadable runs; a quick run follows its declaration
(seeds, steps, selection on validation, only the selected runs tested, means and Student-t
intervals over seeds); submitit's local executor gives the same results as the process pool; the
multi-task learners are capacity-matched; bad input is one line before anything runs."""
import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from metafwp.errors import ConfigError
from metafwp.studies import STUDIES, Budget, Column, Condition, Study, register_study, run_study
from metafwp.studies.__main__ import main
from metafwp.studies.char_lm import figures as char_lm_figures
from metafwp.studies.memory import state_size
from metafwp.studies.multitask import LEARNERS
from metafwp.studies.protocol import T_975, Candidate, plan, select
from metafwp.studies.publish import BLOCK, publish, readme_with_results
from metafwp.tasks import TASKS
from metafwp.train import load_config
from tests.helpers import ROOT, TINY_SEQUENCE

QUICK = ("train.batch_size=4", "train.log_every=1", "train.checkpoint_every=2", "eval.batch_size=5",
         "model.filters=8", *TINY_SEQUENCE)


@pytest.fixture
def toy_study():
    """The glyph SRWM with a learning-rate grid, validated every step."""
    study = register_study(Study(
        name="toy", summary="a tiny study for the tests",
        conditions=(Condition("SRWM", "glyphs_5way1shot_srwm", QUICK + ("eval.baselines=[]",),
                              grid=(("optim.lr", (0.001, 0.01)),)),),
        columns=(Column("accuracy", lambda results, learner: results[learner]["accuracy"]),),
        validation=("data.train_split=train", "data.val_split=val", "eval.val_every=1", "eval.val_episodes=6"),
        seeds=2, steps=3, episodes=8))
    yield study
    STUDIES.pop("toy")


def test_every_declared_study_plans_loadable_runs_with_distinct_folders(tmp_path):
    for study in STUDIES.values():
        candidates = plan(study, tmp_path / study.name, Budget(1, study.steps, study.episodes))  # one seed: faster
        names = [candidate.name for candidate in candidates]
        assert len(set(names)) == len(names) == sum(len(c.settings()) for c in study.conditions)


def condition_learners(name: str) -> dict:
    """``{label: (config, learner)}`` of every condition of study ``name``, built as its runs are."""
    learners = {}
    for condition in STUDIES[name].conditions:
        config = load_config(ROOT / "recipes" / f"{condition.recipe}.yaml", list(condition.overrides))
        learners[condition.label] = config, TASKS[config.task](config, progress=False).build_learner(config.model)
    return learners


def assert_within_ten_percent(models: dict, reference: str) -> None:
    counts = {label: sum(p.numel() for p in model.parameters()) for label, model in models.items()}
    assert all(abs(count / counts[reference] - 1) <= 0.10 for count in counts.values()), counts


@pytest.mark.parametrize("name", ["code_execution", "listops"])
def test_the_algorithmic_learners_are_within_ten_percent_of_deltanets_parameters(name):
    learners = condition_learners(name)
    assert {config.model.mixer for config, _ in learners.values()} == {
        "lstm", "delta", "delta_rnn", "recurrent_delta", "hebbian", "srwm", "attention"}
    assert_within_ten_percent({label: model for label, (_, model) in learners.items()}, "DeltaNet")


@pytest.mark.parametrize("name", ["regression_synchronous", "regression_delayed"])
def test_the_regression_learners_are_within_ten_percent_of_deltanets_parameters(name):
    learners = condition_learners(name)
    assert all(config.model.num_layers == 4 for config, _ in learners.values() if config.model.kind == "sequence")
    assert_within_ten_percent({label: model for label, (_, model) in learners.items()}, "DeltaNet")


@pytest.mark.parametrize("name", ["memory_mqar", "memory_parity_grazzi"])
def test_the_memory_learners_are_within_ten_percent_of_deltanets_parameters(name):
    learners = condition_learners(name)
    for config, _ in learners.values():
        assert config.model.num_layers == 2 and config.model.d_model in (64, 60)  # 60: the hybrids on parity
        assert config.model.short_conv
    assert_within_ten_percent({label: model for label, (_, model) in learners.items()}, "DeltaNet, rates in (0, 2)")


def test_memory_mqar_reads_accuracy_by_distance_from_the_mqar_tasks_bins():
    """Its columns are the bins the MQAR task reports (queries by steps back to their key), nan for an
    empty bin."""
    task = TASKS["mqar"](load_config(ROOT / "recipes" / "mqar_hqlt.yaml"))
    sums = {"loss_sum": torch.tensor(3.0), "queries": torch.tensor(6), "episode_accuracy": torch.tensor(1.5),
            "episodes": torch.tensor(2.0), "correct": torch.tensor([2, 1, 0, 0, 0, 0, 0]),
            "scored": torch.tensor([2, 2, 2, 0, 0, 0, 0])}
    results = {"delta": task.summarise(sums)}
    columns = {column.name: column.read(results, "delta") for column in STUDIES["memory_mqar"].columns}
    assert columns.pop("accuracy") == 75.0
    assert columns.pop("keys 1-8 back") == 100.0 and columns.pop("keys 9-16 back") == 50.0
    assert columns.pop("keys 17-32 back") == 0.0 and math.isnan(columns.pop("keys 33-64 back"))
    assert not columns


def test_the_state_sizes_are_the_elements_each_learner_carries():
    """Zoology's state size, against the learner's own state after a 64-step MQAR sequence (per sequence)."""
    for label, (config, learner) in condition_learners("memory_state_size").items():
        batch = TASKS[config.task](config, progress=False).sampler.sample(torch.arange(2))
        _, state = learner(batch)
        carried = sum(t.numel() for t in torch.utils._pytree.tree_leaves(state) if t.dim() >= 3) // 2
        assert carried == state_size(label), label


def test_the_multitask_learners_are_within_ten_percent_of_deltanets_parameters():
    models = {}
    for label, (recipe, overrides) in LEARNERS.items():
        config = load_config(ROOT / "recipes" / f"{recipe}.yaml", list(overrides))
        assert config.model.num_layers == 2
        models[label] = TASKS[config.task](config, progress=False).build_learner(config.model)
    assert_within_ten_percent(models, "DeltaNet")


def test_the_char_lm_learners_are_within_ten_percent_of_the_lstms_parameters():
    learners = condition_learners("char_lm")
    for condition in STUDIES["char_lm"].conditions:
        config, _ = learners[condition.label]
        assert config.model.num_layers == 1 and f"model.mixer={config.model.mixer}" in condition.overrides
    assert_within_ten_percent({label: model for label, (_, model) in learners.items()}, "LSTM")


def test_the_char_lm_figures_draw_every_learner_and_both_compressed_families(tmp_path):
    study = STUDIES["char_lm"]
    conditions = {c.label: {"columns": {"BPC": {"mean": 2.0 + i / 10, "ci95": 0.1},
                                        "unigram BPC": {"mean": 4.6, "ci95": 0.0}}}
                  for i, c in enumerate(study.conditions)}
    paths = char_lm_figures(study, {"conditions": conditions, "seeds": [0, 1, 2]}, tmp_path)
    assert [path.name for path in paths] == ["bpc.png", "bpc_by_compression.png"]
    assert all(path.stat().st_size > 10_000 for path in paths)


def test_the_irregular_rows_learners_are_within_three_percent_of_the_continuous_time_fwps_parameters():
    learners = condition_learners("irregular_rows")
    counts = {label: sum(p.numel() for p in model.parameters()) for label, (_, model) in learners.items()}
    assert all(abs(count / 9870 - 1) <= 0.03 for count in counts.values()), counts
    for label, (config, _) in learners.items():
        assert f"{int(round(100 * config.data.drop_rate))} % dropped" in label
        assert config.model.kind in ("ct_fwp", "neural_cde", "sequence") and not getattr(config.model, "adjoint", False)


@pytest.mark.parametrize("protocol", ["bhattamishra", "grazzi"])
def test_the_recurrent_parity_rows_run_what_their_labels_say(protocol):
    """Each row's resolved config: the mixer, the rate map and R_0 its label names, under the protocol."""
    study = STUDIES[f"recurrent_parity_{protocol}"]
    assert len(study.conditions) == 8
    for condition in study.conditions:
        config = load_config(ROOT / "recipes" / f"{condition.recipe}.yaml", list(condition.overrides))
        assert config.model.mixer == condition.label.split(",")[0] and config.data.protocol == protocol
        assert config.model.beta_activation == ("2sigmoid" if "rates (0, 2)" in condition.label else "sigmoid")
        assert config.model.learned_initial_r == condition.label.endswith("R_0 learned")


def test_the_gd_plus_plus_rows_run_von_oswald_et_al_s_setting():
    """Each row: a weight-tied two-layer linear self-attention model, causal or not as its label says,
    at its N and input range (x ~ U(-r/2, r/2)), d = 10, one query, no noise."""
    for condition in STUDIES["gd_plus_plus"].conditions:
        config = load_config(ROOT / "recipes" / f"{condition.recipe}.yaml", list(condition.overrides))
        model, data = config.model, config.data
        assert (model.kind, model.num_layers, model.tied_layers) == ("linear_attention", 2, True)
        assert model.causal == condition.label.startswith("causal")
        assert f"N = {data.num_support}," in condition.label
        assert f"U(-{data.input_range / 2:g}, {data.input_range / 2:g})" in condition.label
        assert (data.dim, data.num_query, data.noise_std, data.feedback) == (10, 1, 0.0, "synchronous")


@pytest.mark.parametrize("name,row", [("bootstrap", 0), ("continual_domain", 0), ("multitask", 0),
                                      ("expressivity_parity_grazzi", 0), ("gd_plus_plus", 0),
                                      ("regression_synchronous", -1), ("regression_delayed", 0), ("painter", 0),
                                      ("memory_state_size", 0), ("irregular_rows", 1),
                                      ("copy_rtrl", 0), ("code_execution", 0), ("listops", 0)])
def test_each_study_reads_its_columns_from_its_tasks_results(tmp_path, name, row):
    """One condition of each study family (MAML's for regression_synchronous), one step, its required
    runs at two steps: its table holds a number in every column, and its figures are drawn."""
    study = STUDIES[name]
    requires = tuple(replace(r, overrides=r.overrides + ("train.steps=2", "model.hidden=[8]")) for r in study.requires)
    study = replace(study, conditions=(study.conditions[row],), validation=study.validation + ("eval.val_episodes=8",),
                    requires=requires)
    results = run_study(study, tmp_path, Budget(seeds=1, steps=1, episodes=2))
    for required in study.requires:  # trained and tested first, in the study's folder; the conditions read them
        assert results["requirements"][required.name]["run"] == str(tmp_path / required.name)
        assert f"Required run `{required.name}` (2 steps)" in (tmp_path / "results.md").read_text()
    if name == "painter":
        run = load_config(Path(results["runs"][0]["run"]) / "config.yaml")
        assert run.data.classifier == str(tmp_path / "mnist5k_classifier")
    row = results["conditions"][study.conditions[0].label]
    assert set(row["columns"]) == {column.name for column in study.columns}
    if study.figures:
        paths = study.figures(study, results, tmp_path)
        assert all(path.stat().st_size > 0 for path in paths)
        if name == "irregular_rows":  # its row 1 is the run whose fast weights are drawn
            assert [path.name for path in paths] == ["accuracy_against_drop_rate.png", "fast_weight_norm.png"]
    if results["chance"] is None:  # errors and gamma: no percentages, no bar chart against chance
        assert all(math.isfinite(cell["mean"]) for cell in row["columns"].values())
    else:
        assert all(0 <= cell["mean"] <= 100 for cell in row["columns"].values())
        assert (tmp_path / "results.png").is_file()
    assert (tmp_path / "results.md").is_file()


def student_t_interval(values):
    n, mean = len(values), sum(values) / len(values)
    return mean, T_975[n - 1] * math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) / math.sqrt(n)


@pytest.mark.parametrize("task,scores,expected", [("few_shot", [70.0, math.nan, 80.0], 2),  # accuracy: higher
                                                   ("regression", [0.5, math.nan, 0.2], 2),   # error: lower
                                                   ("regression", [math.nan, 0.9, 0.8], 2)])
def test_selection_takes_the_best_validation_mean_and_never_a_diverged_setting(toy_study, task, scores, expected):
    condition = toy_study.conditions[0]
    candidates = [Candidate(condition, (f"optim.lr={i}",), 0, f"run{i}", []) for i in range(3)]
    metrics = [{"task": task, "best": {TASKS[task].metric: score}} for score in scores]
    assert select(toy_study, candidates, metrics) == {"SRWM": (f"optim.lr={expected}",)}


def test_a_quick_run_follows_its_declaration_and_tests_only_what_validation_selected(tmp_path, toy_study):
    results = main(["run", "toy", "--out", str(tmp_path)])
    assert (results["seeds"], results["steps"], results["test_episodes"]) == ([0, 1], 3, 8)
    assert results["selection"] == toy_study.selection and results["validation"] == list(toy_study.validation)
    records = results["runs"]
    assert len(records) == 2 * 2  # two learning rates, two seeds each
    srwm = [r for r in records if r["condition"] == "SRWM"]
    by_rate = {rate: [r["best_validation"]["accuracy"] for r in srwm if r["setting"] == [f"optim.lr={rate}"]]
               for rate in (0.001, 0.01)}
    chosen = max(by_rate, key=lambda rate: sum(by_rate[rate]) / 2)  # the first of equals stays
    assert results["conditions"]["SRWM"]["selected"] == [f"optim.lr={chosen}"]
    for record in records:
        metrics = json.loads((Path(record["run"]) / "metrics.json").read_text())
        assert metrics["test"] is None and metrics["steps"] == 3 and record["best_validation"] == metrics["best"]
        evaluations = list(Path(record["run"]).glob("evaluation_*.json"))
        assert record["selected"] == ("test" in record) == bool(evaluations)  # unselected runs are never tested
        if record["selected"]:
            (evaluation,) = evaluations
            written = json.loads(evaluation.read_text())
            assert written["weights"] == "best.pt" and written["episodes"] == 8
            assert record["test"]["accuracy"] == written["results"][metrics["learner"]]["accuracy"]
    for label, row in results["conditions"].items():
        values = [r["test"]["accuracy"] for r in records if r["condition"] == label and r["selected"]]
        assert len(values) == 2
        mean, ci95 = student_t_interval(values)
        assert row["columns"]["accuracy"]["mean"] == pytest.approx(mean)
        assert row["columns"]["accuracy"]["ci95"] == pytest.approx(ci95)
    table = (tmp_path / "toy" / "results.md").read_text()
    assert "2 seeds per condition" in table and "8 test episodes" in table and toy_study.selection in table
    assert (tmp_path / "toy" / "results.png").is_file()
    checkpoints = {path: path.stat().st_mtime_ns for path in (tmp_path / "toy").rglob("checkpoint.pt")}
    assert main(["run", "toy", "--out", str(tmp_path)])["conditions"] == results["conditions"]  # reused
    assert checkpoints == {path: path.stat().st_mtime_ns for path in (tmp_path / "toy").rglob("checkpoint.pt")}
    assert main(["report", "toy", "--out", str(tmp_path)])["conditions"] == results["conditions"]
    record = tmp_path / "toy" / "results.json"  # a chance recorded under an older definition is read again
    record.write_text(json.dumps(json.loads(record.read_text()) | {"chance": 99.0}))
    assert main(["report", "toy", "--out", str(tmp_path)])["chance"] == results["chance"] == 20.0
    assert json.loads(record.read_text())["chance"] == 20.0
    # a column declared after the runs is read from their test files; nothing is trained or tested anew
    STUDIES["toy"] = replace(toy_study, columns=toy_study.columns + (
        Column("loss", lambda results, learner: results[learner]["loss"]),))
    reported = main(["report", "toy", "--out", str(tmp_path)])
    for tested_run in (r for r in reported["runs"] if r["selected"]):
        (evaluation,) = Path(tested_run["run"]).glob("evaluation_*.json")
        assert tested_run["test"]["loss"] == next(iter(json.loads(evaluation.read_text())["results"].values()))["loss"]
    assert reported["conditions"]["SRWM"]["columns"]["accuracy"] == results["conditions"]["SRWM"]["columns"]["accuracy"]
    assert "| loss |" in (tmp_path / "toy" / "results.md").read_text()
    assert checkpoints == {path: path.stat().st_mtime_ns for path in (tmp_path / "toy").rglob("checkpoint.pt")}
    evaluation.unlink()  # a selected run without its test: one clear error
    with pytest.raises(ConfigError, match="has no test on 8 episodes: run the study again"):
        main(["report", "toy", "--out", str(tmp_path)])
    STUDIES["toy"] = toy_study
    (tmp_path / "README.md").write_text("intro\n<!-- results: toy -->\nold table\n<!-- /results -->\nmore\n")
    published = publish("toy", tmp_path / "toy", root=tmp_path)
    readme = (tmp_path / "README.md").read_text()
    assert published.read_text() in readme and "old table" not in readme and "| SRWM | optim.lr=" in readme
    assert (tmp_path / "docs" / "results" / "toy_results.png").is_file() and "docs/results/toy_results.png" in readme


def test_submitit_local_gives_the_results_of_the_process_pool(tmp_path, toy_study):
    study = Study("one", "one run", (Condition("SRWM", "glyphs_5way1shot_srwm", QUICK + ("eval.baselines=[]",)),),
                  toy_study.columns, toy_study.validation)
    budget = Budget(seeds=1, steps=2, episodes=4)
    pool = run_study(study, tmp_path / "pool", budget)
    submitit = run_study(study, tmp_path / "submitit", budget, launcher="submitit-local")
    for results in (pool, submitit):
        results["conditions"]["SRWM"].pop("train_minutes")  # wall clock
    assert submitit["conditions"] == pool["conditions"]
    assert list((tmp_path / "submitit" / "submitit").glob("*_log.out"))  # submitit's own logs


def one_line_error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as stop:
        from metafwp.errors import run_command
        run_command(lambda: main(argv))
    assert stop.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1, error
    return error


def test_bad_input_is_one_line_before_anything_runs(tmp_path, capsys, toy_study, monkeypatch):
    out = ["--out", str(tmp_path)]
    assert "Unknown study 'bootstrp'" in one_line_error(capsys, ["run", "bootstrp", *out])
    assert "--seeds must be >= 1, got 0" in one_line_error(capsys, ["run", "toy", "--seeds", "0", *out])
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    assert "needs SLURM's sbatch on PATH" in one_line_error(capsys, ["run", "toy", "--launcher", "slurm", *out])
    monkeypatch.undo()
    assert "holds no finished study toy" in one_line_error(capsys, ["report", "toy", *out])
    assert not any(tmp_path.iterdir())
    run_study(toy_study, tmp_path / "toy", Budget(seeds=1, steps=1, episodes=4))
    error = one_line_error(capsys, ["run", "toy", "--seeds", "1", "--steps", "2", *out])
    assert "holds runs of other settings" in error and "train.steps (1 -> 2)" in error
    STUDIES["broken"] = Study("broken", "a recipe that does not load", (Condition("x", "glyphs_5way1shot_srwm",
                                                                                 ("model.mixr=delta",)),),
                              toy_study.columns, ())
    try:
        assert "study broken, condition 'x'" in one_line_error(capsys, ["run", "broken", *out])
    finally:
        STUDIES.pop("broken")


def test_the_readme_tables_are_the_published_results():
    """Every results block of the README equals its docs/results/<study>.md, and every published
    study has its block."""
    readme = (ROOT / "README.md").read_text()
    assert readme_with_results(readme) == readme
    published = {path.stem for path in (ROOT / "docs" / "results").glob("*.md")}
    assert published == {match["name"] for match in BLOCK.finditer(readme)}
