"""Helpers shared by the tests: comparisons, fast-weight inputs, a layer run in pieces, a tiny
trainer config, a run's learner and its accuracy by a plain loop, a stop after a given step,
small datasets written in the real on-disk formats, toy episodes with a small learner of any mixer,
and a tiny trained classifier for the image-generation task's Fréchet features."""
import gzip
import math
import os
import pickle
import signal
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from episodes import EpisodeBatch, FewShotSampler, ImageClasses
from metafwp.evaluate import load_run
from metafwp.models import Conv4, SequenceLearner, feature_size
from metafwp.train import load_config, loop

ROOT = Path(__file__).parents[1]
RECIPE = ROOT / "recipes/glyphs_5way1shot_srwm.yaml"
TINY = ["model.filters=8", "train.batch_size=4", "train.log_every=1", "train.checkpoint_every=2",
        "train.progress=none", "eval.episodes=12", "eval.batch_size=5", "train.threads=1"]
TINY_SEQUENCE = ["model.d_model=16", "model.num_heads=2", "model.num_layers=1"]  # for sequence learners


def assert_close(name: str, actual: torch.Tensor, expected: torch.Tensor, rtol: float) -> None:
    """Relative RMS error ``rms(actual - expected) / rms(expected)`` below ``rtol``; NaN fails loudly."""
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    actual, expected = actual.detach().double(), expected.detach().double()
    assert not torch.isnan(actual).any(), f"{name}: NaN in the result"
    assert not torch.isnan(expected).any(), f"{name}: NaN in the reference"
    error = (actual - expected).pow(2).mean().sqrt()
    scale = expected.pow(2).mean().sqrt().clamp_min(1e-30)
    assert error / scale <= rtol, f"{name}: relative RMS error {error / scale:.3e} > {rtol:.0e}"


def assert_identical(name: str, actual, expected) -> None:
    """Nested dicts, lists and tuples of tensors and numbers equal bit for bit (tensors by ``torch.equal``)."""
    if isinstance(expected, torch.Tensor):
        assert isinstance(actual, torch.Tensor) and torch.equal(actual, expected), f"{name} differs"
    elif isinstance(expected, dict):
        assert set(actual) == set(expected), f"{name}: keys {sorted(actual)} != {sorted(expected)}"
        for key in expected:
            assert_identical(f"{name}.{key}", actual[key], expected[key])
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), f"{name}: length {len(actual)} != {len(expected)}"
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_identical(f"{name}[{i}]", a, e)
    else:
        assert actual == expected, f"{name}: {actual!r} != {expected!r}"


def gradients(outputs_and_cotangents, inputs):
    """Gradients of sum(<output, cotangent>) w.r.t. ``inputs`` (None entries skipped)."""
    loss = sum((o * c).sum() for o, c in outputs_and_cotangents)
    present = [x for x in inputs if x is not None]
    grads = iter(torch.autograd.grad(loss, present))
    return [None if x is None else next(grads) for x in inputs]


def tiny(tmp_path, *overrides, name="run", recipe=RECIPE):
    """A tiny run of ``recipe`` (Default: the glyph SRWM recipe) under ``tmp_path/name``."""
    learner = [] if Path(recipe).stem.rsplit("_", 1)[-1] in ("protonet", "maml") else TINY_SEQUENCE
    return load_config(recipe, TINY + learner + [f"train.out_dir={tmp_path}", f"train.name={name}", *overrides])


def learner_of(run_dir: Path, weights: str = "checkpoint.pt"):
    """``(config, model)`` of a trained run, with the weights of ``weights``."""
    config, _, model, _ = load_run(run_dir, weights=weights)
    return config, model


def accuracy_by_hand(model, batch) -> tuple[float, float]:
    """Mean and 95% CI over episodes of the percent of loss-mask steps whose argmax logit is the
    target: a plain loop over episodes, independent of the task's tallies."""
    per_episode = []
    with torch.no_grad():
        for episode in range(batch.batch_size):
            logits, _ = model(batch[episode])
            scored = batch.loss_mask[episode]
            hits = logits[0].argmax(-1)[scored] == batch.targets[episode][scored]
            per_episode.append(hits.double().mean().item())
    n, mean = len(per_episode), sum(per_episode) / len(per_episode)
    std = math.sqrt(sum((a - mean) ** 2 for a in per_episode) / (n - 1))
    return 100 * mean, 100 * 1.96 * std / math.sqrt(n)


