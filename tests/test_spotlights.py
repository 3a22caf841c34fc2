"""The spotlight analysis on the embedded digits and glyphs, at a few steps: each layer's class vote
and its agreement with the label and the output recomputed by hand from the recorded training
inputs, the share of top examples per training phase, the dual form's residual, the written files,
and bad arguments refused in one line."""
import json

import pytest
import torch

from metafwp.analysis import spotlights
from metafwp.errors import run_command
from metafwp.analysis.spotlights import LAYERS, RecordedTraining, analyse, digit_phase, glyph_phase, layer_inputs


@pytest.fixture(scope="module")
def trained():
    training = RecordedTraining(seed=0)
    for phase in (digit_phase(4), glyph_phase(2)):
        training.train(phase)
    yield training.phases, training.model, training.recorder
    training.recorder.close()


def test_votes_agreement_and_phases_match_a_recount_by_hand(trained):
    phases, model, recorder = trained
    results = analyse(model, recorder, phases, k=5)
    inputs, predictions = layer_inputs(model, phases[1].test_images)
    for name in LAYERS:
        keys = torch.cat(recorder.records[name].inputs).double()
        labels = torch.cat(recorder.records[name].labels)
        scores = (inputs[name].double() @ keys.T).abs()                                  # [50, 6 * 128]
        totals = torch.stack([scores[:, labels == c].sum(1) for c in range(10)], 1)
        votes = totals.argmax(1)
        layer = results["glyphs"]["layers"][name]
        assert layer["vote_is_label"] == pytest.approx(100 * (votes == phases[1].test_labels).double().mean().item())
        assert layer["vote_is_output"] == pytest.approx(100 * (votes == predictions).double().mean().item())
        top_steps = scores.topk(5, dim=1).indices // 128                                 # every step holds 128
        assert layer["top_from"]["digits"] == pytest.approx(100 * (top_steps < 4).double().mean().item())
        assert layer["top_from"]["digits"] + layer["top_from"]["glyphs"] == pytest.approx(100)
    assert results["dual_form_relative_residual"] < 1e-4  # float32 records, summed in float32


def test_run_writes_its_results_and_figures(tmp_path):
    results = spotlights.run(tmp_path, seeds=2, steps=2, glyph_steps=1, k=3, progress=False)
    written = json.loads((tmp_path / "results.json").read_text())
    assert written["settings"]["seeds"] == [0, 1] and len(written["sequential"]["per_seed"]) == 2
    mean, ci = results["digits"]["summary"]["digits"]["accuracy"]
    per_seed = [seed["digits"]["accuracy"] for seed in results["digits"]["per_seed"]]
    assert mean == pytest.approx(sum(per_seed) / 2) and ci == pytest.approx(12.706 * abs(per_seed[0] - per_seed[1]) / 2)
    assert "| sequential | glyphs | layer 3 (800-10) |" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "vote_agreement.png").stat().st_size > 0 and (tmp_path / "top_examples_by_phase.png").exists()


@pytest.mark.parametrize("argument,message", [("--seeds=0", "--seeds must be >= 1, got 0"),
                                              ("--steps=many", "--steps takes a whole number >= 1, got 'many'"),
                                              ("--top=0", "--top must be >= 1, got 0")])
def test_bad_arguments_are_one_line_before_any_work(argument, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        run_command(lambda: spotlights.main([argument, f"--out={tmp_path / 'out'}"]))
    assert stop.value.code == 2
    assert capsys.readouterr().err == f"error: {message}\n"
    assert not (tmp_path / "out").exists()
