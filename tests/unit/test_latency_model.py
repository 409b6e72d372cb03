"""LPNet and the two predictors it must beat: exact values of the scores, the held-out split, and
LPNet fitting a synthetic latency table of known form."""

from __future__ import annotations

import math

import pytest
import torch

from prunerep.pruning.latency_model import (
    AffineFit,
    LPNetConfig,
    fit_lpnet,
    load_lpnet,
    mape,
    save_lpnet,
    spearman,
    split_rows,
    within,
)


def test_scores_have_their_textbook_values():
    true = torch.tensor([1.0, 2.0, 4.0, 8.0], dtype=torch.float64)
    pred = torch.tensor([1.1, 1.8, 4.0, 10.0], dtype=torch.float64)
    assert mape(pred, true) == pytest.approx((0.1 + 0.1 + 0.0 + 0.25) / 4)
    assert within(pred, true, 0.10) == pytest.approx(0.75)       # 10% exactly counts as within
    assert spearman(pred, true) == pytest.approx(1.0)
    assert spearman(-pred, true) == pytest.approx(-1.0)
    # ties share the average rank: ranks (1.5, 1.5, 3) vs (1, 2, 3) -> 0.866...
    assert spearman(torch.tensor([1.0, 1.0, 2.0]), torch.tensor([1.0, 2.0, 3.0])) == pytest.approx(math.sqrt(3) / 2)


def test_held_out_split_is_at_least_a_fifth_and_disjoint():
    train, val, test = split_rows(101, test=0.2, val=0.1, seed=3, keep_in_train=[0])
    assert len(test) >= 0.2 * 101 and 0 in train
    assert not (set(train) & set(test)) and not (set(val) & set(test)) and not (set(train) & set(val))
    assert sorted(train + val + test) == list(range(101))
    with pytest.raises(ValueError):
        split_rows(100, test=0.1)
    assert split_rows(50, seed=1) != split_rows(50, seed=2)


def test_affine_fit_recovers_an_exact_affine_law():
    x = torch.linspace(1, 100, 40, dtype=torch.float64)
    fit = AffineFit.fit(x, 0.02 * x + 0.7)
    assert fit.a == pytest.approx(0.02) and fit.b == pytest.approx(0.7)
    assert mape(fit(x), 0.02 * x + 0.7) < 1e-12


def _synthetic(n: int, g: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A latency table of known form: overhead + per-layer linear + coupled (bilinear) terms + a
    staircase in the widths (vector-unit granularity), at two batch sizes."""
    gen = torch.Generator().manual_seed(seed)
    x = 0.05 + 0.95 * torch.rand(n, g, generator=gen, dtype=torch.float64)
    a = torch.linspace(0.5, 2.0, g, dtype=torch.float64)
    lin = x @ a
    bil = (x[:, :-1] * x[:, 1:]).sum(1)
    steps = torch.floor(x * 8).sum(1) / 8
    y1 = 1.0 + 0.3 * lin + 0.8 * bil + 0.1 * steps
    y64 = 5.0 + 6.0 * lin + 20.0 * bil + 0.5 * steps
    return x, torch.stack([y1, y64], dim=1)


def test_lpnet_fits_a_synthetic_latency_table_on_held_out_rows():
    x, y = _synthetic(700, 6, seed=0)
    train, val, test = split_rows(len(x), seed=0)
    net, info = fit_lpnet(x[train], y[train], x[val], y[val], [1, 64],
                          LPNetConfig(hidden=64, iterations=1500, eval_every=50, seed=0))
    assert 0 < info["best_iteration"] <= 1500
    with torch.no_grad():
        pred = net(x[test].float()).double()
    for j in range(2):
        assert spearman(pred[:, j], y[test, j]) >= 0.99
        assert within(pred[:, j], y[test, j], 0.10) >= 0.99
        assert mape(pred[:, j], y[test, j]) < 0.03
    # LPNet is differentiable in its input (a method back-propagates through it) and frozen
    xi = x[test[:3]].float().requires_grad_(True)
    net(xi)[:, 0].sum().backward()
    assert xi.grad is not None and xi.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in net.parameters())


def test_lpnet_file_round_trips_and_refuses_another_digest(tmp_path):
    x, y = _synthetic(60, 3, seed=1)
    net, _ = fit_lpnet(x[:40], y[:40], x[40:], y[40:], [1, 64], LPNetConfig(hidden=8, iterations=20, eval_every=10))
    digest = save_lpnet(net, tmp_path / "lp.pt", {"group_ids": ["a", "b", "c"]})
    back, meta = load_lpnet(tmp_path / "lp.pt", digest)
    assert meta["group_ids"] == ["a", "b", "c"] and back.batch_sizes == [1, 64]
    torch.testing.assert_close(back(x[:5].float()), net(x[:5].float()))
    with pytest.raises(ValueError, match="not the one the run was planned with"):
        load_lpnet(tmp_path / "lp.pt", "0" * 64)
