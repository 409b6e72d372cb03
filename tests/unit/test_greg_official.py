"""GReg against a re-statement of the official update rule, on a small random conv net.

The class `OfficialRule` below re-states, from the official code and independently of
`prunerep.methods.greg`, how MingSun-Tse/Regularization-Pruning (commit a404402,
``pruner/reg_pruner.py``) grows the penalty: ``_update_reg`` (every K_u iterations, layer by layer
in model order, skipping finished layers), ``_greg_1`` / ``_greg_2`` (growth, picking, stop
conditions), ``_update_mag_ratio`` (mean |W| kept / pruned, momentum 0.9), ``_pick_pruned`` /
``_pick_pruned_wg`` (the ceil(pr·n) smallest L1 norms, at least one kept), ``_apply_reg``
(grad += λ·w after backward) and the loop of ``prune()`` (update after the forward, stabilise
for K_s iterations once every layer has stopped, prune after the step of iteration
``iter_stabilize_reg + K_s``). Filter granularity, CPU, float32 λ accumulated as the code does.

Both drive a copy of the same network on the same batches with the same SGD for a few dozen
iterations; they must agree on λ of every filter at every iteration, on the iteration (and
reason) each layer stops growing, on GReg-2's pick iteration, on the iteration the pruning stage
ends, and on the pruned filter indices. The settings avoid the two documented deviations (λ
exactly at a threshold; a layer reaching the magnitude-ratio limit at the very first update).
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from prunerep.engine import TrainState
from prunerep.methods import Budget, MethodContext, get_method
from prunerep.pruning.groups import find_groups

LR, MOMENTUM, WD = 0.05, 0.9, 5e-4


class SmallNet(nn.Module):
    """conv1 (8) -> conv2 (12) -> conv3 (16), each with BN and ReLU, then pool and fc."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 12, 3, padding=1, bias=False), nn.BatchNorm2d(12)
        self.conv3, self.bn3 = nn.Conv2d(12, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        x = torch.relu(self.bn3(self.conv3(x)))
        return self.fc(x.mean((2, 3)))


class OfficialRule:
    """The official `Pruner`'s penalty bookkeeping (reg_pruner.py), wg = 'filter'."""

    def __init__(self, model: nn.Module, pr: dict[str, float], method: str, **args: float) -> None:
        self.args, self.method = args, method
        self.layers = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]
        self.pr = {n: pr.get(n, 0.0) for n, _ in self.layers}
        self.reg = {n: torch.zeros(m.weight.shape[0], m.weight.shape[1]) for n, m in self.layers}  # [N, C]
        self.hist_mag_ratio: dict[str, float] = {}
        self.iter_update_reg_finished: dict[str, int] = {}
        self.finish_reason: dict[str, str] = {}
        self.iter_finish_pick: dict[str, int] = {}
        self.iter_stabilize_reg = math.inf
        self.prune_state = "update_reg"
        self.pruned_wg: dict[str, list[int]] = {}
        self.kept_wg: dict[str, list[int]] = {}
        if method == "GReg-1":  # _get_kept_wg_L1: L1 sorting on the pretrained weights
            for n, m in self.layers:
                self.pruned_wg[n] = self._pick(self._score(m), self.pr[n])
                self.kept_wg[n] = [i for i in range(m.weight.shape[0]) if i not in self.pruned_wg[n]]

    @staticmethod
    def _score(m: nn.Module) -> torch.Tensor:
        w = m.weight.detach()
        return w.abs().mean(dim=[1, 2, 3]) if w.dim() == 4 else w.abs().mean(dim=1)

    @staticmethod
    def _pick(w_abs: torch.Tensor, pr: float) -> list[int]:
        if pr == 0:
            return []
        n_pruned = min(math.ceil(pr * len(w_abs)), len(w_abs) - 1)  # do not prune all
        return w_abs.sort()[1][:n_pruned].tolist()

    def _mag_ratio(self, name: str, w_abs: torch.Tensor, pruned: list[int]) -> None:
        kept = [i for i in range(len(w_abs)) if i not in pruned]
        ratio = float(w_abs[kept].mean() / w_abs[pruned].mean())
        old = self.hist_mag_ratio.get(name)
        self.hist_mag_ratio[name] = ratio if old is None else old * 0.9 + ratio * 0.1

    def _greg_1(self, name: str, w_abs: torch.Tensor) -> bool:
        if self.pr[name] == 0:
            return True
        self._mag_ratio(name, w_abs, self.pruned_wg[name])
        self.reg[name][self.pruned_wg[name], :] += self.args["reg_granularity_prune"]
        if all(v >= self.args["mag_ratio_limit"] for v in self.hist_mag_ratio.values()):
            self.finish_reason[name] = "magnitude ratio"
            return True
        if self.reg[name].max() > self.args["reg_upper_limit"]:
            self.finish_reason[name] = "ceiling"
            return True
        return False

    def _greg_2(self, name: str, w_abs: torch.Tensor, total_iter: int) -> bool:
        if self.pr[name] == 0:
            self.iter_finish_pick[name] = total_iter
            return True
        if name in self.iter_finish_pick:
            self.reg[name][self.pruned_wg[name], :] += self.args["reg_granularity_prune"]
            self.reg[name][self.kept_wg[name], :] = self.args["reg_granularity_recover"]
        else:
            self.reg[name] += self.args["reg_granularity_pick"]
        picked = self.pruned_wg[name] if name in self.iter_finish_pick else self._pick(w_abs, self.pr[name])
        self._mag_ratio(name, w_abs, picked)
        if name not in self.iter_finish_pick and self.reg[name].max() >= self.args["reg_upper_limit_pick"]:
            self.iter_finish_pick[name] = total_iter
            self.pruned_wg[name] = self._pick(w_abs, self.pr[name])
            self.kept_wg[name] = [i for i in range(len(w_abs)) if i not in self.pruned_wg[name]]
        if name not in self.iter_finish_pick:
            return False
        if self.hist_mag_ratio[name] >= self.args["mag_ratio_limit"]:
            self.finish_reason[name] = "magnitude ratio"
            return True
        if self.reg[name].max() > self.args["reg_upper_limit"]:
            self.finish_reason[name] = "ceiling"
            return True
        return False

    def update_reg(self, total_iter: int) -> None:
        for name, m in self.layers:
            if name in self.iter_update_reg_finished:
                continue
            w_abs = self._score(m)
            done = self._greg_1(name, w_abs) if self.method == "GReg-1" else self._greg_2(name, w_abs, total_iter)
            if done:
                self.iter_update_reg_finished[name] = total_iter
                if all(n in self.iter_update_reg_finished for n, _ in self.layers):
                    self.prune_state, self.iter_stabilize_reg = "stabilize_reg", total_iter

    def apply_reg(self) -> None:
        for name, m in self.layers:
            reg = self.reg[name]
            reg = reg.unsqueeze(2).unsqueeze(3) if reg.shape != m.weight.shape else reg
            m.weight.grad += reg * m.weight


