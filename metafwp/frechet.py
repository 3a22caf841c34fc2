"""The Fréchet distance between two sets of features, each fitted by a Gaussian (the form of Heusel
et al.'s FID; FID proper reads Inception-v3 features of 299x299 colour images, so distances over
other features are not comparable with published FIDs):

    d^2 = |mu_1 - mu_2|^2 + tr(S_1) + tr(S_2) - 2 tr((S_1^(1/2) S_2 S_1^(1/2))^(1/2))

The last trace equals tr((S_1 S_2)^(1/2)); the symmetric form is computed from two eigenvalue
decompositions of symmetric positive semi-definite matrices, in float64.
"""
from __future__ import annotations

import torch


def gaussian_fit(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean [D], covariance [D, D])`` of ``features [N, D]`` in float64 (covariance over N - 1)."""
    if features.dim() != 2 or features.shape[0] < 2:
        raise ValueError(f"features must be [N, D] with N >= 2, got {tuple(features.shape)}")
    x = features.double()
    return x.mean(0), torch.cov(x.T).reshape(x.shape[1], x.shape[1])


def psd_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    """The symmetric square root of a symmetric positive semi-definite ``matrix`` (eigenvalues below 0
    from rounding count as 0)."""
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def frechet_distance(mean_1: torch.Tensor, cov_1: torch.Tensor, mean_2: torch.Tensor, cov_2: torch.Tensor) -> float:
    """The squared Fréchet distance between N(mean_1, cov_1) and N(mean_2, cov_2)."""
    mean_1, cov_1, mean_2, cov_2 = (t.double() for t in (mean_1, cov_1, mean_2, cov_2))
    root_1 = psd_sqrt(cov_1)
    cross = torch.linalg.eigvalsh(root_1 @ cov_2 @ root_1).clamp(min=0).sqrt().sum()
    return ((mean_1 - mean_2).square().sum() + cov_1.trace() + cov_2.trace() - 2 * cross).item()


def features_distance(features_1: torch.Tensor, features_2: torch.Tensor) -> float:
    """The Fréchet distance between the Gaussian fits of ``features_1 [N, D]`` and ``features_2 [M, D]``."""
    return frechet_distance(*gaussian_fit(features_1), *gaussian_fit(features_2))
