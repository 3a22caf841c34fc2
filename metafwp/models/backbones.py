"""Per-frame image encoders: Conv-4 and ResNet-12 (docs/protocols.md section 4), BatchNorm or InstanceNorm."""
from __future__ import annotations

import torch
import torch.nn as nn

NORMS = ("batch", "instance")
BACKBONES = ("conv4", "resnet12")


def norm_layer(norm: str, channels: int) -> nn.Module:
    """``batch``: BatchNorm2d (statistics over all frames of the batch); ``instance``: InstanceNorm2d
    with a learned affine (per frame, so a frame's features never depend on the other episodes)."""
    if norm not in NORMS:
        raise ValueError(f"Unknown norm {norm!r}. Valid: {', '.join(NORMS)}")
    return nn.BatchNorm2d(channels) if norm == "batch" else nn.InstanceNorm2d(channels, affine=True)


def channels_last(images: torch.Tensor) -> torch.Tensor:
    """The images in channels-last memory order (same values and shape): every conv, norm and pool
    after them then runs in that order, which makes forward + backward on CPU 1.6-1.7x faster for
    Conv-4 and 1.2x for ResNet-12 (benchmarks/backbones_cpu.py). ``to``, not ``contiguous``: a
    1-channel batch already counts as channels-last contiguous and would keep its strides."""
    return images.to(memory_format=torch.channels_last)


class Conv4(nn.Module):
    """Four blocks of conv3x3 (no bias: the norm follows) - norm - maxpool 2 - ReLU, then flatten and dropout.

    ``forward(images [N, C, H, W] float) -> features [N, filters * (H // 16) * (W // 16)]``:
    64 features for 28x28 with 64 filters, 800 for 84x84 with 32 filters. ``channels_last=False``
    keeps the images' layout (under ``vmap``, whose batched frames are 5-d).
    """

    def __init__(self, in_channels: int, filters: int = 64, norm: str = "batch", dropout: float = 0.0,
                 channels_last: bool = True):
        super().__init__()
        self.channels_last = channels_last
        layers, channels = [], in_channels
        for _ in range(4):
            layers += [nn.Conv2d(channels, filters, 3, padding=1, bias=False), norm_layer(norm, filters),
                       nn.MaxPool2d(2), nn.ReLU(inplace=True)]
            channels = filters
        self.blocks = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.blocks(channels_last(images) if self.channels_last else images).flatten(1))


class ResidualBlock(nn.Module):
    """Three conv3x3 - norm (LeakyReLU 0.1 between) plus a 1x1-conv shortcut, LeakyReLU, maxpool 2."""

    def __init__(self, in_channels: int, out_channels: int, norm: str):
        super().__init__()
        convs, channels = [], in_channels
        for i in range(3):
            convs += [nn.Conv2d(channels, out_channels, 3, padding=1, bias=False), norm_layer(norm, out_channels)]
            if i < 2:
                convs.append(nn.LeakyReLU(0.1))
            channels = out_channels
        self.convs = nn.Sequential(*convs)
        self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False),
                                      norm_layer(norm, out_channels))
        self.out = nn.Sequential(nn.LeakyReLU(0.1), nn.MaxPool2d(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.convs(x) + self.shortcut(x))


class ResNet12(nn.Module):
    """ResNet-12: four residual blocks of ``channels`` (default [64, 96, 128, 256]), each halving the
    resolution, then global average pooling and dropout.

    ``forward(images [N, C, H, W] float) -> features [N, channels[-1]]``; ``channels_last`` as Conv4's.
    """

    def __init__(self, in_channels: int, channels=(64, 96, 128, 256), norm: str = "batch", dropout: float = 0.0,
                 channels_last: bool = True):
        super().__init__()
        self.channels_last = channels_last
        blocks, previous = [], in_channels
        for width in channels:
            blocks.append(ResidualBlock(previous, width, norm))
            previous = width
        self.blocks = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(dropout)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.blocks(channels_last(images) if self.channels_last else images).mean((2, 3)))


def build_backbone(name: str, in_channels: int, filters: int | None = None, norm: str = "batch",
                   dropout: float = 0.0, image_size: int = 28, channels_last: bool = True) -> nn.Module:
    """A backbone by name. ``filters`` sets Conv-4's width (Default: 64 up to 28x28 images, 32 above,
    as in the reference setups); ResNet-12 keeps [64, 96, 128, 256]."""
    if image_size < 16:
        raise ValueError(f"{name} halves the frame four times and needs frames of at least 16x16, got "
                         f"{image_size}x{image_size}; set data.image_size=28 (or larger)")
    if name == "conv4":
        return Conv4(in_channels, filters or (64 if image_size <= 28 else 32), norm, dropout, channels_last)
    if name == "resnet12":
        return ResNet12(in_channels, norm=norm, dropout=dropout, channels_last=channels_last)
    raise ValueError(f"Unknown backbone {name!r}. Valid: {', '.join(BACKBONES)}")


def feature_size(backbone: nn.Module, frame_shape: tuple[int, int, int]) -> int:
    """Width of the backbone's output for one frame of ``frame_shape`` (C, H, W), by a dry run."""
    was_training = backbone.training
    backbone.eval()
    with torch.no_grad():
        size = backbone(torch.zeros(1, *frame_shape)).shape[-1]
    backbone.train(was_training)
    return size
