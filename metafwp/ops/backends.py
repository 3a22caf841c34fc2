"""Which backend runs a call, and why: the one place where ``backend="auto"`` is resolved.

``explain_backend`` asks the same questions the ops ask, so what it says is what they do.
The Triton modules are imported only when a Triton backend is chosen: ``import metafwp`` never
needs triton (macOS wheels of torch do not ship it).
"""
from __future__ import annotations

import importlib.util
import os
from typing import NamedTuple

import torch

from metafwp.ops.common import check_backend

# Rules with a fused recurrent kernel, and the head sizes it keeps in registers (fused_recurrent.py).
TRITON_RULES = ("hebbian", "decay", "delta", "gated_delta", "oja")
TRITON_MAX_HEAD_DIM = 128
# Oja's update couples every column, so one program holds all of S [K, V]: above this many entries
# it spills registers and auto prefers the chunk form (explicit backend="triton" still runs).
OJA_MAX_STATE = 64 * 128
SRWM_TRITON_MAX_HEAD_DIM = 64
RFWP_TRITON_MAX_HEAD_DIM = 64  # delta_rnn's R loop and recurrent_delta (fused_recurrent_fwp.py)
TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)

# Where the chunk form overtakes the loop on CPU (fwd+bwd, measured at B*H = 2048, K = 16 and
# B*H = 128, K = 64): from about 16 steps for small heads, from 4 steps for heads of 32 or more.
CHUNK_MIN_STEPS = 16
CHUNK_MIN_STEPS_WIDE_HEADS = 4
WIDE_HEAD = 32


class BackendChoice(NamedTuple):
    """The backend a call runs on and a one-line reason."""

    backend: str
    reason: str

    def __str__(self) -> str:
        return f"{self.backend}: {self.reason}"


def triton_unavailable(device: torch.device) -> str | None:
    """None when the Triton kernels can run on ``device``, else why they cannot."""
    if importlib.util.find_spec("triton") is None:
        return "triton is not installed (it comes with torch's CUDA wheels on Linux)"
    if device.type == "cuda":
        return None
    if os.environ.get("TRITON_INTERPRET") == "1":
        return None
    return (f"the tensors are on {device.type}, and the Triton kernels need CUDA (or TRITON_INTERPRET=1 "
            "set before the first call, which runs them slowly on CPU for tests)")


def _steps_choice(num_steps: int, key_dim: int, why: str) -> BackendChoice:
    min_steps = CHUNK_MIN_STEPS_WIDE_HEADS if key_dim >= WIDE_HEAD else CHUNK_MIN_STEPS
    if num_steps >= min_steps:
        return BackendChoice("chunk", f"{why}; {num_steps} steps >= {min_steps}, where the chunk form beats the loop")
    return BackendChoice("reference", f"{why}; {num_steps} steps < {min_steps}, too few for the chunk form to pay")


def fast_weight_backend(backend: str, rule: str, num_steps: int, key_dim: int, value_dim: int,
                        dtype: torch.dtype, device: torch.device) -> BackendChoice:
    """Resolve ``backend`` for a Table-1 rule; raise ValueError if ``"triton"`` was asked for and cannot run."""
    check_backend(backend)
    oja_fits = rule != "oja" or key_dim * value_dim <= OJA_MAX_STATE
    kernel_fits = (rule in TRITON_RULES and max(key_dim, value_dim) <= TRITON_MAX_HEAD_DIM and oja_fits
                   and dtype in TRITON_DTYPES)
    if backend == "triton":
        problem = triton_unavailable(device)
        if rule not in TRITON_RULES:
            problem = f"rule {rule!r} has no Triton kernel (those with one: {', '.join(TRITON_RULES)}); use 'chunk'"
        elif max(key_dim, value_dim) > TRITON_MAX_HEAD_DIM:
            problem = f"K={key_dim}, V={value_dim}: the Triton kernel keeps heads up to {TRITON_MAX_HEAD_DIM}; use 'chunk'"
        elif dtype not in TRITON_DTYPES:
            problem = f"dtype {dtype}: the Triton kernel takes float16, bfloat16 or float32; use 'reference' or 'chunk'"
        if problem:
            raise ValueError(f"backend='triton' cannot run here: {problem}")
        return BackendChoice("triton", "asked for")
    if backend != "auto":
        return BackendChoice(backend, "asked for")
    if device.type == "cuda" and kernel_fits and triton_unavailable(device) is None:
        return BackendChoice("triton", f"CUDA tensors, fused recurrent kernel for {rule!r} with K={key_dim}, V={value_dim}")
    if device.type != "cuda":
        why = f"{device.type} tensors"
    elif triton_unavailable(device):
        why = triton_unavailable(device)
    elif rule not in TRITON_RULES:
        why = f"no Triton kernel for {rule!r}"
    elif dtype not in TRITON_DTYPES:
        why = f"no Triton kernel for {dtype}"
    elif not oja_fits:
        why = f"oja's state K*V = {key_dim * value_dim} > {OJA_MAX_STATE} does not fit one program's registers"
    else:
        why = f"heads of K={key_dim}, V={value_dim} exceed the Triton kernel's {TRITON_MAX_HEAD_DIM}"
    return _steps_choice(num_steps, key_dim, why)


