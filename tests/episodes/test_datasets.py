import os
import pickle
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from episodes import ImageClasses, ImageFolderClasses, MiniImageNet, Omniglot
from tests.helpers import (BACKGROUND_ALPHABETS, EVALUATION_ALPHABETS, write_mini_imagenet_csv,
                           write_mini_imagenet_pickle, write_omniglot)


@pytest.fixture(scope="module")
def omniglot_root(tmp_path_factory):
    """The full Omniglot tree (1623 characters, 2 drawers each) in torchvision's layout."""
    return write_omniglot(tmp_path_factory.mktemp("omniglot"),
                          {"images_background": BACKGROUND_ALPHABETS, "images_evaluation": EVALUATION_ALPHABETS})


def reference_image(path, size=28):
    """The loader's expected pixels, computed with PIL alone: uint8 [size, size]."""
    with Image.open(path) as image:
        return np.array(image.convert("L").resize((size, size), Image.LANCZOS))


@pytest.mark.parametrize("split, classes", [("train", 1028), ("val", 172), ("test", 423), ("trainval", 1200),
                                            ("background", 964), ("evaluation", 659)])
def test_omniglot_split_sizes(omniglot_root, split, classes):
    data = Omniglot(omniglot_root, split, progress=False)
    assert data.num_classes == classes
    assert len(data) == 2 * classes
    assert data.images.shape[1:] == (1, 28, 28) and data.images.dtype == torch.uint8
    assert torch.equal(data.class_counts, torch.full((classes,), 2))


def test_omniglot_splits_are_disjoint_and_cover_every_character(omniglot_root):
    names = {split: set(Omniglot(omniglot_root, split, progress=False).class_names)
             for split in ("train", "val", "test")}
    assert not names["train"] & names["val"] and not names["train"] & names["test"] and not names["val"] & names["test"]
    assert len(names["train"] | names["val"] | names["test"]) == 1623
    assert "Gurmukhi/character41" in names["train"] and "Gurmukhi/character42" in names["test"]
    assert all(name.split("/")[0] == "Bengali" for name in names["val"] if name.startswith("Beng"))


def test_omniglot_pixels_match_pil_and_classes_are_sorted(omniglot_root):
    data = Omniglot(omniglot_root, "val", progress=False)
    assert data.class_names[0] == "Armenian/character01" and data.class_names == sorted(data.class_names)
    files = sorted((omniglot_root / "omniglot-py/images_background/Hebrew/character05").glob("*.png"))
    label = data.class_names.index("Hebrew/character05")
    images = data.images[data.labels == label]
    for image, path in zip(images, files):
        assert torch.equal(image[0], torch.from_numpy(reference_image(path)))


def test_omniglot_rotation_classes_are_each_rotated_by_their_own_angle(omniglot_root):
    plain = Omniglot(omniglot_root, "test", progress=False)
    rotated = Omniglot(omniglot_root, "test", rotations=True, progress=False)
    assert rotated.num_classes == 4 * plain.num_classes and len(rotated) == 4 * len(plain)
    for character in (0, 7, plain.num_classes - 1):
        name = plain.class_names[character]
        half = "images_evaluation"
        files = sorted((omniglot_root / "omniglot-py" / half / name).glob("*.png"))
        for r in range(4):
            label = 4 * character + r
            assert rotated.class_names[label] == f"{name}/rot{90 * r:03d}"
            expected = Image.fromarray(reference_image(files[0]))
            for _ in range(r):
                expected = expected.transpose(Image.ROTATE_90)  # counter-clockwise
            got = rotated.images[rotated.labels == label][0, 0]
            assert torch.equal(got, torch.from_numpy(np.array(expected)))
        distinct = {rotated.images[rotated.labels == 4 * character + r][0].numpy().tobytes() for r in range(4)}
        assert len(distinct) == 4


