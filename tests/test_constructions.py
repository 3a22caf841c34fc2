"""The von Oswald constructions against loops written from the equations, in float64."""
import pytest
import torch

from metafwp.constructions import gd_layers, gd_plus_plus_predict, gd_predict, lms_predict, regression_tokens


def problem(seed, B=3, N=7, M=4, dx=5, dy=2):
    g = torch.Generator().manual_seed(seed)
    def draw(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)
    return draw(B, N, dx), draw(B, N, dy), draw(B, M, dx), 0.5 * draw(dy, dx)


def gradient_descent(x, y, x_query, W0, step_sizes):
    """Full-batch GD on 1/2 sum_i ||y_i - W x_i||^2, one task at a time."""
    predictions = []
    for b in range(x.shape[0]):
        W = W0.clone()
        for c in step_sizes:
            W = W + c * sum(torch.outer(y[b, i] - W @ x[b, i], x[b, i]) for i in range(x.shape[1]))
        predictions.append(x_query[b] @ W.T)
    return torch.stack(predictions)


def causal_stack(x, y, x_query, W0, step_sizes):
    """The derivation of the causal stack: W_{l+1}^(t) = W_l^(t) + c_l sum_{i<=t} (y_i - W_l^(i) x_i) x_i^T,
    W_0^(t) = W0; a query after the support reads W_L^(N)."""
    predictions = []
    N = x.shape[1]
    for b in range(x.shape[0]):
        prefix = [W0.clone() for _ in range(N)]  # W_l^(t) for t = 1..N
        for c in step_sizes:
            errors = [torch.outer(y[b, i] - prefix[i] @ x[b, i], x[b, i]) for i in range(N)]
            prefix = [prefix[t] + c * sum(errors[: t + 1]) for t in range(N)]
        predictions.append(x_query[b] @ prefix[-1].T)
    return torch.stack(predictions)


@pytest.mark.parametrize("num_layers", [1, 2, 3, 4])
def test_non_causal_stack_is_gradient_descent(num_layers):
    x, y, x_query, W0 = problem(num_layers)
    step_sizes = torch.rand(num_layers, generator=torch.Generator().manual_seed(9)).mul(0.1).tolist()
    expected = gradient_descent(x, y, x_query, W0, step_sizes)
    assert (gd_predict(x, y, x_query, W0, step_sizes) - expected).abs().max() < 1e-10
    assert (expected - x_query @ W0.T).abs().max() > 1e-2  # the steps moved the prediction


@pytest.mark.parametrize("num_layers", [1, 2, 3, 4])
def test_causal_stack_matches_its_derivation(num_layers):
    x, y, x_query, W0 = problem(10 + num_layers)
    step_sizes = [0.05 * (l + 1) for l in range(num_layers)]
    causal = gd_predict(x, y, x_query, W0, step_sizes, causal=True)
    assert (causal - causal_stack(x, y, x_query, W0, step_sizes)).abs().max() < 1e-10
    gd = gradient_descent(x, y, x_query, W0, step_sizes)
    if num_layers == 1:  # one layer is one GD step for queries after the support
        assert (causal - gd).abs().max() < 1e-10
    else:  # stale residuals: not GD from two layers on
        assert (causal - gd).abs().max() > 1e-3


def test_causal_support_tokens_hold_prefix_residuals():
    """After one causal layer support token t holds y_t - W_1^(t) x_t, W_1^(t) one GD step on
    examples 1..t."""
    x, y, x_query, W0 = problem(3, N=5)
    tokens, writes = regression_tokens(x, y, x_query)
    out = gd_layers(W0, [0.3], causal=True)(tokens, writes)
    for t in range(5):
        W1 = W0 + 0.3 * sum(torch.einsum("bi,bj->bij", y[:, i] - x[:, i] @ W0.T, x[:, i]) for i in range(t + 1))
        residual = y[:, t] - torch.einsum("bij,bj->bi", W1, x[:, t])
        assert (out[:, t, 5:] - residual).abs().max() < 1e-10


def test_lms_is_widrow_hoff():
    x, y, x_query, W0 = problem(4, N=9)
    lr = 0.07
    expected = []
    for b in range(x.shape[0]):
        W = W0.clone()
        for i in range(x.shape[1]):
            W = W + lr * torch.outer(y[b, i] - W @ x[b, i], x[b, i])
        expected.append(x_query[b] @ W.T)
    assert (lms_predict(x, y, x_query, W0, [lr]) - torch.stack(expected)).abs().max() < 1e-10


def test_gd_plus_plus_preconditions_then_descends():
    x, y, x_query, W0 = problem(5)
    gamma, step_sizes = 0.02, [0.1, 0.05]
    covariance = torch.einsum("bni,bnj->bij", x, x)
    eye = torch.eye(x.shape[-1], dtype=x.dtype)
    transform = eye - gamma * covariance
    expected = gradient_descent(x @ transform.transpose(1, 2), y, x_query @ transform.transpose(1, 2), W0, step_sizes)
    assert (gd_plus_plus_predict(x, y, x_query, W0, step_sizes, gamma) - expected).abs().max() < 1e-10
    assert (expected - gradient_descent(x, y, x_query, W0, step_sizes)).abs().max() > 1e-3


def test_construction_gradients_match_the_loop():
    x, y, x_query, W0 = problem(6, B=2, N=4, M=2, dx=3, dy=2)
    W0.requires_grad_(True)
    x = x.requires_grad_(True)
    step_sizes = [0.1, 0.2]
    ours = torch.autograd.grad(gd_predict(x, y, x_query, W0, step_sizes).square().sum(), (W0, x))
    loop = torch.autograd.grad(gradient_descent(x, y, x_query, W0, step_sizes).square().sum(), (W0, x))
    for a, b in zip(ours, loop):
        assert (a - b).abs().max() < 1e-10


@pytest.mark.parametrize("call, message", [
    (lambda x, y, q, W0: gd_predict(x, y, q, W0[:, :-1], [0.1]), r"W0 must be \[dy, dx\] = \[2, 5\]"),
    (lambda x, y, q, W0: gd_predict(x[:, :0], y[:, :0], q, W0, [0.1]), "the support is empty"),
    (lambda x, y, q, W0: gd_predict(x, y, q[..., :-1], W0, [0.1]), "x_query"),
    (lambda x, y, q, W0: gd_predict(x, y[:, :-1], q, W0, [0.1]), "y_support"),
    (lambda x, y, q, W0: gd_layers(W0, [0.1])(torch.zeros(1, 3, 4, dtype=W0.dtype), torch.ones(3, dtype=bool)),
     "tokens have width 4"),
    (lambda x, y, q, W0: gd_predict(x, y, q, W0, []), "one step size per layer"),
    (lambda x, y, q, W0: lms_predict(x, y, q, W0, [0.1, 0.2]), "takes one step size"),
])
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call(*problem(0))