def srwm_backend(backend: str, head_dim: int, dtype: torch.dtype, device: torch.device) -> BackendChoice:
    """Resolve ``backend`` for the SRWM; raise ValueError if ``"triton"`` was asked for and cannot run."""
    check_backend(backend, ("auto", "reference", "triton"))
    if backend == "triton":
        problem = triton_unavailable(device)
        if head_dim > SRWM_TRITON_MAX_HEAD_DIM:
            problem = (f"D={head_dim}: the SRWM kernel keeps W on chip for D <= {SRWM_TRITON_MAX_HEAD_DIM}; "
                       "use 'reference' (or more heads)")
        elif dtype not in TRITON_DTYPES:
            problem = f"dtype {dtype}: the SRWM kernel takes float16, bfloat16 or float32; use 'reference'"
        if problem:
            raise ValueError(f"backend='triton' cannot run here: {problem}")
        return BackendChoice("triton", "asked for")
    if backend == "reference":
        return BackendChoice("reference", "asked for")
    if device.type != "cuda":
        return BackendChoice("reference", f"{device.type} tensors: the batched time loop")
    if triton_unavailable(device):
        return BackendChoice("reference", triton_unavailable(device))
    if head_dim > SRWM_TRITON_MAX_HEAD_DIM:
        return BackendChoice("reference", f"D={head_dim} > {SRWM_TRITON_MAX_HEAD_DIM} does not fit the kernel's registers")
    if dtype not in TRITON_DTYPES:
        return BackendChoice("reference", f"no Triton kernel for {dtype}")
    return BackendChoice("triton", f"CUDA tensors, SRWM kernel with W [{head_dim}, {3 * head_dim + 4}] on chip")


def recurrent_loop_backend(backend: str, head_dim: int, dtype: torch.dtype, device: torch.device) -> BackendChoice:
    """Resolve ``backend`` for the time loop of ``delta_rnn`` / ``recurrent_delta``: ``triton`` or
    ``reference`` (the loop, also for ``chunk``); raise ValueError if ``"triton"`` was asked for and
    cannot run."""
    check_backend(backend)
    problem = triton_unavailable(device)
    if head_dim > RFWP_TRITON_MAX_HEAD_DIM:
        problem = f"D={head_dim}: the kernel keeps the fast matrix on chip for D <= {RFWP_TRITON_MAX_HEAD_DIM}"
    elif dtype not in TRITON_DTYPES:
        problem = f"no Triton kernel for {dtype}"
    if backend == "triton":
        if problem:
            raise ValueError(f"backend='triton' cannot run here: {problem}; use 'reference'")
        return BackendChoice("triton", "asked for")
    if backend == "auto" and device.type == "cuda" and not problem:
        return BackendChoice("triton", f"CUDA tensors, recurrent kernel with a [{head_dim}, {head_dim}] matrix on chip")
    return BackendChoice("reference", "asked for" if backend == "reference" else
                         problem if device.type == "cuda" else f"{device.type} tensors: the batched time loop")


def explain_backend(op: str, x: torch.Tensor, *, rule: str = "delta", value_dim: int | None = None,
                    micro_steps: int = 1, backend: str = "auto") -> BackendChoice:
    """Say which backend ``op`` would run on for inputs like ``x``, and why.

    Args:
        op: ``fast_weight`` (also ``delta_rule``), ``delta_product``, ``srwm``, or ``delta_rnn`` /
            ``recurrent_delta`` (the backend of their time loop).
        x: q [B, T, H, K] for the fast-weight ops and the recurrent FWPs, x [B, T, H, D] for ``srwm``
            (only its shape, dtype and device are read).
        rule: the Table-1 rule of ``fast_weight``. Default: delta.
        value_dim: V. Default: K.
        micro_steps: n of ``delta_product``. Default: 1.
        backend: what the call would ask for. Default: auto.

    Returns:
        BackendChoice(backend, reason); ``str()`` gives ``"backend: reason"``.
    """
    B, T, H, K = x.shape
    if op == "srwm":
        return srwm_backend(backend, K, x.dtype, x.device)
    if op in ("delta_rnn", "recurrent_delta"):
        return recurrent_loop_backend(backend, K, x.dtype, x.device)
    if op in ("fast_weight", "delta_rule", "delta_product"):
        rule = rule if op == "fast_weight" else "delta"
        return fast_weight_backend(backend, rule, T * micro_steps, K, value_dim or K, x.dtype, x.device)
    raise ValueError(f"Unknown op {op!r}. Valid: fast_weight, delta_rule, delta_product, srwm, delta_rnn, "
                     f"recurrent_delta")