def test_omniglot_from_zips_only_and_cache_invalidation(tmp_path):
    write_omniglot(tmp_path / "src", {"images_background": {"Latin": 3, "Greek": 2}})
    base = tmp_path / "data" / "omniglot-py"
    base.mkdir(parents=True)
    with zipfile.ZipFile(base / "images_background.zip", "w") as archive:
        for path in sorted((tmp_path / "src/omniglot-py").rglob("*.png")):
            archive.write(path, path.relative_to(tmp_path / "src/omniglot-py"))
    data = Omniglot(tmp_path / "data", "background", progress=False)
    assert data.class_names == ["Greek/character01", "Greek/character02", "Latin/character01",
                                "Latin/character02", "Latin/character03"]
    cache = base / "images_background.metafwp-28x28.pt"
    assert cache.exists()
    # the cache is used as long as the sources are unchanged, and rebuilt when one changes
    target = sorted((base / "images_background/Latin/character01").glob("*.png"))[0]
    Image.fromarray(np.zeros((105, 105), np.uint8)).save(target)
    os.utime(target, ns=(1, 1))
    again = Omniglot(tmp_path / "data", "background", progress=False)
    label = again.class_names.index("Latin/character01")
    assert int(again.images[again.labels == label][0].max()) == 0
    assert not torch.equal(again.images, data.images)


def test_omniglot_cache_never_loads_code(tmp_path):
    write_omniglot(tmp_path, {"images_background": {"Latin": 2}})
    Omniglot(tmp_path, "background", progress=False)
    cache = tmp_path / "omniglot-py/images_background.metafwp-28x28.pt"
    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"key": "x", "images": Exploit()}, cache)
    data = Omniglot(tmp_path, "background", progress=False)  # rebuilt from the PNGs
    assert not marker.exists() and data.num_classes == 2


def test_omniglot_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="Omniglot not found under .*images_background"):
        Omniglot(tmp_path, "train")
    with pytest.raises(ValueError, match="Unknown split 'tset'. Valid: train, val, test"):
        Omniglot(tmp_path, "tset")
    write_omniglot(tmp_path, {"images_background": {"Latin": 2}})
    with pytest.raises(FileNotFoundError, match="Omniglot half 'images_evaluation' missing"):
        Omniglot(tmp_path, "train", progress=False)
    write_omniglot(tmp_path, {"images_evaluation": {"Keble": 2}})
    with pytest.raises(ValueError, match="Vinyals split names .* not on disk"):
        Omniglot(tmp_path, "train", progress=False)
    empty = tmp_path / "omniglot-py/images_background/Latin/character03"
    empty.mkdir()
    with pytest.raises(ValueError, match="empty class: .*character03"):
        Omniglot(tmp_path, "background", progress=False)
    empty.rmdir()
    victim = sorted((tmp_path / "omniglot-py/images_background/Latin/character02").glob("*.png"))[0]
    victim.write_bytes(victim.read_bytes()[:60])
    with pytest.raises(ValueError, match=f"cannot read image {victim}"):
        Omniglot(tmp_path, "background", progress=False)


MINI_SPLITS = {"train": {"n01": 5, "n02": 7, "n03": 4}, "val": {"n04": 3, "n05": 3}, "test": {"n06": 4, "n07": 2}}


def test_mini_imagenet_pickles(tmp_path):
    file_names = {"train": "train", "val": "validation", "test": "test"}
    written = {split: write_mini_imagenet_pickle(tmp_path / f"mini-imagenet-cache-{file_names[split]}.pkl",
                                                 MINI_SPLITS[split], seed=i)
               for i, split in enumerate(MINI_SPLITS)}
    for split, classes in MINI_SPLITS.items():
        data = MiniImageNet(tmp_path, split)
        image_data, class_dict = written[split]
        assert data.source == "pickle"
        assert data.class_names == sorted(classes)
        assert data.class_counts.tolist() == [classes[name] for name in sorted(classes)]
        assert data.images.shape == (sum(classes.values()), 3, 84, 84)
        for label, name in enumerate(data.class_names):
            for index in class_dict[name]:
                assert int(data.labels[index]) == label
                assert torch.equal(data.images[index], torch.from_numpy(image_data[index]).permute(2, 0, 1))


def test_mini_imagenet_malicious_pickle_runs_nothing(tmp_path):
    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with open(tmp_path / "mini-imagenet-cache-train.pkl", "wb") as handle:
        pickle.dump({"image_data": Exploit(), "class_dict": {}}, handle)
    with pytest.raises(ValueError, match="refusing to load posix.system"):
        MiniImageNet(tmp_path, "train")
    assert not marker.exists()


