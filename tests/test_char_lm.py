"""Character-level language modelling: the pinned embedded corpus and enwik8's split (on a small
fixture in its format), the streams that cover a held-out split once, BPC with the state carried
against one pass over each whole stream, the unigram baseline against its closed form, every
mixer's state through a checkpoint, and the bad settings refused before any work."""
import gzip
import hashlib
import math
import zipfile
from collections import Counter

import pytest
import torch

from episodes.batch import PADDING_TOKEN
from episodes.text import EMBEDDED_FILE, TextStreams, embedded_text, enwik8_text
from metafwp.nn.mixers import MIXERS
from metafwp.tasks import TASKS
from metafwp.tasks.char_lm import Unigram
from metafwp.train import load_config
from metafwp.train.__main__ import main as train_main
from metafwp.train.checkpoint import load_checkpoint, save_checkpoint
from tests.helpers import ROOT, assert_close, assert_identical, learner, toy_episodes

RECIPE = str(ROOT / "recipes/char_lm_delta.yaml")
TINY_LM = ["model.d_model=16", "model.num_heads=2", "model.num_layers=1", "data.segment_length=16",
           "train.batch_size=4", "train.progress=none", "train.threads=1"]


def test_the_embedded_corpus_is_pinned_and_split_in_order():
    data = gzip.decompress(EMBEDDED_FILE.read_bytes())
    assert len(data) == 466_195 and hashlib.sha256(data).hexdigest().startswith("2a95af4ac93f5b71")
    splits = [embedded_text(split) for split in ("train", "val", "test")]
    assert [len(split) for split in splits] == [419_577, 23_309, 23_309]
    assert b"".join(splits) == data
    assert splits[0].startswith(b'The "assert" statement')


def test_a_changed_embedded_corpus_is_refused(tmp_path):
    changed = tmp_path / "corpus.txt.gz"
    changed.write_bytes(gzip.compress(gzip.decompress(EMBEDDED_FILE.read_bytes()).replace(b"assert", b"assort", 1)))
    with pytest.raises(ValueError, match="not the pinned .* the file was changed"):
        embedded_text("train", path=changed)


@pytest.mark.parametrize("packed", [False, True])
def test_enwik8_is_split_90_5_5_from_its_file_or_zip(tmp_path, packed):
    data = bytes(range(256)) * 8 + b"tail" * 12  # 2,096 bytes in the file's format: raw bytes
    if packed:
        with zipfile.ZipFile(tmp_path / "enwik8.zip", "w") as archive:
            archive.writestr("enwik8", data)
    else:
        (tmp_path / "enwik8").write_bytes(data)
    held_out = len(data) // 20
    assert enwik8_text(tmp_path, "train", size=len(data)) == data[:len(data) - 2 * held_out]
    assert enwik8_text(tmp_path, "val", size=len(data)) == data[len(data) - 2 * held_out:len(data) - held_out]
    assert enwik8_text(tmp_path, "test", size=len(data)) == data[len(data) - held_out:]


def test_enwik8_missing_or_of_the_wrong_size_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no enwik8 under .* download http://mattmahoney.net/dc/enwik8.zip"):
        enwik8_text(tmp_path, "train")
    (tmp_path / "enwik8").write_bytes(b"x" * 100)
    with pytest.raises(ValueError, match="holds 100 bytes, not 100,000,000"):
        enwik8_text(tmp_path, "train")


