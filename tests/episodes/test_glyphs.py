import numpy as np
import pytest
import torch

from episodes import FewShotSampler
from episodes.datasets.glyphs import DRAWERS, MIN_FACES, Glyphs, GlyphRenderer, class_list, drop_near_duplicates


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
    data = Glyphs("all", root=glyph_root, progress=False)
    renderer = GlyphRenderer()
    codepoint, _, _, faces = class_list()["classes"][10]
    label = data.codepoints.index(codepoint)
    drawers = data.images[data.labels == label][:, 0].numpy()
    assert np.array_equal(drawers[0], renderer.render(codepoint, faces[0]))
    jittered = renderer.render(codepoint, faces[len(faces) % len(faces)], jitter_seed=(codepoint, len(faces)))
    assert np.array_equal(drawers[len(faces)], jittered)
    assert not np.array_equal(drawers[len(faces)], drawers[0])
    assert len({d.tobytes() for d in drawers}) == DRAWERS


def test_cache_is_reused_and_sampling_works(glyph_root):
    files = list(glyph_root.glob("glyphs-v*.pt"))
    assert len(files) == 1
    before = files[0].stat().st_mtime_ns
    data = Glyphs("evaluation", root=glyph_root, progress=False)
    assert files[0].stat().st_mtime_ns == before
    batch = FewShotSampler(data, 5, 1, 1, seed=0).sample(range(4))
    assert batch.inputs.shape == (4, 10, 1, 28, 28)
    with pytest.raises(ValueError, match="Unknown split 'train'. Valid: background, evaluation, all"):
        Glyphs("train", root=glyph_root)


def test_drop_near_duplicates_keeps_the_first_of_each_look_alike():
    base = np.full((4, 3, 3), 255.0)
    base[0, 1, 1] = base[1, 1, 1] = 0  # 0 and 1 identical
    base[2, 0, 0] = 0
    base[3, 0, 0] = 0
    base[3, 0, 1] = 200  # 3 nearly 2: cosine 0.99
    kept, dropped = drop_near_duplicates(base)
    assert kept == [0, 2] and dropped == {1: 0, 3: 2}
