"""Glyphs: a zero-download, Omniglot-like set rendered from the fonts that ship inside matplotlib.

Each class is a visible Unicode character that at least 13 of the 16 text faces (DejaVu Sans,
Sans Mono, Serif and STIXGeneral, four styles each) draw; each face that draws it is a "drawer",
and seeded affine jitter (rotation, scale, shear, translation) of those renders brings every class
to 20 drawers. Images are 28x28 uint8, black on white like Omniglot; alphabets are Unicode blocks.

The class list and its background/evaluation split are a file in the package
(``splits/glyphs.json``), built once by ``python -m episodes.datasets.glyphs`` (which also draws
``docs/glyphs.png``). Building drops characters that render empty or as the missing-glyph box,
and homoglyphs: going up the code points, a character is dropped when its mean image (over its
20 drawers) has cosine
similarity >= 0.95 with a class already kept (Latin A stays, Greek Alpha and Cyrillic A go), so no
two classes look alike and none straddles the split.
"""
from __future__ import annotations

import hashlib
import json
import os
import unicodedata
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from episodes.datasets.base import ImageClasses, check_choice, expand_root, load_cached, save_cached

GLYPH_SPLITS = ("background", "evaluation", "train", "val", "all")
FACES = tuple([f"DejaVuSans{s}.ttf" for s in ("", "-Bold", "-Oblique", "-BoldOblique")]
              + [f"DejaVuSansMono{s}.ttf" for s in ("", "-Bold", "-Oblique", "-BoldOblique")]
              + [f"DejaVuSerif{s}.ttf" for s in ("", "-Bold", "-Italic", "-BoldItalic")]
              + [f"STIXGeneral{s}.ttf" for s in ("", "Bol", "Italic", "BolIta")])
MIN_FACES = 13
DRAWERS = 20
CARRIED_FILE = "METAFWP_GLYPHS_FILE"  # a rendered glyph file to load as is (see Glyphs)
IMAGE_SIZE = 28
RENDER_SCALE = 4  # render at 4x, then downsample with an antialiasing filter
FONT_PIXELS = 88  # font size at 4x: an em of 22 px in the 28 px image
NEAR_DUPLICATE = 0.95
CLASS_LIST_VERSION = 2  # 2: symbol blocks held out for validation too
# Unicode blocks of alphabets and phonetic letters; every other block is a symbol family (shapes,
# arrows, box drawing, mathematical operators, punctuation): two styles of glyph for multi-task streams
LETTER_BLOCKS = frozenset({"Basic Latin", "Latin-1 Supplement", "Latin Extended-A", "Latin Extended-B", "IPA Extensions",
                           "Spacing Modifier Letters", "Greek and Coptic", "Cyrillic", "Phonetic Extensions Supplement",
                           "Alphabetic Presentation Forms", "Letterlike Symbols"})
GLYPH_FAMILIES = ("letters", "symbols")
INVISIBLE_CATEGORIES = ("Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Co", "Cn", "Mn", "Mc", "Me")
MISSING_CODEPOINT = 0x10FFFD  # a private-use code point no face draws: renders the missing-glyph box
EVALUATION_BLOCKS = ("Cyrillic", "Arrows", "Box Drawing", "Miscellaneous Symbols", "Latin Extended-B",
                     "Spacing Modifier Letters", "Supplemental Mathematical Operators", "Dingbats")
# background blocks held out for validation (model selection), letters and symbols, so that streams
# of either family can be validated: ``train`` is background without them
VALIDATION_BLOCKS = ("Greek and Coptic", "Latin Extended-A", "Letterlike Symbols", "General Punctuation",
                     "Number Forms", "Miscellaneous Technical", "Miscellaneous Symbols and Arrows")
