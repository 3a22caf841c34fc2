"""The FLOPs ``benchmarks/ops_cpu.py`` counts for the delta chunk form, from the algorithm's matmul
shapes, equal what torch's FlopCounterMode counts while the form runs (torch does not count the
unit-triangular solve: its C^3 per chunk and head is set aside)."""
import importlib.util

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from metafwp.ops import delta_rule
from tests.helpers import ROOT

SPEC = importlib.util.spec_from_file_location("ops_cpu", ROOT / "benchmarks/ops_cpu.py")
ops_cpu = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(ops_cpu)


@pytest.mark.parametrize("B,T,H,K,V,C", [(2, 128, 2, 16, 8, 32), (1, 64, 3, 8, 12, 16)])
def test_the_counted_flops_are_torchs(B, T, H, K, V, C):
    q, k = torch.randn(B, T, H, K), torch.nn.functional.normalize(torch.randn(B, T, H, K), dim=-1)
    v, beta = torch.randn(B, T, H, V), torch.rand(B, T, H)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        delta_rule(q, k, v, beta, backend="chunk", chunk_size=C)
    assert counter.get_total_flops() == ops_cpu.chunk_delta_flops(B, T, H, K, V, C) - B * H * (T // C) * C ** 3
