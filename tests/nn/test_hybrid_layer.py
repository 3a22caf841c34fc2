"""The hybrid quadratic-linear layer against a float64 loop written from its equations (every
variant, mixing, the short convolution, both delayed rates; outputs and gradients), the exact
reductions (a window over the whole sequence, a window of one, one chunk), calls in pieces with the
state carried, and bad input."""
import pytest
import torch
import torch.nn.functional as F

from metafwp.errors import ConfigError
from metafwp.nn import SlidingWindowAttentionLayer
from metafwp.nn.fast_weight_layer import silu_l2
from metafwp.nn.hybrid_layer import HybridQLTLayer
from metafwp.ops import delta_rule
from metafwp.tasks import TASKS
from metafwp.train import load_config
from tests.helpers import ROOT, assert_close, run_in_pieces

D_MODEL, HEADS = 8, 2


def layer_of(seed=0, **options):
    torch.manual_seed(seed)
    layer = HybridQLTLayer(D_MODEL, HEADS, **options).double()
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    return layer


def x_of(T, seed=1):
    return torch.randn(2, T, D_MODEL, generator=torch.Generator().manual_seed(seed), dtype=torch.float64,
                       requires_grad=True)


def layer_by_hand(layer, x):
    """The layer, step by step from its equations: returns (y, o_fw, o_kv)."""
    B, T, _ = x.shape
    H, D, C = layer.num_heads, layer.head_dim, layer.window
    raw = x @ layer.qkv_proj.weight.T                                   # [B, T, 3 H D]
    if layer.conv is not None:
        w = layer.conv.weight[:, 0]                                     # [3 H D, 4]: w[:, 3] weighs step t itself
        raw = torch.stack([sum(w[:, 3 - i] * raw[:, t - i] for i in range(4) if t - i >= 0) for t in range(T)], 1)
    q, k, v = raw.view(B, T, 3, H, D).unbind(2)
    v = F.silu(v)
    beta = torch.sigmoid(x @ layer.beta_proj.weight.T) * (2 if layer.beta_activation == "2sigmoid" else 1)
    fq, fk = F.normalize(F.silu(q), dim=-1), F.normalize(F.silu(k), dim=-1)
    o_fw = torch.zeros(B, T, H, D, dtype=x.dtype)
    o_kv = torch.zeros(B, T, H, D, dtype=x.dtype)
    for b in range(B):
        for h in range(H):
            S = torch.zeros(D, D, dtype=x.dtype)

            def write(s, rate):
                return S + rate * torch.outer(fk[b, s, h], v[b, s, h] - S.T @ fk[b, s, h])

            for t in range(T):
                if layer.variant == "synchronous":
                    S = write(t, beta[b, t, h])
                elif layer.variant == "delayed_stream" and t >= C:
                    S = write(t - C, beta[b, t - C if layer.delayed_rate == "own" else t, h])
                elif layer.variant == "delayed_chunk" and t % C == 0:
                    for s in range(max(t - C, 0), t):   # the chunk that just ended
                        S = write(s, beta[b, s, h])
                o_fw[b, t, h] = S.T @ fq[b, t, h] * D ** -0.5
                first = (t // C) * C if layer.variant == "delayed_chunk" else max(0, t - C + 1)
                seen = range(first, t + 1)
                weights = torch.stack([q[b, t, h] @ k[b, s, h] for s in seen]).mul(D ** -0.5).softmax(0)
                o_kv[b, t, h] = sum(a * v[b, s, h] for a, s in zip(weights, seen))
    if layer.mixing == "gate":
        g = torch.sigmoid(x @ layer.gate_proj.weight.T).view(B, T, H, D)
        o = g * o_fw + (1 - g) * o_kv
    elif layer.mixing == "static":
        o = layer.scales[0] * o_fw + layer.scales[1] * o_kv
    else:
        o = o_fw + o_kv
    o = o / torch.sqrt(o.pow(2).mean(-1, keepdim=True) + 1e-5) * layer.norm_weight
    return o.reshape(B, T, H * D) @ layer.out_proj.weight.T, o_fw, o_kv


CASES = [dict(variant=v, short_conv=c) for v in ("synchronous", "delayed_stream", "delayed_chunk")
         for c in (False, True)]
CASES += [dict(variant="delayed_stream", delayed_rate="current"), dict(variant="synchronous", mixing="sum"),
          dict(variant="delayed_chunk", mixing="static", beta_activation="2sigmoid")]


@pytest.mark.parametrize("options", CASES, ids=lambda o: "-".join(str(v) for v in o.values()))
def test_matches_the_equations_values_and_gradients(options):
    layer, x = layer_of(window=3, **options), x_of(T=11)
    ours, expected = layer(x)[0], layer_by_hand(layer, x)[0]
    assert_close("y", ours, expected, 1e-12)
    cotangent = torch.randn_like(ours)
    inputs = [x, *layer.parameters()]
    for a, e in zip(torch.autograd.grad((ours * cotangent).sum(), inputs),
                    torch.autograd.grad((expected * cotangent).sum(), inputs)):
        assert_close("gradient", a, e, 1e-11)


@pytest.mark.parametrize("options", CASES[:6], ids=lambda o: "-".join(str(v) for v in o.values()))
def test_calls_in_pieces_carry_the_state_exactly(options):
    layer, x = layer_of(window=3, **options), x_of(T=14)
    whole, state = layer(x)
    for cuts in ([1, 2, 3], [5, 6, 10], [4, 7, 13]):
        pieces, piece_state = run_in_pieces(layer, x, cuts)
        assert_close("y in pieces", pieces, whole, 1e-12)
        for name, a, e in zip(state._fields, piece_state, state):
            if a is not None:
                assert_close(f"state.{name}", a, e, 1e-12)


def test_exact_reductions():
    x = x_of(T=9)
    q, k, v, _ = layer_of(variant="synchronous").project(x, None)
    sync = layer_of(variant="synchronous", window=9)
    o_fw, _, _ = sync.memories(x)
    beta = torch.sigmoid(sync.beta_proj(x))
    assert_close("synchronous, fast weight = DeltaNet", o_fw, delta_rule(silu_l2(q), silu_l2(k), v, beta)[0], 1e-13)
    o_fw, _, _ = layer_of(variant="delayed_stream", window=9).memories(x)
    assert torch.equal(o_fw, torch.zeros_like(o_fw)), "a window over the whole sequence leaves nothing to write"
    chunk = layer_of(variant="delayed_chunk", window=12)
    o_fw, o_kv, _ = chunk.memories(x)
    assert torch.equal(o_fw, torch.zeros_like(o_fw))
    causal = F.scaled_dot_product_attention(*(t.transpose(1, 2) for t in (q, k, v)), is_causal=True).transpose(1, 2)
    assert_close("one chunk = causal attention", o_kv, causal, 1e-13)
    for variant in ("synchronous", "delayed_stream"):
        _, o_kv, _ = layer_of(variant=variant, window=1).memories(x)
        assert_close(f"{variant}, window 1 reads its own value", o_kv, v, 1e-15)


@pytest.mark.parametrize("options,message", [
    (dict(window=0), "window must be an int >= 1"),
    (dict(variant="async"), "Unknown hybrid variant 'async'. Valid: synchronous, delayed_stream, delayed_chunk"),
    (dict(mixing="product"), "Unknown hybrid mixing 'product'. Valid: gate, sum, static"),
    (dict(delayed_rate="next"), "Unknown delayed_rate 'next'"),
])
def test_bad_settings(options, message):
    with pytest.raises(ValueError, match=message):
        HybridQLTLayer(D_MODEL, HEADS, **options)


def test_window_attention_layer_in_pieces_and_by_definition():
    torch.manual_seed(0)
    layer = SlidingWindowAttentionLayer(D_MODEL, HEADS, window=3).double()
    x = x_of(T=10)
    whole, state = layer(x)
    pieces, piece_state = run_in_pieces(layer, x, [1, 4, 8])
    assert_close("y in pieces", pieces, whole, 1e-12)
    assert all(torch.equal(a, e) for a, e in zip(piece_state, state)) and state[0].shape[1] == 2
    q, k, v = (x @ layer.qkv_proj.weight.T).view(2, 10, 3, HEADS, -1).unbind(2)
    t = 7   # step 7 reads steps 5, 6, 7
    scores = torch.einsum("bhd,bshd->bhs", q[:, t], k[:, t - 2:t + 1]) * (D_MODEL // HEADS) ** -0.5
    read = torch.einsum("bhs,bshd->bhd", scores.softmax(-1), v[:, t - 2:t + 1]).reshape(2, D_MODEL)
    assert_close("step 7", whole[:, t], read @ layer.out_proj.weight.T, 1e-13)


@pytest.mark.parametrize("overrides,message", [
    (["model.mixer=hqlt", "model.hybrid_variant=async"], "Unknown model.hybrid_variant 'async'"),
    (["model.mixer=hqlt", "model.hybrid_mixing=product"], "Unknown model.hybrid_mixing 'product'"),
    (["model.mixer=window_attention", "model.window=0"], "model.window must be >= 1"),
    (["model.mixer=[hqlt,delta]", "model.num_layers=3"], "model.mixer"),
    (["model.mixer=delta", "model.hybrid_variant=delayed_chunk"], "hybrid_variant"),
])
def test_bad_recipe_settings(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(ROOT / "recipes/expressivity_parity.yaml", overrides)


def test_a_recipe_builds_its_hybrid_layers_with_its_settings():
    config = load_config(ROOT / "recipes/expressivity_parity.yaml", [
        "model.mixer=[hqlt,window_attention]", "model.num_layers=2", "model.window=4", "model.short_conv=true",
        "model.hybrid_variant=delayed_stream"])
    task = TASKS[config.task](config)
    model = task.build_learner(config.model)
    hybrid, window = (block.mixer for block in model.blocks)
    assert isinstance(hybrid, HybridQLTLayer) and isinstance(window, SlidingWindowAttentionLayer)
    assert (hybrid.variant, hybrid.window, hybrid.mixing, hybrid.conv is not None, window.window) == (
        "delayed_stream", 4, "gate", True, 4)