def _batches(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(16, 3, 8, 8, generator=g), torch.randint(0, 4, (16,), generator=g)) for _ in range(n)]


def _run_official(net: nn.Module, pr: dict[str, float], method: str, args: dict, batches: list) -> tuple:
    rule = OfficialRule(net, pr, method, **args)
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD)
    lambdas, steps = [], None
    for total_iter, (x, y) in enumerate(batches):   # prune(): total_iter counts from 0
        y_ = net(x)
        if rule.prune_state == "update_reg" and total_iter % args["update_reg_interval"] == 0:
            rule.update_reg(total_iter)
        loss = nn.functional.cross_entropy(y_, y)
        opt.zero_grad()
        loss.backward()
        rule.apply_reg()
        opt.step()
        lambdas.append({n: rule.reg[n][:, 0].clone() for n in pr})
        if rule.prune_state == "stabilize_reg" and total_iter - rule.iter_stabilize_reg == args["stabilize_reg_interval"]:
            steps = total_iter + 1
            break
    return rule, lambdas, steps


def _run_ours(net: nn.Module, pr: dict[str, float], variant: str, args: dict, batches: list) -> tuple:
    example = batches[0][0][:1]
    groups = find_groups(net, example)
    method = get_method("greg", variant=variant, reg=args)
    method.prepare(net, MethodContext(groups=groups, prunable=list(groups.select(method.prunable)),
                                      example_input=example, budget=Budget(ratios=pr), cost_model=None))
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD)
    state, lambdas = TrainState(), []
    for x, y in batches:   # the engine's order: backward, after_backward, step, step += 1, after_step
        loss = nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        method.after_backward(net, state)
        opt.step()
        state.step += 1
        method.after_step(net, state)
        lambdas.append({n: lam.float() for n, lam in method.lambdas().items()})
        if state.stop:
            break
    return method, lambdas, state.step if state.stop else None