UNICODE_BLOCKS = (
    (0x0000, 0x007F, "Basic Latin"), (0x0080, 0x00FF, "Latin-1 Supplement"), (0x0100, 0x017F, "Latin Extended-A"),
    (0x0180, 0x024F, "Latin Extended-B"), (0x0250, 0x02AF, "IPA Extensions"),
    (0x02B0, 0x02FF, "Spacing Modifier Letters"), (0x0300, 0x036F, "Combining Diacritical Marks"),
    (0x0370, 0x03FF, "Greek and Coptic"), (0x0400, 0x04FF, "Cyrillic"), (0x0500, 0x052F, "Cyrillic Supplement"),
    (0x1D80, 0x1DBF, "Phonetic Extensions Supplement"), (0x1E00, 0x1EFF, "Latin Extended Additional"),
    (0x2000, 0x206F, "General Punctuation"), (0x2070, 0x209F, "Superscripts and Subscripts"),
    (0x20A0, 0x20CF, "Currency Symbols"), (0x2100, 0x214F, "Letterlike Symbols"), (0x2150, 0x218F, "Number Forms"),
    (0x2190, 0x21FF, "Arrows"), (0x2200, 0x22FF, "Mathematical Operators"),
    (0x2300, 0x23FF, "Miscellaneous Technical"), (0x2400, 0x243F, "Control Pictures"),
    (0x2500, 0x257F, "Box Drawing"), (0x2580, 0x259F, "Block Elements"), (0x25A0, 0x25FF, "Geometric Shapes"),
    (0x2600, 0x26FF, "Miscellaneous Symbols"), (0x2700, 0x27BF, "Dingbats"),
    (0x27C0, 0x27EF, "Miscellaneous Mathematical Symbols-A"), (0x27F0, 0x27FF, "Supplemental Arrows-A"),
    (0x2980, 0x29FF, "Miscellaneous Mathematical Symbols-B"), (0x2A00, 0x2AFF, "Supplemental Mathematical Operators"),
    (0x2B00, 0x2BFF, "Miscellaneous Symbols and Arrows"), (0xA720, 0xA7FF, "Latin Extended-D"),
    (0xFB00, 0xFB4F, "Alphabetic Presentation Forms"), (0xFFF0, 0xFFFF, "Specials"),
)


def font_folder() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def unicode_block(codepoint: int) -> str:
    for first, last, name in UNICODE_BLOCKS:
        if first <= codepoint <= last:
            return name
    raise ValueError(f"U+{codepoint:04X} is outside the block table; add its block to UNICODE_BLOCKS")


