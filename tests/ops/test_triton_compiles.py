"""Every Triton kernel compiles for the GPU (sm_90, through ptxas, no GPU needed) and keeps its
state tiles in registers: the interpreter tests check the maths, this checks what only a compiler sees
(constexpr globals, loop-carried types, register spills)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")


def test_kernels_compile_for_sm90_without_spilling():
    env = {name: value for name, value in os.environ.items() if name != "TRITON_INTERPRET"}
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-m", "tests.ops.kernel_resources"], cwd=root, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 3 * 2 * 3 + 4 * 2 + 4 * 4
    spilled = [row for row in rows if row["stack"] > 0]
    assert not spilled, f"register spills: {spilled}"
