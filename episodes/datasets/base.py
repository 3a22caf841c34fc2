"""`ImageClasses`: labelled uint8 images in memory, the input of every image sampler."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch


def expand_root(root: str | os.PathLike) -> Path:
    """``root`` as a Path with ``~`` expanded."""
    return Path(os.path.expanduser(os.fspath(root)))


def check_choice(name: str, value: str, valid: tuple[str, ...]) -> str:
    if value not in valid:
        raise ValueError(f"Unknown {name} {value!r}. Valid: {', '.join(valid)}")
    return value


class ImageClasses:
    """Labelled images held in memory as uint8, grouped into classes.

    Args:
        images: ``[N, C, H, W]`` uint8 (any strides: a channels-last view costs no copy).
        labels: ``[N]`` int64 class ids; every id in ``[0, num_classes)`` must have an image.
        class_names: one name per class. Default: ``"class<i>"``.

    Use it directly for your own tensors; the dataset classes (Omniglot, MiniImageNet, Glyphs,
    ImageFolderClasses) are ImageClasses built from files.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, class_names: list[str] | None = None):
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError("images must be a uint8 tensor [N, C, H, W], got "
                             f"{getattr(images, 'dtype', type(images).__name__)} {tuple(getattr(images, 'shape', ()))}")
        if not isinstance(labels, torch.Tensor) or labels.dim() != 1 or labels.shape[0] != images.shape[0]:
            raise ValueError(f"labels must be a tensor [N={images.shape[0]}], got {tuple(getattr(labels, 'shape', ()))}")
        if labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise ValueError(f"labels must be integer class ids, got {labels.dtype}")
        labels = labels.to(torch.int64)
        if labels.numel() == 0:
            raise ValueError("no images: ImageClasses needs at least one image per class")
        if int(labels.min()) < 0:
            raise ValueError(f"labels must be >= 0, got {int(labels.min())}")
        num_classes = int(labels.max()) + 1 if class_names is None else len(class_names)
        counts = torch.bincount(labels.cpu(), minlength=num_classes)
        if counts.numel() > num_classes:
            raise ValueError(f"labels go up to {counts.numel() - 1} but only {num_classes} class_names were given")
        empty = (counts == 0).nonzero().flatten().tolist()
        if empty:
            names = [class_names[i] if class_names else str(i) for i in empty[:5]]
            raise ValueError(f"{len(empty)} class(es) have no images: {', '.join(names)}"
                             f"{' ...' if len(empty) > 5 else ''}; remove them or add images")
        self.images = images
        self.labels = labels.to(images.device)
        self.class_names = list(class_names) if class_names is not None else [f"class{i}" for i in range(num_classes)]
        self.class_counts = counts.to(images.device)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return tuple(self.images.shape[1:])

    def __len__(self) -> int:
        return self.images.shape[0]

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.num_classes} classes, {len(self)} images of "
                f"{'x'.join(map(str, self.frame_shape))}, device={self.images.device})")

    def to(self, device) -> "ImageClasses":
        """A copy on ``device`` (e.g. keep the whole dataset on the GPU and sample there)."""
        return ImageClasses(self.images.to(device), self.labels.to(device), self.class_names)


def sources_fingerprint(paths: list[Path], *extra: str) -> str:
    """A key that changes when any source file is added, removed, resized or touched."""
    digest = hashlib.sha256("\n".join(extra).encode())
    for path in paths:
        stat = path.stat()
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def load_cached(cache_file: Path, key: str) -> dict | None:
    """The cached tensors saved under ``key``, or None when missing, stale or unreadable."""
    if not cache_file.exists():
        return None
    try:
        cached = torch.load(cache_file, weights_only=True)  # never runs code from the file
    except Exception:
        return None
    return cached if isinstance(cached, dict) and cached.get("key") == key else None


def save_cached(cache_file: Path, key: str, tensors: dict) -> None:
    """Write the cache atomically (a crash never leaves a half-written file behind)."""
    tmp = cache_file.with_name(cache_file.name + f".tmp{os.getpid()}")
    try:
        torch.save({"key": key, **tensors}, tmp)
        os.replace(tmp, cache_file)
    except OSError:  # a read-only data folder only costs the cache
        tmp.unlink(missing_ok=True)


def read_images(paths: list[Path], mode: str, size: tuple[int, int] | None, progress: bool = True,
                desc: str = "decoding images") -> torch.Tensor:
    """Decode image files into uint8 ``[N, C, H, W]`` (``mode`` "L" -> C=1, "RGB" -> C=3).

    ``size`` is ``(H, W)`` to resize to (Lanczos); ``None`` requires every file to have the size
    of the first. A corrupt or truncated file raises a ValueError naming it.
    """
    import numpy as np
    from PIL import Image
    from tqdm import tqdm

    channels = {"L": 1, "RGB": 3}[mode]
    out = None
    for i, path in enumerate(tqdm(paths, desc=desc, unit="img", disable=not progress, leave=False)):
        try:
            with Image.open(path) as image:
                image = image.convert(mode)
                if size is not None and image.size != (size[1], size[0]):
                    image = image.resize((size[1], size[0]), Image.LANCZOS)
                pixels = np.array(image, dtype=np.uint8).reshape(image.size[1], image.size[0], channels)
        except (OSError, SyntaxError, ValueError) as error:
            raise ValueError(f"cannot read image {path}: {error}; the file is corrupt or truncated, "
                             "replace or delete it") from None
        if out is None:
            out = torch.empty(len(paths), channels, *pixels.shape[:2], dtype=torch.uint8)
        elif pixels.shape[:2] != tuple(out.shape[2:]):
            raise ValueError(f"image {path} is {pixels.shape[1]}x{pixels.shape[0]} but {paths[0]} is "
                             f"{out.shape[3]}x{out.shape[2]}; pass image_size to resize them all")
        out[i] = torch.from_numpy(pixels).permute(2, 0, 1)
    return out


def read_images_cached(cache_file: Path, paths: list[Path], mode: str, size: tuple[int, int], progress: bool,
                       desc: str, *key_parts: str) -> torch.Tensor:
    """``read_images`` once: later calls load ``cache_file`` until a source file or a key part changes."""
    key = sources_fingerprint(paths, *key_parts)
    cached = load_cached(cache_file, key)
    if cached is not None:
        return cached["images"]
    images = read_images(paths, mode, size, progress, desc)
    save_cached(cache_file, key, {"images": images})
    return images