CASES = {
    # GReg-1 stopped by the ceiling: λ = 0.05 per update every 2 iterations, > τ = 0.42 at the 9th.
    "greg1-ceiling": ("greg1", "GReg-1", dict(update_reg_interval=2, reg_granularity_prune=0.05,
                                             reg_upper_limit=0.42, mag_ratio_limit=1e6, stabilize_reg_interval=5)),
    # GReg-1 stopped once every layer's smoothed magnitude ratio reaches 5 (τ out of reach).
    "greg1-magnitude": ("greg1", "GReg-1", dict(update_reg_interval=1, reg_granularity_prune=0.1,
                                               reg_upper_limit=1e3, mag_ratio_limit=5.0, stabilize_reg_interval=4)),
    # GReg-2: a uniform rise by 0.02 to τ' = 0.29 (15 updates: long enough for the L1 order to change,
    # so the pick differs from the dense-weight choice), then +0.25 on the pruned filters and the
    # code's -1e-4 on the kept ones, until the pruned λ exceeds τ = 1.
    "greg2-ceiling": ("greg2", "GReg-2", dict(update_reg_interval=1, reg_granularity_pick=0.02, reg_upper_limit_pick=0.29,
                                             reg_granularity_prune=0.25, reg_granularity_recover=-1e-4,
                                             reg_upper_limit=1.0, mag_ratio_limit=1e6, stabilize_reg_interval=3)),
    # GReg-2 stopped by the magnitude ratio after picking.
    "greg2-magnitude": ("greg2", "GReg-2", dict(update_reg_interval=1, reg_granularity_pick=0.05, reg_upper_limit_pick=0.12,
                                               reg_granularity_prune=0.15, reg_granularity_recover=-1e-4,
                                               reg_upper_limit=1e3, mag_ratio_limit=5.0, stabilize_reg_interval=2)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_schedule_stops_and_pruned_sets_match_the_official_update_rule(case):
    variant, official_name, args = CASES[case]
    pr = {"conv1": 0.5, "conv2": 0.25}           # conv3 and fc unpruned (pr 0 in the official rule)
    torch.manual_seed(0)
    dense = SmallNet()
    batches = _batches(60)
    official_net = copy.deepcopy(dense)
    rule, official_lambdas, official_steps = _run_official(official_net, pr, official_name, args, batches)
    ours_net = copy.deepcopy(dense)
    method, our_lambdas, our_steps = _run_ours(ours_net, pr, variant, args, batches)

    # The pruning stage ends at the same iteration, within the driven iterations.
    assert official_steps is not None and our_steps == official_steps
    # λ of every filter after every iteration (the code accumulates float32; ours is count · δλ).
    assert len(our_lambdas) == len(official_lambdas)
    for t, (ours, theirs) in enumerate(zip(our_lambdas, official_lambdas, strict=True)):
        for name in pr:
            torch.testing.assert_close(ours[name], theirs[name], rtol=1e-5, atol=1e-7, msg=f"{case}: λ of {name} at {t}")
    summary = method.summary()["layers"]
    for name in pr:
        s = summary[name]
        assert s["finished_at"] == rule.iter_update_reg_finished[name], name
        assert s["finish_reason"].startswith(rule.finish_reason[name]), name
        pruned = sorted(torch.nonzero(next(x for x in method.layers if x.name == name).pruned).flatten().tolist())
        assert pruned == sorted(rule.pruned_wg[name]), name
        if variant == "greg2":
            assert s["picked_at"] == rule.iter_finish_pick[name], name
        assert s["mag_ratio"] == pytest.approx(rule.hist_mag_ratio[name], rel=1e-4), name
    assert method.stabilize_start == rule.iter_stabilize_reg
    # The expected stop reason was reached (the case tests what its name says).
    assert {rule.finish_reason[n] for n in pr} == {case.split("-")[1].replace("magnitude", "magnitude ratio")}
    # The unpruned layers never got a penalty in the official rule either.
    assert all(not rule.reg[n].any() for n in ("conv3", "fc"))
    # Both drove the same trajectory (λ differs only by the code's float32 accumulation).
    for key, w in official_net.state_dict().items():
        if key.endswith("weight"):
            torch.testing.assert_close(ours_net.state_dict()[key], w, rtol=0, atol=1e-5 * float(w.abs().max()))
    if case == "greg2-ceiling":  # GReg-2 picks by L1 at the pick, not on the dense weights
        assert any(summary[n]["l1_overlap"] < 1 for n in pr)
