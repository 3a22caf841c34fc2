"""Weights in compressed (DCT) space (Irie & Schmidhuber, 2021): a weight matrix ``[out, in]`` kept as
the low-frequency triangle of its orthonormal 2-D DCT-II coefficients.

    rows, cols = kept_coefficients(out_features, in_features, sparsity)   # the triangle, int64 [n]
    W = coefficients_to_weight(c, rows, cols, (out_features, in_features))  # c [..., n] -> [..., out, in]

The 2-D transform is ``C = M_out W M_in^T`` with ``M_n`` the orthonormal DCT-II matrix, and its
inverse ``W = M_out^T C M_in`` (``scipy.fft.dctn`` / ``idctn`` with ``norm="ortho"``).
"""
from __future__ import annotations

import math

import torch


def dct_matrix(n: int, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """The orthonormal DCT-II matrix ``[n, n]``: ``M[k, j] = s_k cos(pi (2 j + 1) k / (2 n))`` with
    ``s_0 = sqrt(1 / n)`` and ``s_k = sqrt(2 / n)``; ``M x`` is the DCT of ``x``, ``M^T X`` its inverse."""
    if n < 1:
        raise ValueError(f"a DCT needs n >= 1, got {n}")
    k = torch.arange(n, dtype=torch.float64, device=device)[:, None]
    j = torch.arange(n, dtype=torch.float64, device=device)[None, :]
    matrix = torch.cos(math.pi * (2 * j + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    matrix[0] /= math.sqrt(2.0)
    return matrix.to(dtype)


def dct_2d(weight: torch.Tensor) -> torch.Tensor:
    """The orthonormal 2-D DCT-II of the last two axes: ``M_out W M_in^T``."""
    rows, cols = (dct_matrix(n, weight.dtype, weight.device) for n in weight.shape[-2:])
    return rows @ weight @ cols.T


def idct_2d(coefficients: torch.Tensor) -> torch.Tensor:
    """The inverse of ``dct_2d``: ``M_out^T C M_in``."""
    rows, cols = (dct_matrix(n, coefficients.dtype, coefficients.device) for n in coefficients.shape[-2:])
    return rows.T @ coefficients @ cols


def triangle_size(out_features: int, in_features: int, offset: int) -> int:
    """Entries ``(r, c)`` of an ``[out, in]`` matrix with ``c - r >= offset`` (``torch.triu_indices``)."""
    return sum(max(0, in_features - max(0, r + offset)) for r in range(out_features))


def kept_coefficients(out_features: int, in_features: int, sparsity: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rows, cols)`` int64 ``[n]`` of the DCT coefficients the authors keep for a weight
    ``[out, in]`` at ``sparsity`` in [0, 1): the triangle ``r + c <= in - 1 - d`` of low frequencies,
    in their order (``torch.triu_indices(out, in, d)`` with the columns flipped).

    The offset ``d`` follows their rule: with ``thr = int(out * in * (1 - sparsity))``, the first
    ``d`` of ``0 .. in - 1`` whose triangle holds fewer than ``thr`` entries; when that is ``d = 0``,
    the offset is lowered while the triangle holds at most ``thr`` (so ``sparsity = 0`` keeps all)."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    if out_features < 1 or in_features < 1:
        raise ValueError(f"a weight needs out_features, in_features >= 1, got {out_features}, {in_features}")
    threshold = int(out_features * in_features * (1 - sparsity))
    if threshold < 1:
        raise ValueError(f"sparsity {sparsity} leaves int({out_features} * {in_features} * (1 - {sparsity})) = 0 DCT "
                         f"coefficients of a [{out_features}, {in_features}] weight: lower it")
    for offset in range(in_features):
        if triangle_size(out_features, in_features, offset) < threshold:
            break
    if offset == 0:
        for lower in range(-1, -out_features, -1):
            if triangle_size(out_features, in_features, lower) > threshold:
                break
            offset = lower
    rows, cols = torch.triu_indices(out_features, in_features, offset)
    return rows, in_features - 1 - cols


def coefficients_to_weight(coefficients: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                           shape: tuple[int, int]) -> torch.Tensor:
    """``W = idct_2d(C)``, ``C`` zero but for ``coefficients [..., n]`` at ``(rows, cols)``; ``[..., out, in]``."""
    dense = coefficients.new_zeros(*coefficients.shape[:-1], *shape)
    dense[..., rows, cols] = coefficients
    return idct_2d(dense)


def weight_to_coefficients(weight: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """The kept coefficients ``[..., n]`` of ``weight [..., out, in]``: its low-pass projection."""
    return dct_2d(weight)[..., rows, cols]
