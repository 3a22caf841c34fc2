"""What the image-generation task trains beside a generator: the discriminator, and the
convolutional generator the fast weight painter is compared with. Images are ``[B, C, S, S]`` in
(-1, 1) (real uint8 pixels ``p`` become ``2 p / 255 - 1``).

- ``Discriminator``: three convolutions (S -> S/2 -> S/4 -> S/4) with LeakyReLU 0.2, then a linear
  score, each with spectral norm or none (the painter authors regularise by a gradient penalty
  instead); no batch statistics, so a batch split over ranks scores as one.
- ``ConvGenerator``: ``z [B, latent]`` -> a linear map to ``width x S/4 x S/4`` -> two transposed
  convolutions (x2 each) -> a 3x3 convolution to ``C`` channels -> tanh, each hidden layer followed
  by pixel norm (every position's channel vector scaled to unit RMS; Karras et al. 2018) and ReLU:
  a per-image normalisation, for the same reason, that keeps the tanh from saturating.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn.utils.parametrizations import spectral_norm


def check_side(size: int) -> None:
    if size < 4 or size % 4:
        raise ValueError(f"the image side must be a multiple of 4 (two halvings), got {size}")


class Discriminator(nn.Module):
    """``forward(images [B, C, S, S]) -> scores [B]`` (higher: more real); ``width`` the first
    convolution's channels (then 2x, 2x); ``spectral``: spectral norm on every layer."""

    def __init__(self, channels: int = 1, size: int = 28, width: int = 64, spectral: bool = True):
        super().__init__()
        check_side(size)
        norm = spectral_norm if spectral else (lambda layer: layer)
        self.net = nn.Sequential(
            norm(nn.Conv2d(channels, width, 4, stride=2, padding=1)), nn.LeakyReLU(0.2),
            norm(nn.Conv2d(width, 2 * width, 4, stride=2, padding=1)), nn.LeakyReLU(0.2),
            norm(nn.Conv2d(2 * width, 2 * width, 3, padding=1)), nn.LeakyReLU(0.2),
            nn.Flatten(), norm(nn.Linear(2 * width * (size // 4) ** 2, 1)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images).squeeze(-1)


class PixelNorm(nn.Module):
    """``x / sqrt(mean over channels of x^2 + 1e-8)`` at every position of ``x [B, C, H, W]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.square().mean(1, keepdim=True) + 1e-8)


class ConvGenerator(nn.Module):
    """``forward(z [B, latent]) -> images [B, C, S, S]`` in (-1, 1); ``width`` the channels at S/4
    (halved at each doubling)."""

    def __init__(self, latent: int = 64, channels: int = 1, size: int = 28, width: int = 88):
        super().__init__()
        check_side(size)
        self.width, self.side = width, size // 4
        self.project = nn.Linear(latent, width * self.side ** 2)
        self.net = nn.Sequential(
            PixelNorm(), nn.ReLU(), nn.ConvTranspose2d(width, width // 2, 4, stride=2, padding=1),
            PixelNorm(), nn.ReLU(), nn.ConvTranspose2d(width // 2, width // 4, 4, stride=2, padding=1),
            PixelNorm(), nn.ReLU(), nn.Conv2d(width // 4, channels, 3, padding=1), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.project(z).view(-1, self.width, self.side, self.side))
