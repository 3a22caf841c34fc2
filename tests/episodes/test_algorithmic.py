"""The algorithmic generators against interpreters written here: every program's targets are its
printed values (both semantics), every ListOps expression has its label's value and the requested
depth, every MQAR label is the value paired with its key in the context, every copy episode recalls
its pattern; seeding by episode id, a fixed dataset size, the gap distribution, and bad arguments."""
import math

import pytest
import torch

from episodes.code_execution import LOWEST, NO_OP, CodeExecutionSampler
from episodes.copy_task import BLANK, CopySampler
from episodes.listops import VOCABULARY, ListOpsSampler
from episodes.mqar import MQARSampler


def run_program(words: list[str], semantics: str) -> list[int]:
    """The target of every token: a plain interpreter of the statements, written from the rules."""
    values, targets, i = {}, [], 0

    def execute(i, run, conditional):
        """Run the statement at ``words[i]`` (if ``run``); its targets and the next index."""
        if words[i] == "print":
            printed = values[words[i + 1]] - LOWEST + 1 if run else NO_OP
            return [NO_OP, NO_OP, printed], i + 3
        if words[i + 1] == "=":
            if run and not (conditional and semantics == "authors" and words[i] in values):
                values[words[i]] = int(words[i + 2])
            return [NO_OP] * 4, i + 4
        if run:
            values[words[i]] += 1 if words[i + 1] == "++" else -1
        return [NO_OP] * 3, i + 3

    while i < len(words):
        if words[i] == "if":
            value, constant = values[words[i + 1]], int(words[i + 3])
            holds = value < constant if words[i + 2] == "<" else value > constant
            labels, i = execute(i + 5, holds, True)
            targets += [NO_OP] * 5 + labels
        else:
            labels, i = execute(i, True, False)
            targets += labels
    return targets


@pytest.mark.parametrize("semantics", ["clean", "authors"])
def test_every_program_prints_what_an_interpreter_prints(semantics):
    sampler = CodeExecutionSampler(5, 30, semantics=semantics, seed=3)
    batch = sampler.sample(range(200))
    assert batch.num_classes is None and sampler.num_classes == 26
    prints = 0
    for b in range(200):
        real = batch.inputs[b] >= 0
        words = [sampler.vocabulary[t] for t in batch.inputs[b, real].tolist()]
        assert words[1] == "=" and words[-3] == "print" and words.count(";") == 30
        assert set(words) <= set(sampler.vocabulary)
        assert batch.targets[b, real].tolist() == run_program(words, semantics)
        assert batch.loss_mask[b].tolist() == real.tolist()  # every position is scored, as the authors
        prints += int((batch.targets[b] != NO_OP).sum())
    assert prints > 200 * 5


def test_the_two_semantics_differ_only_in_conditional_assignments_to_defined_variables():
    words = "x = 3 ; if x < 5 : x = 9 ; print x ;".split()
    assert run_program(words, "clean")[-1] == 9 - LOWEST + 1
    assert run_program(words, "authors")[-1] == 3 - LOWEST + 1
    clean, authors = (CodeExecutionSampler(3, 40, semantics=s, seed=1).sample(range(100)) for s in ("clean", "authors"))
    assert torch.equal(clean.inputs, authors.inputs) and not torch.equal(clean.targets, authors.targets)


def test_episodes_depend_on_their_id_alone_and_a_dataset_size_repeats_them():
    sampler = CodeExecutionSampler(3, 20, seed=7)
    batch = sampler.sample(torch.tensor([5, 9]))
    alone = sampler.sample(torch.tensor([9]))
    T = int((alone.inputs[0] >= 0).sum())
    assert torch.equal(batch.inputs[1, :T], alone.inputs[0, :T]) and (batch.inputs[1, T:] < 0).all()
    fixed = CodeExecutionSampler(3, 20, dataset_size=10, seed=7).sample(torch.tensor([3, 13, 23, 4]))
    assert torch.equal(fixed.inputs[0], fixed.inputs[1]) and torch.equal(fixed.inputs[0], fixed.inputs[2])
    assert not torch.equal(fixed.inputs[0], fixed.inputs[3])


def evaluate_listops(words: list[str]) -> tuple[int, int]:
    """``(value, operator depth)`` of a prefix expression: a stack evaluator."""
    stack, depth, deepest = [], 0, 0
    for word in words:
        if word.startswith("["):
            stack.append((word, []))
            depth += 1
            deepest = max(deepest, depth)
        elif word == "]":
            operator, arguments = stack.pop()
            depth -= 1
            value = {"[MIN": min, "[MAX": max, "[FIRST": lambda a: a[0]}[operator](arguments)
            if not stack:
                return value, deepest
            stack[-1][1].append(value)
        else:
            stack[-1][1].append(int(word))
    raise AssertionError("unbalanced expression")


@pytest.mark.parametrize("depth", [1, 3, 10])
def test_every_listops_expression_has_its_label_and_the_requested_depth(depth):
    sampler = ListOpsSampler(depth, seed=2)
    batch = sampler.sample(range(60))
    for b in range(60):
        real = batch.inputs[b] >= 0
        words = [VOCABULARY[t] for t in batch.inputs[b, real].tolist()]
        value, deepest = evaluate_listops(words)
        last = int(real.sum()) - 1
        assert deepest == depth and batch.targets[b, last] == value
        assert batch.loss_mask[b].nonzero().flatten().tolist() == [last]  # read at the last real token
        assert all(2 <= n <= 5 for n in argument_counts(words))


