"""Code execution (Fan et al. 2020; Irie et al. 2021): read a random straight-line program token by
token and output, at the ``;`` of every executed ``print``, the printed value.

A program has ``num_statements`` statements over ``num_variables`` variables (x, y, z, a, b). The
first is an assignment and the last a print; every other is, uniformly, one of

- ``x = 7 ;``: assign a value 0-9 to any variable (it becomes defined);
- ``x ++ ;`` / ``x -- ;``: step a defined variable by one, the direction drawn uniformly and flipped
  when the step would leave [-8, 16];
- ``print x ;``: the target at ``;`` is the variable's value;
- ``if x < 3 : <statement>``: a defined variable, ``<`` or ``>``, a constant 0-9, then one of the
  three statements above, executed only when the condition holds (a print whose condition fails
  prints nothing).

``semantics="clean"`` (Default) executes a conditional assignment whenever its condition holds.
``semantics="authors"`` reproduces the authors' generator, in which a conditional assignment to a
variable that is already defined is never executed, even when its condition holds.

Targets are aligned token by token: ``NO_OP`` everywhere but the ``;`` of an executed print, which
carries the value's class ``value + 9`` (values -8..16 are classes 1..25). The authors score every
position; their three metrics are the whole sequence right, the no-op positions right, and the
printed values right.
"""
from __future__ import annotations

import torch

from episodes.batch import EpisodeBatch, token_episodes
from episodes.sampling import as_episode_ids, make_rng

VARIABLES = ("x", "y", "z", "a", "b")
KEYWORDS = ("=", "++", "--", ";", "print", "if", "<", ">", ":")
LOWEST, HIGHEST = -8, 16  # the values a variable may take
NO_OP = 0
SEMANTICS = ("clean", "authors")
STREAM_PROGRAM = 50


def value_class(value: int) -> int:
    """The target class of a printed ``value``."""
    return value - LOWEST + 1


class CodeExecutionSampler:
    """Programs as EpisodeBatches of token ids.

    Args:
        num_variables: 1 to 5 (the authors: 3 or 5).
        num_statements: statements per program, >= 2 (the authors: 100, about 460 tokens).
        semantics: ``clean`` or ``authors`` (see the module docstring).
        dataset_size: with an int N, episode ``i`` is program ``i mod N``: a fixed training set of N
            programs, as the authors' 10,000. Default: None, a fresh program per episode id.
        seed, generator: the randomness. Default: seed 0.

    ``vocabulary`` lists the input tokens (id = index), ``num_classes`` the target classes (26:
    ``NO_OP`` and the values -8..16). ``sample(ids)`` right-pads to the batch's longest program.
    """

    def __init__(self, num_variables: int = 3, num_statements: int = 100, *, semantics: str = "clean",
                 dataset_size: int | None = None, seed: int | None = None, generator: torch.Generator | None = None):
        if not isinstance(num_variables, int) or not 1 <= num_variables <= len(VARIABLES):
            raise ValueError(f"num_variables must be an int in [1, {len(VARIABLES)}], got {num_variables!r}")
        if not isinstance(num_statements, int) or num_statements < 2:
            raise ValueError(f"num_statements must be an int >= 2 (an assignment, then a print), "
                             f"got {num_statements!r}")
        if semantics not in SEMANTICS:
            raise ValueError(f"Unknown semantics {semantics!r}. Valid: {', '.join(SEMANTICS)}")
        if dataset_size is not None and (not isinstance(dataset_size, int) or dataset_size < 1):
            raise ValueError(f"dataset_size must be an int >= 1 or None, got {dataset_size!r}")
        self.num_variables, self.num_statements = num_variables, num_statements
        self.semantics, self.dataset_size = semantics, dataset_size
        self.vocabulary = [*VARIABLES[:num_variables], *map(str, range(10)), *KEYWORDS]
        self.token_id = {token: i for i, token in enumerate(self.vocabulary)}
        self.rng = make_rng(seed, generator)

    @property
    def vocab_size(self) -> int:
        return len(self.vocabulary)

    @property
    def num_classes(self) -> int:
        return HIGHEST - LOWEST + 2

    def state_dict(self) -> dict:
        """What fixes episode ``i``; equal state dicts give equal episodes."""
        return {"sampler": type(self).__name__, "num_variables": self.num_variables,
                "num_statements": self.num_statements, "semantics": self.semantics,
                "dataset_size": self.dataset_size, "seed": self.rng.seed}

    def program(self, random) -> tuple[list[str], list[int]]:
        """One program from ``random`` (a ``random.Random``): its tokens and aligned targets."""
        values: dict[str, int] = {}
        tokens, targets = [], []

        def emit(words: list[str], target_at_end: int = NO_OP):
            tokens.extend(words)
            targets.extend([NO_OP] * (len(words) - 1) + [target_at_end])

        def statement(kind: str, execute: bool, conditional: bool):
            if kind == "assign":
                variable, value = random.choice(VARIABLES[:self.num_variables]), random.randrange(10)
                if execute and not (conditional and self.semantics == "authors" and variable in values):
                    values[variable] = value
                emit([variable, "=", str(value), ";"])
            elif kind == "step":
                variable = random.choice(sorted(values))
                up = random.random() < 0.5
                if (up and values[variable] + 1 > HIGHEST) or (not up and values[variable] - 1 < LOWEST):
                    up = not up
                if execute:
                    values[variable] += 1 if up else -1
                emit([variable, "++" if up else "--", ";"])
            else:  # print
                variable = random.choice(sorted(values))
                emit(["print", variable, ";"], value_class(values[variable]) if execute else NO_OP)

        for index in range(self.num_statements):
            kind = ("assign" if index == 0 else "print" if index == self.num_statements - 1 else
                    random.choice(("assign", "step", "print", "if")))
            if kind != "if":
                statement(kind, True, False)
                continue
            variable, less, constant = random.choice(sorted(values)), random.random() < 0.5, random.randrange(10)
            emit(["if", variable, "<" if less else ">", str(constant), ":"])
            holds = values[variable] < constant if less else values[variable] > constant
            statement(random.choice(("assign", "step", "print")), holds, True)
        return tokens, targets

    def sample(self, episode_ids) -> EpisodeBatch:
        ids = as_episode_ids(episode_ids)
        programs = ids if self.dataset_size is None else ids % self.dataset_size
        tokens, targets = [], []
        for random in self.rng.python_randoms(programs, STREAM_PROGRAM):
            words, labels = self.program(random)
            tokens.append([self.token_id[word] for word in words])
            targets.append(labels)
        return token_episodes(ids, tokens, targets, [[True] * len(labels) for labels in targets])
