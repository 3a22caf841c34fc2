"""A user's own images: one sub-folder per class."""
from __future__ import annotations

import torch

from episodes.datasets.base import ImageClasses, check_choice, expand_root, read_images

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class ImageFolderClasses(ImageClasses):
    """Every sub-folder of ``root`` is a class, every image file in it an example.

    Args:
        root: the folder of class folders (``root/<class>/<image>``), listed sorted.
        image_size: ``(H, W)`` or an int to resize every image to; Default: None, all images
            must then have one size.
        mode: ``"L"`` (greyscale, 1 channel) or ``"RGB"`` (3 channels). Default: ``"RGB"``.
        progress: show a progress bar while decoding.
    """

    def __init__(self, root, *, image_size=None, mode: str = "RGB", progress: bool = True):
        check_choice("mode", mode, ("L", "RGB"))
        self.root = expand_root(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.root} (expected {self.root}/<class>/<image>)")
        class_dirs = sorted(p for p in self.root.iterdir() if p.is_dir())
        if not class_dirs:
            raise ValueError(f"{self.root} has no class sub-folders; expected {self.root}/<class>/<image>")
        paths, counts = [], []
        for class_dir in class_dirs:
            files = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise ValueError(f"empty class: {class_dir} has no image files ({', '.join(IMAGE_SUFFIXES)})")
            paths += files
            counts.append(len(files))
        size = (image_size, image_size) if isinstance(image_size, int) else image_size
        images = read_images(paths, mode, size, progress, desc=f"{self.root.name}")
        labels = torch.repeat_interleave(torch.arange(len(class_dirs)), torch.tensor(counts))
        super().__init__(images, labels, [p.name for p in class_dirs])
