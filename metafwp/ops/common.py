"""Pieces shared by the op families: argument checks, compute dtypes, chunk padding.

Validation lives here and in the thin public wrappers, never in the loops or chunk code.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

BACKENDS = ("auto", "reference", "chunk", "triton")


def check_tensor(name: str, x, ndim: int, layout: str) -> None:
    """Raise ValueError unless ``x`` is a floating tensor of rank ``ndim`` (``layout`` names its axes)."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape {layout}, got {type(x).__name__}")
    if x.ndim != ndim:
        raise ValueError(f"{name} must have shape {layout} ({ndim} dims), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor (float16/bfloat16/float32/float64), got {x.dtype}")


def check_shape(name: str, x: torch.Tensor, expected: tuple, layout: str) -> None:
    if tuple(x.shape) != tuple(expected):
        raise ValueError(f"{name} must have shape {layout} = {tuple(expected)}, got {tuple(x.shape)}")


def check_qkv(q, k, v) -> tuple[int, int, int, int, int]:
    """q, k [B, T, H, K] and v [B, T, H, V] of one shape; returns ``(B, T, H, K, V)``."""
    check_tensor("q", q, 4, "[B, T, H, K]")
    B, T, H, K = q.shape
    check_tensor("k", k, 4, "[B, T, H, K]")
    check_shape("k", k, (B, T, H, K), "[B, T, H, K]")
    check_tensor("v", v, 4, "[B, T, H, V]")
    check_shape("v", v, (B, T, H, v.shape[-1]), "[B, T, H, V] (B, T, H as q)")
    return B, T, H, K, v.shape[-1]


def check_same_dtype_device(reference_name: str, reference: torch.Tensor, **others) -> None:
    """Every tensor in ``others`` (None allowed) shares ``reference``'s dtype and device."""
    for name, x in others.items():
        if x is None:
            continue
        if x.device != reference.device:
            raise ValueError(
                f"{name} is on {x.device} but {reference_name} is on {reference.device}; move them to one device"
            )
        if x.dtype != reference.dtype:
            raise ValueError(
                f"{name} has dtype {x.dtype} but {reference_name} has {reference.dtype}; cast them to one dtype"
            )


def check_state(name: str, state, expected: tuple, layout: str, reference: torch.Tensor) -> None:
    """An initial state may be any floating dtype (float32 is usual) but must match shape and device."""
    if state is None:
        return
    check_tensor(name, state, len(expected), layout)
    check_shape(name, state, expected, layout)
    if state.device != reference.device:
        raise ValueError(f"{name} is on {state.device} but the inputs are on {reference.device}")


def check_backend(backend: str, valid: tuple = BACKENDS) -> None:
    if backend not in valid:
        raise ValueError(f"Unknown backend {backend!r}. Valid: {', '.join(valid)}")


def check_chunk_size(chunk_size) -> None:
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")


def resolve_scale(scale, key_dim: int) -> float:
    """``scale=None`` means ``K ** -0.5`` (fla's convention)."""
    if scale is None:
        return key_dim ** -0.5
    if not isinstance(scale, (int, float)) or isinstance(scale, bool):
        raise ValueError(f"scale must be a float or None (meaning K ** -0.5), got {scale!r}")
    return float(scale)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Half-precision inputs are computed (and their state kept) in float32; float32/float64 as given."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def pad_time(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad axis 1 (time) of ``x`` [B, T, ...] up to a multiple of ``multiple``."""
    pad = (-x.shape[1]) % multiple
    if pad == 0:
        return x
    widths = [0, 0] * (x.ndim - 2) + [0, pad]
    return F.pad(x, widths)
