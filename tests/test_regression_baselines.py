"""The regression baselines against closed forms, hand loops and scikit-learn."""
import pytest
import torch

from episodes import RegressionSampler
from metafwp.baselines.regression import (averaging, gradient_descent, lasso, least_squares, make_baseline,
                                          nearest_neighbours, ridge)


def tasks(B=4, N=6, M=3, dx=4, dy=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=g, dtype=torch.float64) for shape in ((B, N, dx), (B, N, dy), (B, M, dx))]


@pytest.mark.parametrize("k", [2, 5, 10, 15, 20])
def test_least_squares_follows_one_minus_k_over_d(k):
    """Garg et al.'s curve: normalised error 1 - k/d below k = d (the expectation: the minimum-norm
    fit recovers w's projection on the span of k isotropic inputs), exactly 0 from k = d on
    (noiseless). Below d, within 4 standard errors of the mean over 4000 tasks."""
    d = 10
    sampler = RegressionSampler("linear", k, 1, dim=d, seed=3)
    batch = sampler.sample(range(4000))
    x, y = batch.inputs.double(), batch.targets.double()
    per_task = (least_squares(x[:, :k], y[:, :k], x[:, k:]) - y[:, k:]).square().flatten() / d
    if k >= d:
        assert per_task.max() < 1e-6  # exact up to the conditioning of k = d random inputs
    else:
        standard_error = per_task.std() / len(per_task) ** 0.5
        assert abs(per_task.mean() - (1 - k / d)) < 4 * standard_error


def test_ridge_is_the_posterior_mean_and_zero_lambda_is_least_squares():
    x, y, q = tasks()
    lam = 0.3
    for b in range(x.shape[0]):
        W = torch.linalg.inv(x[b].T @ x[b] + lam * torch.eye(4, dtype=x.dtype)) @ x[b].T @ y[b]
        assert torch.allclose(ridge(x, y, q, lam=lam)[b], q[b] @ W, atol=1e-12)
    assert torch.allclose(ridge(x, y, q, lam=0.0), least_squares(x, y, q))
    assert torch.allclose(least_squares(x, y, q)[0], q[0] @ torch.linalg.lstsq(x[0], y[0]).solution, atol=1e-10)


def test_gradient_descent_steps():
    x, y, q = tasks()
    gd_lr, steps = 0.2, 3
    for b in range(x.shape[0]):
        W = torch.zeros(2, 4, dtype=x.dtype)  # [dy, dx]
        for _ in range(steps):
            W = W + gd_lr / 6 * sum(torch.outer(y[b, i] - W @ x[b, i], x[b, i]) for i in range(6))
        assert torch.allclose(gradient_descent(x, y, q, gd_lr=gd_lr, steps=steps)[b], q[b] @ W.T, atol=1e-12)


def test_nearest_neighbours_and_averaging_by_hand():
    x, y, q = tasks()
    for b in range(x.shape[0]):
        for m in range(q.shape[1]):
            order = ((x[b] - q[b, m]).norm(dim=-1)).argsort()[:3]
            assert torch.allclose(nearest_neighbours(x, y, q)[b, m], y[b, order].mean(0))
            w = sum(torch.outer(y[b, i], x[b, i]) for i in range(6)) / 6
            assert torch.allclose(averaging(x, y, q)[b, m], w @ q[b, m])
    assert torch.allclose(nearest_neighbours(x[:, :2], y[:, :2], q), y[:, :2].mean(1, keepdim=True).expand(-1, 3, -1))


def test_lasso_matches_scikit_learn():
    linear_model = pytest.importorskip("sklearn.linear_model")
    sampler = RegressionSampler("sparse_linear", 8, 3, dim=10, num_nonzero=3, seed=1)
    batch = sampler.sample(range(5))
    x, y = batch.inputs.double(), batch.targets.double()
    ours = lasso(x[:, :8], y[:, :8], x[:, 8:], alpha=0.05)
    for b in range(5):
        fit = linear_model.Lasso(alpha=0.05, fit_intercept=False, tol=1e-12, max_iter=100_000).fit(x[b, :8], y[b, :8, 0])
        assert torch.allclose(ours[b, :, 0], torch.from_numpy(fit.predict(x[b, 8:].numpy())), atol=1e-6)


def test_outputs_keep_the_query_dtype_and_bad_names_are_named():
    x, y, q = (t.float() for t in tasks())
    assert least_squares(x, y, q).dtype == torch.float32
    with pytest.raises(ValueError, match="Unknown regression baseline 'ols'. Valid: least_squares"):
        make_baseline("ols")
    with pytest.raises(ValueError, match="needs its gd_lr"):
        make_baseline("gd")
