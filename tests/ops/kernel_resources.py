"""Compile every Triton kernel variant for an H100 (sm_90) with ptxas, no GPU needed, and print
each one's register and stack use as JSON lines. Run without TRITON_INTERPRET (test_triton_compiles.py
starts it in a subprocess), since the interpreter replaces the compiler."""
import json
import os
import subprocess
import tempfile

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from metafwp.ops import fused_recurrent, fused_recurrent_fwp, fused_srwm

HALF_INPUTS = {"q", "k", "v", "beta", "g", "do", "x", "dy", "rk", "rv", "rb", "z", "qx", "kx", "vx", "bx"}  # bf16
SCALARS = {"scale": "fp32", "T": "i32", "NB": "i32", "NUM_CHECKPOINTS": "i32"}
CUOBJDUMP = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")


def resources(kernel, constexprs: dict, num_warps: int) -> dict:
    signature = {}
    for name in kernel.arg_names:
        if name in constexprs:
            signature[name] = "constexpr"
        else:
            signature[name] = SCALARS.get(name, "*bf16" if name in HALF_INPUTS else "*fp32")
    positions = {(kernel.arg_names.index(name),): value for name, value in constexprs.items()}
    compiled = triton.compile(ASTSource(fn=kernel, signature=signature, constexprs=positions),
                              target=GPUTarget("cuda", 90, 32), options={"num_warps": num_warps})
    with tempfile.NamedTemporaryFile(suffix=".cubin") as cubin:
        cubin.write(compiled.asm["cubin"])
        cubin.flush()
        usage = subprocess.run([CUOBJDUMP, "-res-usage", cubin.name], capture_output=True, text=True, check=True).stdout
    line = next(part for part in usage.split("\n") if "REG:" in part)
    fields = dict(item.split(":") for item in line.split() if ":" in item)
    return {"kernel": kernel.__name__, **constexprs, "num_warps": num_warps,
            "registers": int(fields["REG"]), "stack": int(fields["STACK"])}


def variants():
    for rule in ("hebbian", "gated_delta", "oja"):
        largest = (64, 128) if rule == "oja" else (128, 128)  # backends.OJA_MAX_STATE
        for K, V in ((15, 40), largest):
            BK, BV, _, num_warps = fused_recurrent.launch_shape(rule, K, V)
            shape = dict(H=4, K=K, V=V, BK=BK, BV=BV, UPDATE=fused_recurrent.UPDATE_KIND[rule], HAS_DECAY=True)
            yield fused_recurrent.fused_recurrent_fwd_kernel, {**shape, "HAS_H0": True}, num_warps
            yield fused_recurrent.fused_recurrent_bwd_reverse_kernel, {**shape, "HAS_DHT": True}, num_warps
            yield fused_recurrent.fused_recurrent_bwd_replay_kernel, {**shape, "HAS_H0": True}, num_warps
    for D in (5, 16, 32, 64):
        BD, num_warps = fused_srwm.launch_shape(D)
        shape = dict(H=4, D=D, BD=BD, C=fused_srwm.CHECKPOINT_EVERY)
        yield fused_srwm.srwm_fwd_kernel, shape, num_warps
        yield fused_srwm.srwm_bwd_kernel, {**shape, "HAS_DWT": True}, num_warps
    for D in (5, 16, 32, 64):
        BD, num_warps = fused_recurrent_fwp.launch_shape(D)
        shape = dict(H=4, D=D, BD=BD, C=fused_recurrent_fwp.CHECKPOINT_EVERY)
        yield fused_recurrent_fwp.delta_rnn_fwd_kernel, shape, num_warps
        yield fused_recurrent_fwp.delta_rnn_bwd_kernel, {**shape, "HAS_DRT": True}, num_warps
        yield fused_recurrent_fwp.recurrent_delta_fwd_kernel, shape, num_warps
        yield fused_recurrent_fwp.recurrent_delta_bwd_kernel, {**shape, "HAS_DWT": True}, num_warps


if __name__ == "__main__":
    for kernel, constexprs, num_warps in variants():
        print(json.dumps(resources(kernel, constexprs, num_warps)), flush=True)
