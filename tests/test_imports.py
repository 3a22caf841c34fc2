"""Every module imports first in a fresh interpreter (no import cycle hides behind the order in
which the test suite happens to import them)."""
import subprocess
import sys

from tests.helpers import ROOT

FIRST_IMPORTS = ["metafwp.baselines.maml", "metafwp.models.kinds", "metafwp.tasks.regression", "metafwp.nn.mixers",
                 "metafwp.train.loop"]

def test_each_module_imports_first_on_its_own():
    script = "; ".join(f"subprocess.run([sys.executable, '-c', 'import {name}'], check=True)" for name in FIRST_IMPORTS)
    done = subprocess.run([sys.executable, "-c", f"import subprocess, sys; {script}"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
