"""The batched time loop of the recurrent FWPs: ``scan`` runs a step over the time axis, with
optional recomputation (checkpoints every C steps) and optional compilation.

Each step is a dozen small batched ops, so on CPU a loop's time goes to per-op overhead, forward
and backward. ``compile_loop`` compiles segments of ``COMPILED_SEGMENT`` steps with
``torch.compile`` (inductor), which fuses them (``benchmarks/recurrent_cpu.py`` measures the gain
and checks the compiled loop against the eager one). A new shape compiles first (about a minute
on CPU); later calls reuse it. Where compilation fails (no C++ compiler, an unsupported
platform) the loop runs eagerly after one warning.
"""
from __future__ import annotations

import warnings
from typing import Callable

import torch
from torch.utils.checkpoint import checkpoint, set_checkpoint_early_stop

COMPILED_SEGMENT = 8  # steps per compiled call: 8 was 1.8x faster than compiling one step (fwd+bwd, RDN, CPU)
_COMPILED: dict[Callable, Callable] = {}
_FAILED: set[Callable] = set()


def scan(step, carry: tuple, inputs: tuple, recompute: int | None, constants: tuple = (),
         compile_loop: bool = False):
    """Run ``step(carry, *x_t, *constants) -> (carry, out_t)`` over axis 1 of every ``inputs [B, T, ...]``.

    Returns ``(carry, out [B, T, ...])``. ``recompute=C`` wraps each C steps in a checkpoint, so
    autograd keeps only the carry at their boundaries (and recomputes the rest in backward).
    ``compile_loop`` runs the steps in compiled segments (module docstring).
    """
    run = compiled_steps if compile_loop else run_steps
    if not recompute or not torch.is_grad_enabled():
        return run(step, carry, inputs, constants)
    outputs = []
    # Recomputation runs whole segments: stopping it early works by an exception, which the compiled
    # loop's fallback must not meet.
    with set_checkpoint_early_stop(not compile_loop):
        for start in range(0, inputs[0].shape[1], recompute):
            segment = tuple(x[:, start:start + recompute] for x in inputs)
            *carry, out = checkpoint(_run_segment, run, step, len(carry), len(constants), *carry, *segment,
                                     *constants, use_reentrant=False)
            outputs.append(out)
    return tuple(carry), torch.cat(outputs, 1)


def run_steps(step, carry: tuple, inputs: tuple, constants: tuple):
    """The eager loop: one ``step`` call per time step."""
    outputs = []
    for x_t in zip(*(x.unbind(1) for x in inputs)):
        carry, out = step(carry, *x_t, *constants)
        outputs.append(out)
    return carry, torch.stack(outputs, 1)


def compiled_steps(step, carry: tuple, inputs: tuple, constants: tuple):
    """The loop in segments of ``COMPILED_SEGMENT`` steps, each one call of the compiled ``run_steps``
    (compiled once per ``step``, a module-level function), the last T mod ``COMPILED_SEGMENT`` steps
    eager (so one segment length is ever compiled); all eager where compiling failed."""
    if step not in _COMPILED:
        _COMPILED[step] = torch.compile(run_steps, dynamic=None)
    outputs = []
    for start in range(0, inputs[0].shape[1], COMPILED_SEGMENT):
        segment = tuple(x[:, start:start + COMPILED_SEGMENT] for x in inputs)
        if step in _FAILED or segment[0].shape[1] < COMPILED_SEGMENT:
            carry, out = run_steps(step, carry, segment, constants)
        else:
            try:
                carry, out = _COMPILED[step](step, carry, segment, constants)
            except Exception as error:  # the compiler's errors have many types; the eager loop re-raises real ones
                _FAILED.add(step)
                first_line = str(error).splitlines()[0] if str(error) else ""
                warnings.warn(f"compile_loop: torch.compile failed for {step.__name__} ({type(error).__name__}: "
                              f"{first_line}); running the eager loop instead", RuntimeWarning, stacklevel=3)
                carry, out = run_steps(step, carry, segment, constants)
        outputs.append(out)
    return carry, torch.cat(outputs, 1)


def _run_segment(run, step, num_carry: int, num_constants: int, *tensors):
    inputs_end = len(tensors) - num_constants
    carry, out = run(step, tuple(tensors[:num_carry]), tensors[num_carry:inputs_end], tensors[inputs_end:])
    return (*carry, out)
