"""What a study is: its conditions (a recipe with overrides, and the settings chosen on validation),
its seeds and budget, how it validates, and the columns of its table. A study module declares one
``Study`` and registers it; the protocol (``metafwp.studies.protocol``) runs and reports any of them
the same way."""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import product
from typing import Callable

from metafwp.errors import ConfigError

SELECTION_RULE = ("every run keeps best.pt, its checkpoint with the best validation score; per condition, the "
                  "grid setting with the best mean over seeds of those scores is selected; only the selected "
                  "runs are tested, once, on best.pt")


@dataclass(frozen=True)
class Condition:
    """One row of a study's table.

    Args:
        label: the row's name.
        recipe: the stem of a file in ``recipes/``.
        overrides: ``key=value`` settings on top of the recipe.
        grid: ``(key, values)`` pairs chosen on validation (every combination is a candidate).
    """
    label: str
    recipe: str
    overrides: tuple[str, ...] = ()
    grid: tuple[tuple[str, tuple], ...] = ()

    def settings(self) -> list[tuple[str, ...]]:
        """Every candidate's grid overrides (``[()]`` without a grid)."""
        keys = [key for key, _ in self.grid]
        return [tuple(f"{key}={value}" for key, value in zip(keys, values))
                for values in product(*(values for _, values in self.grid))]


STUDY_FOLDER = "{study}"  # in a condition's overrides: the study's folder, where its requirements are


@dataclass(frozen=True)
class Requirement:
    """A run the conditions read (e.g. the classifier whose features a GAN is measured on): trained
    and tested once, before them, as ``<study folder>/<name>`` (reused when finished); a condition
    names it in its overrides as ``{study}/<name>``.

    Args:
        name: its folder under the study's.
        recipe: the stem of a file in ``recipes/``.
        overrides: ``key=value`` settings on top of the recipe.
    """
    name: str
    recipe: str
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class Column:
    """A column of the table: ``read(results, learner)`` is its value for one tested run, from the
    ``evaluate`` results (``{result name: result}``) and the run's learner label."""
    name: str
    read: Callable[[dict, str], float]


ACCURACY = Column("accuracy", lambda results, learner: results[learner]["accuracy"])   # the learner's test accuracy


@dataclass(frozen=True)
class Study:
    """A declared comparison.

    Args:
        name: what ``python -m metafwp.studies run NAME`` takes.
        summary: one line for ``list``.
        conditions: the rows.
        columns: what each tested run contributes to its row (mean and 95 % CI over seeds).
        validation: overrides every run gets so that it validates (held-out classes or fresh tasks,
            ``eval.val_every``).
        seeds: training seeds 0 .. seeds - 1 of every candidate; test episodes are the same for all.
        steps: training steps of every run (None: each recipe's).
        episodes: test episodes (None: the recipes').
        figures: ``figures(study, report, folder) -> [paths]`` beside the table (optional).
        notes: what the reader must know beside the table (where it departs from the paper).
        requires: runs trained before the conditions, which read them (``Requirement``).
    """
    name: str
    summary: str
    conditions: tuple[Condition, ...]
    columns: tuple[Column, ...]
    validation: tuple[str, ...]
    seeds: int = 3
    steps: int | None = None
    episodes: int | None = None
    figures: Callable | None = None
    notes: str = ""
    selection: str = field(default=SELECTION_RULE)
    requires: tuple[Requirement, ...] = ()


STUDIES: dict[str, Study] = {}


def register_study(study: Study) -> Study:
    """Add ``study`` to ``STUDIES`` under its name (a name already taken is an error)."""
    if study.name in STUDIES:
        raise ValueError(f"study {study.name!r} is registered already")
    STUDIES[study.name] = study
    return study


def get_study(name: str) -> Study:
    if name not in STUDIES:
        raise ConfigError(f"Unknown study {name!r}. Valid: {', '.join(STUDIES)} (python -m metafwp.studies list)")
    return STUDIES[name]
