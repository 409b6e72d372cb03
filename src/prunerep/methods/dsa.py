"""DSA: Differentiable Sparsity Allocation (Ning et al., "DSA: More Efficient Budgeted Pruning via
Differentiable Sparsity Allocation", ECCV 2020, arXiv:2004.02164).

The first public *training* implementation: the official release
(github.com/walkerning/differentiable-sparsity-allocation) holds evaluation code only. Its verified
parts are the specification here (``../shared/papers/dsa.md`` §4.2 "Verified in the code"):

* **Topological grouping.** One keep ratio per channel group (`prunerep.pruning.groups`):
  convs coupled through residual additions share one mask and one ratio.
* **Keep ratio** ``alpha = sigmoid(a)`` per group, ``a`` initialised to 5 (``alpha_0 ~ 0.993``).
* **Keep probability** of channel ``c``:
  ``p_c = clip(sigmoid(beta_2 (log b_c - log beta_1)) + 0.01, 0, 1)``, the sigmoid argument clamped
  to +-20, with ``b_c`` the (detached) filter L1 norm, ``beta_2 = 1`` and ``beta_1`` solved at every
  forward pass so that ``mean_c p_c = alpha`` (the expected number of kept channels is ``alpha C``).
  The official code uses scipy's ``root_scalar``; here a vectorised float64 bisection on
  ``log beta_1`` solves all groups at once (:func:`solve_log_beta1`).
* **Implicit gradient** (:class:`KeepProbFunction`):
  ``dL/dalpha = C sum_c dL/dp_c softmax_c(log f'_c)`` with ``f'_c = sigma(t_c)(1 - sigma(t_c))``,
  ``t_c = beta_2 (log beta_1 - log b_c)``: implicit differentiation of ``mean_c p_c = alpha``.
* **Masks** ``m ~ Bernoulli(p)`` with a straight-through gradient (``dm/dp = 1``)
  (`StochasticMask` gates). The official code multiplies the output of BN before the ReLU
  (``placement="output"``); the default here multiplies the input of every layer that reads the
  group (``placement="input"``): the same network for 0/1 masks, but a usable surrogate gradient
  (see the deviations below).
* **FLOPs model** ``F(alpha) = alpha^T A alpha + B^T alpha (+ c)`` (:class:`AlphaCost`), from the
  project's bilinear MACs model; exact at hard widths.

**Reconstructions** (the training loop is not released; each is documented in the notebook):

* *Bi-level split*: weights on the training split, ``a`` on held-out batches (10 % of the
  training split, as the official loader's ``train_val_split_ratio=0.9`` suggests), one
  first-order (DARTS-style) step per ``arch_optim.every`` weight steps.
* *Budget-constrained update of alpha* (the paper calls it ADMM-inspired; its exact form is not
  verified): projected gradient descent on the logits ``a`` in the metric ``M = diag(dF/da)``.
  The task step is ``-lr M^-1 dL/da`` (the loss gradient per unit of MACs, globally normalised,
  SGD with momentum; :class:`_Preconditioner`); after every weight step the projection in the
  same metric, ``M^-1 dF/da = 1``, shifts every logit by the same amount
  onto the constraint surface ``F = B(t)`` (a one-dimensional root find,
  :func:`project_to_budget`; the constraint is active at the optimum, and an inequality-only
  correction let gradient noise drift the ratios below the budget in calibration). The fixed
  points are the KKT points of ``min L s.t. F <= B`` (``dL/da_g / dF/da_g`` equal across
  groups: equal marginal loss per marginal MAC), and the projection itself favours no group, so
  the allocation comes from the loss alone. ``B(t)`` goes linearly from ``F(alpha_0)`` to the
  budget over the first ``ramp`` fraction of the search (the weights adapt as channels
  disappear). Calibration note: a first version (Adam steps, Euclidean projection along
  ``dF/dalpha``) drove the residual streams, whose ``dF/dalpha`` is largest, to a few channels
  within tens of steps whatever the loss said, and lost ~9 points against the uniform
  allocation in a one-seed run (ResNet-20, 0.33 of the MACs, short CPU recipe).
* *Final widths*: ``ceil(alpha C)`` channels of highest importance per group (the spec's rule),
  scaled along the learned alpha direction so that the exact MACs meet the budget (largest
  widths within it: :func:`final_widths`), then removed by the shared surgery and fine-tuned.

Deviations from the official code: the mask placement (after BN, a dropped channel's mask gets
no gradient since ReLU'(0) = 0, and the kept channels' gradients cancel since the next BN is
scale-invariant; measured on a ResNet-20, ``sum_g dL/dalpha_g`` had the wrong sign against a
finite difference of the expected loss, +0.16 vs -1.20, and -0.93 with input placement);
importance ``b_c`` of a group coupled across several convs is
the sum of their filters' L1 norms (the project's `filter_l1`; the official "primal module" rule,
the first conv's filters only, is ``importance="primal_l1"``); the implicit gradient gives zero
weight to channels whose ``p`` is clipped at 1 or whose sigmoid argument is clamped (the exact
derivative; the official code weights them by their tiny ``f'``); MACs count conv *and* linear
layers (the project's convention), not conv only.

``allocation="uniform"`` is the control of claim 1: the same masks, importance, schedule and
fine-tuning, but every group keeps the same ratio (one scalar follows the budget), so only the
allocation differs.
"""

from __future__ import annotations

import hashlib
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from prunerep.config import from_dict, register_section, to_dict
from prunerep.engine import ArchOptimConfig, OptimConfig, RuntimeConfig, TrainState
from prunerep.methods.base import Budget, MethodContext, PruningMethod, register_method
from prunerep.methods.budget import top_k_masks
from prunerep.methods.iterative import IterativeSpec
from prunerep.methods.run import RunSpec, run_pruning
from prunerep.pruning.gates import StochasticMask, attach_gates
from prunerep.pruning.groups import ChannelGroup
from prunerep.pruning.surgery import prune_channels
from prunerep.reporting.paper import NOT_TRANSCRIBED
from prunerep.stages.common import SubsetConfig

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = [
    "DSA",
    "AlphaCost",
    "DSAAllocator",
    "DSAConfig",
    "Experiment",
    "GridConfig",
    "KeepProbFunction",
    "TimingConfig",
    "final_widths",
    "keep_probabilities",
    "plan_experiments",
    "project_to_budget",
    "run_experiments",
    "solve_log_beta1",
]

Importance = Literal["l1", "primal_l1", "bn"]
Allocation = Literal["learned", "uniform"]

_EPS = 1e-8      # log(b + eps), as the official code
_CLAMP = 20.0    # the sigmoid argument is clamped to +-20 (official code)
_FLOOR = 0.01    # p = sigmoid(.) + 0.01 (official code): every channel keeps a chance to be sampled


# ---------------------------------------------------------------------------------------------
# keep probabilities: the threshold solve and its implicit gradient


