"""Small datasets written by the tests in the real on-disk formats."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image

# The alphabets the Vinyals split file names, with their real character counts; the other
# alphabets of each half are stand-ins sized so that the halves hold 964 and 659 characters.
BACKGROUND_ALPHABETS = {"Armenian": 41, "Bengali": 46, "Early_Aramaic": 22, "Hebrew": 22,
                        "Mkhedruli_(Georgian)": 41, **{f"Standin_Background_{i:02d}": 48 for i in range(16)},
                        "Standin_Background_16": 24}
EVALUATION_ALPHABETS = {"Gurmukhi": 45, "Kannada": 41, "Keble": 26, "Malayalam": 47, "Manipuri": 40,
                        "Mongolian": 30, "Old_Church_Slavonic_(Cyrillic)": 45, "Oriya": 46, "Sylheti": 28,
                        "Syriac_(Serto)": 23, "Tengwar": 25, "Tibetan": 42, "ULOG": 26,
                        **{f"Standin_Evaluation_{i}": 39 for i in range(5)}}


def glyph_pattern(seed: int, size: int = 105) -> np.ndarray:
    """A black-on-white asymmetric stroke pattern, distinct per seed: uint8 [size, size]."""
    rng = np.random.default_rng(seed)
    image = np.full((size, size), 255, np.uint8)
    for _ in range(4):
        top, left = rng.integers(0, size - 30, 2)
        height, width = rng.integers(6, 30, 2)
        image[top:top + height, left:left + width] = 0
    image[5:20, 5:12] = 0  # a fixed corner mark, so every rotation differs from the original
    return image


def write_omniglot(root: Path, alphabets: dict[str, dict[str, int]], drawers: int = 2) -> Path:
    """``root/omniglot-py/<half>/<Alphabet>/characterNN/<id>_<drawer>.png`` (105x105, mode 1)."""
    class_id = 0
    for half, half_alphabets in alphabets.items():
        for alphabet, count in half_alphabets.items():
            for character in range(1, count + 1):
                folder = root / "omniglot-py" / half / alphabet / f"character{character:02d}"
                folder.mkdir(parents=True)
                class_id += 1
                for drawer in range(1, drawers + 1):
                    pixels = glyph_pattern(class_id * 100 + drawer)
                    Image.fromarray(pixels).convert("1").save(folder / f"{class_id:04d}_{drawer:02d}.png")
    return root


def write_mini_imagenet_pickle(path: Path, classes: dict[str, int], seed: int = 0) -> tuple[np.ndarray, dict]:
    """A ``mini-imagenet-cache`` pickle: image_data uint8 [N, 84, 84, 3] and class_dict (both returned)."""
    rng = np.random.default_rng(seed)
    total = sum(classes.values())
    image_data = rng.integers(0, 256, (total, 84, 84, 3), dtype=np.uint8)
    order = rng.permutation(total)  # class members are not contiguous in the real files either
    class_dict, start = {}, 0
    for name, count in classes.items():
        class_dict[name] = [int(i) for i in order[start:start + count]]
        start += count
    with open(path, "wb") as handle:
        pickle.dump({"image_data": image_data, "class_dict": class_dict}, handle, protocol=4)
    return image_data, class_dict


def write_mini_imagenet_csv(root: Path, splits: dict[str, dict[str, int]], size: int = 100) -> None:
    """Ravi & Larochelle layout: ``root/<split>.csv`` (filename,label) and ``root/images/*.jpg``."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for split, classes in splits.items():
        lines = ["filename,label"]
        for name, count in classes.items():
            for i in range(count):
                filename = f"{name}{i:08d}.jpg"
                pixels = rng.integers(0, 256, (size, size + 20, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / "images" / filename, quality=95)
                lines.append(f"{filename},{name}")
        (root / f"{split}.csv").write_text("\n".join(lines) + "\n")