@pytest.mark.parametrize("length,streams,segment", [(1000, 7, 16), (65, 4, 16), (17, 16, 4), (2, 1, 3)])
def test_evaluation_streams_score_every_byte_but_the_first_once(length, streams, segment):
    text = bytes((7 * i + i // 5) % 256 for i in range(length))
    sampler = TextStreams(text, streams, segment, pad=True)
    per_stream = [[] for _ in range(streams)]
    inputs = [[] for _ in range(streams)]
    for j in range(sampler.segments_per_stream):
        batch = sampler.sample(range(j * streams, (j + 1) * streams))
        for s in range(streams):
            real = batch.loss_mask[s]
            assert (batch.inputs[s][~real] == PADDING_TOKEN).all()
            per_stream[s] += batch.targets[s][real].tolist()
            inputs[s] += batch.inputs[s][real].tolist()
    assert sum(per_stream, []) == list(text[1:])
    assert sum(inputs, []) == list(text[:-1])


def test_training_streams_are_contiguous_per_rank_and_start_again():
    text = bytes(i % 251 for i in range(10_000))
    for world_size in (1, 2):
        sampler = TextStreams(text, 4, 10, world_size=world_size)
        per_rank = 4 // world_size
        assert sampler.per_stream == 9999 // 4 and sampler.segments_per_stream == 249
        for rank in range(world_size):
            read = []
            for index in range(sampler.segments_per_stream + 1):  # one past the end: the streams start again
                first = (rank + world_size * index) * per_rank
                batch = sampler.sample(range(first, first + per_rank))
                assert sampler.segment_of(batch.episode_ids) == index % sampler.segments_per_stream
                read.append(batch)
            for s in range(per_rank):
                stream = rank * per_rank + s
                start = stream * sampler.per_stream
                whole = torch.cat([batch.inputs[s] for batch in read[:-1]])
                assert whole.tolist() == list(text[start:start + 249 * 10])
                assert torch.cat([batch.targets[s] for batch in read[:-1]]).tolist() == \
                    list(text[start + 1:start + 1 + 249 * 10])
                assert read[-1].inputs[s].tolist() == list(text[start:start + 10])
    with pytest.raises(ValueError, match="fills no segment of 10 bytes in each of 4 streams"):
        TextStreams(text[:39], 4, 10)


def test_the_unigram_baseline_scores_its_closed_form():
    config = load_config(RECIPE, TINY_LM + ["eval.episodes=5"])
    task = TASKS["char_lm"](config, progress=False)
    train_text, test_text = embedded_text("train"), embedded_text("test")
    counts = Counter(train_text)
    expected = -sum(math.log2((counts[b] + 1) / (len(train_text) + 256)) for b in test_text[1:]) / (len(test_text) - 1)
    results = task.test(task.build_learner(config.model), torch.device("cpu"))
    assert results["unigram"]["bpc"] == pytest.approx(expected, rel=1e-6)
    assert results["unigram"]["characters"] == len(test_text) - 1


def test_bpc_with_the_state_carried_equals_one_pass_over_each_stream():
    """Segment by segment with the state carried is the learner read over each whole stream at once."""
    config = load_config(RECIPE, TINY_LM + ["eval.episodes=3", "model.mixer=delta_lstm"])
    task = TASKS["char_lm"](config, progress=False)
    torch.manual_seed(0)
    model = task.build_learner(config.model).double().eval()
    piece = embedded_text("test")[:601]
    sampler = TextStreams(piece, 3, 16, pad=True)
    assert sampler.segments_per_stream == 13
    result = task.evaluate(model, sampler, 3, torch.device("cpu"), "testing")
    text = torch.frombuffer(bytearray(piece), dtype=torch.uint8).long()
    whole = TextStreams(piece, 3, sampler.per_stream, pad=True)  # one segment per stream
    assert whole.segments_per_stream == 1
    batch = whole.sample(range(3))
    with torch.no_grad():
        outputs, _ = model(batch)
    log_probabilities = torch.log_softmax(outputs.double(), -1)
    nats = -log_probabilities.gather(-1, batch.targets[..., None])[..., 0][batch.loss_mask].sum()
    assert batch.targets[batch.loss_mask].tolist() == text[1:].tolist()
    assert result["bpc"] == pytest.approx(nats.item() / (len(text) - 1) / math.log(2), rel=1e-6)


@pytest.mark.parametrize("mixer", sorted(MIXERS))
def test_every_mixers_state_survives_a_checkpoint(mixer, tmp_path):
    """A task may carry a learner's state across batches in its checkpoint: each mixer's state is
    read back (weights_only) and continues the sequence as the state in memory does."""
    batch = toy_episodes()
    model = learner(mixer, batch)
    _, state = model(batch.steps(0, 3))
    save_checkpoint(tmp_path / "state.pt", {"task_state": [{"carried": state}]})
    loaded = load_checkpoint(tmp_path / "state.pt")["task_state"][0]["carried"]
    assert_identical("state", loaded, state)
    rest = batch.steps(3, batch.num_steps)
    assert_close(f"{mixer} continued", model(rest, loaded)[0], model(rest, state)[0], 1e-12)


BAD = [("data.segment_length=0", "data.segment_length must be >= 1"),
       ("data.source=wiki", "Unknown data.source 'wiki'. Valid: embedded, enwik8"),
       ("data.source=enwik8", "data.source=enwik8 needs data.root"),
       ("model.mixer=attention", "model.mixer=attention carries a key/value cache that grows"),
       ("data.segment_length=200000", "train split: a text of 419,577 bytes fills no segment of 200000 bytes")]


@pytest.mark.parametrize("override,message", BAD)
def test_bad_settings_fail_before_any_work(override, message, tmp_path, capsys):
    assert train_main([RECIPE, *TINY_LM, f"train.out_dir={tmp_path}", "train.name=run", override]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message in error, error
    assert not (tmp_path / "run").exists()


def test_enwik8_of_the_wrong_size_fails_before_any_work(tmp_path, capsys):
    (tmp_path / "enwik8").write_bytes(b"<mediawiki>" * 10)
    assert train_main([RECIPE, *TINY_LM, f"train.out_dir={tmp_path}", "train.name=run", "data.source=enwik8",
                       f"data.root={tmp_path}"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "holds 110 bytes, not 100,000,000" in error, error
    assert not (tmp_path / "run").exists()


def test_unigram_probabilities_are_add_one_frequencies():
    model = Unigram(b"aab")
    expected = torch.full((256,), 1 / 259, dtype=torch.float64)
    expected[ord("a")], expected[ord("b")] = 3 / 259, 2 / 259
    assert_close("unigram", model.log_probabilities.double().exp(), expected, 1e-6)
