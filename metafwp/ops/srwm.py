"""Modern self-referential weight matrix (SRWM, Irie et al. 2022; equations in docs/protocols.md section 2).

One matrix per head, row-vector convention, ``W [D, 3D+4]`` with column blocks ``[y | q | k | beta]``:

    [y_t, qa, ka, ba] = x_t W_{t-1}                  # y read BEFORE the update
    q_t = softmax(qa); k_t = softmax(ka); b_t = sigmoid(ba)  (4 learning rates)
    W_t = W_{t-1} + k_t^T ((q_t - k_t) W_{t-1})       # column block i scaled by b_t[i]

The recurrence is sequential: its loop is the CPU backend, batched over B and H with no Python
work per element; autograd through it stores one W per step ([T, B, H, D, 3D+4]). On CUDA the
Triton kernel (fused_srwm.py) keeps W on chip and recomputes it for backward.
"""
from __future__ import annotations

import torch

from metafwp.ops.backends import srwm_backend
from metafwp.ops.common import check_state, check_tensor, compute_dtype


def srwm_columns(head_dim: int) -> int:
    """Width 3D + 4 of an SRWM matrix: y, q, k blocks of D columns and 4 learning-rate columns."""
    return 3 * head_dim + 4


def srwm(x: torch.Tensor, W0: torch.Tensor, *, output_final_state: bool = False, backend: str = "auto"):
    """Run the SRWM over a batch of sequences.

    Args:
        x: [B, T, H, D] head slices of the input.
        W0: [H, D, 3D+4] initial matrix shared by the batch, or [B, H, D, 3D+4] one per sequence
            (e.g. the float32 state returned by an earlier call on half inputs); any float dtype.
        output_final_state: also return the final matrices.
        backend: ``reference`` (the time loop), ``triton`` (CUDA, or CPU under TRITON_INTERPRET=1;
            D <= 64) or ``auto`` (triton on CUDA for D <= 64, else the loop). Default: ``auto``.

    Returns:
        y [B, T, H, D] in x's dtype, and W [B, H, D, 3D+4] (float32 for half inputs) or None.
    """
    check_tensor("x", x, 4, "[B, T, H, D]")
    B, T, H, D = x.shape
    if not isinstance(W0, torch.Tensor) or W0.ndim not in (3, 4):
        got = tuple(W0.shape) if isinstance(W0, torch.Tensor) else type(W0).__name__
        raise ValueError(f"W0 must have shape [H, D, 3D+4] or [B, H, D, 3D+4] = [{B}, {H}, {D}, {3 * D + 4}], got {got}")
    expected = (H, D, srwm_columns(D)) if W0.ndim == 3 else (B, H, D, srwm_columns(D))
    if tuple(W0.shape) != expected:
        layout = "[H, D, 3D+4]" if W0.ndim == 3 else "[B, H, D, 3D+4]"
        raise ValueError(f"W0 must have shape {layout} = {expected} for x of shape {tuple(x.shape)}, got {tuple(W0.shape)}")
    check_state("W0", W0, expected, "[H, D, 3D+4] or [B, H, D, 3D+4]", x)  # any float dtype, x's device
    if srwm_backend(backend, D, x.dtype, x.device).backend == "triton":
        from metafwp.ops.fused_srwm import fused_srwm

        return fused_srwm(x, W0, output_final_state=output_final_state)
    return srwm_reference(x, W0, output_final_state=output_final_state)


def srwm_reference(x: torch.Tensor, W0: torch.Tensor, *, output_final_state: bool = False):
    """The SRWM time loop; shapes as ``srwm``."""
    dtype = compute_dtype(x.dtype)
    B, T, H, D = x.shape
    W = W0.to(dtype).expand(B, H, D, srwm_columns(D))
    # which learning rate scales each column: block 0 for y, 1 for q, 2 for k, 3 for beta
    column_block = torch.arange(4, device=x.device).repeat_interleave(torch.tensor([D, D, D, 4], device=x.device))
    outputs = []
    for x_t in x.to(dtype).unbind(1):  # [B, H, D]
        read = (x_t.unsqueeze(-2) @ W).squeeze(-2)  # [B, H, 3D+4]
        y, qa, ka, ba = read.split([D, D, D, 4], dim=-1)
        q, k = qa.softmax(-1), ka.softmax(-1)
        rates = ba.sigmoid()[..., column_block]  # [B, H, 3D+4]
        change = ((q - k).unsqueeze(-2) @ W).squeeze(-2) * rates
        W = W + k.unsqueeze(-1) * change.unsqueeze(-2)
        outputs.append(y)
    y = torch.stack(outputs, dim=1).to(x.dtype)
    return y, (W if output_final_state else None)