class GlyphRenderer:
    """Draws characters of the 16 faces as 28x28 uint8 arrays (0 = ink, 255 = paper)."""

    def __init__(self):
        from PIL import ImageFont

        self.fonts = [ImageFont.truetype(str(font_folder() / face), FONT_PIXELS) for face in FACES]
        self.missing = [self._large(f, chr(MISSING_CODEPOINT)) for f in range(len(FACES))]

    def _large(self, face: int, character: str):
        from PIL import Image, ImageDraw

        side = IMAGE_SIZE * RENDER_SCALE
        image = Image.new("L", (side, side), 255)
        ImageDraw.Draw(image).text((side / 2, side / 2), character, font=self.fonts[face], fill=0, anchor="mm")
        box = Image.eval(image, lambda v: 255 - v).getbbox()
        margin = RENDER_SCALE
        if box is not None:  # shrink glyphs wider or taller than the canvas, keep the rest at true size
            extent = max(box[2] - box[0], box[3] - box[1])
            if extent > side - 2 * margin:
                ink = image.crop(box)
                scale = (side - 2 * margin) / extent
                ink = ink.resize((max(1, round(ink.width * scale)), max(1, round(ink.height * scale))), Image.LANCZOS)
                image = Image.new("L", (side, side), 255)
                image.paste(ink, ((side - ink.width) // 2, (side - ink.height) // 2))
        return image

    def render(self, codepoint: int, face: int, jitter_seed: tuple[int, ...] | None = None) -> np.ndarray:
        """One drawer: the face's glyph, with a seeded random affine distortion when ``jitter_seed``."""
        from PIL import Image

        image = self._large(face, chr(codepoint))
        if jitter_seed is not None:
            rng = np.random.default_rng(jitter_seed)
            angle = np.deg2rad(rng.uniform(-12, 12))
            scale = rng.uniform(0.85, 1.15)
            shear = rng.uniform(-0.2, 0.2)
            shift = rng.uniform(-2, 2, size=2) * RENDER_SCALE
            # output -> input map about the centre: inverse of rotate(angle) @ shear @ scale
            forward = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) \
                @ np.array([[1.0, shear], [0.0, 1.0]]) * scale
            image = self._affine(image, np.linalg.inv(forward), np.zeros(2))
            box = Image.eval(image, lambda v: 255 - v).getbbox()
            if box is not None:  # translate, but never push ink off the canvas
                shift = np.clip(shift, [-box[0], -box[1]], [image.width - box[2], image.height - box[3]])
                image = self._affine(image, np.eye(2), shift)
        return np.array(image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.LANCZOS), dtype=np.uint8)

    @staticmethod
    def _affine(image, inverse: np.ndarray, shift: np.ndarray):
        """``image`` mapped by the linear map whose inverse is ``inverse``, about the centre, then shifted."""
        from PIL import Image

        centre = np.array([image.width / 2, image.height / 2])
        offset = centre - inverse @ (centre + shift)
        coeffs = (*inverse[0], offset[0], *inverse[1], offset[1])
        return image.transform(image.size, Image.AFFINE, coeffs, resample=Image.BILINEAR, fillcolor=255)

    def draws(self, codepoint: int, face: int) -> bool:
        """Whether the face draws the character: dark ink at 28x28, and not the missing-glyph box."""
        large = np.array(self._large(face, chr(codepoint)))
        visible = bool((self.render(codepoint, face) < 128).any())
        return visible and not np.array_equal(large, np.array(self.missing[face]))

    def drawers(self, codepoint: int, faces: list[int]) -> np.ndarray:
        """``DRAWERS`` distinct images ``[DRAWERS, 28, 28]``: the faces' renders, then jittered copies.

        A face whose render repeats an earlier face's (faces often share symbols) is jittered too.
        """
        images, seen = [], set()
        for drawer in range(DRAWERS):
            face = faces[drawer % len(faces)]
            image = self.render(codepoint, face) if drawer < len(faces) else None
            if image is None or image.tobytes() in seen:
                image = self.render(codepoint, face, jitter_seed=(codepoint, drawer))
            seen.add(image.tobytes())
            images.append(image)
        return np.stack(images)


def class_list() -> dict:
    """The shipped class list: ``{"version", "validation_blocks": [block, ...], "classes": [[codepoint,
    block, split, [faces]], ...]}``."""
    return json.loads(resources.files("episodes.datasets").joinpath("splits/glyphs.json").read_text())


def in_split(entry: list, split: str, validation_blocks: list[str]) -> bool:
    """Whether the class-list entry ``[codepoint, block, background/evaluation, faces]`` is in ``split``."""
    if split in ("train", "val"):
        return entry[2] == "background" and (entry[1] in validation_blocks) == (split == "val")
    return split in ("all", entry[2])


def carried_glyphs(listing: dict) -> dict:
    """``{"images": uint8 [classes * drawers, 1, 28, 28]}`` from the file ``$METAFWP_GLYPHS_FILE`` names,
    checked against this class list (its version in the name, its class count in the shape)."""
    path = Path(os.environ[CARRIED_FILE]).expanduser()
    prefix = f"glyphs-v{listing['version']}-"
    if not path.name.startswith(prefix):
        raise ValueError(f"{CARRIED_FILE}={path} is not a glyph file of this class list: its name must start "
                         f"with {prefix!r} (render one with this version of metafwp and carry it)")
    try:
        cached = torch.load(path, weights_only=True)  # never runs code from the file
    except Exception as error:
        raise ValueError(f"{CARRIED_FILE}={path} cannot be read as a glyph file: {error}") from None
    expected = (len(listing["classes"]) * DRAWERS, 1, IMAGE_SIZE, IMAGE_SIZE)
    images = cached.get("images") if isinstance(cached, dict) else None
    if not isinstance(images, torch.Tensor) or tuple(images.shape) != expected or images.dtype != torch.uint8:
        raise ValueError(f"{CARRIED_FILE}={path} holds no uint8 glyph images of shape {expected}")
    return {"images": images}


def default_cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "metafwp"


