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

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from prunerep.config import from_dict
from prunerep.engine import ArchOptimConfig, OptimConfig, TrainState
from prunerep.engine.distributed import mean_over_ranks
from prunerep.methods.base import MethodContext, PruningMethod, register_method
from prunerep.methods.budget import top_k_masks
from prunerep.pruning.gates import StochasticMask, attach_gates
from prunerep.pruning.groups import ChannelGroup
from prunerep.pruning.surgery import prune_channels

if TYPE_CHECKING:
    pass

__all__ = [
    "DSA",
    "AlphaCost",
    "DSAAllocator",
    "DSAHyper",
    "KeepProbFunction",
    "final_widths",
    "keep_probabilities",
    "project_to_budget",
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
        grad = mean_over_ranks(grad)   # several ranks: precondition the global batch's gradient
        r = grad.double() / self.method.flops_slope().to(grad.device).clamp_min(1e-12)
        ms = float((r * r).mean())
        prev = self.method.grad_ms
        self.method.grad_ms = ms if prev is None else self.beta * prev + (1 - self.beta) * ms
        return (r / math.sqrt(max(self.method.grad_ms, 1e-30))).to(grad.dtype)


# ---------------------------------------------------------------------------------------------
# the method


def _optim(value: dict | OptimConfig | None, path: str) -> OptimConfig:
    return value if isinstance(value, OptimConfig) else from_dict(OptimConfig, value or {}, path)


@dataclass(frozen=True)
class DSAHyper:
    """DSA's hyper-parameters (the keyword arguments of :class:`DSA`; see its docstring)."""

    search: OptimConfig = field(default_factory=OptimConfig)
    arch_optim: ArchOptimConfig = field(default_factory=lambda: ArchOptimConfig(optimizer="sgd", lr=0.01))
    init: Literal["pretrained", "scratch"] = "pretrained"
    allocation: Allocation = "learned"
    importance: Importance = "l1"
    init_logit: float = 5.0
    beta2: float = 1.0
    ramp: float = 0.5
    min_keep: float = 0.0
    log_every: int = 10
    placement: Literal["input", "output"] = "input"


@register_method("dsa", hyper=DSAHyper)
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