def make_inputs(rule, B, T, H, K, V, dtype=torch.float64, seed=0):
    """Seeded ``q, k, v, beta, g, h0`` of fast-weight ``rule`` in the ops' layout, each requiring grad
    (``g`` None for rules without decay); keys (and Oja's values) unit-norm."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(B, T, H, K, generator=gen, dtype=dtype)
    k = F.normalize(torch.randn(B, T, H, K, generator=gen, dtype=dtype), dim=-1)
    v = torch.randn(B, T, H, V, generator=gen, dtype=dtype)
    if rule == "oja":  # Oja's rule probes the state with v: keep it unit-norm like the delta rule's keys
        v = F.normalize(v, dim=-1)
    beta = torch.rand(B, T, H, generator=gen, dtype=dtype)
    g = None
    if rule in ("decay", "gated_delta"):
        g = F.logsigmoid(torch.randn(B, T, H, generator=gen, dtype=dtype) + 2)
    elif rule == "gla":
        g = F.logsigmoid(torch.randn(B, T, H, K, generator=gen, dtype=dtype) + 2)
    h0 = torch.randn(B, H, K, V, generator=gen, dtype=dtype)
    return [x if x is None else x.requires_grad_() for x in (q, k, v, beta, g, h0)]


def run_in_pieces(layer, x, cuts):
    """Run ``x`` [B, T, d] through ``layer`` in pieces split at ``cuts``, handing the state over."""
    outputs, state = [], None
    for piece in torch.tensor_split(x, cuts, dim=1):
        y, state = layer(piece, state)
        outputs.append(y)
    return torch.cat(outputs, 1), state


def error_by_hand(model, task) -> float:
    """Squared error / dim on the loss mask of the task's test episodes, a plain loop over episodes."""
    sampler, _ = task.test_episodes()[""]
    total, count = 0.0, 0
    with torch.no_grad():
        for episode in range(task.config.eval.episodes):
            batch = sampler.sample([episode])
            mask = batch.loss_mask[0]
            outputs = model(batch)[0][0]
            total += (outputs[mask].double() - batch.targets[0][mask].double()).square().sum().item()
            count += int(mask.sum())
    return total / count / sampler.dim


def stop_after(monkeypatch, step: int, stop=lambda: signal.raise_signal(signal.SIGTERM)) -> None:
    """Call ``stop`` right after training step ``step`` (its optimiser step done, before its log line
    and checkpoint). Default: SIGTERM, as a cluster's pre-emption sends it."""
    original = loop.Progress.step

    def step_then_stop(progress):
        original(progress)
        if progress.run.step == step:
            stop()

    monkeypatch.setattr(loop.Progress, "step", step_then_stop)

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


def write_idx(path: Path, array: np.ndarray, magic: int, compress: bool) -> None:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)


def write_mnist(root: Path, split="t10k", per_digit=4, compress=True) -> Path:
    """MNIST in torchvision's layout under ``root``: ``per_digit`` images of each digit, the digit
    readable back from pixel (0, 0) (10 x the digit); the raw folder."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    labels = np.repeat(np.arange(10), per_digit)[::-1].copy()  # files are not sorted by digit
    images = np.zeros((labels.size, 28, 28), np.uint8)
    images[:, 0, 0] = labels * 10  # the digit, readable back from the frame
    images[:, 27, 27] = np.arange(labels.size)
    suffix = ".gz" if compress else ""
    write_idx(raw / f"{split}-images-idx3-ubyte{suffix}", images, 2051, compress)
    write_idx(raw / f"{split}-labels-idx1-ubyte{suffix}", labels, 2049, compress)
    return raw


def toy_classes(num_classes=12, per_class=6, size=16, seed=0) -> ImageClasses:
    """Noisy copies of one random 16x16 prototype per class."""
    gen = torch.Generator().manual_seed(seed)
    prototypes = torch.randint(0, 256, (num_classes, 1, size, size), generator=gen)
    noise = torch.randint(-20, 21, (num_classes, per_class, 1, size, size), generator=gen)
    images = (prototypes[:, None] + noise).clamp(0, 255).to(torch.uint8).reshape(-1, 1, size, size)
    return ImageClasses(images, torch.arange(num_classes).repeat_interleave(per_class))


def toy_episodes(feedback="synchronous", k_shot=2, n_query=2, count=3) -> EpisodeBatch:
    """``count`` 3-way episodes of ``toy_classes``."""
    sampler = FewShotSampler(toy_classes(), 3, k_shot, n_query if feedback == "synchronous" else 0,
                             feedback=feedback, seed=1)
    return sampler.sample(range(count))


def learner(mixer, batch, **options):
    """A seeded 2-layer sequence learner of ``mixer`` on a small Conv-4, in eval mode."""
    torch.manual_seed(0)
    backbone = Conv4(1, 8)
    model = SequenceLearner(backbone, feature_size(backbone, (1, 16, 16)), 3, 4, mixer=mixer, d_model=16,
                            num_heads=2, num_layers=2, **options)
    return model.eval()


CLASSIFIER_FOLDER = "METAFWP_TEST_CLASSIFIER"


def tiny_classifier() -> Path:
    """A trained digit classifier (MLP 784-8-10, 3 steps) whose features the image-generation task
    reads: trained once into a temporary folder that ``$METAFWP_TEST_CLASSIFIER`` then names, so that
    subprocesses (torchrun's) read the same run."""
    folder = os.environ.get(CLASSIFIER_FOLDER)
    if folder and (Path(folder) / "checkpoint.pt").is_file():
        return Path(folder)
    out_dir = Path(tempfile.mkdtemp(prefix="metafwp-test-classifier-"))
    config = load_config(ROOT / "recipes/mnist5k_mlp_classifier.yaml",
                         ["model.hidden=[8]", "train.steps=3", "eval.val_every=0", "train.test=false",
                          "train.progress=none", f"train.out_dir={out_dir}", "train.name=classifier"])
    run_dir = loop.train(config)
    os.environ[CLASSIFIER_FOLDER] = str(run_dir)
    return run_dir
