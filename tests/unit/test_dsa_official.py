"""DSA's keep probabilities and dL/dalpha against the official closed form, on random layers.

The official release (github.com/walkerning/differentiable-sparsity-allocation, `models/op.py`,
`SigmoidLogMergeFunc_subst` and `sigmoid_log_lbeta1`) computes, per channel group of C filters
with importance b_c (the filter's L1 norm, `base_importance_strategy="conv"`):

    t_c   = clamp(beta2 * (log beta1 - log(b_c + 1e-8)), -20, 20)
    p_c   = clamp(1 / (1 + exp(t_c)) + 0.01, 0, 1),   log beta1 solved so that mean_c p_c = alpha
    dL/dalpha = C * sum_c dL/dp_c * softmax_c(log f'_c),
    log f'_c  = u_c - 2 * (log(1 + exp(-min(|u_c|, 50))) + max(u_c, 0)),  u_c unclamped t_c,
                floored at max_c(log f'_c) - 50 before the softmax.

It is re-stated below in NumPy, scalar per layer, independently of `prunerep.methods.dsa` (which
solves all groups at once in torch), with a plain bisection to full precision in place of the
official `root_scalar(..., xtol=0.02)`. Where a channel's p is clipped at 1 (or its t clamped),
the official backward still weights it by its sigmoid slope; ours gives it zero weight, the exact
derivative of the clipped function: the last test measures that documented deviation.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prunerep.methods.dsa import keep_probabilities

EPS = 1e-8


def official_p(b: np.ndarray, log_beta1: float, beta2: float) -> np.ndarray:
    t = np.clip(beta2 * (log_beta1 - np.log(b + EPS)), -20.0, 20.0)
    return np.clip(1.0 / (1.0 + np.exp(t)) + 0.01, 0.0, 1.0)


def official_log_beta1(b: np.ndarray, alpha: float, beta2: float) -> float:
    """Root of mean(p) - alpha on the official bracket [-500, 500] (mean p falls as log beta1 rises)."""
    lo, hi = -500.0, 500.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if official_p(b, mid, beta2).mean() > alpha:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def official_weights(b: np.ndarray, log_beta1: float, beta2: float) -> np.ndarray:
    """softmax_c(log f'_c) as in SigmoidLogMergeFunc_subst.backward."""
    u = beta2 * (log_beta1 - np.log(b + EPS))
    log_fp = u - 2.0 * (np.log(1.0 + np.exp(-np.minimum(np.abs(u), 50.0))) + np.maximum(u, 0.0))
    log_fp = np.maximum(log_fp - log_fp.max(), -50.0)
    w = np.exp(log_fp - log_fp.max())
    return w / w.sum()


def random_layers(seed: int, n: int = 6) -> list[np.ndarray]:
    """Filter L1 norms of randomly initialised conv layers of random shapes (Kaiming-uniform, as
    torch initialises them), i.e. the importances DSA sees at the start of a search."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        c_out = int(torch.randint(4, 65, (1,), generator=g))
        c_in = int(torch.randint(3, 65, (1,), generator=g))
        k = int(torch.randint(0, 2, (1,), generator=g)) * 2 + 1     # 1x1 or 3x3
        conv = torch.nn.Conv2d(c_in, c_out, k, bias=False)
        bound = 1.0 / (c_in * k * k) ** 0.5
        with torch.no_grad():
            conv.weight.uniform_(-bound, bound, generator=g)
            conv.weight.mul_(torch.exp(torch.randn(c_out, 1, 1, 1, generator=g) * 0.3))   # trained-like spread
        out.append(conv.weight.detach().abs().flatten(1).sum(1).double().numpy())
    return out


@pytest.mark.parametrize("beta2", [1.0, 2.5])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_keep_probabilities_and_alpha_gradient_equal_the_official_closed_form(seed, beta2):
    layers = random_layers(seed)
    rng = np.random.default_rng(seed)
    alpha = rng.uniform(0.15, 0.85, len(layers))
    upstream = [rng.normal(size=b.size) for b in layers]

    a = torch.tensor(alpha, dtype=torch.float64, requires_grad=True)
    probs = keep_probabilities([torch.from_numpy(b) for b in layers], a, beta2=beta2)
    loss = sum((torch.from_numpy(g) * p).sum() for g, p in zip(upstream, probs, strict=True))
    loss.backward()

    for i, (b, g) in enumerate(zip(layers, upstream, strict=True)):
        lb1 = official_log_beta1(b, alpha[i], beta2)
        p_off = official_p(b, lb1, beta2)
        assert abs(p_off.mean() - alpha[i]) < 1e-12
        # these layers have no channel clipped at p = 1 nor clamped: the official backward applies as is
        assert p_off.max() < 1.0
        np.testing.assert_allclose(probs[i].detach().numpy(), p_off, rtol=0, atol=1e-10)
        grad_off = b.size * float((g * official_weights(b, lb1, beta2)).sum())
        assert float(a.grad[i]) == pytest.approx(grad_off, rel=1e-8, abs=1e-10)


def test_official_solver_tolerance_moves_p_by_less_than_a_percent():
    # The official root_scalar stops at xtol = 0.02 in log beta1; our probabilities, solved to full
    # precision, lie within what that tolerance allows (|dp/dlog beta1| <= beta2 / 4).
    for b in random_layers(7):
        for alpha in (0.2, 0.5, 0.8):
            lb1 = official_log_beta1(b, alpha, 1.0)
            (ours,) = keep_probabilities([torch.from_numpy(b)], torch.tensor([alpha], dtype=torch.float64))
            for shifted in (lb1 - 0.02, lb1 + 0.02):
                assert np.abs(official_p(b, shifted, 1.0) - official_p(b, lb1, 1.0)).max() <= 0.02 / 4 + 1e-12
            np.testing.assert_allclose(ours.numpy(), official_p(b, lb1, 1.0), atol=1e-10, rtol=0)


def test_clipped_channels_deviation_is_exactly_the_official_weight_they_get():
    # A wide spread of importances and a high keep ratio: many channels have p clipped at 1.
    rng = np.random.default_rng(3)
    b = np.exp(rng.normal(0.0, 3.0, 48))
    alpha, beta2 = 0.9, 1.0
    g = rng.normal(size=b.size)
    a = torch.tensor([alpha], dtype=torch.float64, requires_grad=True)
    (p,) = keep_probabilities([torch.from_numpy(b)], a, beta2=beta2)
    (torch.from_numpy(g) * p).sum().backward()

    lb1 = official_log_beta1(b, alpha, beta2)
    np.testing.assert_allclose(p.detach().numpy(), official_p(b, lb1, beta2), atol=1e-10, rtol=0)
    t = beta2 * (lb1 - np.log(b + EPS))
    live = (np.abs(t) < 20.0) & (1.0 / (1.0 + np.exp(t)) + 0.01 < 1.0)
    assert 0 < (~live).sum() < b.size                     # the case this test is about
    w_off = official_weights(b, lb1, beta2)
    # ours: the official weights restricted to the responsive channels and renormalised
    expected = b.size * float((g * np.where(live, w_off, 0.0)).sum() / w_off[live].sum())
    assert float(a.grad) == pytest.approx(expected, rel=1e-8)
    # ... which differs from the official value by the weight the clipped channels get there
    official = b.size * float((g * w_off).sum())
    assert float(a.grad) != pytest.approx(official, rel=1e-3)
