"""Character-level language modelling (the setting of Irie & Schmidhuber's fast weights in DCT space):
predict each byte of a text from the bytes before it, scored in bits per character (BPC).

Training reads ``train.batch_size`` contiguous streams of the training split in segments of
``data.segment_length`` bytes; the learner's state after a segment is carried into the next one,
cut from the graph (truncated backpropagation), and saved in the checkpoint, so a resumed run goes
on exactly. When the streams are read to their end they start again, and so does the state.
Validation and the test read the whole held-out split as ``eval.val_episodes`` / ``eval.episodes``
streams (an episode is a stream here), each from a zero state carried to its end, and score every
byte but the first once. The ``unigram`` baseline
predicts every byte from the training split's byte frequencies.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from episodes.loader import distributed_rank
from episodes.text import TextStreams, embedded_text, enwik8_text
from metafwp.errors import ConfigError, DataError
from metafwp.models import LearnerInputs
from metafwp.plots import plot_bits_per_character
from metafwp.tasks.base import (LEARNER, GeneratorData, Scores, Task, add_tallies, autocast, confidence_interval,
                                detach_state)

SOURCES = ("embedded", "enwik8")
VOCAB = 256  # bytes
GROWING_STATES = ("attention",)  # mixers whose carried state grows with the text read


@dataclass
class CharLMData(GeneratorData):
    """``source``: ``embedded`` (the Python reference shipped with the package) or ``enwik8`` (under
    ``root``); ``segment_length`` bytes per segment."""
    source: str = "embedded"
    root: Optional[str] = None
    segment_length: int = 128
    num_workers: int = 0

    DECIDING_KEYS: ClassVar[tuple[str, ...]] = ("source",)

    def unread_keys(self) -> set[str]:
        return {"root"} if self.source == "embedded" else set()

    def check(self) -> None:
        if self.source not in SOURCES:
            raise ConfigError(f"Unknown data.source {self.source!r}. Valid: {', '.join(SOURCES)}")
        if self.source == "enwik8" and self.root is None:
            raise ConfigError("data.source=enwik8 needs data.root, the folder that holds enwik8 or enwik8.zip")
        if self.segment_length < 1:
            raise ConfigError(f"data.segment_length must be >= 1 (bytes per training segment), got "
                              f"{self.segment_length}")


class Unigram(nn.Module):
    """Every byte predicted from the training split's byte frequencies (add-one smoothed), with no
    context: ``forward(batch, state=None) -> (log-probabilities [B, T, 256], None)``."""

    def __init__(self, text: bytes):
        super().__init__()
        counts = torch.bincount(torch.frombuffer(bytearray(text), dtype=torch.uint8).long(), minlength=VOCAB)
        probabilities = (counts.double() + 1) / (counts.sum() + VOCAB)
        self.register_buffer("log_probabilities", probabilities.log().float())

    def forward(self, batch, state=None):
        B, T = batch.inputs.shape
        return self.log_probabilities.expand(B, T, VOCAB), None


class CharLMTask(Task):
    """``task: char_lm``."""

    name = "char_lm"
    DataConfig = CharLMData
    metric = "bpc"
    higher_is_better = False
    inputs, targets, sequential = "tokens", "classes", True
    BASELINES = ("unigram",)

    def __init__(self, config, progress: bool = True):
        self.texts: dict[str, bytes] = {}
        self.carried = None  # the learner's state after the last training segment, cut from the graph
        super().__init__(config, progress)

    @classmethod
    def check_config(cls, config) -> None:
        super().check_config(config)
        mixers = getattr(config.model, "mixer", [])
        for mixer in [mixers] if isinstance(mixers, str) else mixers:
            if mixer in GROWING_STATES:
                raise ConfigError(f"model.mixer={mixer} carries a key/value cache that grows with every segment of "
                                  f"the text; use window_attention (a bounded window) or a fast-weight mixer")

    @classmethod
    def default_baselines(cls, config) -> list[str]:
        return ["unigram"]

    @classmethod
    def chance(cls, config) -> float:
        """A uniform guess over the 256 byte values: 8 bits."""
        return math.log2(VOCAB)

    @classmethod
    def test_set_name(cls, config) -> str:
        return f"{config.data.source}_test"

    def text(self, split: str) -> bytes:
        """``split`` of the recipe's source, read once."""
        if split not in self.texts:
            try:
                self.texts[split] = (embedded_text(split) if self.data.source == "embedded"
                                     else enwik8_text(self.data.root, split))
            except ValueError as error:
                raise DataError(str(error)) from None
        return self.texts[split]

    def streams(self, split: str, streams: int, **options) -> TextStreams:
        try:
            return TextStreams(self.text(split), streams, self.data.segment_length, **options)
        except ValueError as error:
            raise ConfigError(f"{split} split: {error}") from None

    def train_episodes(self) -> TextStreams:
        return self.streams("train", self.config.train.batch_size, world_size=distributed_rank()[1])

    def validation_episodes(self) -> TextStreams:
        return self.streams("val", self.config.eval.val_episodes, pad=True)

    def test_episodes(self) -> dict:
        return {"": (self.streams("test", self.config.eval.episodes, pad=True), {})}

    def learner_inputs(self) -> LearnerInputs:
        return LearnerInputs("tokens", (VOCAB,), VOCAB, 0, "classes")

    def objective(self, model: nn.Module, batch) -> Scores:
        """Cross-entropy of every byte of ``batch`` read from a zero state; tallies ``loss_sum`` (nats)
        and ``characters``."""
        return self.scores(model(batch)[0], batch)

    def scores(self, outputs: torch.Tensor, batch) -> Scores:
        mask = batch.loss_mask
        per_step = F.cross_entropy(outputs.flatten(0, 1).float(), batch.targets.flatten(), reduction="none")
        per_stream = (per_step.view_as(mask) * mask).sum(1)
        characters = mask.sum(1)
        loss_sum = per_stream.sum()
        sums = {"loss_sum": loss_sum.detach(), "characters": characters.sum()}
        return Scores(loss_sum / characters.sum(), sums, per_stream.detach() / characters.clamp_min(1) / math.log(2),
                      characters.sum())

    def summarise(self, sums: dict[str, torch.Tensor]) -> dict:
        """``loss`` (nats per byte) and ``bpc`` (bits per byte)."""
        loss = (sums["loss_sum"] / sums["characters"]).item()
        return {"loss": loss, "bpc": loss / math.log(2)}

    def training_step(self, trainer, batch) -> Scores:
        """One segment of every stream from the carried state; the state after it is kept, cut from
        the graph, for the next segment (and dropped when the streams start again)."""
        if self.sampler.segment_of(batch.episode_ids) == 0:
            self.carried = None
        with trainer.autocast():
            outputs, state = trainer.models[LEARNER](batch, self.carried)
            scores = self.scores(outputs, batch)
        trainer.step(scores.loss, terms=scores.loss_terms)
        self.carried = detach_state(state)
        return scores

    def state_dict(self) -> dict:
        return {"carried": self.carried}

    def load_state_dict(self, state: dict) -> None:
        self.carried = state["carried"]

    @torch.no_grad()
    def evaluate(self, model: nn.Module, sampler: TextStreams, num_episodes: int, device: torch.device,
                 desc: str) -> dict:
        """BPC of ``model`` on the whole split of ``sampler``, read as its ``num_episodes`` streams in one
        batch: each from a zero state, its state carried from segment to segment. ``bpc`` counts every
        scored byte once; ``ci95`` is 1.96 standard errors of the streams' BPCs."""
        if sampler.streams != num_episodes:
            raise ValueError(f"{desc}: the sampler reads {sampler.streams} streams, not {num_episodes}")
        was_training = model.training
        model.to(device).eval()
        state, sums = None, None
        bits, characters = (torch.zeros(sampler.streams, dtype=torch.float64) for _ in range(2))
        for segment in tqdm(range(sampler.segments_per_stream), desc=desc, unit="segment",
                            disable=not self.progress, leave=False):
            batch = sampler.sample(range(segment * sampler.streams, (segment + 1) * sampler.streams)).to(device)
            with autocast(device, self.config.train.bf16):
                outputs, state = model(batch, state)
            scores = self.scores(outputs, batch)
            sums = add_tallies(sums, scores.sums)
            scored = batch.loss_mask.sum(1).double().cpu()
            bits += scores.per_episode.double().cpu() * scored
            characters += scored
        model.train(was_training)
        record = self.summarise(sums)
        _, ci95 = confidence_interval((bits / characters)[characters > 0])
        record.update(ci95=ci95, characters=int(characters.sum()), episodes=sampler.streams)
        return record

    def baseline_learners(self, model: nn.Module, device: torch.device) -> dict[str, tuple[nn.Module, dict]]:
        if "unigram" not in self.baselines(self.config):
            return {}
        return {"unigram": (Unigram(self.text("train")).to(device), {})}

    def write_figures(self, results: dict[str, dict], run_dir: Path, title: str) -> list[Path]:
        return [plot_bits_per_character(results, run_dir / "bits_per_character.png", title=title)]
