"""Backbone forward + backward on CPU: metafwp's channels-last layout against the standard layout,
measured in the same run.

The peer is the same module run the way a torchvision-style model runs it: the batch as loaded
(contiguous, NCHW), so every conv, norm and pool works in that layout. Ours is ``backbone(images)``,
which moves the batch to channels-last order first. Both compute the same features and gradients
(tests/models/test_learners.py checks it). Batches are a recipe's frames per step, or a part of
them where a whole step takes long on CPU.

    python benchmarks/backbones_cpu.py               # 1 thread, medians of 5 interleaved repeats
    python benchmarks/backbones_cpu.py --threads 2 --repeats 3
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from metafwp.models import Conv4, ResNet12

SETTINGS = [  # name, backbone, frames per step [N, C, H, W]
    ("Conv-4 16 filters, 192 x 1x28x28 (glyph demo: 32 episodes x 6)", lambda: Conv4(1, 16), (192, 1, 28, 28)),
    ("Conv-4 64 filters, 192 x 1x28x28 (Omniglot recipe, 1/4 batch)", lambda: Conv4(1, 64), (192, 1, 28, 28)),
    ("Conv-4 32 filters, 96 x 3x84x84 (Mini-ImageNet recipe)", lambda: Conv4(3, 32), (96, 3, 84, 84)),
    ("ResNet-12, 12 x 3x84x84 (Mini-ImageNet recipe, 1/8 batch)", lambda: ResNet12(3), (12, 3, 84, 84)),
]


def standard_layout(backbone: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The backbone's features computed on the batch as loaded (NCHW contiguous)."""
    pooled = backbone.blocks(images)
    return backbone.dropout(pooled.flatten(1) if isinstance(backbone, Conv4) else pooled.mean((2, 3)))


def milliseconds(forward, backbone: torch.nn.Module, images: torch.Tensor, calls: int) -> float:
    """Mean time of one forward + backward over ``calls`` calls, after one untimed call."""
    for call in range(calls + 1):
        if call == 1:
            start = time.perf_counter()
        forward(backbone, images).square().mean().backward()
        backbone.zero_grad(set_to_none=True)
    return (time.perf_counter() - start) / calls * 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calls", type=int, default=5, help="forward + backward calls per timed repeat")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s); ms per forward + backward, medians of "
          f"{args.repeats} interleaved repeats of {args.calls} calls")
    print(f"{'backbone, frames per step':<66} {'metafwp':>8} {'standard':>9} {'speed-up':>9}")
    for name, make, shape in SETTINGS:
        torch.manual_seed(0)
        backbone, images = make(), torch.rand(shape)
        ours, peer = [], []
        for _ in range(args.repeats):
            ours.append(milliseconds(lambda model, batch: model(batch), backbone, images, args.calls))
            peer.append(milliseconds(standard_layout, backbone, images, args.calls))
        ours_ms, peer_ms = statistics.median(ours), statistics.median(peer)
        print(f"{name:<66} {ours_ms:>8.1f} {peer_ms:>9.1f} {peer_ms / ours_ms:>8.2f}x")


if __name__ == "__main__":
    main()
