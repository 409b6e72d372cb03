"""DAIS: indicators, annealing schedule, the three regularisers, bi-level steps, residual ties,
binarisation and surgery (tiny models and tensors only)."""

from __future__ import annotations

import copy
import itertools
import math

import pytest
import torch
from torch import nn

from prunerep.data.arrays import ArrayDataset, DataSplits
from prunerep.engine import ArchOptimConfig, OptimConfig, RuntimeConfig, TrainState, fit
from prunerep.methods import Budget, MethodContext, get_method
from prunerep.methods.dais import (
    flops_penalty,
    indicator,
    residual_tie,
    sparsity,
    temperature_at,
)
from prunerep.models import get_model
from prunerep.pruning.cost import count_cost
from prunerep.pruning.groups import find_groups
from prunerep.pruning.soft_cost import SoftCostModel
from prunerep.runner.run import RunSpec, run_pruning

X = torch.zeros(1, 3, 8, 8)
RUNTIME = RuntimeConfig(device="cpu", channels_last=False, progress=False)


def _prepared(model: nn.Module | None = None, budget: float = 0.5, example: torch.Tensor = X, **kwargs):
    model = model if model is not None else get_model("resnet20", shortcut="A", num_classes=3)
    groups = find_groups(model, example)
    ctx = MethodContext(groups=groups, prunable=[g for g in groups if not g.output_slices], example_input=example,
                        budget=Budget(macs_keep=budget), cost_model=SoftCostModel.from_model(model, example, groups))
    method = get_method("dais", **kwargs)
    return method.prepare(model, ctx), method, ctx


