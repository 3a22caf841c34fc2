"""The fast weight painter: with one-hot keys and unit rates its strokes paint any target image
exactly; the generator's images and their gradients equal a float64 loop of each rule written here
over its own strokes (the authors' unit first rate included); bad input."""
import pytest
import torch

from metafwp.models.painter import FastWeightPainter, paint


@pytest.mark.parametrize("rule", ["delta", "hebbian"])
def test_one_hot_keys_and_unit_rates_paint_any_image(rule):
    target = torch.randn(2, 3, 28, 28, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    keys = torch.eye(28, dtype=torch.float64).expand(2, 3, 28, 28).permute(0, 2, 1, 3)   # step t: e_t
    values = target.permute(0, 3, 1, 2)                                                # step t: column t
    assert torch.allclose(paint(keys, values, torch.ones(2, 28, 3, dtype=torch.float64), rule), target, atol=1e-12)


def painted_by_hand(keys, values, rates, rule):
    B, T, C, S = keys.shape
    W = torch.zeros(B, C, S, S, dtype=torch.float64)
    for t in range(T):
        k, v, beta = keys[:, t], values[:, t], rates[:, t, :, None, None]
        if rule == "delta":
            W = W + beta * (v - (W @ k[..., None])[..., 0])[..., :, None] * k[..., None, :]
        elif rule == "hebbian":
            W = W + beta * v[..., :, None] * k[..., None, :]
        else:
            W = W + beta * v[..., :, None] * (k - (W.transpose(-1, -2) @ v[..., None])[..., 0])[..., None, :]
    return torch.tanh(W)


@pytest.mark.parametrize("rule,first_rate_one", [("delta", False), ("delta", True), ("hebbian", False),
                                                 ("oja", False)])
def test_the_images_are_the_rule_run_over_the_strokes(rule, first_rate_one):
    torch.manual_seed(0)
    painter = FastWeightPainter(latent=6, size=5, steps=7, channels=2, step_input=3, step_width=4, hidden=8,
                                rule=rule, first_rate_one=first_rate_one).double()
    z = torch.randn(3, 6, dtype=torch.float64)
    keys, values, rates = painter.strokes(z)
    assert torch.allclose(keys.sum(-1), torch.ones(3, 7, 2, dtype=torch.float64))
    assert bool((rates[:, 0] == 1).all()) == first_rate_one and bool((rates[:, 1:] < 1).all())
    assert torch.allclose(painter(z), painted_by_hand(keys, values, rates, rule), atol=1e-12)
    assert painter(z).shape == (3, 2, 5, 5)
    # the gradients a GAN's generator step takes, through every stroke to the weights
    cotangent = torch.randn(3, 2, 5, 5, dtype=torch.float64)
    ours = torch.autograd.grad((painter(z) * cotangent).sum(), list(painter.parameters()))
    theirs = torch.autograd.grad((painted_by_hand(*painter.strokes(z), rule) * cotangent).sum(),
                                 list(painter.parameters()))
    assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(ours, theirs))


def test_program_scale_multiplies_only_the_stroke_layers_initial_weights_and_sharpens_the_strokes():
    painters = {}
    for scale in (1.0, 20.0):
        torch.manual_seed(0)
        painters[scale] = FastWeightPainter(latent=6, size=5, steps=7, hidden=8, program_scale=scale)
    plain, scaled = (dict(painters[s].named_parameters()) for s in (1.0, 20.0))
    for name, weight in plain.items():
        assert torch.equal(scaled[name], weight * (20 if name.startswith("program.") else 1)), name
    z = torch.randn(4, 6)
    entropy = {s: -(k * k.log()).sum(-1).mean().item() for s, (k, _, _) in
               ((s, painters[s].strokes(z)) for s in painters)}
    assert entropy[20.0] < entropy[1.0]


def test_bad_input():
    with pytest.raises(ValueError, match="Unknown painter rule 'gla'. Valid: delta, hebbian, oja"):
        FastWeightPainter(rule="gla")
    with pytest.raises(ValueError, match="steps must be >= 1"):
        FastWeightPainter(steps=0)
    with pytest.raises(ValueError, match="program_scale must be > 0"):
        FastWeightPainter(program_scale=0)
