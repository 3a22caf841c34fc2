"""Declared studies: comparisons of runs that a reviewer can check, multi-seed and selected on
validation, launched on this machine or on a SLURM cluster.

    python -m metafwp.studies list
    python -m metafwp.studies run NAME [--out runs/studies] [--seeds N] [--jobs N]
                                       [--launcher local|submitit-local|slurm] [--steps N --episodes N]
    python -m metafwp.studies report NAME [--out runs/studies]

A study is one module that declares a ``Study`` (its conditions, seeds, budget, validation and
table; ``metafwp.studies.declaration``) and registers it; ``metafwp.studies.protocol`` runs every
study the same way. Each run is an ordinary run of its recipe (resumable, ``evaluate``-able) under
``--out/<study>/``; finished runs and tests are reused.
"""
from metafwp.studies import (algorithmic, bootstrap, char_lm, continual, expressivity, gd_plus_plus,  # noqa: F401
                             irregular, memory, multitask, painter, regression, rtrl)
from metafwp.studies.declaration import STUDIES, Column, Condition, Study, get_study, register_study
from metafwp.studies.protocol import Budget, run_study

__all__ = ["STUDIES", "Budget", "Column", "Condition", "Study", "get_study", "register_study", "run_study"]