def _probs_and_t(log_imp: torch.Tensor, log_beta1: torch.Tensor, beta2: float,
                 valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``p`` [G, C] (0 on padding) and the clamped sigmoid argument ``t``."""
    t = (beta2 * (log_beta1[:, None] - log_imp)).clamp(-_CLAMP, _CLAMP)
    p = (torch.sigmoid(-t) + _FLOOR).clamp(0.0, 1.0)
    return torch.where(valid, p, torch.zeros_like(p)), t


def solve_log_beta1(log_imp: torch.Tensor, valid: torch.Tensor, alpha: torch.Tensor, beta2: float,
                    iters: int = 64) -> torch.Tensor:
    """``log beta_1`` per group such that the mean keep probability equals ``alpha``.

    Bisection, vectorised over groups (rows; ``valid`` marks real channels, the rest is padding).
    The mean of ``p`` is non-increasing in ``log beta_1``; the bracket spans the whole range where
    the clamped sigmoid varies, so for ``alpha`` in ``[0.01, 1]`` the root is inside it. 64 halvings
    of a bracket of width < 100 reach float64 resolution.

    Args:
        log_imp: ``log(b + 1e-8)`` [G, C] (float64 recommended).
        valid: bool [G, C].
        alpha: target mean keep probability [G].
        beta2: slope of the sigmoid (> 0).
        iters: bisection steps.

    Returns:
        ``log beta_1`` [G], same dtype as ``log_imp``.
    """
    big = torch.finfo(log_imp.dtype).max
    lo = torch.where(valid, log_imp, torch.full_like(log_imp, big)).amin(1) - _CLAMP / beta2 - 1.0
    hi = torch.where(valid, log_imp, torch.full_like(log_imp, -big)).amax(1) + _CLAMP / beta2 + 1.0
    count = valid.sum(1).to(log_imp.dtype)
    alpha = alpha.to(log_imp.dtype)
    for _ in range(iters):
        mid = (lo + hi) / 2
        mean = _probs_and_t(log_imp, mid, beta2, valid)[0].sum(1) / count
        above = mean > alpha          # too many channels kept: raise the threshold
        lo = torch.where(above, mid, lo)
        hi = torch.where(above, hi, mid)
    return (lo + hi) / 2


class KeepProbFunction(torch.autograd.Function):
    """``p(alpha)`` with ``beta_1`` solved in the forward pass and the implicit gradient backward.

    Forward: ``(alpha [G], log_imp [G, C], valid [G, C], beta2) -> (p [G, C], log_beta1 [G])``.
    Backward (to ``alpha`` only; importance is detached, as in the official code):
    ``dL/dalpha_g = C_g sum_c dL/dp_gc w_gc`` with ``w_g = softmax(log f'_g)`` over the channels
    whose ``p`` responds to ``beta_1`` (not clipped at 1, sigmoid argument not clamped):
    differentiating ``sum_c p_c(beta_1(alpha)) = C alpha`` gives
    ``dp_c/dalpha = C f'_c / sum_k f'_k``.
    """

    @staticmethod
    def forward(ctx: Any, alpha: torch.Tensor, log_imp: torch.Tensor, valid: torch.Tensor,
                beta2: float) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            log_imp64 = log_imp.double()
            log_beta1 = solve_log_beta1(log_imp64, valid, alpha.detach().double(), beta2)
            p, t = _probs_and_t(log_imp64, log_beta1, beta2, valid)
            live = valid & (t.abs() < _CLAMP) & (torch.sigmoid(-t) + _FLOOR < 1.0)
            log_fprime = -F.softplus(t) - F.softplus(-t)           # log sigma(t)(1 - sigma(t))
            log_fprime = torch.where(live, log_fprime, torch.full_like(log_fprime, -math.inf))
            # A group with no responsive channel (alpha at 1 or at the floor) has no direction of
            # change; give it the uniform weights of its channels (its gradient is then the mean).
            dead_row = ~live.any(1, keepdim=True)
            log_fprime = torch.where(dead_row & valid, torch.zeros_like(log_fprime), log_fprime)
            weights = torch.softmax(log_fprime, dim=1)
            weights = torch.where(valid, weights, torch.zeros_like(weights))
        ctx.save_for_backward(weights, valid.sum(1).to(weights.dtype))
        ctx.alpha_dtype = alpha.dtype
        ctx.mark_non_differentiable(log_beta1)
        return p.to(alpha.dtype), log_beta1

    @staticmethod
    def backward(ctx: Any, grad_p: torch.Tensor, _grad_beta1: torch.Tensor | None) -> tuple[Any, ...]:
        weights, count = ctx.saved_tensors
        grad_alpha = count * (grad_p.double() * weights).sum(1)
        return grad_alpha.to(ctx.alpha_dtype), None, None, None


def pad_importance(scores: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack per-group importance vectors into ``log(b + eps)`` [G, Cmax] and a validity mask."""
    cmax = max(s.numel() for s in scores)
    device = scores[0].device
    log_imp = torch.zeros(len(scores), cmax, dtype=torch.float64, device=device)
    valid = torch.zeros(len(scores), cmax, dtype=torch.bool, device=device)
    for i, s in enumerate(scores):
        log_imp[i, : s.numel()] = torch.log(s.detach().double().clamp_min(0) + _EPS)
        valid[i, : s.numel()] = True
    return log_imp, valid


def keep_probabilities(scores: Sequence[torch.Tensor], alpha: torch.Tensor,
                       beta2: float = 1.0) -> list[torch.Tensor]:
    """DSA's keep probabilities ``p_c`` of each group (differentiable w.r.t. ``alpha``).

    Args:
        scores: importance ``b`` per group (``[C_g]``; detached).
        alpha: keep ratio per group ``[G]``.
        beta2: slope of the sigmoid.

    Returns:
        ``[p_g]``, each ``[C_g]`` with ``mean(p_g) = alpha_g``.
    """
    log_imp, valid = pad_importance(scores)
    p, _ = KeepProbFunction.apply(alpha, log_imp, valid, float(beta2))
    return [p[i, : s.numel()] for i, s in enumerate(scores)]


# ---------------------------------------------------------------------------------------------
# FLOPs model in keep ratios


class AlphaCost:
    """MACs as a function of the keep ratios of some groups: ``F(a) = a^T A a + B^T a + c``.

    Built from the project's bilinear MACs model of the widths (`SoftCostModel.bilinear`,
    ``w^T A_w w + b_w^T w + c_w``) with ``w_g = alpha_g C_g`` for the given groups and the dense
    width for all others; hence exact at ``alpha = k / C`` (hard widths ``k``). Same convention as
    `prunerep.pruning.cost` (MACs of conv and linear layers).

    Args:
        cost_model: `SoftCostModel` of the dense model.
        group_ids: the groups whose keep ratio varies (the order of ``alpha``).
        device: where the form lives.
    """

    def __init__(self, cost_model: Any, group_ids: Sequence[str], device: torch.device | str = "cpu") -> None:
        a_w, b_w, c_w = cost_model.bilinear()
        ids = list(cost_model.group_ids)
        dense = torch.tensor([cost_model.dense_widths[g] for g in ids], dtype=torch.float64)
        embed = torch.zeros(len(ids), len(group_ids), dtype=torch.float64)  # w = embed @ alpha + fixed
        fixed = dense.clone()
        for j, gid in enumerate(group_ids):
            i = ids.index(gid)
            embed[i, j] = dense[i]
            fixed[i] = 0.0
        sym = (a_w + a_w.T) / 2
        self.group_ids = list(group_ids)
        self.channels = torch.tensor([cost_model.dense_widths[g] for g in group_ids], dtype=torch.float64,
                                     device=device)
        self.A = (embed.T @ sym @ embed).to(device)
        self.B = (embed.T @ (2 * sym @ fixed + b_w)).to(device)
        self.c = float(fixed @ sym @ fixed + b_w @ fixed + c_w)
        self.dense = float(cost_model.macs({}))

    def __call__(self, alpha: torch.Tensor) -> torch.Tensor:
        """MACs at keep ratios ``alpha`` [G] (float64, differentiable)."""
        a = alpha.to(self.A)
        return a @ self.A @ a + self.B @ a + self.c

    def grad(self, alpha: torch.Tensor) -> torch.Tensor:
        """``dF/dalpha`` [G] (all entries >= 0: MACs never fall when a width grows)."""
        a = alpha.to(self.A)
        return 2 * self.A @ a + self.B

    def at_widths(self, widths: torch.Tensor) -> torch.Tensor:
        """MACs at integer (or expected) widths [G]: ``F(widths / C)``."""
        return self(widths.to(self.A) / self.channels)

    def bilinear(self) -> tuple[torch.Tensor, torch.Tensor, float]:
        """``(A, B, c)`` in keep ratios (A symmetric)."""
        return self.A.clone(), self.B.clone(), self.c


def project_to_budget(logit: torch.Tensor, cost: AlphaCost, target: float, lo: torch.Tensor,
                      hi: torch.Tensor, direction: torch.Tensor | None = None,
                      iters: int = 60) -> tuple[torch.Tensor, bool]:
    """Shift the keep-ratio logits ``a`` along ``direction`` so that ``F(sigmoid(a)) = target``.

    ``a(tau) = clamp(a - tau d, lo, hi)`` (bounds on ``a``) with ``tau`` found by bisection (``F``
    falls monotonically in ``tau`` since ``d >= 0`` and ``F`` rises with every keep ratio);
    ``tau < 0`` raises the ratios when ``F`` is below the target. The budget is an inequality,
    but it is active at the optimum (more channels never cost accuracy in expectation), and
    projecting onto the surface keeps gradient noise from drifting the ratios below it, where a
    one-sided correction would never bring them back. The default ``d = 1`` shifts every logit
    equally: the projection in the metric ``diag(dF/da)`` (see :class:`DSA`), which leaves equal
    keep ratios equal (the uniform control) and favours no group by its cost.

    Returns:
        ``(a', feasible)``; ``feasible`` is False when the target is out of reach: even ``a = lo``
        exceeds it (then ``lo`` is returned where ``d > 0``), or ``a = hi`` stays below it (then
        ``hi``).
    """
    a = logit.detach().to(torch.float64).clamp(lo, hi)
    d = torch.ones_like(a) if direction is None else direction.detach().to(a).clamp_min(0)
    movable = d > 0
    if not bool(movable.any()):
        return a, False
    safe = torch.where(movable, d, torch.ones_like(d))
    tau_lo = -float(((hi - a) / safe)[movable].max())    # every movable logit at its upper bound
    tau_hi = float(((a - lo) / safe)[movable].max())     # every movable logit at its lower bound

    def macs(tau: float) -> float:
        return float(cost(torch.sigmoid((a - tau * d).clamp(lo, hi))))

    if macs(tau_hi) > target:
        return (a - tau_hi * d).clamp(lo, hi), False
    if macs(tau_lo) < target:
        return (a - tau_lo * d).clamp(lo, hi), False
    for _ in range(iters):
        mid = (tau_lo + tau_hi) / 2
        if macs(mid) > target:
            tau_lo = mid
        else:
            tau_hi = mid
    return (a - tau_hi * d).clamp(lo, hi), True


def final_widths(alpha: torch.Tensor, cost: AlphaCost, target: float, iters: int = 60) -> torch.Tensor:
    """Deterministic widths: ``ceil(s alpha C)`` for the largest ``s`` whose exact MACs fit ``target``.

    ``s = 1`` is the spec's ``ceil(alpha C)``; the scale corrects for rounding and for an alpha
    that ended off the constraint surface, keeping the learned *allocation* (the ratios between
    groups). Then single channels are added greedily, in the order in which growing ``s`` would
    add them, while the MACs stay within the target. At least one channel per group.

    Raises:
        ValueError: the budget cannot be met even with one channel per group.
    """
    alpha = alpha.detach().to(cost.channels).clamp_min(0)
    C = cost.channels

    def widths(s: float) -> torch.Tensor:
        return torch.minimum(torch.clamp(torch.ceil(s * alpha * C - 1e-6), min=1.0), C)

    if float(cost.at_widths(widths(0.0))) > target:
        raise ValueError(f"budget of {target:.0f} MACs cannot be met even with one channel per group")
    s_hi = 1.0 / max(float(alpha.min()), 1e-6)
    if float(cost.at_widths(widths(s_hi))) <= target:
        return widths(s_hi)
    s_lo = 0.0
    for _ in range(iters):
        mid = (s_lo + s_hi) / 2
        if float(cost.at_widths(widths(mid))) <= target:
            s_lo = mid
        else:
            s_hi = mid
    w = widths(s_lo)
    # the s at which each group would gain its next channel: the earliest first
    next_s = w / torch.clamp(alpha * C, min=1e-12)
    for g in torch.argsort(next_s).tolist():
        if w[g] < C[g]:
            trial = w.clone()
            trial[g] += 1
            if float(cost.at_widths(trial)) <= target:
                w = trial
    return w


def logit_bounds(channels: torch.Tensor, min_keep: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounds of the keep-ratio logits: at least one channel, ``min_keep`` and 0.011 (above the
    0.01 probability floor, so the expectation constraint stays solvable); at most 0.999."""
    lo = torch.logit(torch.clamp(1.0 / channels.double(), min=max(min_keep, 0.011)))
    return lo, torch.full_like(lo, math.log(0.999 / 0.001))


def uniform_widths(model: nn.Module, budget: float, example_input: torch.Tensor,
                   min_keep: float = 0.0) -> dict[str, int]:
    """Final widths of the uniform allocation at a MACs budget (what ``allocation="uniform"`` ends
    with, without training): one keep ratio for every group, then :func:`final_widths`."""
    from prunerep.pruning.groups import find_groups
    from prunerep.pruning.soft_cost import SoftCostModel

    groups = find_groups(model, example_input)
    cost = AlphaCost(SoftCostModel.from_model(model, example_input, groups), groups.ids())
    lo, hi = logit_bounds(cost.channels, min_keep)
    target = budget * cost.dense
    a, _ = project_to_budget(torch.full_like(lo, 5.0), cost, target, lo, hi)
    widths = final_widths(torch.sigmoid(a), cost, target)
    return {gid: int(w) for gid, w in zip(cost.group_ids, widths.tolist(), strict=True)}


# ---------------------------------------------------------------------------------------------
# the allocator: keep ratios, importance and the per-forward probabilities


class DSAAllocator(nn.Module):
    """Keep-ratio logits ``a`` [G] of the gated groups and their keep probabilities.

    Registered on the model (``model.dsa``) during the search, so the training checkpoint holds
    ``a`` and ``.to(device)`` moves it; removed before surgery. The probabilities of all groups
    are computed once per model forward (one vectorised threshold solve) and shared by the gates.

    Args:
        groups: the gated groups, in order.
        sources: per group, the modules whose weights give the importance (convs for the L1
            criteria, norms for ``"bn"``).
        importance: ``"l1"`` (sum over the group's convs of each filter's L1 norm), ``"primal_l1"``
            (the first conv only: the official "primal module" rule) or ``"bn"`` (mean ``|gamma|``).
        init_logit: initial ``a`` (official: 5.0).
        beta2: sigmoid slope (official: 1.0, not trained).
    """

    def __init__(self, groups: Sequence[ChannelGroup], sources: Sequence[Sequence[nn.Module]],
                 importance: Importance = "l1", init_logit: float = 5.0, beta2: float = 1.0) -> None:
        super().__init__()
        if beta2 <= 0:
            raise ValueError(f"dsa: beta2 must be > 0, got {beta2}")
        self.group_ids = [g.id for g in groups]
        self.channels = [g.channels for g in groups]
        self.importance = importance
        self.beta2 = float(beta2)
        # float64: the projection puts alpha exactly on the budget surface; float32 logits would
        # leave it ~1e-8 above
        self.logit = nn.Parameter(torch.full((len(groups),), float(init_logit), dtype=torch.float64))
        cmax = max(self.channels)
        valid = torch.zeros(len(groups), cmax, dtype=torch.bool)
        for i, c in enumerate(self.channels):
            valid[i, :c] = True
        self.register_buffer("valid", valid, persistent=False)
        self._sources = [list(s) for s in sources]   # plain list: not submodules (no duplicate state)
        self._cache: torch.Tensor | None = None
        self._in_forward = False
        # Set by the method to the loop's TrainState: during weight steps the keep ratios are not
        # updated, so their graph (the mask gradients) is skipped there.
        self.train_state: TrainState | None = None

    def alpha(self) -> torch.Tensor:
        """Keep ratios ``sigmoid(a)`` [G]."""
        return torch.sigmoid(self.logit)

    @torch.no_grad()
    def scores(self) -> list[torch.Tensor]:
        """Importance ``b`` per group, from the current weights (detached)."""
        out = []
        for mods in self._sources:
            if self.importance == "bn":
                s = torch.stack([m.weight.detach().abs().float() for m in mods]).mean(0)
            else:
                used = mods[:1] if self.importance == "primal_l1" else mods
                s = sum(m.weight.detach().abs().flatten(1).sum(1).float() for m in used)
            out.append(s)
        return out

    def probs(self) -> torch.Tensor:
        """Keep probabilities [G, Cmax] (0 on padding); cached within one model forward."""
        if self._in_forward and self._cache is not None:
            return self._cache
        log_imp, _ = pad_importance(self.scores())
        alpha = self.alpha()
        if self.train_state is not None and self.train_state.phase != "arch":
            alpha = alpha.detach()
        p, _ = KeepProbFunction.apply(alpha, log_imp.to(self.valid.device), self.valid, self.beta2)
        if self._in_forward:
            self._cache = p
        return p

    def extra_repr(self) -> str:
        return f"groups={len(self.group_ids)}, importance={self.importance!r}, beta2={self.beta2:g}"


class _RowProbs:
    """``prob_fn`` of one group's gate: its row of the allocator's probabilities (deep-copyable)."""

    def __init__(self, allocator: DSAAllocator, row: int) -> None:
        self.allocator = allocator
        self.row = row

    def __call__(self) -> torch.Tensor:
        return self.allocator.probs()[self.row, : self.allocator.channels[self.row]]


class _Scope:
    """Root forward (pre-)hook: the allocator's probabilities are computed once per forward."""

    def __init__(self, allocator: DSAAllocator, enter: bool) -> None:
        self.allocator = allocator
        self.enter = enter

    def __call__(self, module: nn.Module, args: Any, *rest: Any) -> None:
        self.allocator._cache = None
        self.allocator._in_forward = self.enter


class _Preconditioner:
    """Gradient hook of the logits: ``dL/da`` in the metric ``diag(dF/da)``, globally normalised.

    ``r_g = (dL/da_g) / (dF/da_g)`` is the loss gradient per unit of MACs (``F`` as a fraction of
    the dense MACs); dividing by the running root mean square of ``r`` over groups and steps makes
    the optimiser's learning rate a step size in logit units while keeping the ratios between
    groups (unlike Adam's per-coordinate normalisation, which would erase the metric).
    """

    def __init__(self, method: DSA, beta: float = 0.9) -> None:
        self.method = method
        self.beta = beta

    def __call__(self, grad: torch.Tensor) -> torch.Tensor:
        r = grad.double() / self.method.flops_slope().to(grad.device).clamp_min(1e-12)
        ms = float((r * r).mean())
        prev = self.method.grad_ms
        self.method.grad_ms = ms if prev is None else self.beta * prev + (1 - self.beta) * ms
        return (r / math.sqrt(max(self.method.grad_ms, 1e-30))).to(grad.dtype)


# ---------------------------------------------------------------------------------------------
# the method


def _optim(value: dict | OptimConfig | None, path: str) -> OptimConfig:
    return value if isinstance(value, OptimConfig) else from_dict(OptimConfig, value or {}, path)


@register_method
class DSA(PruningMethod):
    """Differentiable sparsity allocation under a MACs budget (see the module docstring).

    Args:
        search: weight optimiser of the search phase (the Bernoulli-masked training during
            which the keep ratios are learned).
        arch_optim: optimiser of the keep-ratio logits (held-out batches); default SGD (momentum
            0.9), lr 0.01 in logit units after the preconditioning.
        init: ``"pretrained"`` (prune the given weights) or ``"scratch"`` (re-initialise them
            first: DSA's pruning from scratch).
        allocation: ``"learned"`` (DSA) or ``"uniform"`` (control: one shared ratio).
        importance: channel importance ``b`` (see :class:`DSAAllocator`).
        init_logit: initial ``a`` (official 5.0).
        beta2: sigmoid slope (official 1.0).
        ramp: fraction of the search over which the budget goes from ``F(alpha_0)`` to the target.
        min_keep: lower bound of every keep ratio (also at least ``1/C`` and 0.011, so that the
            expectation constraint with the 0.01 floor stays solvable).
        log_every: steps between two points of the budget trace.
        placement: where the masks multiply: ``"input"`` of every reader of the group (default)
            or ``"output"`` of its BN layers (the official position; see the module docstring).
    """

    slug = "dsa"
    paper = "Ning et al., ECCV 2020, arXiv:2004.02164"
    bilevel = True

    def __init__(self, search: dict | OptimConfig | None = None, arch_optim: dict | ArchOptimConfig | None = None,
                 init: Literal["pretrained", "scratch"] = "pretrained", allocation: Allocation = "learned",
                 importance: Importance = "l1", init_logit: float = 5.0, beta2: float = 1.0,
                 ramp: float = 0.5, min_keep: float = 0.0, log_every: int = 10,
                 placement: Literal["input", "output"] = "input") -> None:
        for name, value, options in (("init", init, ("pretrained", "scratch")),
                                     ("allocation", allocation, ("learned", "uniform")),
                                     ("importance", importance, ("l1", "primal_l1", "bn")),
                                     ("placement", placement, ("input", "output"))):
            if value not in options:
                raise ValueError(f"dsa.{name}: {value!r} is not one of {list(options)}")
        if not 0.0 <= ramp <= 1.0:
            raise ValueError(f"dsa.ramp must be in [0, 1] (a fraction of the search), got {ramp}")
        self.search = _optim(search, "dsa.search")
        self.arch_optim = (arch_optim if isinstance(arch_optim, ArchOptimConfig)
                           else from_dict(ArchOptimConfig, {"optimizer": "sgd", "lr": 0.01, **(arch_optim or {})},
                                          "dsa.arch_optim"))
        self.init = init
        self.allocation = allocation
        self.importance = importance
        self.init_logit = float(init_logit)
        self.beta2 = float(beta2)
        self.ramp = float(ramp)
        self.min_keep = float(min_keep)
        self.log_every = max(1, int(log_every))
        self.placement = placement
        self.trace: list[dict[str, float]] = []
        self.final: dict[str, Any] = {}
        self.grad_ms: float | None = None    # running mean square of the preconditioned gradient
        self._infeasible_warned = False

    # -- set-up ----------------------------------------------------------------------------------

    def prepare(self, model: nn.Module, ctx: MethodContext) -> nn.Module:
        super().prepare(model, ctx)
        if ctx.budget.macs_keep is None:
            raise ValueError("dsa learns the allocation under a MACs budget: give Budget(macs_keep=...)")
        if self.init == "scratch":
            from prunerep.models import build_model

            fresh = build_model(model.arch_spec)
            model.load_state_dict(fresh.state_dict())
        device = ctx.example_input.device
        modules = dict(model.named_modules())
        groups = list(ctx.prunable)
        if not groups:
            raise ValueError("dsa: the model has no prunable channel group")
        if self.importance == "bn":
            missing = [g.id for g in groups if not g.norms]
            if missing:
                raise ValueError(f"dsa: importance='bn' needs a norm layer in every group; none in {missing}. "
                                 "Use importance='l1'.")
            sources = [[modules[n] for n in g.norms] for g in groups]
        else:
            sources = [[modules[n] for n in g.producers] for g in groups]
        allocator = DSAAllocator(groups, sources, self.importance, self.init_logit, self.beta2).to(device)
        if self.allocation == "uniform":
            allocator.logit.requires_grad_(False)
        model.dsa = allocator
        self.allocator = allocator
        attach_gates(model, groups,
                     lambda g: StochasticMask(g.channels, prob_fn=_RowProbs(allocator, groups.index(g)),
                                              eval_rule="topk"),
                     placement=self.placement)
        self._hooks = [model.register_forward_pre_hook(_Scope(allocator, True)),
                       model.register_forward_hook(_Scope(allocator, False), always_call=True)]
        self.cost = AlphaCost(ctx.cost_model, [g.id for g in groups], device=device)
        self.lo, self.hi = logit_bounds(self.cost.channels, self.min_keep)
        self.target = float(ctx.budget.macs_keep) * self.cost.dense
        if self.allocation == "learned":
            allocator.logit.register_hook(_Preconditioner(self))
        with torch.no_grad():
            self.start_macs = float(self.cost(allocator.alpha().double()))
        return model

    def phases(self) -> list[tuple[str, OptimConfig]]:
        return [("search", self.search)]

    def arch_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        return [self.allocator.logit] if self.allocation == "learned" else []

    def arch_optimizer_config(self) -> ArchOptimConfig:
        return self.arch_optim

    # -- the budget ------------------------------------------------------------------------------

    def budget_at(self, step: int, total_steps: int) -> float:
        """``B(t)``: linear from ``F(alpha_0)`` to the target over the first ``ramp`` of the search."""
        start = max(self.start_macs, self.target)
        if self.ramp == 0.0:
            return self.target
        frac = min(1.0, step / max(1.0, self.ramp * total_steps))
        return start + (self.target - start) * frac

    @torch.no_grad()
    def project(self, target: float) -> None:
        """Shift the keep-ratio logits onto ``F(alpha) = target`` (see :func:`project_to_budget`)."""
        a = self.allocator.logit.detach().double()
        if self.allocation == "uniform":
            a = torch.full_like(a, float(a.mean()))     # one shared ratio (they never differ)
        new, ok = project_to_budget(a, self.cost, target, self.lo, self.hi)
        if not ok and not self._infeasible_warned:
            warnings.warn(f"dsa: a budget of {target / self.cost.dense:.1%} of the MACs is out of the keep "
                          f"ratios' bounds; the nearest bound is used", stacklevel=2)
            self._infeasible_warned = True
        self.allocator.logit.copy_(new.to(self.allocator.logit))

    def flops_slope(self) -> torch.Tensor:
        """``d(F / F_dense) / da`` [G] at the current keep ratios (the metric of the update)."""
        alpha = self.allocator.alpha().detach().double()
        return self.cost.grad(alpha) * alpha * (1 - alpha) / self.cost.dense

    @torch.no_grad()
    def _record(self, state: TrainState, target: float) -> dict[str, float]:
        alpha = self.allocator.alpha().double()
        p = self.allocator.probs().double()
        sampled = torch.bernoulli(p).sum(1)              # widths of one draw of the masks
        rounded = torch.clamp(torch.round(alpha * self.cost.channels), min=1.0)
        dense = self.cost.dense
        return {"step": float(state.step), "epoch": state.epoch_progress,
                "target": target / dense, "expected": float(self.cost(alpha)) / dense,
                "sampled": float(self.cost.at_widths(sampled)) / dense,
                "rounded": float(self.cost.at_widths(rounded)) / dense,
                "mean_alpha": float(alpha.mean())}

    # -- hooks -----------------------------------------------------------------------------------

    def on_train_start(self, model: nn.Module, state: TrainState) -> None:
        self.allocator.train_state = state

    def after_step(self, model: nn.Module, state: TrainState) -> None:
        target = self.budget_at(state.step, state.total_steps)
        self.project(target)
        if state.step % self.log_every == 0 or state.step == state.total_steps:
            self.trace.append(self._record(state, target))

    def on_epoch_end(self, model: nn.Module, state: TrainState) -> None:
        rec = self._record(state, self.budget_at(state.step, state.total_steps))
        state.logs.update({"macs_keep_target": rec["target"], "macs_keep_expected": rec["expected"],
                           "macs_keep_sampled": rec["sampled"], "mean_alpha": rec["mean_alpha"]})

    def state_dict(self) -> dict[str, Any]:
        return {"trace": list(self.trace), "warned": self._infeasible_warned, "grad_ms": self.grad_ms}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.trace = list(state.get("trace", []))
        self._infeasible_warned = bool(state.get("warned", False))
        self.grad_ms = state.get("grad_ms")

    # -- surgery ---------------------------------------------------------------------------------

    def finalize(self, model: nn.Module, ctx: MethodContext) -> nn.Module:
        with torch.no_grad():
            self.project(self.target)                    # the search may end mid-ramp (max_steps)
            alpha = self.allocator.alpha().double()
            widths = final_widths(alpha, self.cost, self.target)
            scores = dict(zip(self.allocator.group_ids, self.allocator.scores(), strict=True))
        width_map = {gid: int(w) for gid, w in zip(self.allocator.group_ids, widths.tolist(), strict=True)}
        self.final = {
            "alpha": {gid: float(a) for gid, a in zip(self.allocator.group_ids, alpha.tolist(), strict=True)},
            "channels": dict(zip(self.allocator.group_ids, self.allocator.channels, strict=True)),
            "widths": width_map,
            "macs_keep_soft": float(self.cost(alpha)) / self.cost.dense,
            "macs_keep_model": float(self.cost.at_widths(widths)) / self.cost.dense,
            "budget": self.target / self.cost.dense,
        }
        self.allocator.train_state = None
        for h in self._hooks:
            h.remove()
        model.gates.remove()
        del model.dsa
        return prune_channels(model, ctx.groups, top_k_masks(scores, width_map))

    def summary(self) -> dict[str, Any]:
        return {**self.final, "trace": list(self.trace), "allocation": self.allocation, "init": self.init}


# ---------------------------------------------------------------------------------------------
# params.yaml section


@dataclass(frozen=True)
class DSAMethodConfig:
    """Constructor arguments of the `dsa` method shared by every run (see :class:`DSA`)."""

    importance: Importance = "l1"      # l1 | primal_l1 (official primal-module rule) | bn
    init_logit: float = 5.0            # a_0 (official), alpha_0 = sigmoid(5) ~ 0.993
    beta2: float = 1.0                 # sigmoid slope (official, not trained)
    ramp: float = 0.5                  # fraction of the search over which the budget tightens (reconstruction)
    min_keep: float = 0.0              # floor of the keep ratios (also >= 1/C and 0.011)
    log_every: int = 10                # steps between points of the budget trace
    placement: Literal["input", "output"] = "input"   # masks at the readers' inputs (official: output of BN)


@dataclass(frozen=True)
class GridConfig:
    """A grid of DSA runs: every combination of the lists below."""

    models: list[str] = field(default_factory=lambda: ["resnet20"])     # pretrain.models keys
    inits: list[Literal["pretrained", "scratch"]] = field(default_factory=lambda: ["pretrained"])
    budgets: list[float] = field(default_factory=lambda: [0.5])         # fraction of the dense MACs kept
    allocations: list[Allocation] = field(default_factory=lambda: ["learned"])  # learned | uniform (control)
    seeds: list[int] = field(default_factory=lambda: [0])

    def __post_init__(self) -> None:
        for b in self.budgets:
            if not 0 < b <= 1:
                raise ValueError(f"budgets: {b} is not a fraction of the dense MACs in (0, 1]")


@dataclass(frozen=True)
class TimingConfig:
    """Claim 2: DSA vs iterative L1 pruning to the same budget, timed side by side."""

    enabled: bool = True
    model: str = "resnet20"
    init: Literal["pretrained", "scratch"] = "pretrained"
    budget: float = 0.5
    seed: int = 0
    steps: int = 3                                           # prune + fine-tune steps of the baseline
    step_finetune: OptimConfig = OptimConfig()               # fine-tuning between steps


@dataclass(frozen=True)
class ImageNetConfig:
    """ImageNet settings of the released checkpoints (configuration only: needs ImageNet + a GPU)."""

    models: dict[str, list[float]] = field(
        default_factory=lambda: {"torchvision:resnet18": [0.6], "torchvision:resnet50": [0.6, 0.5]})
    batch_size: int = 256
    search: OptimConfig = OptimConfig(epochs=30, lr=0.01, schedule="cosine", weight_decay=1e-4)
    finetune: OptimConfig = OptimConfig(epochs=60, lr=0.01, schedule="cosine", weight_decay=1e-4)


@register_section("dsa")
@dataclass(frozen=True)
class DSAConfig:
    """The `dsa` section of params.yaml: the runs of the notebook and their recipes."""

    grids: list[GridConfig] = field(default_factory=lambda: [GridConfig()])  # union; duplicates run once
    timing: TimingConfig = TimingConfig()
    subset: SubsetConfig = SubsetConfig()        # class-stratified data subsets (fast profiles)
    batch_size: int = 128
    arch_fraction: float = 0.1                   # share of the training split for the keep ratios
    workers: int = 1                             # independent runs side by side (1 thread each if > 1)
    method: DSAMethodConfig = DSAMethodConfig()
    arch_optim: ArchOptimConfig = ArchOptimConfig(optimizer="sgd", lr=0.01)
    search: OptimConfig = OptimConfig(epochs=1, lr=0.01)           # weights, from a pretrained model
    search_scratch: OptimConfig = OptimConfig(epochs=1, lr=0.1)    # weights, from scratch
    finetune: OptimConfig = OptimConfig(epochs=1, lr=0.01)
    runtime: RuntimeConfig = RuntimeConfig(progress=False)
    imagenet: ImageNetConfig = ImageNetConfig()

    def __post_init__(self) -> None:
        if not 0 < self.arch_fraction < 1:
            raise ValueError(f"arch_fraction must be in (0, 1), got {self.arch_fraction}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")


# ---------------------------------------------------------------------------------------------
# the notebook's experiments


DENSE_ROOT = Path("artifacts/pretrain")
CHECKPOINT_ROOT = Path("artifacts/checkpoints/dsa")


@dataclass(frozen=True)
class Experiment:
    """One run of the notebook: a DSA run (``kind="dsa"``) or the iterative baseline."""

    model: str
    init: str
    budget: float
    allocation: str       # learned | uniform | iterative_l1
    seed: int
    kind: str = "dsa"

    @property
    def label(self) -> str:
        return f"{self.model}-{self.init}-{self.allocation}-b{self.budget:g}"


def plan_experiments(cfg: DSAConfig) -> list[Experiment]:
    """Every run of the section, without duplicates; the timing pair first (run side by side)."""
    runs: list[Experiment] = []
    t = cfg.timing
    if t.enabled:
        runs += [Experiment(t.model, t.init, t.budget, "learned", t.seed),
                 Experiment(t.model, t.init, t.budget, "iterative_l1", t.seed, kind="iterative")]
    for grid in cfg.grids:
        for model in grid.models:
            for init in grid.inits:
                for budget in grid.budgets:
                    for allocation in grid.allocations:
                        for seed in grid.seeds:
                            runs.append(Experiment(model, init, float(budget), allocation, seed))
    return list(dict.fromkeys(runs))


def dense_path(model: str) -> Path:
    """The shared dense checkpoint of pretrain.models key `model`."""
    return DENSE_ROOT / model / "model.pt"


def build_spec(cfg: DSAConfig, exp: Experiment) -> RunSpec | IterativeSpec:
    """The `RunSpec` (or `IterativeSpec`) of one experiment."""
    common = {"finetune": cfg.finetune, "seed": exp.seed, "batch_size": cfg.batch_size,
              "arch_fraction": cfg.arch_fraction, "runtime": cfg.runtime, "label": exp.label}
    budget = Budget(macs_keep=exp.budget)
    if exp.kind == "iterative":
        if exp.init != "pretrained":
            raise ValueError("timing.init: the iterative baseline prunes a pretrained model; use 'pretrained'")
        return IterativeSpec(RunSpec(method="l1", budget=budget, kwargs={"scope": "all"}, **common),
                             steps=cfg.timing.steps, step_finetune=cfg.timing.step_finetune)
    search = cfg.search_scratch if exp.init == "scratch" else cfg.search
    kwargs = {**to_dict(cfg.method), "search": to_dict(search), "arch_optim": to_dict(cfg.arch_optim),
              "init": exp.init, "allocation": exp.allocation}
    return RunSpec(method="dsa", budget=budget, kwargs=kwargs, **common)


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _run_experiment(job: dict[str, Any]) -> dict[str, Any]:
    """Worker body of :func:`run_experiments` (importable, so spawned processes can run it)."""
    from prunerep.methods.iterative import run_iterative
    from prunerep.models.checkpoint import load_model
    from prunerep.stages.common import load_data

    if job["threads"]:
        torch.set_num_threads(job["threads"])
    splits = load_data(job["data_cfg"], job["subset"])
    dense, _ = load_model(job["dense_path"])
    runner = run_iterative if isinstance(job["spec"], IterativeSpec) else run_pruning
    t0 = time.perf_counter()
    res = runner(job["spec"], dense, splits, checkpoint_dir=job["checkpoint_dir"], run_key=job["run_key"],
                 keep_model=False)
    wall = time.perf_counter() - t0
    return {"experiment": to_dict(job["experiment"]), "row": res.row(), "widths": res.widths,
            "summary": res.method_summary, "phase_time_s": res.phase_time_s, "histories": res.histories,
            "wall_time_s": wall}


def run_experiments(cfg: DSAConfig, data_cfg: Any, experiments: Sequence[Experiment] | None = None,
                    checkpoint_root: str | Path = CHECKPOINT_ROOT) -> list[dict[str, Any]]:
    """Run the experiments (default: :func:`plan_experiments`) on ``cfg.workers`` processes.

    Every run prunes the shared dense checkpoint of its model, checkpoints under
    ``checkpoint_root/<label>-s<seed>`` and resumes after a kill (its run key covers the
    config, data, subset and the dense file's content). Returns one record per experiment:
    ``experiment``, ``row`` (flat metrics), ``widths``, ``summary`` (keep ratios, budget trace),
    ``phase_time_s``, ``histories`` and ``wall_time_s`` of the whole run.
    """
    from prunerep.engine.parallel import map_jobs
    from prunerep.stages.common import run_key

    experiments = list(experiments if experiments is not None else plan_experiments(cfg))
    jobs = []
    for exp in experiments:
        path = dense_path(exp.model)
        if not path.exists():
            raise FileNotFoundError(f"dsa: dense checkpoint {path} is missing; run `dvc repro pretrain@{exp.model}` "
                                    f"(or remove {exp.model!r} from the dsa section)")
        spec = build_spec(cfg, exp)
        jobs.append({"experiment": exp, "spec": spec, "data_cfg": data_cfg, "subset": cfg.subset,
                     "dense_path": str(path), "checkpoint_dir": str(Path(checkpoint_root) / f"{exp.label}-s{exp.seed}"),
                     "run_key": run_key("dsa", spec, data_cfg, cfg.subset, _file_digest(path))})
    return map_jobs(_run_experiment, jobs, workers=cfg.workers)


# ---------------------------------------------------------------------------------------------
# tables and figures of the notebook


def _pyplot() -> Any:
    from prunerep.reporting.figures import plt

    return plt


def results_frame(results: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per run: the experiment, accuracy, achieved MACs and its distance to the budget."""
    import pandas as pd

    rows = []
    for r in results:
        e, row = r["experiment"], r["row"]
        rows.append({**e, "test_acc": row["test_acc"], "val_acc": row["val_acc"],
                     "test_acc_before_finetune": row["test_acc_before_finetune"],
                     "macs_keep": row["macs_keep"], "params_keep": row["params_keep"],
                     "budget_error": row["macs_keep"] / e["budget"] - 1.0,
                     "pruning_time_s": row["pruning_time_s"], "finetune_time_s": row["finetune_time_s"],
                     "wall_time_s": r["wall_time_s"]})
    return pd.DataFrame(rows)


def accuracy_table(df: pd.DataFrame) -> pd.DataFrame:
    """Test accuracy (mean, std over seeds, n) per model / init / allocation / budget."""

    g = df.groupby(["model", "init", "allocation", "budget"], sort=False)
    out = g.agg(n=("seed", "count"), test_acc_mean=("test_acc", "mean"), test_acc_std=("test_acc", "std"),
                val_acc_mean=("val_acc", "mean"), acc_before_finetune=("test_acc_before_finetune", "mean"),
                macs_keep=("macs_keep", "mean"), max_abs_budget_error=("budget_error", lambda s: s.abs().max()))
    return out.reset_index()


def claim1_table(df: pd.DataFrame) -> pd.DataFrame:
    """Claim 1: learned vs uniform allocation, paired by seed (same data order and fine-tuning).

    Verdict: ``supported`` if the mean paired gain exceeds two standard errors, ``contradicted``
    if it is below minus two, else ``not significant`` (n is small: read the spread).
    """
    import pandas as pd

    rows = []
    sel = df[df["kind"] == "dsa"]
    for (model, init, budget), part in sel.groupby(["model", "init", "budget"], sort=False):
        learned = part[part["allocation"] == "learned"].set_index("seed")["test_acc"]
        uniform = part[part["allocation"] == "uniform"].set_index("seed")["test_acc"]
        seeds = sorted(set(learned.index) & set(uniform.index))
        if not seeds:
            continue
        diff = learned.loc[seeds] - uniform.loc[seeds]
        n = len(seeds)
        se = float(diff.std(ddof=1)) / math.sqrt(n) if n > 1 else math.nan
        mean = float(diff.mean())
        if n > 1 and mean > 2 * se:
            verdict = "supported"
        elif n > 1 and mean < -2 * se:
            verdict = "contradicted"
        else:
            verdict = "not significant" if n > 1 else "n=1: no spread"
        rows.append({"model": model, "init": init, "budget": budget, "n_seeds": n,
                     "dsa_acc_mean": float(learned.loc[seeds].mean()), "dsa_acc_std": float(learned.loc[seeds].std()),
                     "uniform_acc_mean": float(uniform.loc[seeds].mean()),
                     "uniform_acc_std": float(uniform.loc[seeds].std()),
                     "gain_mean": mean, "gain_std": float(diff.std(ddof=1)) if n > 1 else math.nan,
                     "seeds_dsa_better": int((diff > 0).sum()), "verdict": verdict})
    return pd.DataFrame(rows)


def claim2_table(results: Sequence[dict[str, Any]], cfg: DSAConfig, min_ratio: float = 1.5,
                 acc_tolerance: float = 1.0) -> pd.DataFrame:
    """Claim 2: time of the whole pruning process, DSA vs the iterative baseline (same budget, side by side).

    ``process_time_s`` = every phase from the dense model to the fine-tuned pruned one (selection,
    search or intermediate fine-tunings, surgery, final fine-tuning); ``wall_time_s`` adds the
    evaluations and data loading of the run. The claim holds when the baseline takes at least
    ``min_ratio`` times as long (the abstract's 1.5x) and DSA's accuracy is "comparable": at most
    ``acc_tolerance`` points below the baseline's.
    """
    import pandas as pd

    t = cfg.timing
    want = {("learned", "dsa"), ("iterative_l1", "iterative")}
    rows = []
    for r in results:
        e = r["experiment"]
        if (e["model"], e["init"], e["budget"], e["seed"]) != (t.model, t.init, t.budget, t.seed):
            continue
        if (e["allocation"], e["kind"]) not in want:
            continue
        row = r["row"]
        rows.append({"method": "DSA" if e["kind"] == "dsa" else f"iterative L1 ({t.steps} steps)",
                     "model": e["model"], "budget": e["budget"], "test_acc": row["test_acc"],
                     "macs_keep": row["macs_keep"], **{f"{k}_s": v for k, v in r["phase_time_s"].items()},
                     "process_time_s": row["pruning_time_s"] + row["finetune_time_s"],
                     "wall_time_s": r["wall_time_s"]})
    out = pd.DataFrame(rows)
    if len(out) == 2:
        dsa, it = out.iloc[0], out.iloc[1]
        out["time_ratio_vs_dsa"] = out["process_time_s"] / dsa["process_time_s"]
        ratio = it["process_time_s"] / dsa["process_time_s"]
        comparable = dsa["test_acc"] >= it["test_acc"] - acc_tolerance
        out["verdict"] = ("supported" if ratio >= min_ratio and comparable else
                          f"not supported (ratio {ratio:.2f}x, accuracy {'comparable' if comparable else 'lower'})")
    return out


def claim3_table(df: pd.DataFrame, tolerance: float = 0.01) -> pd.DataFrame:
    """Claim 3: achieved MACs of every final network vs its budget (exact count, within 1%)."""

    sel = df[df["kind"] == "dsa"]
    out = sel.groupby(["model", "init", "allocation", "budget"], sort=False).agg(
        n=("seed", "count"), macs_keep_min=("macs_keep", "min"), macs_keep_max=("macs_keep", "max"),
        max_abs_error=("budget_error", lambda s: s.abs().max())).reset_index()
    out["within_1pct"] = out["max_abs_error"] <= tolerance
    return out


def allocation_frame(results: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Per run and group: dense channels, final width and keep ratio (``width / channels``)."""
    import pandas as pd

    rows = []
    for r in results:
        e, s = r["experiment"], r["summary"]
        if e["kind"] != "dsa" or "channels" not in s:
            continue
        for order, (gid, c) in enumerate(s["channels"].items()):
            rows.append({**e, "group": gid, "order": order, "channels": c, "width": s["widths"][gid],
                         "keep": s["widths"][gid] / c, "alpha": s["alpha"][gid]})
    return pd.DataFrame(rows)


def uniform_reference(alloc: pd.DataFrame) -> pd.DataFrame:
    """Uniform-allocation widths for every (model, budget) of `alloc` that has no uniform run."""
    import pandas as pd

    from prunerep.models.checkpoint import load_model

    rows = []
    for (model, budget), part in alloc.groupby(["model", "budget"], sort=False):
        if (part["allocation"] == "uniform").any():
            continue
        dense, _ = load_model(dense_path(model))
        widths = uniform_widths(dense, float(budget), torch.zeros(1, 3, 32, 32))
        channels = part.drop_duplicates("group").set_index("group")["channels"]
        for order, gid in enumerate(widths):
            for init in sorted(set(part["init"])):
                rows.append({"model": model, "init": init, "budget": budget, "allocation": "uniform (computed)",
                             "seed": -1, "kind": "reference", "group": gid, "order": order,
                             "channels": int(channels[gid]), "width": widths[gid],
                             "keep": widths[gid] / int(channels[gid]), "alpha": float("nan")})
    return pd.DataFrame(rows)


def paper_row_names(model: str, init: str, budget: float) -> list[str]:
    """Row names of references/paper_results.yaml a DSA result may match (most specific first)."""
    return [f"DSA {model} {init} b={budget:g}", f"DSA {model} b={budget:g}"]


def paper_comparison(acc: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Our DSA accuracy beside the paper's printed number (or "not transcribed") per model/budget."""
    import pandas as pd

    rows = []
    for _, r in acc[acc["allocation"] == "learned"].iterrows():
        value, source = NOT_TRANSCRIBED, "arXiv:2004.02164 (CIFAR-10 table): no entry"
        for name in paper_row_names(r["model"], r["init"], r["budget"]):
            match = paper[(paper["row"] == name) & (paper["metric"] == "test_acc")]
            if len(match) == 1:
                value, source = match["display"].iloc[0], match["source"].iloc[0]
                break
        rows.append({"model": r["model"], "init": r["init"], "budget": r["budget"], "n": r["n"],
                     "ours_test_acc_mean": r["test_acc_mean"], "ours_test_acc_std": r["test_acc_std"],
                     "paper_test_acc": value, "paper_source": source})
    return pd.DataFrame(rows)


def imagenet_table(cfg: DSAConfig) -> pd.DataFrame:
    """The configured ImageNet runs (not run in this pipeline: no ImageNet data here)."""
    import pandas as pd

    rows = []
    for model, budgets in cfg.imagenet.models.items():
        for b in budgets:
            rows.append({"model": model, "budget": b, "batch_size": cfg.imagenet.batch_size,
                         "search_epochs": cfg.imagenet.search.epochs, "finetune_epochs": cfg.imagenet.finetune.epochs,
                         "status": "configured; needs ImageNet data and a GPU"})
    return pd.DataFrame(rows)


def accuracy_figure(acc: pd.DataFrame, dense_acc: dict[str, float] | None = None) -> Figure:
    """Test accuracy vs MACs budget per model (panels) and init/allocation (lines), mean +- std."""
    plt = _pyplot()

    models = list(dict.fromkeys(acc["model"]))
    fig, axes = plt.subplots(1, len(models), figsize=(4.6 * len(models), 3.6), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        part = acc[acc["model"] == model]
        for i, ((init, alloc), line) in enumerate(part.groupby(["init", "allocation"], sort=False)):
            line = line.sort_values("budget")
            ax.errorbar(line["budget"], line["test_acc_mean"], yerr=line["test_acc_std"].fillna(0), marker="o",
                        ms=4, capsize=3, color=f"C{i}", label=f"{alloc}, {init}")
        if dense_acc and model in dense_acc:
            ax.axhline(dense_acc[model], color="k", ls=":", lw=1, label="dense")
        ax.set(title=model, xlabel="MACs budget (fraction of dense kept)", ylabel="test accuracy (%)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def keep_ratio_figure(alloc: pd.DataFrame, model: str, init: str = "pretrained") -> Figure:
    """Learned per-group keep ratios (mean over seeds) next to the uniform allocation, per budget."""
    plt = _pyplot()

    part = alloc[(alloc["model"] == model) & (alloc["init"] == init)]
    budgets = sorted(set(part["budget"]), reverse=True)
    fig, axes = plt.subplots(len(budgets), 1, figsize=(max(6.0, 0.28 * part["group"].nunique() + 2), 2.4 * len(budgets)),
                             squeeze=False, sharex=True)
    for ax, budget in zip(axes[:, 0], budgets, strict=True):
        sub = part[part["budget"] == budget]
        groups = sub.sort_values("order").drop_duplicates("group")["group"].tolist()
        x = range(len(groups))
        for j, names in enumerate([("learned",), ("uniform", "uniform (computed)")]):
            a = sub[sub["allocation"].isin(names)].groupby("group")["keep"].mean()
            if a.empty:
                continue
            ax.bar([i + (j - 0.5) * 0.4 for i in x], [a.get(g, float("nan")) for g in groups], width=0.4,
                   color=f"C{j}", label="DSA (learned)" if j == 0 else "uniform")
        ax.set(ylabel="kept fraction", ylim=(0, 1.05), title=f"{model}, {init}, budget {budget:g}")
        ax.set_xticks(list(x), groups, rotation=90, fontsize=7)
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def budget_trace_figure(results: Sequence[dict[str, Any]], model: str, init: str = "pretrained",
                        allocation: str = "learned", seed: int = 0) -> Figure:
    """Target vs achieved MACs over the search: expected (``F(alpha)``), one sampled mask, rounded widths."""
    plt = _pyplot()
    import pandas as pd

    runs = [r for r in results if r["experiment"]["kind"] == "dsa" and r["experiment"]["model"] == model
            and r["experiment"]["init"] == init and r["experiment"]["allocation"] == allocation
            and r["experiment"]["seed"] == seed]
    runs.sort(key=lambda r: -r["experiment"]["budget"])
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for i, r in enumerate(runs):
        tr = pd.DataFrame(r["summary"]["trace"])
        if tr.empty:
            continue
        b = r["experiment"]["budget"]
        ax.plot(tr["epoch"], tr["target"], color=f"C{i}", ls="--", lw=1)
        ax.plot(tr["epoch"], tr["expected"], color=f"C{i}", lw=1.5, label=f"budget {b:g}: expected F(alpha)")
        ax.plot(tr["epoch"], tr["sampled"], color=f"C{i}", lw=0.6, alpha=0.45)
        ax.scatter([tr["epoch"].iloc[-1]], [r["row"]["macs_keep"]], color=f"C{i}", marker="*", s=60, zorder=3)
    ax.set(xlabel="search epoch", ylabel="MACs (fraction of dense)",
           title=f"{model} {init}: target (dashed), expected (solid), one sampled mask (thin), final network (*)")
    ax.title.set_fontsize(8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def time_figure(timing: pd.DataFrame) -> Figure:
    """Stacked phase times of the pruning process, DSA vs the iterative baseline."""
    plt = _pyplot()

    fig, ax = plt.subplots(figsize=(6.0, 2.8))
    phases = [c for c in timing.columns if c.endswith("_s") and c not in ("process_time_s", "wall_time_s")]
    left = [0.0] * len(timing)
    for i, ph in enumerate(phases):
        vals = timing[ph].fillna(0).tolist()
        ax.barh(timing["method"], vals, left=left, color=f"C{i}", label=ph[:-2])
        left = [a + b for a, b in zip(left, vals, strict=True)]
    for y, (t, acc) in enumerate(zip(left, timing["test_acc"], strict=True)):
        ax.text(t, y, f"  {t:.0f} s, {acc:.2f}%", va="center", fontsize=8)
    ax.set(xlabel="wall time of the pruning process on this machine (s)")
    ax.set_xlim(0, max(left) * 1.35)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=len(phases))
    fig.tight_layout()
    return fig


def _epochs(o: OptimConfig) -> str:
    return f"{o.epochs:g} ep" + (f" (max {o.max_steps} steps)" if o.max_steps else "")


def describe_budget(cfg: DSAConfig, n_train: int, profile: str) -> str:
    """The compute budget of the section, for table captions."""
    n_arch = round(cfg.arch_fraction * n_train)
    return (f"Profile `{profile}`: {n_train} training images ({n_train - n_arch} for the weights, {n_arch} held out "
            f"for the keep ratios); search {_epochs(cfg.search)} from pretrained / {_epochs(cfg.search_scratch)} "
            f"from scratch, fine-tuning {_epochs(cfg.finetune)}, batch {cfg.batch_size}; iterative baseline: "
            f"{cfg.timing.steps} steps, {_epochs(cfg.timing.step_finetune)} between steps. MACs = multiply-"
            f"accumulates of conv+linear layers (exact count of the pruned network).")


def metrics_summary(df: pd.DataFrame, claim1: pd.DataFrame, claim2: pd.DataFrame,
                    claim3: pd.DataFrame) -> dict[str, Any]:
    """The DVC metrics of the stage: accuracy per configuration and the three claims' numbers."""
    acc = accuracy_table(df)
    runs = {f"{r.model}/{r.init}/{r.allocation}/b{r.budget:g}": {
        "n": int(r.n), "test_acc_mean": float(r.test_acc_mean),
        "test_acc_std": None if pd_isna(r.test_acc_std) else float(r.test_acc_std),
        "macs_keep": float(r.macs_keep)} for r in acc.itertuples()}
    out: dict[str, Any] = {"runs": runs,
                           "claim3_max_abs_budget_error": float(claim3["max_abs_error"].max()) if len(claim3) else None,
                           "claim3_within_1pct": bool(claim3["within_1pct"].all()) if len(claim3) else None}
    if len(claim1):
        out["claim1"] = {f"{r.model}/{r.init}/b{r.budget:g}": {
            "gain_mean": float(r.gain_mean), "gain_std": None if pd_isna(r.gain_std) else float(r.gain_std),
            "n": int(r.n_seeds), "verdict": r.verdict} for r in claim1.itertuples()}
    if len(claim2) == 2:
        out["claim2"] = {"process_time_dsa_s": float(claim2["process_time_s"].iloc[0]),
                         "process_time_iterative_s": float(claim2["process_time_s"].iloc[1]),
                         "time_ratio": float(claim2["process_time_s"].iloc[1] / claim2["process_time_s"].iloc[0]),
                         "test_acc_dsa": float(claim2["test_acc"].iloc[0]),
                         "test_acc_iterative": float(claim2["test_acc"].iloc[1]),
                         "verdict": str(claim2["verdict"].iloc[0])}
    return out


def pd_isna(value: Any) -> bool:
    """True for None/NaN (pandas' missing values)."""
    return value is None or (isinstance(value, float) and math.isnan(value))
