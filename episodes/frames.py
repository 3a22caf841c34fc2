"""Frame gathering and conversion on uint8 image batches."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def gather_frames(images: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``images[index]`` for ``images [N, C, H, W]`` uint8 and ``index [B, T]``: ``[B, T, C, H, W]``.

    A channels-last ``images`` view (Mini-ImageNet's pickled ``[N, H, W, C]``) is gathered in its
    own memory order, one contiguous row per frame, and returned as a channels-last view.
    """
    flat = index.reshape(-1)
    channels_last = images.permute(0, 2, 3, 1)
    if not images.is_contiguous() and channels_last.is_contiguous():
        stored = channels_last  # [N, H, W, C]
    else:
        stored = images.contiguous()
    # one row per frame: index_select on 2-D rows is several times faster than on 4-D images
    rows = stored.view(stored.shape[0], -1).index_select(0, flat)
    frames = rows.view(*index.shape, *stored.shape[1:])
    return frames.permute(0, 1, 4, 2, 3) if stored is channels_last else frames


def convert_frames(frames: torch.Tensor, frame_shape: tuple[int, int, int]) -> torch.Tensor:
    """uint8 ``[..., C, H, W]`` -> uint8 ``[..., C', H', W']``.

    Channels: 1 -> 3 repeats the grey level, 3 -> 1 averages; size: antialiased bilinear resize.
    """
    channels, height, width = frame_shape
    lead, (c, h, w) = frames.shape[:-3], frames.shape[-3:]
    if (c, h, w) == (channels, height, width):
        return frames
    if c != channels and {c, channels} != {1, 3}:
        raise ValueError(f"cannot convert {c}-channel frames to {channels} channels (only 1 <-> 3)")
    x = frames.reshape(-1, c, h, w).float()
    if c == 3 and channels == 1:
        x = x.mean(dim=1, keepdim=True)
    if (h, w) != (height, width):
        x = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    x = x.round_().clamp_(0, 255).to(torch.uint8)
    if c == 1 and channels == 3:
        x = x.expand(-1, 3, -1, -1)
    return x.reshape(*lead, channels, height, width)


def frames_to_float(inputs: torch.Tensor) -> torch.Tensor:
    """uint8 frames to float in [0, 1]; float inputs (regression) unchanged."""
    return inputs.float().div_(255.0) if inputs.dtype == torch.uint8 else inputs
