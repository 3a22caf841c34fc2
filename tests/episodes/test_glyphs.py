import numpy as np
import pytest
import torch

from episodes import FewShotSampler
from episodes.datasets.glyphs import DRAWERS, FACES, MIN_FACES, Glyphs, GlyphRenderer, class_list, \
    drop_near_duplicates, font_folder


@pytest.fixture(scope="module")
def glyph_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("glyph-cache")
    Glyphs("all", root=root, progress=False)  # render once for the module
    return root


def test_splits_partition_the_classes_by_alphabet(glyph_root):
    background = Glyphs("background", root=glyph_root, progress=False)
    evaluation = Glyphs("evaluation", root=glyph_root, progress=False)
    everything = Glyphs("all", root=glyph_root, progress=False)
    assert background.num_classes + evaluation.num_classes == everything.num_classes == len(class_list()["classes"])
    assert 700 <= everything.num_classes <= 1000 and evaluation.num_classes >= 200
    assert not set(background.class_names) & set(evaluation.class_names)
    assert not set(background.alphabets) & set(evaluation.alphabets)  # split by alphabet, never inside one
    assert torch.equal(everything.class_counts, torch.full((everything.num_classes,), DRAWERS))
    assert everything.images.shape[1:] == (1, 28, 28) and everything.images.dtype == torch.uint8
    assert all(len(entry[3]) >= MIN_FACES for entry in class_list()["classes"])


def test_validation_classes_are_whole_background_alphabets_of_both_families(glyph_root):
    background = Glyphs("background", root=glyph_root, progress=False)
    train = Glyphs("train", root=glyph_root, progress=False)
    val = Glyphs("val", root=glyph_root, progress=False)
    assert sorted(train.class_names + val.class_names) == sorted(background.class_names)
    assert set(val.alphabets) == set(class_list()["validation_blocks"]) == {
        "Greek and Coptic", "Latin Extended-A", "Letterlike Symbols", "General Punctuation", "Number Forms",
        "Miscellaneous Technical", "Miscellaneous Symbols and Arrows"}
    assert not set(train.alphabets) & set(val.alphabets) and val.num_classes == 128 and train.num_classes == 383
    counts = {(split.split, family): len(split.family_classes(family))
              for split in (train, val) for family in ("letters", "symbols")}
    assert counts == {("train", "letters"): 214, ("train", "symbols"): 169, ("val", "letters"): 83,
                      ("val", "symbols"): 45}  # a letters-then-symbols stream can be validated


def test_no_two_classes_are_near_duplicates_and_homoglyphs_are_gone(glyph_root):
    data = Glyphs("all", root=glyph_root, progress=False)
    means = data.images.view(data.num_classes, DRAWERS, 28, 28).double().mean(1).numpy()
    ink = 255.0 - means.reshape(len(means), -1)
    ink /= np.linalg.norm(ink, axis=1, keepdims=True)
    similarity = ink @ ink.T
    np.fill_diagonal(similarity, 0)
    assert similarity.max() < 0.95
    assert ord("A") in data.codepoints and 0x0391 not in data.codepoints and 0x0410 not in data.codepoints
    assert ord("o") in data.codepoints and 0x03BF not in data.codepoints and 0x043E not in data.codepoints


def test_no_class_is_empty_or_the_missing_glyph_box(glyph_root):
    data = Glyphs("all", root=glyph_root, progress=False)
    renderer = GlyphRenderer()
    missing = [np.array(renderer.missing[f].resize((28, 28))) for f in range(len(renderer.fonts))]
    ink_per_image = (data.images < 128).flatten(1).sum(1)
    assert int(ink_per_image.min()) > 0
    clean = data.images.view(data.num_classes, DRAWERS, 28, 28)[:, 0].numpy()
    assert not any(np.array_equal(image, box) for image in clean for box in missing)


