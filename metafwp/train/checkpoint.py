"""Checkpoints: a plain dict written atomically (temp file + rename) and read with weights_only=True:
tensors, numbers, strings, containers and the learners' named states (a task may carry a learner's
state across batches), nothing that runs code."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from metafwp.errors import CheckpointError
from metafwp.nn.hybrid_layer import HybridState
from metafwp.ops.recurrent_fwp import DeltaDeltaState, DeltaLSTMState, DeltaMLPState, DeltaRNNState, RecurrentDeltaState

# the NamedTuple states of the sequence mixers; a new one goes here (tests/test_char_lm.py checks every mixer)
LEARNER_STATES = (DeltaRNNState, DeltaLSTMState, RecurrentDeltaState, DeltaMLPState, DeltaDeltaState, HybridState)


def save_checkpoint(path: Path, state: dict) -> None:
    """Write ``state`` to ``path`` so that a crash leaves either the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(state, temporary)
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint's dict; tensors, numbers, strings, containers and ``LEARNER_STATES`` only (no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train first, or check the run folder")
    try:
        with torch.serialization.safe_globals(list(LEARNER_STATES)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file: say which, and keep it
        problem = " ".join(str(error).split())[:300]
        raise CheckpointError(f"{path} is not a readable metafwp checkpoint ({type(error).__name__}: {problem}). "
                              f"Keep the file: a copy still in progress or a full disk can truncate it, and a "
                              f"complete copy (from a backup or the machine that wrote it) may still be read; "
                              f"to train meanwhile, choose another train.name") from None