@pytest.mark.parametrize("content, message", [
    ([1, 2, 3], "expected a dict with 'image_data'"),
    ({"images": np.zeros((2, 84, 84, 3), np.uint8)}, "expected a dict with 'image_data'"),
    ({"image_data": np.zeros((2, 84, 84, 3), np.float32), "class_dict": {"a": [0, 1]}}, "image_data is float32"),
    ({"image_data": np.zeros((2, 84, 84, 3), np.uint8), "class_dict": {"a": [0, 5]}}, "outside"),
    ({"image_data": np.zeros((3, 84, 84, 3), np.uint8), "class_dict": {"a": [0, 1]}}, "belong to no class"),
])
def test_mini_imagenet_wrong_pickle_contents(tmp_path, content, message):
    with open(tmp_path / "mini-imagenet-cache-test.pkl", "wb") as handle:
        pickle.dump(content, handle)
    with pytest.raises(ValueError, match=message):
        MiniImageNet(tmp_path, "test")


def test_mini_imagenet_truncated_pickle(tmp_path):
    path = tmp_path / "mini-imagenet-cache-validation.pkl"
    write_mini_imagenet_pickle(path, {"n01": 2})
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(ValueError, match="truncated"):
        MiniImageNet(tmp_path, "val")


def test_mini_imagenet_csv_split(tmp_path):
    write_mini_imagenet_csv(tmp_path, MINI_SPLITS)
    for split, classes in MINI_SPLITS.items():
        data = MiniImageNet(tmp_path, split, progress=False)
        assert data.source == "csv" and data.class_names == sorted(classes)
        assert data.class_counts.tolist() == [classes[name] for name in sorted(classes)]
        with Image.open(tmp_path / "images" / f"{data.class_names[1]}00000001.jpg") as image:
            expected = np.array(image.convert("RGB").resize((84, 84), Image.LANCZOS))
        got = data.images[data.labels == 1][1].permute(1, 2, 0)
        assert torch.equal(got, torch.from_numpy(expected))
    assert (tmp_path / "train.metafwp-84x84.pt").exists()


def test_mini_imagenet_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="mini-imagenet-cache-validation.pkl"):
        MiniImageNet(tmp_path, "val")
    with pytest.raises(ValueError, match="Unknown split 'validation'"):
        MiniImageNet(tmp_path, "validation")
    write_mini_imagenet_csv(tmp_path, {"val": {"n01": 2}})
    (tmp_path / "images" / "n0100000001.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="1 images listed in .*val.csv are missing"):
        MiniImageNet(tmp_path, "val", progress=False)


def test_image_folder_classes(tmp_path):
    for name, count in (("cat", 3), ("ant", 2)):
        (tmp_path / name).mkdir()
        for i in range(count):
            Image.fromarray(np.full((10, 12), 40 * i, np.uint8)).save(tmp_path / name / f"{i}.png")
    data = ImageFolderClasses(tmp_path, mode="L", progress=False)
    assert data.class_names == ["ant", "cat"] and data.class_counts.tolist() == [2, 3]
    assert data.images.shape == (5, 1, 10, 12) and int(data.images[4].max()) == 80
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "cat" / "9.png")
    with pytest.raises(ValueError, match="pass image_size"):
        ImageFolderClasses(tmp_path, mode="L", progress=False)
    assert ImageFolderClasses(tmp_path, image_size=8, progress=False).images.shape == (6, 3, 8, 8)
    (tmp_path / "dog").mkdir()
    with pytest.raises(ValueError, match="empty class: .*dog"):
        ImageFolderClasses(tmp_path, progress=False)
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        ImageFolderClasses(tmp_path / "nope")


def test_image_classes_from_tensors_checks_input():
    images = torch.zeros(4, 1, 5, 5, dtype=torch.uint8)
    data = ImageClasses(images, torch.tensor([0, 1, 1, 0]))
    assert data.num_classes == 2 and data.class_counts.tolist() == [2, 2]
    with pytest.raises(ValueError, match="images must be a uint8 tensor"):
        ImageClasses(images.float(), torch.tensor([0, 1, 1, 0]))
    with pytest.raises(ValueError, match="1 class\\(es\\) have no images: 1"):
        ImageClasses(images, torch.tensor([0, 2, 2, 0]))
    with pytest.raises(ValueError, match="labels must be a tensor \\[N=4\\]"):
        ImageClasses(images, torch.tensor([0, 1]))
