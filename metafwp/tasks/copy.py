"""The copy task (Irie, Gopalakrishnan & Schmidhuber 2024): read a bit pattern of up to ``length``
bits, then recall it while blanks are read; scored on every recalled bit, and by sequence (every
recalled bit right). Three ways to train, ``data.update``:

- ``bptt``: backpropagation through the whole sequence, one optimiser step per batch;
- ``tbptt``: truncated, an optimiser step after each window of ``data.window`` tokens, the state
  carried on but cut from the graph;
- ``rtrl``: fully online real-time recurrent learning of an e-LSTM learner (``model.mixer=elstm``,
  one e-LSTM layer): an optimiser step after every scored token, the sensitivities carried on.
  The e-LSTM's parameters and the stateless layers above it get exact gradients; the layers below
  it (the embedding, its input norm) get them through the current token only, as in the paper.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from episodes import EpisodeBatch
from episodes.copy_task import CopySampler
from metafwp.errors import ConfigError
from metafwp.nn.elstm_layer import ELSTMLayer, ELSTMRTRL
from metafwp.plots import plot_accuracy_bars
from metafwp.tasks.base import LEARNER, GeneratorTask, Scores, detach_state

UPDATES = ("bptt", "tbptt", "rtrl")


@dataclass
class CopyData:
    """Patterns of 1 .. ``length`` bits (episodes of 2 ``length`` tokens); ``dataset_size`` fixes
    the training set (Default: a fresh episode per step); ``update`` and ``window`` say how it trains."""
    length: int = 50
    dataset_size: Optional[int] = None
    update: str = "bptt"
    window: int = 10
    num_workers: int = 0

    DECIDING_KEYS: ClassVar[tuple[str, ...]] = ("update",)
    TEST_KEYS: ClassVar[tuple[str, ...]] = ()

    def unread_keys(self) -> set[str]:
        return set() if self.update == "tbptt" else {"window"}

    def check(self) -> None:
        if self.update not in UPDATES:
            raise ConfigError(f"Unknown data.update {self.update!r}. Valid: {', '.join(UPDATES)}")
        if self.length < 1:
            raise ConfigError(f"data.length must be >= 1 (the longest pattern), got {self.length}")
        if self.window < 1:
            raise ConfigError(f"data.window must be >= 1 (tokens per truncated update), got {self.window}")


class CopyTask(GeneratorTask):
    """``task: copy``."""

    name = "copy"
    DataConfig = CopyData

    @classmethod
    def check_config(cls, config) -> None:
        super().check_config(config)
        if config.data.update != "rtrl":
            return
        model = config.model
        mixers = ([] if model.kind != "sequence" else
                  [model.mixer] * model.num_layers if isinstance(model.mixer, str) else model.mixer)
        if "elstm" not in mixers:
            raise ConfigError(f"data.update=rtrl needs an e-LSTM learner (model.mixer=elstm): "
                              f"{getattr(model, 'mixer', model.kind)!r} has no RTRL form here")
        if mixers.count("elstm") > 1:
            raise ConfigError(f"data.update=rtrl trains one e-LSTM layer online; model has {mixers.count('elstm')} "
                              f"(set model.num_layers=1, or a mixer list with one elstm)")

    @classmethod
    def chance(cls, config) -> float:
        """Patterns recalled whole by guessing every bit: ``100 * mean_s 2^-s`` over the lengths
        1 .. L, drawn uniformly: ``100 (1 - 2^-L) / L`` %."""
        return 100 * (1 - 2.0 ** -config.data.length) / config.data.length

    def make_sampler(self, seed: int, dataset_size: int | None = None) -> CopySampler:
        return CopySampler(self.data.length, dataset_size=dataset_size, seed=seed)

    def objective(self, model: nn.Module, batch: EpisodeBatch) -> Scores:
        """Cross-entropy on the recalled bits; tallies ``loss_sum``, ``bits``, ``correct_bits``,
        ``sequences`` and ``correct_sequences`` (every recalled bit right)."""
        outputs, _ = model(batch)
        return self.scores(outputs, batch)

    def scores(self, outputs: torch.Tensor, batch: EpisodeBatch) -> Scores:
        mask = batch.loss_mask
        per_step = F.cross_entropy(outputs.flatten(0, 1).float(), batch.targets.flatten(), reduction="none")
        loss_sum = (per_step.view_as(mask) * mask).sum()
        right = (outputs.detach().argmax(-1) == batch.targets) | ~mask
        whole = right.all(1).double()
        sums = {"loss_sum": loss_sum.detach(), "bits": mask.sum(), "correct_bits": (right & mask).sum(),
                "sequences": torch.tensor(float(batch.batch_size)), "correct_sequences": whole.sum()}
        return Scores(loss_sum / mask.sum(), sums, whole, mask.sum())

    def summarise(self, sums: dict[str, torch.Tensor]) -> dict:
        """``loss`` per bit, ``accuracy`` (% of sequences recalled whole), ``bit_accuracy``."""
        return {"loss": (sums["loss_sum"] / sums["bits"]).item(),
                "accuracy": 100 * (sums["correct_sequences"] / sums["sequences"]).item(),
                "bit_accuracy": 100 * (sums["correct_bits"] / sums["bits"]).item()}

    def training_step(self, trainer, batch: EpisodeBatch) -> Scores:
        if self.data.update == "bptt":
            return super().training_step(trainer, batch)
        model, outputs, state = trainer.models[LEARNER], [], None
        span = self.data.window if self.data.update == "tbptt" else 1
        (layer,) = [m for m in model.modules() if isinstance(m, ELSTMLayer)] if self.data.update == "rtrl" else [None]
        if layer is not None:
            layer.rtrl = ELSTMRTRL(layer, batch.batch_size)
        try:
            for start in range(0, batch.num_steps, span):
                piece = batch.steps(start, min(start + span, batch.num_steps))
                with trainer.autocast():
                    out, state = model(piece, state)
                outputs.append(out.detach())
                scored = piece.loss_mask.sum()
                if trainer.total(scored) > 0:  # every rank steps where any scores, so their collectives match
                    per_step = F.cross_entropy(out.flatten(0, 1).float(), piece.targets.flatten(), reduction="none")
                    trainer.step((per_step.view_as(piece.loss_mask) * piece.loss_mask).sum() / scored.clamp_min(1),
                                 terms=scored, after_backward=None if layer is None else layer.rtrl.accumulate)
                state = detach_state(state)
        finally:
            if layer is not None:
                layer.rtrl = None
        with torch.no_grad():
            return self.scores(torch.cat(outputs, 1), batch)

    def write_figures(self, results: dict[str, dict], run_dir: Path, title: str) -> list[Path]:
        names = list(results)
        return [plot_accuracy_bars(names, [results[n]["bit_accuracy"] for n in names], [0.0] * len(names),
                                   run_dir / "bit_accuracy.png", chance=50.0, title=title,
                                   ylabel="recalled bits right (%)")]