def argument_counts(words: list[str]) -> list[int]:
    counts, stack = [], []
    for word in words:
        if stack and word != "]":
            stack[-1] += 1
        if word.startswith("["):
            stack.append(0)
        elif word == "]":
            counts.append(stack.pop())
    return counts


def test_every_mqar_label_is_the_value_paired_with_its_key():
    sampler = MQARSampler(vocab_size=128, length=64, num_pairs=8, seed=4)
    batch = sampler.sample(range(300))
    N = 8
    for b in range(300):
        tokens = batch.inputs[b].tolist()
        keys, values = tokens[0:2 * N:2], tokens[1:2 * N:2]
        assert len(set(keys)) == N and all(1 <= k < 64 for k in keys) and all(64 <= v < 128 for v in values)
        scored = batch.loss_mask[b].nonzero().flatten().tolist()
        assert len(scored) == N and all(p >= 2 * N and (p - 2 * N) % 2 == 0 for p in scored)
        for position in scored:
            assert batch.targets[b, position] == values[keys.index(tokens[position])]
        assert sorted(tokens[p] for p in scored) == sorted(keys)  # each key queried once


def test_an_mqar_dataset_size_repeats_its_episodes():
    fixed = MQARSampler(128, 32, 4, dataset_size=10, seed=2).sample(torch.tensor([3, 13, 4]))
    fresh = MQARSampler(128, 32, 4, seed=2).sample(torch.tensor([3, 13]))
    assert torch.equal(fixed.inputs[0], fixed.inputs[1]) and torch.equal(fixed.targets[0], fixed.targets[1])
    assert torch.equal(fixed.inputs[0], fresh.inputs[0]) and not torch.equal(fresh.inputs[0], fresh.inputs[1])
    assert not torch.equal(fixed.inputs[0], fixed.inputs[2]) and fixed.episode_ids.tolist() == [3, 13, 4]


def test_mqar_gaps_follow_the_power_law():
    """With one pair, the gap's distribution is exactly proportional to i^(a - 1): the first gap's
    frequency matches within 4 standard errors, and gaps fall off as 1/i."""
    sampler = MQARSampler(vocab_size=200, length=42, num_pairs=1, power_a=0.01, seed=9)
    n, space = 20000, 20
    gaps = (sampler.sample(range(n)).loss_mask.nonzero()[:, 1] - 2) // 2
    weights = [(i + 1) ** (0.01 - 1) for i in range(space)]
    p0 = weights[0] / sum(weights)
    frequency = (gaps == 0).double().mean().item()
    assert abs(frequency - p0) < 4 * math.sqrt(p0 * (1 - p0) / n)
    assert (gaps == 1).sum() > (gaps == 9).sum() > 0


@pytest.mark.parametrize("make,message", [
    (lambda: MQARSampler(512, 63, 4), "length must be even"),
    (lambda: MQARSampler(512, 64, 17), "17 pairs need 2 N \\+ 2 N = 68 positions"),
    (lambda: MQARSampler(64, 64, 4), "vocab_size must be more than length=64"),
    (lambda: ListOpsSampler(20), "depth must be an int in \\[1, 19\\]"),
    (lambda: ListOpsSampler(0), "depth must be an int in \\[1, 19\\]"),
    (lambda: CodeExecutionSampler(0), "num_variables must be an int in \\[1, 5\\]"),
    (lambda: CodeExecutionSampler(6), "num_variables must be an int in \\[1, 5\\]"),
    (lambda: CodeExecutionSampler(3, 1), "num_statements must be an int >= 2"),
    (lambda: CodeExecutionSampler(3, 10, semantics="python"), "Unknown semantics 'python'"),
])
def test_bad_arguments_name_the_fix(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_every_copy_episode_recalls_its_pattern_bit_by_bit():
    """Both bit values are recalled and scored (the authors' vocabulary dropped one of them)."""
    sampler = CopySampler(12, seed=5)
    batch = sampler.sample(range(400))
    assert batch.inputs.shape == (400, 24)
    recalled = []
    for b in range(400):
        tokens = batch.inputs[b].tolist()
        n = tokens.index(BLANK) if BLANK in tokens else 12
        assert 1 <= n <= 12 and all(t == BLANK for t in tokens[n:])
        assert batch.targets[b].tolist() == [BLANK] * n + tokens[:n] + [BLANK] * (24 - 2 * n)
        assert batch.loss_mask[b].tolist() == [False] * n + [True] * n + [False] * (24 - 2 * n)
        recalled += tokens[:n]
    assert {0, 1} == set(recalled) and abs(sum(recalled) / len(recalled) - 0.5) < 0.05
    assert CopySampler(12, dataset_size=3, seed=5).sample([1, 4]).inputs.unique(dim=0).shape[0] == 1
    with pytest.raises(ValueError, match="length must be an int >= 1"):
        CopySampler(0)
