"""Every shipped recipe keeps its meaning across the refactor that gave tasks and learner kinds their
own settings: the resolved config, the learner's parameter count and its initial weights (seed 0)
were recorded before it (``tests/data/recipes_resolved.json``); only new keys, at defaults that
reproduce the earlier behaviour, may appear, and ``train.resume`` is written as text (it gained
``auto``). A recipe added later is recorded when it is added."""
import json

import pytest
import torch

from metafwp.models import LEARNER_KINDS, LearnerInputs
from metafwp.tasks import TASKS
from metafwp.tasks.images import frame_inputs
from metafwp.train.config import config_to_dict, load_config
from tests.helpers import ROOT

RECORDED = json.loads((ROOT / "tests/data/recipes_resolved.json").read_text())
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))
# Adam as before; tested after training; continual recipes without validation streams; expressivity
# under the protocol it had (every prefix labelled, the last step scored); the Delta RNN and LSTM with
# the authors' sigmoid rates and R from zeros; linear self-attention causal, as it ran; MAML's tasks
# by vmap or a loop, the same computation; attention, window attention and the fast-weight rules
# without the short convolution they gained; the e-LSTM with d_model cells
NEW_KEYS = {("optim", "optimizer"): "adam", ("train", "test"): True, ("data", "val_splits"): None,
            ("data", "protocol"): "prefix", ("model", "beta_activation"): "sigmoid",
            ("model", "learned_initial_r"): False, ("model", "causal"): True, ("model", "strategy"): "auto",
            ("model", "short_conv"): False, ("model", "elstm_cells"): None, ("model", "program_scale"): 1.0,
            ("model", "compile_loop"): False}
RETYPED = {("train", "resume"): (False, "false")}  # (recorded, now)
# recipes changed on purpose: Omniglot was validated on background, the split it trained on; it now
# trains, validates and tests on Vinyals et al.'s train / val / test characters (disjoint)
CHANGED = {recipe: {("data", "train_splits"): ["train", "train"], ("data", "val_splits"): ["val", "val"],
                    ("data", "test_splits"): ["test", "test"]}
           for recipe in ("omniglot_mini_imagenet_multitask_srwm_conv4", "omniglot_mini_imagenet_multitask_delta_conv4",
                          "omniglot_mini_imagenet_multitask_lstm_conv4")}
# the glyph study recipes trained on background and validated nowhere; they now train on `train`,
# validate on `val` (letters and symbols) and keep best.pt, as their declared studies
for recipe, steps in (("glyphs_bootstrap_10way1shot_srwm", 150), ("glyphs_bootstrap_10way1shot_srwm_plain", 150)):
    CHANGED[recipe] = {("data", "train_split"): "train", ("data", "val_split"): "val", ("eval", "val_every"): steps}
for recipe, steps in (("glyphs_continual_domain_acl", 200), ("glyphs_continual_domain_plain", 200),
                      ("glyphs_continual_class_acl", 150), ("glyphs_continual_class_plain", 150)):
    CHANGED[recipe] = {("data", "train_splits"): ["train"], ("data", "val_splits"): ["val"],
                       ("eval", "val_every"): steps, ("eval", "val_episodes"): 300}
for recipe in ("glyphs_multitask_srwm", "glyphs_multitask_delta", "glyphs_multitask_lstm"):
    CHANGED[recipe] = {("data", "train_splits"): ["train", "train"], ("data", "val_splits"): ["val", "val"],
                       ("eval", "val_every"): 125, ("eval", "val_episodes"): 300}
# the painter recipes learn at lr 1e-3 with sharper first strokes (at the authors' 2e-4 and initial
# weights the painter painted one image for every latent), in 1000 steps validated every 250
for recipe in ("gan_mnist5k_painter", "gan_glyphs_painter"):
    CHANGED[recipe] = {("model", "program_scale"): 20.0, ("optim", "lr"): 1e-3, ("train", "steps"): 1000,
                       ("train", "checkpoint_every"): 250, ("eval", "val_every"): 250}
RESCALED = {"gan_mnist5k_painter": 20.0, "gan_glyphs_painter": 20.0}  # the stroke layer's initial weights x 20
# the glyph classifier (the glyph GANs' Fréchet features) trains by Adam 1e-3 for 2000 steps: the digit
# recipe's SGD reached 5.9 % of the 383 classes
DROPPED = "dropped"  # a CHANGED key the recipe no longer has
CHANGED["glyphs_mlp_classifier"] = {("optim", "optimizer"): "adam", ("optim", "lr"): 1e-3,
                                    ("optim", "momentum"): DROPPED, ("optim", "betas"): [0.9, 0.995],
                                    ("optim", "eps"): 1e-9, ("train", "steps"): 2000,
                                    ("train", "checkpoint_every"): 500, ("eval", "val_every"): 500}
STORED_FRAMES = {"glyphs": (1, 28, 28), "omniglot": (1, 105, 105), "mini_imagenet": (3, 84, 84)}  # (C, H, W)


def learner(config):
    """The recipe's learner, built with seed 0; image tasks from the frame shape their data stores (the
    user's Omniglot and Mini-ImageNet copies are not here)."""
    torch.manual_seed(0)
    if config.task in ("regression", "expressivity", "copy", "mqar", "code_execution", "listops", "irregular_rows",
                       "classification", "char_lm"):
        return TASKS[config.task](config, progress=False).build_learner(config.model)
    if config.task == "gan":  # a generator of 28 x 28 grey images (the task needs a trained classifier)
        return LEARNER_KINDS[config.model.kind].build(config.model, LearnerInputs("latents", (1, 28, 28), 0, 0,
                                                                                  "images"))
    data = config.data
    source = getattr(data, "dataset", None) or (getattr(data, "sources", None) or data.train_sources)[0]
    channels, height, width = STORED_FRAMES[source.split(":")[0]]
    shape = (data.channels or channels, data.image_size or height, data.image_size or width)
    num_classes = data.num_classes if config.task == "continual" else data.n_way
    return LEARNER_KINDS[config.model.kind].build(config.model, frame_inputs(shape, num_classes))


def test_every_shipped_recipe_was_recorded():
    assert sorted(RECORDED) == [recipe.stem for recipe in RECIPES]


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.stem for r in RECIPES])
def test_a_recipe_resolves_to_the_recorded_config_and_learner(recipe):
    config = load_config(recipe)
    recorded, resolved = RECORDED[recipe.stem], config_to_dict(config)
    expected = json.loads(json.dumps(recorded["config"]))
    for (section, key), value in CHANGED.get(recipe.stem, {}).items():
        assert expected[section].get(key, NEW_KEYS.get((section, key))) != value
        if value == DROPPED:
            expected[section].pop(key)
        else:
            expected[section][key] = value
    for (section, key), default in NEW_KEYS.items():
        if key in resolved[section] and key not in expected[section]:
            assert resolved[section].pop(key) == default
    for (section, key), (before, now) in RETYPED.items():  # recipes recorded later hold the new type
        assert resolved[section][key] == now and recorded["config"][section][key] in (before, now)
        resolved[section][key] = recorded["config"][section][key]
    assert resolved == expected
    model = learner(config)
    assert sum(p.numel() for p in model.parameters()) == recorded["parameters"]
    initial = sum(p.detach().double().abs().sum().item() for p in model.parameters())
    if recipe.stem in RESCALED:  # as recorded, but for the stroke layer's scale
        initial -= (1 - 1 / RESCALED[recipe.stem]) * sum(p.detach().double().abs().sum().item()
                                                         for p in model.program.parameters())
    assert initial == pytest.approx(recorded["init_abs_sum"], rel=1e-9, abs=1e-6)
