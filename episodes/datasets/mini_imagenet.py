"""Mini-ImageNet from the ``mini-imagenet-cache-*.pkl`` pickles or the Ravi & Larochelle CSV split."""
from __future__ import annotations

import csv
import pickle
from pathlib import Path

import numpy as np
import torch

from episodes.datasets.base import ImageClasses, check_choice, expand_root, read_images_cached

MINI_IMAGENET_SPLITS = ("train", "val", "test")
SOURCES = ("auto", "pickle", "csv")
PICKLE_NAMES = {"train": "train", "val": "validation", "test": "test"}
IMAGE_SIZE = 84
CACHE_VERSION = "mini-imagenet-v1"


def _numpy_globals() -> dict[tuple[str, str], object]:
    """The only callables a Mini-ImageNet pickle may name: numpy's array and scalar rebuilders."""
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy < 2
        from numpy.core import multiarray, numeric
    allowed = {}
    for module in ("numpy.core", "numpy._core"):
        allowed[(f"{module}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{module}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{module}.numeric", "_frombuffer")] = numeric._frombuffer
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    return allowed


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, dtypes, lists, dicts, strings and numbers; refuses any other class.

    A pickle can name any importable callable and have it called while loading; this one looks
    up names in a fixed table of numpy's rebuilders, so a malicious file raises instead of
    running code.
    """

    def __init__(self, file, **kwargs):
        super().__init__(file, **kwargs)
        self.allowed = _numpy_globals()

    def find_class(self, module: str, name: str):
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays, lists, "
                                         "dicts and strings are allowed in this file") from None


def load_untrusted_pickle(path: Path):
    """``pickle.load`` restricted to plain data (see NumpyOnlyUnpickler)."""
    with open(path, "rb") as handle:
        try:
            return NumpyOnlyUnpickler(handle, encoding="latin1").load()
        except pickle.UnpicklingError as error:
            raise ValueError(f"{path}: {error}") from None
        except (EOFError, ValueError, TypeError, AttributeError, IndexError) as error:
            raise ValueError(f"{path} is not a readable pickle ({type(error).__name__}: {error}); "
                             "it may be truncated: download it again") from None


def _from_pickle(path: Path) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    data = load_untrusted_pickle(path)
    expected = ("expected a dict with 'image_data' (uint8 [N, 84, 84, 3]) and "
                "'class_dict' ({wnid: [indices]})")
    if not isinstance(data, dict) or not {"image_data", "class_dict"} <= set(data):
        keys = sorted(map(str, data)) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{path}: {expected}, got {keys}")
    pixels, class_dict = data["image_data"], data["class_dict"]
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[3] != 3:
        raise ValueError(f"{path}: {expected}; image_data is "
                         f"{getattr(pixels, 'dtype', type(pixels).__name__)} {getattr(pixels, 'shape', '')}")
    if not isinstance(class_dict, dict) or not class_dict:
        raise ValueError(f"{path}: {expected}; class_dict is {type(class_dict).__name__}")
    names = sorted(class_dict)
    labels = torch.full((pixels.shape[0],), -1, dtype=torch.int64)
    for label, name in enumerate(names):
        indices = torch.as_tensor(np.asarray(class_dict[name], dtype=np.int64))
        if indices.numel() == 0:
            raise ValueError(f"{path}: class {name!r} has no images")
        if int(indices.min()) < 0 or int(indices.max()) >= pixels.shape[0]:
            raise ValueError(f"{path}: class {name!r} indexes images outside [0, {pixels.shape[0]})")
        labels[indices] = label
    if bool((labels < 0).any()):
        raise ValueError(f"{path}: {int((labels < 0).sum())} images belong to no class in class_dict")
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2)  # a view: no copy of the 1.3 GB
    return images, labels, names


def _from_csv(root: Path, split: str, progress: bool) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    csv_file = root / f"{split}.csv"
    with open(csv_file, newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows or [c.strip() for c in rows[0]] != ["filename", "label"]:
        raise ValueError(f"{csv_file}: expected a header 'filename,label', got {rows[0] if rows else 'an empty file'}")
    rows = [row for row in rows[1:] if row]
    bad = [i + 2 for i, row in enumerate(rows) if len(row) != 2]
    if bad:
        raise ValueError(f"{csv_file}: line {bad[0]} does not have two fields (filename,label)")
    names = sorted({label for _, label in rows})
    paths = [root / "images" / filename for filename, _ in rows]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} images listed in {csv_file} are missing, e.g. {missing[0]}")
    label_of = {name: i for i, name in enumerate(names)}
    labels = torch.tensor([label_of[label] for _, label in rows])
    images = read_images_cached(root / f"{split}.metafwp-{IMAGE_SIZE}x{IMAGE_SIZE}.pt", paths, "RGB",
                                (IMAGE_SIZE, IMAGE_SIZE), progress, f"Mini-ImageNet {split}",
                                CACHE_VERSION, csv_file.read_text())
    return images, labels, names


class MiniImageNet(ImageClasses):
    """Mini-ImageNet (64 / 16 / 20 classes x 600 images) as uint8 ``[3, 84, 84]`` images.

    Args:
        root: folder holding ``mini-imagenet-cache-{train,validation,test}.pkl``, or the
            Ravi & Larochelle ``{train,val,test}.csv`` (``filename,label``) with ``images/``.
        split: ``train``, ``val`` or ``test``.
        source: ``pickle``, ``csv`` or ``auto`` (the pickle when present, else the CSV).
        progress: show a progress bar while decoding the CSV's images.

    The pickles are untrusted input: they are read by an unpickler that admits numpy arrays,
    dtypes, lists, dicts and strings only. Their ``[N, 84, 84, 3]`` pixels stay in place (images
    is a channels-last view). CSV images are resized to 84x84 once and cached beside them.
    """

    def __init__(self, root, split: str = "train", *, source: str = "auto", progress: bool = True):
        self.root, self.split = expand_root(root), split
        wanted, self.source = self.locate(root, split, source)
        if self.source == "pickle":
            images, labels, names = _from_pickle(wanted)
        else:
            images, labels, names = _from_csv(self.root, split, progress)
        super().__init__(images, labels, names)

    @staticmethod
    def locate(root, split: str, source: str = "auto") -> tuple[Path, str]:
        """``(file, source)`` that ``split`` reads under ``root`` (the pickle, or the CSV split),
        reading only its first bytes: a missing one raises FileNotFoundError saying what is expected,
        one whose start is not a pickle, or a CSV without its ``filename,label`` header or its
        ``images/`` folder, a ValueError."""
        check_choice("split", split, MINI_IMAGENET_SPLITS)
        check_choice("source", source, SOURCES)
        root = expand_root(root)
        pickle_file = root / f"mini-imagenet-cache-{PICKLE_NAMES[split]}.pkl"
        csv_file = root / f"{split}.csv"
        if source == "auto":
            source = "pickle" if pickle_file.is_file() or not csv_file.is_file() else "csv"
        wanted = pickle_file if source == "pickle" else csv_file
        if not wanted.is_file():
            raise FileNotFoundError(
                f"Mini-ImageNet {split} not found: expected {pickle_file} (a dict with image_data and "
                f"class_dict) or {csv_file} with the images in {root / 'images'}")
        with open(wanted, "rb") as handle:
            start = handle.readline(64)  # a pickle's protocol mark, or the CSV's header line
        protocol_2_to_5 = len(start) > 1 and start[0] == 0x80 and 2 <= start[1] <= 5
        if source == "pickle" and not (protocol_2_to_5 or start[:1] in (b"(", b"}", b"]")):  # or protocol 0 / 1
            raise ValueError(f"{wanted} is not a pickle file (it starts with {start[:8]!r}); download it again")
        if source == "csv":
            if start.decode("utf-8", "replace").strip() != "filename,label":
                raise ValueError(f"{wanted}: expected a header 'filename,label', got {start[:40]!r}")
            if not (root / "images").is_dir():
                raise FileNotFoundError(f"Mini-ImageNet images folder not found: {root / 'images'} (the CSV split "
                                        f"{wanted} names the files in it)")
        return wanted, source