def _fd(f, x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Central finite differences of scalar f at x (float64)."""
    g = torch.zeros_like(x)
    flat = x.reshape(-1)
    for i in range(flat.numel()):
        old = float(flat[i])
        flat[i] = old + eps
        hi = float(f(x))
        flat[i] = old - eps
        lo = float(f(x))
        flat[i] = old
        g.reshape(-1)[i] = (hi - lo) / (2 * eps)
    return g


# -- indicators and the schedule --------------------------------------------------------------------


def test_indicators_tend_to_zero_or_one_as_the_temperature_falls():
    alpha = torch.tensor([-2.0, -0.3, -0.01, 0.02, 0.5, 3.0], dtype=torch.float64)
    binary = (alpha > 0).double()
    dist = [float((indicator(alpha, t) - binary).abs().max()) for t in (1.0, 0.3, 0.1, 0.03, 0.01, 1e-3)]
    assert all(b < a for a, b in itertools.pairwise(dist))          # strictly closer each time
    assert dist[0] > 0.4 and dist[-1] < 1e-4
    assert float(indicator(torch.tensor(0.0), 1e-3)) == 0.5                  # alpha = 0 stays undecided


def test_schedule_endpoints_and_shapes():
    for schedule in ("hyperbolic", "exponential"):
        assert temperature_at(0, 100, 1.0, 0.02, schedule) == pytest.approx(1.0)
        assert temperature_at(100, 100, 1.0, 0.02, schedule) == pytest.approx(0.02)
        assert temperature_at(250, 100, 1.0, 0.02, schedule) == pytest.approx(0.02)   # clamped after the end
        ts = [temperature_at(s, 100, 1.0, 0.02, schedule) for s in range(101)]
        assert all(b < a for a, b in itertools.pairwise(ts))
    # the third party's 1 / (1 + 49 e / E), here in search fractions; the geometric mean half-way
    assert temperature_at(10, 100, 1.0, 0.02, "hyperbolic") == pytest.approx(1 / (1 + 4.9))
    assert temperature_at(50, 100, 1.0, 0.02, "exponential") == pytest.approx(math.sqrt(0.02))
    assert {temperature_at(s, 100, 0.7, 0.02, "constant") for s in (0, 50, 100)} == {0.7}
    with pytest.raises(ValueError, match="schedule"):
        temperature_at(1, 10, 1.0, 0.1, "linear")


def test_method_anneals_per_step_and_the_ablation_keeps_t_start():
    model, method, _ = _prepared(t_start=1.0, t_end=0.02)
    state = TrainState(total_steps=10, steps_per_epoch=10)
    method.on_train_start(model, state)
    assert float(model.dais.temperature) == pytest.approx(1.0)
    for _ in range(10):
        state.step += 1
        method.after_step(model, state)
    assert float(model.dais.temperature) == pytest.approx(0.02)
    model, method, _ = _prepared(schedule="constant")
    state = TrainState(total_steps=10, steps_per_epoch=10)
    method.on_train_start(model, state)
    state.step = 10
    method.after_step(model, state)
    assert float(model.dais.temperature) == pytest.approx(1.0)


# -- the regularisers: values and gradients on hand-made inputs ------------------------------------------


def test_sparsity_value_and_gradient():
    a = torch.tensor([[0.2, 0.7, 0.05]], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([[0.5], [0.25]], dtype=torch.float64, requires_grad=True)
    value = sparsity([a, b])
    assert float(value.detach()) == pytest.approx(0.2 + 0.7 + 0.05 + 0.5 + 0.25)
    value.backward()
    torch.testing.assert_close(a.grad, _fd(lambda t: sparsity([t, b.detach()]), a.detach().clone()))
    torch.testing.assert_close(b.grad, torch.ones_like(b))


@pytest.mark.parametrize(("expected", "target"), [(3.0, 2.0), (1.0, 2.0), (2.2e6, 1.9e6)])
def test_flops_penalty_value_and_gradient(expected, target):
    e = torch.tensor(expected, dtype=torch.float64, requires_grad=True)
    value = flops_penalty(e, target)
    assert float(value.detach()) == pytest.approx(abs(math.log(expected / target)))
    value.backward()
    assert float(e.grad) == pytest.approx(math.copysign(1.0 / expected, expected - target))   # the 3rd party's +-1/E
    fd = _fd(lambda t: flops_penalty(t, target), e.detach().clone().reshape(1), eps=1e-6 * expected)
    assert float(e.grad) == pytest.approx(float(fd), rel=1e-6)
    assert float(flops_penalty(torch.tensor(target), target)) == 0.0


def test_residual_tie_value_and_gradient():
    v = torch.tensor([[1.0, 0.0, 0.3], [0.0, 0.0, 0.3], [0.5, 1.0, 0.3]], dtype=torch.float64, requires_grad=True)
    # channel 0: mean 0.5 -> 0.25 + 0.25 + 0; channel 1: mean 1/3 -> 1/9 + 1/9 + 4/9; channel 2: equal -> 0
    value = residual_tie(v)
    assert float(value.detach()) == pytest.approx(0.5 + 6 / 9)
    value.backward()
    torch.testing.assert_close(v.grad, _fd(residual_tie, v.detach().clone()))
    torch.testing.assert_close(v.grad, 2 * (v.detach() - v.detach().mean(0)))
    assert float(residual_tie(torch.full((4, 5), 0.7))) == 0.0


def test_expected_flops_is_exact_at_binary_indicators_and_its_gradient_matches_finite_differences():
    model, method, ctx = _prepared()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for a in model.dais.alpha:
            a.copy_(torch.randn(a.shape[1], generator=g).sign() * 2.0 + torch.rand(a.shape, generator=g))
            a[..., 0] = 2.0                                    # every group keeps a channel
        model.dais.temperature.fill_(1e-3)
    method.budget_repair = False
    masks, _ = method.final_masks()
    keep = {gid: m for gid, m in zip(model.dais.group_ids, masks, strict=True)}
    expected = float(method.expected_macs().detach())
    dense = copy.deepcopy(model)
    pruned = method.finalize(model, ctx)
    assert expected == pytest.approx(count_cost(pruned, tuple(X.shape)).macs, rel=1e-9)
    assert all(int(keep[gid].sum()) == w for gid, w in method.final["widths"].items())
    # gradient of E[F] with respect to a stream logit (three rows) and a block logit, at a soft T
    _, method2, _ = _prepared(dense)
    ind = method2.ind
    with torch.no_grad():
        ind.temperature.fill_(0.7)
        for a in ind.alpha:
            a.copy_(torch.randn(a.shape, generator=g))
    for i in (0, 1):
        (grad,) = torch.autograd.grad(method2.expected_macs(), ind.alpha[i])
        base = ind.alpha[i].detach().clone()
        for r, c in ((0, 0), (base.shape[0] - 1, 2)):
            values = []
            for step in (1e-2, -1e-2):
                with torch.no_grad():
                    ind.alpha[i].copy_(base)
                    ind.alpha[i][r, c] += step
                    values.append(float(method2.expected_macs()))
            with torch.no_grad():
                ind.alpha[i].copy_(base)
            assert float(grad[r, c]) == pytest.approx((values[0] - values[1]) / 2e-2, rel=1e-3)


# -- bi-level optimisation ----------------------------------------------------------------------------


def test_weight_steps_see_constant_indicators_and_arch_steps_get_every_term():
    model, method, _ = _prepared()
    state = TrainState(total_steps=4, steps_per_epoch=4)
    method.on_train_start(model, state)
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 0])
    model.train()
    state.phase = "weights"
    assert method.extra_loss(model, state) is None
    torch.nn.functional.cross_entropy(model(x), y).backward()
    assert all(a.grad is None for a in model.dais.alpha)
    assert model.conv1.weight.grad is not None and float(model.conv1.weight.grad.abs().sum()) > 0
    state.phase = "arch"
    total = torch.nn.functional.cross_entropy(model(x), y) + method.extra_loss(model, state)
    grads = torch.autograd.grad(total, list(model.dais.alpha))
    assert all(float(g.abs().sum()) > 0 for g in grads)


class TensorLoader:
    """In-memory batches whose order is a function of (seed, epoch)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, bs: int) -> None:
        self.x, self.y, self.bs, self.epoch = x, y, bs, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.x) // self.bs

    def __iter__(self):
        order = torch.randperm(len(self.x), generator=torch.Generator().manual_seed(self.epoch))
        for i in range(len(self)):
            idx = order[i * self.bs:(i + 1) * self.bs]
            yield self.x[idx], self.y[idx]


