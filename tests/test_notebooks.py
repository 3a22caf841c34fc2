"""Every notebook runs top to bottom (its "parameters" cell followed by small settings), so none can rot."""
import json
from pathlib import Path

import matplotlib
import pytest

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))
SMALL = {"STEPS": 4, "TEST_EPISODES": 10}


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[n.stem for n in NOTEBOOKS])
def test_notebook_runs(notebook, tmp_path, monkeypatch):
    matplotlib.use("Agg")
    monkeypatch.chdir(notebook.parent)  # notebooks refer to ../recipes as they would in Jupyter
    cells = [cell for cell in json.loads(notebook.read_text())["cells"] if cell["cell_type"] == "code"]
    assert "parameters" in cells[0]["metadata"].get("tags", []), "the first code cell holds the parameters"
    namespace = {}
    for index, cell in enumerate(cells):
        source = "".join(cell["source"])
        exec(compile(source, f"{notebook.name} cell {index}", "exec"), namespace)
        if index == 0:
            namespace.update(SMALL, OUT=str(tmp_path))
    assert list(tmp_path.glob("*/metrics.json")) or list(tmp_path.glob("*/results.json")), \
        "the notebook writes a run or its results under OUT"
