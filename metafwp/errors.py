"""The mistakes a user can make, each reported as one line by the command-line tools (unexpected
errors keep their traceback)."""
from __future__ import annotations

import sys
from typing import Callable


class ConfigError(ValueError):
    """A recipe or override that does not fit the schema, or a run folder that does not fit the config."""


class DataError(ValueError):
    """A dataset that is missing, garbage or truncated."""


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read (truncated, foreign, or written by another version)."""


class TrainingDiverged(RuntimeError):
    """The loss or the gradients became NaN or infinite."""


class TrainingInterrupted(RuntimeError):
    """SIGTERM or SIGINT stopped training after a checkpoint was written; ``signal_number`` says which."""

    def __init__(self, message: str, signal_number: int):
        super().__init__(message)
        self.signal_number = signal_number


USER_ERRORS = (ConfigError, DataError, CheckpointError, TrainingDiverged, FileNotFoundError)


def run_command(main: Callable[[], object]) -> None:
    """Run a command-line ``main``; a user's mistake (also one raised in a worker process) is one
    line, ``error: ...``, and exit status 2."""
    try:
        main()
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


def whole(name: str, least: int = 1):
    """A parser of ``--name``: a whole number >= ``least``, else a one-line error."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ConfigError(f"--{name} takes a whole number >= {least}, got {text!r}") from None
        if value < least:
            raise ConfigError(f"--{name} must be >= {least}, got {value}")
        return value
    return parse