def _toy_loader(n: int = 32, size: int = 8, seed: int = 0, bs: int = 8) -> TensorLoader:
    g = torch.Generator().manual_seed(seed)
    return TensorLoader(torch.randn(n, 3, size, size, generator=g), torch.randint(0, 3, (n,), generator=g), bs)


def _params(model):
    return {k: v.detach().clone() for k, v in model.named_parameters() if not k.startswith("dais.")}


def test_a_bilevel_step_updates_only_its_own_parameters():
    optim = OptimConfig(epochs=1, lr=0.0, momentum=0.0, weight_decay=0.0, max_steps=2)
    model, method, _ = _prepared()
    w0, a0 = _params(model), [a.detach().clone() for a in model.dais.alpha]
    fit(model, _toy_loader(), optim=optim, runtime=RUNTIME, hooks=[method], arch_loader=_toy_loader(seed=1),
        arch_optim=ArchOptimConfig(lr=0.05))
    assert all(torch.equal(v, _params(model)[k]) for k, v in w0.items())          # weight lr 0: weights unchanged
    assert any(not torch.equal(a, b.detach()) for a, b in zip(a0, model.dais.alpha, strict=True))
    model, method, _ = _prepared()
    w0, a0 = _params(model), [a.detach().clone() for a in model.dais.alpha]
    fit(model, _toy_loader(), optim=OptimConfig(epochs=1, lr=0.05, max_steps=2), runtime=RUNTIME, hooks=[method],
        arch_loader=_toy_loader(seed=1), arch_optim=ArchOptimConfig(lr=0.0))
    assert all(torch.equal(a, b.detach()) for a, b in zip(a0, model.dais.alpha, strict=True))  # arch lr 0
    assert any(not torch.equal(v, _params(model)[k]) for k, v in w0.items())


# -- residual-structure ties ------------------------------------------------------------------------------