class Glyphs(ImageClasses):
    """The embedded glyph set: ~900 character classes x 20 drawers, uint8 ``[1, 28, 28]``.

    Args:
        split: ``background`` or ``evaluation`` (a fixed split by Unicode block), ``val`` (the
            background blocks named in the split file's ``validation_blocks``: 83 letter classes from
            Greek and Coptic, Latin Extended-A and Letterlike Symbols, 45 symbol classes from General
            Punctuation, Number Forms, Miscellaneous Technical and Miscellaneous Symbols and Arrows),
            ``train`` (background without ``val``) or ``all``.
        root: where the rendered tensor is cached. Default: ``$XDG_CACHE_HOME/metafwp`` or
            ``~/.cache/metafwp``.
        progress: show a progress bar while rendering (first use only, a few seconds).

    Another matplotlib renders other glyphs (its version and fonts are in the cache key). To use
    the exact images of another machine, point ``$METAFWP_GLYPHS_FILE`` at a cache file rendered
    there (``glyphs-v<version>-<key>.pt``): it is loaded as is, with no code run from it.

    ``alphabets`` gives each class's Unicode block; ``class_names`` are ``U+XXXX <char>``.
    """

    def __init__(self, split: str = "background", *, root=None, progress: bool = True):
        check_choice("split", split, GLYPH_SPLITS)
        import matplotlib

        listing = class_list()
        entries = listing["classes"]
        root = expand_root(root) if root is not None else default_cache_root()
        root.mkdir(parents=True, exist_ok=True)
        fonts = [font_folder() / face for face in FACES]
        key = hashlib.sha256(json.dumps([listing, matplotlib.__version__, IMAGE_SIZE, DRAWERS,
                                         [f.stat().st_size for f in fonts]]).encode()).hexdigest()[:16]
        cache_file = root / f"glyphs-v{listing['version']}-{key}.pt"
        cached = load_cached(cache_file, key) if CARRIED_FILE not in os.environ else carried_glyphs(listing)
        if cached is None:
            images = self._render_all(entries, progress)
            save_cached(cache_file, key, {"images": images})
        else:
            images = cached["images"]
        keep = [i for i, entry in enumerate(entries) if in_split(entry, split, listing["validation_blocks"])]
        per_class = images.view(len(entries), DRAWERS, 1, IMAGE_SIZE, IMAGE_SIZE)[keep]
        self.split = split
        self.alphabets = [entries[i][1] for i in keep]
        self.codepoints = [entries[i][0] for i in keep]
        names = [f"U+{entries[i][0]:04X} {chr(entries[i][0])}" for i in keep]
        labels = torch.arange(len(keep)).repeat_interleave(DRAWERS)
        super().__init__(per_class.reshape(-1, 1, IMAGE_SIZE, IMAGE_SIZE), labels, names)

    def family_classes(self, family: str) -> list[int]:
        """Class ids of ``family``: ``letters`` (alphabetic and phonetic Unicode blocks) or ``symbols``
        (every other block), e.g. for ``FewShotSampler(glyphs, ..., classes=...)``."""
        check_choice("family", family, GLYPH_FAMILIES)
        return [i for i, block in enumerate(self.alphabets) if (block in LETTER_BLOCKS) == (family == "letters")]

    @staticmethod
    def _render_all(entries, progress: bool) -> torch.Tensor:
        from tqdm import tqdm

        renderer = GlyphRenderer()
        images = np.empty((len(entries), DRAWERS, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
        for i, (codepoint, _, _, faces) in enumerate(tqdm(entries, desc="rendering glyphs", unit="class",
                                                           disable=not progress, leave=False)):
            images[i] = renderer.drawers(codepoint, faces)
        return torch.from_numpy(images).reshape(-1, 1, IMAGE_SIZE, IMAGE_SIZE)


def cosine_similarity(mean_images: np.ndarray) -> np.ndarray:
    """Cosine similarity of the ink (255 - pixel) of mean images ``[N, H, W]``: ``[N, N]``."""
    flat = 255.0 - mean_images.reshape(len(mean_images), -1).astype(np.float64)
    flat /= np.linalg.norm(flat, axis=1, keepdims=True)
    return flat @ flat.T


def drop_near_duplicates(mean_images: np.ndarray, threshold: float = NEAR_DUPLICATE) -> tuple[list[int], dict]:
    """Keep classes in order, dropping any whose mean image is a near-duplicate of one kept before.

    Returns the kept indices and ``{dropped index: the kept index it duplicates}``.
    """
    similar = cosine_similarity(mean_images) >= threshold
    kept, dropped = [], {}
    for i in range(len(mean_images)):
        twin = next((k for k in kept if similar[i, k]), None)
        if twin is None:
            kept.append(i)
        else:
            dropped[i] = twin
    return kept, dropped


def build_class_list() -> tuple[dict, dict]:
    """Select, deduplicate and split the classes. Returns ``(listing, report)``."""
    from matplotlib.ft2font import FT2Font
    from tqdm import tqdm

    coverage: dict[int, list[int]] = {}
    for face, name in enumerate(FACES):
        for codepoint in FT2Font(str(font_folder() / name)).get_charmap():
            coverage.setdefault(codepoint, []).append(face)
    candidates = sorted(c for c, faces in coverage.items()
                        if len(faces) >= MIN_FACES and unicodedata.category(chr(c)) not in INVISIBLE_CATEGORIES)
    renderer = GlyphRenderer()
    drawn, means = [], []
    for codepoint in tqdm(candidates, desc="checking glyphs", unit="char"):
        faces = [f for f in sorted(coverage[codepoint]) if renderer.draws(codepoint, f)]
        if len(faces) >= MIN_FACES:
            drawn.append((codepoint, faces))
            means.append(renderer.drawers(codepoint, faces).mean(axis=0))  # over all 20 drawers
    kept, dropped = drop_near_duplicates(np.stack(means))  # code-point order: Latin A stays, Alpha goes
    classes = []
    for index in kept:
        codepoint, faces = drawn[index]
        block = unicode_block(codepoint)
        classes.append([codepoint, block, "evaluation" if block in EVALUATION_BLOCKS else "background", faces])
    with_twin = set(dropped) | set(dropped.values())
    report = {"candidates": len(candidates), "drawn": len(drawn), "classes_with_a_near_duplicate": len(with_twin),
              "dropped": len(dropped), "classes": len(classes),
              "background": sum(c[2] == "background" for c in classes),
              "evaluation": sum(c[2] == "evaluation" for c in classes),
              "val": sum(c[2] == "background" and c[1] in VALIDATION_BLOCKS for c in classes),
              "examples": [chr(drawn[i][0]) + chr(drawn[k][0]) for i, k in list(dropped.items())[:40]]}
    return {"version": CLASS_LIST_VERSION, "validation_blocks": list(VALIDATION_BLOCKS), "classes": classes}, report


def save_example_grid(path: Path, data: Glyphs, per_split: int = 12,
                      drawers: tuple[int, ...] = (0, 2, 5, 8, 11, 14, 16, 17, 18, 19)) -> None:
    """A grid of example classes (rows) and drawers (columns; 16.. are jittered) for the docs."""
    from matplotlib.figure import Figure

    step = max(1, data.num_classes // per_split)
    rows = list(range(0, data.num_classes, step))[:per_split]
    figure = Figure(figsize=(len(drawers) * 0.7, len(rows) * 0.75))
    axes = figure.subplots(len(rows), len(drawers))
    for r, label in enumerate(rows):
        examples = data.images[data.labels == label]
        for d, drawer in enumerate(drawers):
            axes[r, d].imshow(examples[drawer, 0].numpy(), cmap="gray", vmin=0, vmax=255)
            axes[r, d].set_axis_off()
        axes[r, 0].set_title(f"{data.class_names[label]} ({data.alphabets[label]})", fontsize=6, loc="left")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


if __name__ == "__main__":
    listing, report = build_class_list()
    target = Path(__file__).parent / "splits" / "glyphs.json"
    target.write_text(json.dumps(listing, separators=(",", ":"), ensure_ascii=False) + "\n")
    print(json.dumps(report, indent=1, ensure_ascii=False))
    docs = Path(__file__).resolve().parents[2] / "docs"
    docs.mkdir(exist_ok=True)
    save_example_grid(docs / "glyphs.png", Glyphs("all"))
    print(f"wrote {target} and {docs / 'glyphs.png'}")
