"""From the data section of a config to datasets and seeded episode samplers."""
from __future__ import annotations

from pathlib import Path

from episodes import FewShotSampler, Glyphs, ImageClasses, ImageFolderClasses, MiniImageNet, Omniglot
from metafwp.train.config import ConfigError, DataConfig

WHERE_TO_GET = {
    "omniglot": "torchvision.datasets.Omniglot(root, background=True/False, download=True) writes "
                "<root>/omniglot-py/images_background and images_evaluation",
    "mini_imagenet": "put mini-imagenet-cache-{train,validation,test}.pkl (or the Ravi & Larochelle "
                     "{train,val,test}.csv with images/) in <root>",
    "folder": "lay images out as <root>/<split>/<class>/<image>",
}


def load_split(data: DataConfig, split: str, progress: bool = True) -> ImageClasses:
    """The ImageClasses of one split of ``data.dataset``."""
    if data.dataset == "glyphs":
        return Glyphs(split, progress=progress)
    if data.root is None:
        raise ConfigError(f"data.dataset={data.dataset} needs data.root, the folder holding your copy: "
                          f"{WHERE_TO_GET[data.dataset]}; then pass data.root=<that folder>")
    try:
        if data.dataset == "omniglot":
            return Omniglot(data.root, split, rotations=data.rotations, progress=progress)
        if data.dataset == "mini_imagenet":
            return MiniImageNet(data.root, split, progress=progress)
        return ImageFolderClasses(Path(data.root).expanduser() / split, progress=progress)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{error}. How to get it: {WHERE_TO_GET[data.dataset]}.") from None


def frame_shape(data: DataConfig, dataset: ImageClasses) -> tuple[int, int, int]:
    """(C, H, W) of the frames the learner sees: the stored shape, with the config's conversions."""
    channels, height, width = dataset.frame_shape
    size = data.image_size
    return (data.channels or channels, size or height, size or width)


def build_sampler(data: DataConfig, dataset: ImageClasses, seed: int) -> FewShotSampler:
    shape = frame_shape(data, dataset)
    return FewShotSampler(dataset, data.n_way, data.k_shot, data.n_query, feedback=data.feedback, seed=seed,
                          frame_shape=None if shape == dataset.frame_shape else shape)


def num_shots(data: DataConfig) -> int:
    """Size of the by-shot tallies: shot indices run to k_shot + 1 (a synchronous query)."""
    return data.k_shot + 2