class ToyResidual(nn.Module):
    """A stem and two residual blocks on one 6-channel stream, then a classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(6)
        self.blocks = nn.ModuleList(nn.Sequential(nn.Conv2d(6, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4),
                                                  nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1, bias=False),
                                                  nn.BatchNorm2d(6)) for _ in range(2))
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.conv(x)))
        for block in self.blocks:
            x = torch.relu(x + block(x))
        return self.fc(x.mean((2, 3)))


def _tied_run(lam_residual: float) -> tuple[nn.Module, object]:
    torch.manual_seed(0)
    model, method, _ = _prepared(ToyResidual(), example=X, lam_residual=lam_residual, lam_sparsity=0.0,
                                 lam_flops=0.0, t_start=1.0, t_end=0.05, init_logit=0.0, gap_points=0)
    stream = next(i for i, gid in enumerate(model.dais.group_ids) if model.dais.rows(i) > 1)
    with torch.no_grad():   # the three layers of the stream start in disagreement
        model.dais.alpha[stream].copy_(torch.tensor([[1.0, -1.0] * 3, [-1.0, 1.0] * 3, [0.5, 0.5, -0.5] * 2]))
    fit(model, _toy_loader(64, bs=8), optim=OptimConfig(epochs=8, lr=0.01), runtime=RUNTIME,
        hooks=[method], arch_loader=_toy_loader(64, seed=1), arch_optim=ArchOptimConfig(lr=0.05, betas=(0.5, 0.9)))
    return model, method, stream


def test_indicators_tied_by_the_residual_term_end_equal_on_a_toy_residual_network():
    model, method, stream = _tied_run(lam_residual=5.0)
    assert model.dais.rows(stream) == 3                   # stem + 2 blocks: one vector per layer
    v = model.dais.values(stream).detach()
    assert float((v - v.mean(0)).abs().max()) < 0.05
    assert method.tap_disagreement() == 0.0
    _, control_method, _ = _tied_run(lam_residual=0.0)
    assert control_method.tap_disagreement() > 0.3       # without the term the layers keep disagreeing


def test_without_per_tap_vectors_a_stream_has_one_vector_and_no_residual_term():
    model, method, _ = _prepared(per_tap=False)
    assert all(model.dais.rows(i) == 1 for i in range(len(model.dais.alpha)))
    assert float(method.regularizers()["residual"]) == 0.0
    model, method, _ = _prepared()
    rows = {gid: model.dais.rows(i) for i, gid in enumerate(model.dais.group_ids)}
    assert rows["conv1"] == 4 and rows["layer2.0.conv2"] == 3 and rows["layer1.0.conv1"] == 1


# -- binarisation, budget and surgery ----------------------------------------------------------------


def test_binary_mode_equals_the_pruned_network_and_repair_meets_the_budget():
    model, method, ctx = _prepared(budget=0.4)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for a in model.dais.alpha:
            a.copy_(torch.randn(a.shape, generator=g))
    masks, info = method.final_masks()
    assert info["repaired_channels"] > 0
    assert method.binary_macs(masks) <= 0.4 * method.dense + 1e-6
    pruned = method.finalize(model, ctx)
    s = method.summary()
    assert s["exactness"]["max_abs_diff"] <= 1e-4
    assert count_cost(pruned, tuple(X.shape)).macs <= 0.4 * method.dense
    assert s["macs_keep_final_model"] == pytest.approx(count_cost(pruned, tuple(X.shape)).macs / method.dense)
    assert not hasattr(pruned, "dais")
    assert all(not m._forward_hooks for m in pruned.modules())


def test_without_repair_the_network_is_the_search_binarisation():
    model, method, ctx = _prepared(budget_repair=False)
    with torch.no_grad():
        for a in model.dais.alpha:
            a.fill_(-1.0)
            a[..., :2] = 1.0
    pruned = method.finalize(model, ctx)
    s = method.summary()
    assert s["repaired_channels"] == 0
    assert set(s["widths"].values()) == {2} and s["widths"] == s["widths_search"]
    assert s["macs_keep_search"] == pytest.approx(count_cost(pruned, tuple(X.shape)).macs / method.dense)


def _splits(n_train: int = 48) -> DataSplits:
    def ds(n: int, seed: int) -> ArrayDataset:
        g = torch.Generator().manual_seed(seed)
        images = torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8)
        return ArrayDataset(images, torch.arange(n) % 3, ("a", "b", "c"))

    return DataSplits(ds(n_train, 0), ds(16, 1), ds(16, 2), (0.5,) * 3, (0.25,) * 3, "fp", "synthetic")


def test_a_run_records_the_gap_trace_histograms_and_meets_the_budget():
    spec = RunSpec(method="dais", budget=Budget(macs_keep=0.5), batch_size=8, arch_fraction=0.25,
                   hyper={"search": {"epochs": 2, "lr": 0.01}, "gap_points": 3, "gap_images": 8, "snapshots": 3},
                   finetune=OptimConfig(epochs=1, lr=0.01, max_steps=1), runtime=RUNTIME, model="resnet20")
    res = run_pruning(spec, get_model("resnet20", shortcut="A", num_classes=3), _splits())
    s = res.method_summary
    steps = res.histories["search"][-1]["step"]            # 36 weight images, batches of 8: 4 per epoch
    assert [t["step"] for t in s["trace"]] == [round(steps / 3), round(2 * steps / 3), steps]
    assert all({"acc_continuous", "acc_binarised", "macs_keep_binarised"} <= set(t) for t in s["trace"])
    assert [h["step"] for h in s["histograms"]] == [0, round(steps / 2), steps]
    assert sum(s["histograms"][0]["counts"]) == sum(len(v) * r for v, r in
                                                    ((range(s["channels"][g]), s["vectors"][g]) for g in s["channels"]))
    assert s["histograms"][-1]["temperature"] == pytest.approx(0.02)
    assert res.macs <= 0.5 * res.dense_macs
    assert "temperature" in res.histories["search"][-1]


def test_state_dict_round_trip():
    _, method, _ = _prepared()
    method.trace = [{"step": 1.0, "acc_continuous": 50.0}]
    method.hists = [{"step": 0, "counts": [1, 2]}]
    _, other, _ = _prepared()
    other.load_state_dict(copy.deepcopy(method.state_dict()))
    assert other.trace == method.trace and other.hists == method.hists


def test_hyper_parameters_are_checked():
    with pytest.raises(ValueError, match="schedule"):
        get_method("dais", schedule="linear")
    with pytest.raises(ValueError, match="t_end"):
        get_method("dais", t_start=0.1, t_end=1.0)
    with pytest.raises(ValueError, match="lam_flops"):
        get_method("dais", lam_flops=-1.0)


def _synthetic_search(schedule: str, betas: tuple[float, float], steps: int = 60) -> tuple[float, object]:
    """DAIS's indicator steps on ResNet-20's cost model with a synthetic task loss ``-sum_c u_c I_c``
    (a fixed positive utility per indicator, plus noise): the dynamics of the search without a
    network to train."""
    torch.manual_seed(0)
    model, method, _ = _prepared(schedule=schedule)
    ind = model.dais
    g = torch.Generator().manual_seed(0)
    util = [torch.exp(torch.randn(a.shape, generator=g)) * 3e-3 for a in ind.alpha]
    opt = torch.optim.Adam(list(ind.alpha), lr=0.05, betas=betas)
    state = TrainState(total_steps=steps, steps_per_epoch=steps)
    method.on_train_start(model, state)
    for _ in range(steps):
        state.phase = "arch"
        values = ind.all_values()
        task = -sum(((u + torch.randn(u.shape, generator=g) * 3e-3) * v).sum() for u, v in zip(util, values, strict=True))
        opt.zero_grad()
        (task + method.objective()).backward()
        opt.step()
        state.step += 1
        state.phase = "weights"
        method.after_step(model, state)
    method.util = util
    return method.binary_macs() / method.dense, method


def test_the_default_search_meets_its_flops_target_on_a_synthetic_task_and_keeps_useful_channels():
    macs, method = _synthetic_search("exponential", (0.5, 0.9))
    assert abs(macs / 0.5 - 1) <= 0.01
    assert method._histogram(0)["undecided"] < 0.1                        # annealed to (nearly) binary
    masks, _ = method.final_masks()
    merged = [u.mean(0) for u in method.util]
    kept = torch.cat([u[m] for u, m in zip(merged, masks, strict=True)]).mean()
    pruned = torch.cat([u[~m] for u, m in zip(merged, masks, strict=True)]).mean()
    assert kept > 2 * pruned                                                # the task term decides which go
