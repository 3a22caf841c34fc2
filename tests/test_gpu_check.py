"""`make gpu-check` on a machine without a GPU: it checks the packages and the glyphs, says in one line
that no GPU was found, skips the CUDA steps and still writes its summary."""
import importlib.util
import json
from pathlib import Path

import torch

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "gpu_check.py"


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_a_gpu_the_check_says_so_in_one_line_and_writes_its_summary(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("METAFWP_GLYPHS_FILE", raising=False)
    gpu_check = load_script()
    carried = tmp_path / "carried" / "metafwp"
    carried.mkdir(parents=True)
    from episodes.datasets.glyphs import Glyphs, class_list

    Glyphs("all", root=carried, progress=False)  # what `make gpu-wheels` leaves in .gpu_cache
    assert gpu_check.main(["--out", str(tmp_path / "out"), "--wheels", str(tmp_path / "no_wheels"),
                           "--glyphs", str(tmp_path / "carried")]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert sum("no GPU found" in line for line in printed) == 1
    summary = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert summary["gpu"] is None and summary["steps"] == [] and summary["torch"] == torch.__version__
    assert summary["packages"]["fla-core"] == "0.6.0" and "skipped the 4 CUDA steps" in summary["note"]
    assert summary["glyphs"].endswith("(carried)") and f"glyphs-v{class_list()['version']}-" in summary["glyphs"]
    assert "no GPU found" in (tmp_path / "out" / "gpu_check.md").read_text()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["gpu_check.json", "gpu_check.md"]


def test_the_cuda_steps_fit_the_eight_minutes_of_one_device_command(tmp_path):
    steps = load_script().cuda_steps(tmp_path)
    assert sum(timeout for _, _, timeout in steps) <= 7 * 60
    assert all((SCRIPT.parents[1] / path.split("::")[0]).is_file() for path in load_script().CUDA_TESTS)
