"""Sequential multi-task streams as a task: the tallies by source, segment and position against a
plain loop over the test sequences, the trainer end to end, and the errors a recipe can cause."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from episodes import Glyphs
from metafwp.tasks import MultiTaskTask
from metafwp.tasks.multitask import segment_positions
from metafwp.train import ConfigError, load_config, train
from tests.helpers import TINY, TINY_SEQUENCE, learner_of

ROOT = Path(__file__).parents[1]
RECIPE = ROOT / "recipes/glyphs_multitask_srwm.yaml"


def tiny_multitask(tmp_path, *overrides):
    return load_config(RECIPE, TINY + TINY_SEQUENCE + ["data.n_way=3", "data.k_shots=[2,3]", "data.min_segment_steps=4",
                                                        "train.steps=3", "eval.val_every=0",
                                                        f"train.out_dir={tmp_path}",
                                                        *overrides])


def test_segment_positions_count_slots_and_positions_within_each_segment():
    segment = torch.tensor([[0, 0, 0, 1, 1, -1], [1, 1, 0, 0, 0, 0]])
    slot, position = segment_positions(segment)
    assert slot[:, :5].tolist() == [[0, 0, 0, 1, 1], [0, 0, 1, 1, 1]]
    assert position.tolist() == [[0, 1, 2, 0, 1, 0], [0, 1, 0, 1, 2, 3]]


def test_glyph_families_split_the_blocks_into_letters_and_symbols():
    glyphs = Glyphs("evaluation", progress=False)
    letters, symbols = glyphs.family_classes("letters"), glyphs.family_classes("symbols")
    assert sorted(letters + symbols) == list(range(glyphs.num_classes)) and not set(letters) & set(symbols)
    assert {glyphs.alphabets[i] for i in letters} == {"Cyrillic", "Spacing Modifier Letters", "Latin Extended-B"}
    assert "Arrows" in {glyphs.alphabets[i] for i in symbols}
    with pytest.raises(ValueError, match="family"):
        glyphs.family_classes("digits")


def test_tallies_by_source_segment_and_position_match_a_plain_loop(tmp_path):
    config = tiny_multitask(tmp_path)
    task = MultiTaskTask(config, progress=False)
    torch.manual_seed(0)
    model = task.build_learner(config.model).eval()
    stream = task.make_stream(config.data.test_splits, config.eval.seed)
    batch = stream.sample(range(40))
    with torch.no_grad():
        record = task.summarise(task.objective(model, batch).sums)
        logits, _ = model(batch)
    hits = (logits.argmax(-1) == batch.targets).double()
    expected = {}  # (source, slot) -> position -> [hits]
    for b in range(batch.batch_size):
        order = []
        for t in range(batch.num_steps):
            source = int(batch.segment[b, t])
            if not order or order[-1][0] != source:
                order.append((source, t))
            expected.setdefault((source, len(order) - 1), {}).setdefault(t - order[-1][1], []).append(hits[b, t].item())
    names, slots = config.data.sources, ["first", "second"]
    for (source, slot), by_position in expected.items():
        actual = record["segments"][names[source]][slots[slot]]["by_position"]
        length = len(by_position)  # the shorter source's positions beyond its segment are never scored
        assert actual[:length] == pytest.approx([100 * np.mean(by_position[p]) for p in range(length)])
        assert actual[length:] == [None] * (len(actual) - length)
    second = [h for (_, slot), by_position in expected.items() if slot == 1 for v in by_position.values() for h in v]
    assert record["second_segment_accuracy"] == pytest.approx(100 * np.mean(second))
    assert record["accuracy"] == pytest.approx(100 * hits.mean().item())


def test_multitask_trains_and_tests_through_the_trainer(tmp_path):
    config = tiny_multitask(tmp_path)
    run_dir = train(config)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    result = metrics["test"]["srwm"]
    assert set(result["segments"]) == {"glyphs:letters", "glyphs:symbols"}
    assert set(result["segments"]["glyphs:letters"]) == {"first", "second"}
    assert len(result["segments"]["glyphs:symbols"]["first"]["by_position"]) == 9  # 3-way 3-shot, untrimmed
    assert (run_dir / "accuracy_across_switch.png").is_file()
    _, model = learner_of(run_dir)
    task = MultiTaskTask(config, progress=False)
    batch = task.make_stream(config.data.test_splits, config.eval.seed).sample(range(12))
    with torch.no_grad():
        logits, _ = model(batch)
    per_episode = (logits.argmax(-1) == batch.targets).double().mean(1)
    assert result["accuracy"] == pytest.approx(100 * per_episode.mean().item(), abs=1e-4)


def colour_of(c: int, i: int) -> tuple[int, int, int]:
    """The RGB colour filling image i of class c."""
    return 40 * c + i, 10 + 20 * i, 200 - 30 * c


def write_colour_folder(root: Path, classes: int = 4, per_class: int = 6) -> None:
    for c in range(classes):
        (root / "train" / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            pixels = np.empty((12, 12, 3), np.uint8)
            pixels[...] = colour_of(c, i)
            Image.fromarray(pixels).save(root / "train" / f"class{c}" / f"{i}.png")


def test_sources_whose_frames_differ_need_a_common_shape(tmp_path):
    write_colour_folder(tmp_path / "colour")
    overrides = ["data.sources=[glyphs:letters,folder]", f"data.roots=[null,{tmp_path / 'colour'}]",
                 "data.train_splits=[background,train]", "data.val_splits=null", "data.test_splits=[evaluation,train]"]
    with pytest.raises(ConfigError, match="frames of different shapes .* set data.image_size and data.channels"):
        MultiTaskTask(tiny_multitask(tmp_path, *overrides), progress=False)
    task = MultiTaskTask(tiny_multitask(tmp_path, *overrides, "data.image_size=16", "data.channels=3"), progress=False)
    batch = task.train_sampler().sample(range(4))
    assert batch.inputs.shape[2:] == (3, 16, 16)
    colours = {colour_of(c, i) for c in range(4) for i in range(6)}
    folder, glyphs = batch.inputs[batch.segment == 1], batch.inputs[batch.segment == 0]
    assert len(folder) and len(glyphs)
    for frame in folder:  # a one-colour image stays that colour, resized and in its own channels
        colour = tuple(int(frame[k, 0, 0]) for k in range(3))
        assert colour in colours and bool((frame == torch.tensor(colour)[:, None, None]).all())
    for frame in glyphs:  # a grey glyph's level repeated in the three channels, its ink kept
        assert torch.equal(frame[0], frame[1]) and torch.equal(frame[0], frame[2])
        assert int(frame.min()) < 128 < int(frame.max())


@pytest.mark.parametrize("override,message", [
    ("data.sources=[glyphs:letters,glyphs:digits]", "Unknown data.sources entry 'glyphs:digits'"),
    ("data.sources=[glyphs:letters]", "at least two sources"),
    ("data.k_shots=[2]", "data.k_shots gives 1 values for 2 data.sources"),
    ("data.k_shots=[0,2]", "data.k_shots must be >= 1"),
    ("eval.baselines=[pixel_nn]", "task=multitask has no baselines"),
    ("data.val_splits=null", "eval.val_every=125 needs data.val_splits"),
])
def test_bad_settings_are_config_errors(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_config(RECIPE, [override])


def test_a_segment_longer_than_a_family_allows_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="source glyphs:symbols, split train.*k_shot"):
        MultiTaskTask(tiny_multitask(tmp_path, "data.k_shots=[2,21]"), progress=False)


def test_user_data_sources_without_a_folder_say_which_position_of_data_roots_to_fill():
    config = load_config(ROOT / "recipes/omniglot_mini_imagenet_multitask_srwm_conv4.yaml")
    with pytest.raises(ConfigError, match=r"omniglot needs data.roots\[0\].*data.roots=\[...\] with that folder at "
                                          r"position 0"):
        MultiTaskTask(config, progress=False)
