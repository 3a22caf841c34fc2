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


def test_tests_share_helpers_only_through_helpers_and_conftest():
    """A test module imports nothing from another test module: what tests share lives in
    tests/helpers.py or a conftest.py."""
    shared = {"tests.helpers", "tests.conftest"}
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for line in path.read_text().splitlines():
            words = line.split()
            if line.strip().startswith(("from tests", "import tests")) and words[1] not in shared:
                raise AssertionError(f"{path.relative_to(ROOT)} imports {words[1]}: move what it needs to "
                                     f"tests/helpers.py")
