"""Omniglot from torchvision's folder layout, with the Vinyals split and rotation classes."""
from __future__ import annotations

import zipfile
from importlib import resources
from pathlib import Path

import torch

from episodes.datasets.base import ImageClasses, check_choice, expand_root, read_images_cached

OMNIGLOT_SPLITS = ("train", "val", "test", "trainval", "background", "evaluation")
HALVES = ("images_background", "images_evaluation")
CACHE_VERSION = "omniglot-v1"


def vinyals_split() -> dict[str, str]:
    """``{"Alphabet/characterNN": "val" | "test"}`` from the split file shipped in the package."""
    text = resources.files("episodes.datasets").joinpath("splits/omniglot_vinyals.txt").read_text()
    assignment = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        split, alphabet, characters = line.split()
        first, last = (int(n) for n in characters.split("-"))
        for number in range(first, last + 1):
            assignment[f"{alphabet}/character{number:02d}"] = split
    return assignment


def _find_base(root: Path) -> Path:
    for base in (root / "omniglot-py", root):
        if any((base / half).is_dir() or (base / f"{half}.zip").is_file() for half in HALVES):
            return base
    raise FileNotFoundError(
        f"Omniglot not found under {root}: expected {root}/omniglot-py/images_background/<Alphabet>/"
        "character<NN>/*.png and images_evaluation/... (or the two .zip files there). "
        "torchvision.datasets.Omniglot(root, download=True) (once per half) writes exactly this layout.")


def _half_folder(base: Path, half: str) -> Path:
    """The extracted folder of one half, unpacking its zip when only the zip is there."""
    folder = base / half
    if not folder.is_dir():
        archive = base / f"{half}.zip"
        if not archive.is_file():
            raise FileNotFoundError(f"Omniglot half {half!r} missing: expected {folder} or {archive}")
        try:
            with zipfile.ZipFile(archive) as zipped:
                zipped.extractall(base)
        except zipfile.BadZipFile as error:
            raise ValueError(f"{archive} is not a valid zip ({error}); download it again") from None
    return folder


def _load_half(base: Path, half: str, image_size: int, progress: bool) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """All characters of one half, resized: images ``[N, 1, s, s]``, labels ``[N]``, class names."""
    folder = _half_folder(base, half)
    names, paths, counts = [], [], []
    for alphabet in sorted(p for p in folder.iterdir() if p.is_dir()):
        for character in sorted(p for p in alphabet.iterdir() if p.is_dir()):
            files = sorted(character.glob("*.png"))
            if not files:
                raise ValueError(f"empty class: {character} has no .png images")
            names.append(f"{alphabet.name}/{character.name}")
            paths += files
            counts.append(len(files))
    if not names:
        raise ValueError(f"{folder} holds no <Alphabet>/<character>/ folders")
    images = read_images_cached(base / f"{half}.metafwp-{image_size}x{image_size}.pt", paths, "L",
                                (image_size, image_size), progress, f"Omniglot {half}", CACHE_VERSION, *names)
    labels = torch.repeat_interleave(torch.arange(len(names)), torch.tensor(counts))
    return images, labels, names


class Omniglot(ImageClasses):
    """Omniglot characters as classes of uint8 ``[1, s, s]`` images (background white, 255).

    Args:
        root: folder holding ``omniglot-py/`` (torchvision's layout), or ``omniglot-py`` itself.
        split: ``train`` / ``val`` / ``test`` (Vinyals: 1028 / 172 / 423 characters),
            ``trainval`` (the 1200 / 423 split), or ``background`` / ``evaluation`` (964 / 659).
        rotations: add the 90/180/270-degree rotations of every character as new classes (x4):
            class ``4 c + r`` is character ``c`` rotated counter-clockwise by ``90 r`` degrees.
        image_size: side after resizing (Lanczos), done once and cached beside the data in
            ``<half>.metafwp-<s>x<s>.pt`` (rebuilt when any image file changes).
        progress: show a progress bar while decoding.

    Folders are listed sorted, so class ids are the same on every machine. Each character has one
    split, so no class is ever shared between splits.
    """

    def __init__(self, root, split: str = "train", *, rotations: bool = False, image_size: int = 28,
                 progress: bool = True):
        self.root = expand_root(root)
        self.split, self.rotations = split, rotations
        base, halves = self.locate(self.root, split)
        images, labels, names = [], [], []
        for half in halves:
            half_images, half_labels, half_names = _load_half(base, half, image_size, progress)
            images.append(half_images)
            labels.append(half_labels + len(names))
            names += half_names
        keep = self._split_classes(names, split)
        images, labels, names = self._select(torch.cat(images), torch.cat(labels), names, keep)
        if rotations:
            images, labels, names = self._rotate(images, labels, names)
        super().__init__(images, labels, names)

    @staticmethod
    def locate(root, split: str) -> tuple[Path, tuple[str, ...]]:
        """``(base folder, halves)`` that ``split`` reads under ``root``, without reading an image; a
        missing folder or zip raises FileNotFoundError saying what is expected."""
        check_choice("split", split, OMNIGLOT_SPLITS)
        base = _find_base(expand_root(root))
        halves = {"background": HALVES[:1], "evaluation": HALVES[1:]}.get(split, HALVES)
        for half in halves:
            if not (base / half).is_dir() and not (base / f"{half}.zip").is_file():
                raise FileNotFoundError(f"Omniglot half {half!r} missing: expected {base / half} or "
                                        f"{base / (half + '.zip')}")
        return base, halves

    @staticmethod
    def _split_classes(names: list[str], split: str) -> list[int]:
        if split in ("background", "evaluation"):
            return list(range(len(names)))
        assignment = vinyals_split()
        present = set(names)
        missing = sorted(set(assignment) - present)
        if missing:
            raise ValueError(f"the Vinyals split names {len(missing)} characters that are not on disk "
                             f"(e.g. {missing[0]}); both images_background and images_evaluation must be "
                             "complete")
        wanted = {"trainval": ("train", "val")}.get(split, (split,))
        return [i for i, name in enumerate(names) if assignment.get(name, "train") in wanted]

    @staticmethod
    def _select(images, labels, names, keep):
        new_id = torch.full((len(names),), -1, dtype=torch.int64)
        new_id[keep] = torch.arange(len(keep))
        mask = new_id[labels] >= 0
        return images[mask], new_id[labels[mask]], [names[i] for i in keep]

    @staticmethod
    def _rotate(images, labels, names):
        rotated = torch.stack([torch.rot90(images, r, dims=(2, 3)) for r in range(4)], dim=1)  # [N, 4, 1, s, s]
        rotated_labels = (labels[:, None] * 4 + torch.arange(4)).reshape(-1)
        rotated_names = [f"{name}/rot{90 * r:03d}" for name in names for r in range(4)]
        return rotated.reshape(-1, *images.shape[1:]), rotated_labels, rotated_names