def test_drawers_are_the_face_renders_then_seeded_jitter(glyph_root):
    """Drawer 0 of 'A' is its first face drawn by PIL directly (4x canvas, centred, Lanczos down to
    28x28); the jittered drawers are distinct distortions of the face renders, each with about the
    ink of the face it distorts (scaled by at most 15% per axis)."""
    from PIL import Image, ImageDraw, ImageFont

    data = Glyphs("all", root=glyph_root, progress=False)
    codepoint, _, _, faces = next(entry for entry in class_list()["classes"] if entry[0] == ord("A"))
    drawers = data.images[data.labels == data.codepoints.index(codepoint)][:, 0].numpy()
    canvas = Image.new("L", (112, 112), 255)
    font = ImageFont.truetype(str(font_folder() / FACES[faces[0]]), 88)
    ImageDraw.Draw(canvas).text((56, 56), "A", font=font, fill=0, anchor="mm")
    assert np.array_equal(drawers[0], np.array(canvas.resize((28, 28), Image.LANCZOS)))
    assert len({d.tobytes() for d in drawers}) == DRAWERS
    ink = (255.0 - drawers.astype(np.float64)).reshape(DRAWERS, -1).sum(1)
    source = np.arange(len(faces), DRAWERS) % len(faces)  # drawer j jitters face j mod (number of faces)
    assert np.all(np.abs(ink[len(faces):] / ink[source] - 1) < 0.4)


def test_cache_is_reused_and_sampling_works(glyph_root):
    files = list(glyph_root.glob("glyphs-v*.pt"))
    assert len(files) == 1
    before = files[0].stat().st_mtime_ns
    data = Glyphs("evaluation", root=glyph_root, progress=False)
    assert files[0].stat().st_mtime_ns == before
    batch = FewShotSampler(data, 5, 1, 1, seed=0).sample(range(4))
    assert batch.inputs.shape == (4, 10, 1, 28, 28)
    with pytest.raises(ValueError, match="Unknown split 'tarin'. Valid: background, evaluation, train, val, all"):
        Glyphs("tarin", root=glyph_root)


def test_a_carried_glyph_file_is_used_as_is_whatever_this_machine_renders(glyph_root, tmp_path, monkeypatch):
    rendered = next(glyph_root.glob("glyphs-v*.pt"))
    images = torch.load(rendered, weights_only=True)["images"]
    carried = tmp_path / rendered.name.replace(rendered.stem.split("-")[-1], "0123456789abcdef")  # another key
    torch.save({"key": "rendered elsewhere", "images": 255 - images}, carried)
    monkeypatch.setenv("METAFWP_GLYPHS_FILE", str(carried))
    empty_root = tmp_path / "cache"
    glyphs = Glyphs("evaluation", root=empty_root, progress=False)
    monkeypatch.delenv("METAFWP_GLYPHS_FILE")
    here = Glyphs("evaluation", root=glyph_root, progress=False)
    assert torch.equal(glyphs.images, 255 - here.images)
    assert not list(empty_root.glob("*.pt"))  # nothing rendered, nothing cached
    for name, content, message in [("glyphs-v0-abc.pt", {"images": images}, "is not a glyph file of this class list"),
                                   (rendered.name, {"images": images[:5]}, "holds no uint8 glyph images of shape"),
                                   (rendered.name, "not a dict", "holds no uint8 glyph images")]:
        bad = tmp_path / "bad" / name
        bad.parent.mkdir(exist_ok=True)
        torch.save(content, bad)
        monkeypatch.setenv("METAFWP_GLYPHS_FILE", str(bad))
        with pytest.raises(ValueError, match=message):
            Glyphs("evaluation", root=empty_root, progress=False)


def test_drop_near_duplicates_keeps_the_first_of_each_look_alike():
    base = np.full((4, 3, 3), 255.0)
    base[0, 1, 1] = base[1, 1, 1] = 0  # 0 and 1 identical
    base[2, 0, 0] = 0
    base[3, 0, 0] = 0
    base[3, 0, 1] = 200  # 3 nearly 2: cosine 0.99
    kept, dropped = drop_near_duplicates(base)
    assert kept == [0, 2] and dropped == {1: 0, 3: 2}
