"""Importing metafwp and episodes and drawing their figures never switches matplotlib's backend."""
import subprocess
import sys


def test_figures_leave_the_backend_alone(tmp_path):
    script = f"""
import matplotlib
matplotlib.use("svg")                     # a backend of the caller's choice (a notebook's inline one)
import metafwp.train, metafwp.demo, episodes.plot, metafwp.plots
from episodes import FewShotSampler, ImageClasses
import torch
classes = ImageClasses(torch.zeros(8, 1, 28, 28, dtype=torch.uint8), torch.arange(4).repeat_interleave(2))
episodes.plot.plot_episode(FewShotSampler(classes, 2, 1, 1, seed=0).sample(range(1)), 0, r"{tmp_path}/e.png")
metafwp.plots.plot_accuracy_bars(["a", "b"], [50.0, 60.0], [1.0, 2.0], r"{tmp_path}/b.png", chance=20.0)
assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "e.png").stat().st_size > 0 and (tmp_path / "b.png").stat().st_size > 0
