"""GDP: Gates with Differentiable Polarization (reconstruction).

Guo, Yuan, Tan, Wang, Yang, Liu. "GDP: Stabilized Neural Network Pruning via Gates with
Differentiable Polarization". ICCV 2021, pp. 5239-5250. arXiv:2109.02220. No official code.

The paper's full text could not be read here (see ``../shared/papers/gdp.md``), so this module
reconstructs the method from what is verified (abstract, Fig. 2 caption, a third-party summary)
and makes every open choice a named, documented hyper-parameter (`GDPHyper`):

* **Gates** (verified): one gate vector per channel group, placed *before every regular conv*
  (input placement of :func:`~prunerep.pruning.gates.attach_gates`): no gate before depthwise
  convs, one vector shared by all readers of a residual stream (the paper's ``g1``, used twice),
  one inside each block (``g2``; all of it at zero removes the block, keeping the BN bias as a
  constant).
* **Smoothed-L0 gate** (verified as "smoothed L0", form reconstructed):
  ``g = theta^2 / (theta^2 + eps)`` in [0, 1), zero iff ``theta = 0``. Its derivative
  ``2 theta eps / (theta^2 + eps)^2`` vanishes both at 0 and for ``|theta| >> sqrt(eps)``: any
  penalty on ``g`` pushes gates near ``sqrt(eps)`` hard and leaves large gates alone, which is
  what makes the gate distribution bimodal.
* **Polarization regulariser** (reconstruction): Zhuang et al., NeurIPS 2020,
  ``R_t(g) = t * mean(g) - mean(|g - mean(g)|)`` over all gates (Eq. (P)). Its minimisers over
  [0, 1]^n are polarized vectors (each entry 0 or 1); for a fixed mean it is minimised by
  pushing every gate to an end of the interval. Its first (L1) term is GDP's FLOPs term here, so
  the default is ``t = 0``.
* **FLOPs budget** (verified as "bilinear, alternating relaxation"; details reconstructed): the
  MACs of the gated network as a function of each group's soft width ``s_k = sum_c g_c`` (the
  smoothed L0 norm of its gate vector) are the bilinear form ``s^T A s + b^T s + c`` of
  :class:`~prunerep.pruning.soft_cost.SoftCostModel` (exact at 0/1 gates). The *alternating
  relaxation* fixes one factor of every product ``s_in * s_out`` and alternates which one every
  ``alternate_every`` steps (Eq. (F)); with one factor fixed the term is *linear* in every gate,
  a weighted smoothed-L0 penalty ``sum_c w_k(c) g_c`` that is separable over the gates.
* **Optimisation** (reconstruction): weights and gates take the SGD step of the task loss; then
  the separable regulariser (budget weight plus the polarization subgradient at the current
  mean, times ``lambda``) is applied to every gate by a majorize-minimize proximal step
  (:func:`mm_prox`, Eq. (M)), which is stable where the explicit gradient step of this stiff
  penalty oscillates around 0; then a hard-threshold step sets ``theta = 0`` exactly and marks the
  channel dead when ``g < zero_threshold`` (the L0 limit of the prox: a smooth penalty alone
  never reaches 0). Dead gates stay exact zeros (``g'(0) = 0``; an alive mask also blocks
  momentum residue). So the exact zeros are *set* by this threshold, not reached by the prox
  step alone; whether a kill changes the network is measured, not assumed: the logits of a
  fixed training batch (eval mode) are compared right before and after every kill
  (``summary()["kill_effect"]``), apart for channels that an option-A shortcut copies (the
  copy follows the 0/1 keep pattern, so killing such a channel is a cut however small g was).
* **Schedule** (reconstruction): ``lambda`` rises geometrically from ``lam_init`` to ``lam_max``
  over ``ramp_epochs`` (then holds) until the MACs of the *hard* network (dead channels removed)
  reach the target; the threshold step never removes more channels than the target needs
  (candidates are zeroed smallest first, stopping at the target; a group that cannot be
  emptied keeps one channel). After that the dead set is frozen, the regulariser is switched off
  and training continues until the phase ends (``after_target: settle``) or stops (``stop``).
* **Finalize** (verified): zero-gated channels removed, non-zero gates folded into the next
  conv (:func:`~prunerep.pruning.surgery.apply_gates`), so the pruned network computes what the
  gated one computed; no fine-tuning (``finetune: null``). The difference of outputs before and
  after surgery is measured on a fixed probe batch and returned in ``summary()``.

The stability control of the paper ("sampling-based methods ... training instability") is the
same method with ``gate: sampling``: Bernoulli channel masks with learnable keep probabilities
(straight-through to ``p``), the same budget term on the expected widths ``sum p``, the same
``lambda`` schedule, polarization term (on ``p``) and target rule, so that the two differ in
their gates only; a channel dies when ``p`` falls below ``sampling_kill``. In eval mode, and in
training once the target is met, a sampled gate is its deterministic 0/1 alive mask.

Which runs, tables and figures test the paper's claims is the study's business
(:mod:`prunerep.studies.gdp`), not this module's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from prunerep.config import from_dict
from prunerep.engine import OptimConfig, TrainState
from prunerep.methods.base import MethodContext, PruningMethod, register_method
from prunerep.methods.baselines import in_scope
from prunerep.pruning.gates import (
    SmoothedL0,
    SoftGate,
    StochasticMask,
    attach_gates,
    straight_through,
)
from prunerep.pruning.groups import ChannelGroup
from prunerep.pruning.surgery import apply_gates, plan_surgery

__all__ = [
    "GDP",
    "GDPHyper",
    "PolarizedGate",
    "SampledGate",
    "curve_roughness",
    "lambda_at",
    "mm_prox",
    "polarization",
    "polarization_stats",
    "relaxed_macs",
    "smoothed_l0",
]


# -- pure functions (equations) ------------------------------------------------------------------


def smoothed_l0(theta: torch.Tensor, eps: float | torch.Tensor) -> torch.Tensor:
    """The GDP gate ``theta^2 / (theta^2 + eps)`` (Eq. (G)): in [0, 1), zero iff theta = 0."""
    t2 = theta * theta
    return t2 / (t2 + eps)


def polarization(values: torch.Tensor, t: float = 0.0) -> torch.Tensor:
    """Polarization regulariser of Zhuang et al. (NeurIPS 2020) over gate values (Eq. (P)).

    ``R_t(g) = t * mean(g) - mean(|g - mean(g)|)``, normalised by the number of gates. For
    ``0 < t < 1`` its minimisers over ``[0, 1]^n`` are polarized (every entry 0 or 1); for a
    fixed mean, ``-mean|g - mean(g)|`` is minimised by pushing each gate to an end of [0, 1].

    Args:
        values: All gate values ``[N]`` (or a batch of configurations ``[..., N]``).
        t: Weight of the L1 part (0: GDP's FLOPs term plays that role here).

    Returns:
        The value (shape ``[...]``: a scalar for one configuration).
    """
    mean = values.mean(-1, keepdim=True)
    return t * mean.squeeze(-1) - (values - mean).abs().mean(-1)


def relaxed_macs(a: torch.Tensor, b: torch.Tensor, c: float, s: torch.Tensor, fix: str) -> torch.Tensor:
    """The bilinear MACs ``s^T A s + b^T s + c`` with one factor of each product fixed (Eq. (F)).

    ``A[i, j]`` couples a layer's input group ``i`` with its output group ``j``. ``fix="input"``
    detaches the input factor (``sbar^T A s``: the gradient goes to each layer's output gates),
    ``fix="output"`` the output factor (``s^T A sbar``). The value equals the exact bilinear
    form in both phases; only the gradient differs. ``fix="none"`` gives the plain form.

    Args:
        a: ``[G, G]`` quadratic coefficients (float64).
        b: ``[G]`` linear coefficients.
        c: Constant (layers with fixed input and output).
        s: ``[G]`` soft widths, differentiable.
        fix: ``"input"``, ``"output"`` or ``"none"``.

    Returns:
        MACs per sample (float64 scalar).
    """
    a, b = a.to(s), b.to(s)
    sbar = s.detach()
    if fix == "input":
        quad = sbar @ a @ s
    elif fix == "output":
        quad = s @ a @ sbar
    elif fix == "none":
        quad = s @ a @ s
    else:
        raise ValueError(f"fix must be 'input', 'output' or 'none', got {fix!r}")
    return quad + b @ s + c


def lambda_at(step: int, ramp_steps: int, lam_init: float, lam_max: float) -> float:
    """Penalty weight: geometric ramp from ``lam_init`` (step 0) to ``lam_max`` (``ramp_steps``).

    Geometric, so the schedule crosses every order of magnitude in the same number of steps:
    the scale at which gates start to die depends on the network and is not known beforehand.
    """
    if lam_init <= 0 or lam_max < lam_init:
        raise ValueError(f"need 0 < lam_init <= lam_max, got {lam_init}, {lam_max}")
    frac = min(1.0, step / max(1, ramp_steps))
    return lam_init * (lam_max / lam_init) ** frac


def eps_at(step: int, total_steps: int, eps: float, eps_final: float | None) -> float:
    """Smoothing constant of the gate: constant, or annealed geometrically to ``eps_final``."""
    if eps_final is None or eps_final == eps:
        return eps
    frac = min(1.0, step / max(1, total_steps))
    return eps * (eps_final / eps) ** frac


def mm_prox(theta: torch.Tensor, step: torch.Tensor | float, eps: float | torch.Tensor) -> torch.Tensor:
    """One majorize-minimize proximal step of ``step * g(theta)``, elementwise (Eq. (M)).

    ``argmin_x 1/2 (x - theta)^2 + step * gbar(x)``, where ``gbar`` is the tangent majorizer of
    the smoothed-L0 map in ``x^2`` at ``theta`` (``g`` is concave in ``theta^2``):

        x = theta / (1 + 2 step eps / (theta^2 + eps)^2).

    Far from zero it equals a gradient step ``theta - step * g'(theta)`` to first order; near
    zero, where the explicit gradient step of a stiff penalty overshoots and oscillates around
    0, it shrinks ``theta`` geometrically towards 0 and never changes its sign, for any
    ``step >= 0``. A negative ``step`` (a push away from 0, from the polarization term) takes the
    explicit gradient step, which is stable in that direction.
    """
    step = torch.as_tensor(step, dtype=theta.dtype, device=theta.device)
    d = theta * theta + eps
    shrink = theta / (1 + 2 * step.clamp_min(0) * eps / (d * d))
    push = theta - step.clamp_max(0) * 2 * eps * theta / (d * d)
    return torch.where(step >= 0, shrink, push)


def polarization_stats(values: Sequence[float] | torch.Tensor,
                       margins: Sequence[float] = (0.01, 0.1, 0.5)) -> dict[str, float]:
    """How polarized a set of gate values is.

    Returns the fraction of exact zeros (``zero``), the fraction strictly between 0 and each
    margin m (``between_0_m``: neither removed nor far from zero), and the smallest non-zero
    value (``min_nonzero``; nan if all are zero).
    """
    v = torch.as_tensor(values, dtype=torch.float64).flatten()
    if v.numel() == 0:
        raise ValueError("polarization_stats: no gate values")
    nz = v[v != 0]
    out = {"n": float(v.numel()), "zero": float((v == 0).double().mean())}
    for m in margins:
        out[f"between_0_{m:g}"] = float(((v > 0) & (v < m)).double().mean())
    out["min_nonzero"] = float(nz.min()) if nz.numel() else float("nan")
    return out


def curve_roughness(values: Sequence[float]) -> float:
    """Step-to-step noise of a training curve, free of its trend.

    ``std(second differences) / sqrt(6)``: for a smooth trend the second differences vanish, and
    for independent noise of standard deviation sigma they have variance ``6 sigma^2``. So a
    loss curve that only decays scores ~0, and one that jumps from step to step (e.g. a network
    whose channels are re-sampled at every forward) scores its per-step noise level.
    """
    x = torch.as_tensor(list(values), dtype=torch.float64)
    if x.numel() < 4:
        return float("nan")
    return float((x[2:] - 2 * x[1:-1] + x[:-2]).std() / math.sqrt(6))


# -- gates ---------------------------------------------------------------------------------------


class PolarizedGate(SoftGate):
    """GDP's gate: ``smoothed_l0(theta, eps) * alive``; the prox step kills channels exactly.

    Args:
        channels: Number of channels.
        eps: Smoothing constant of the smoothed-L0 map (a buffer: schedules anneal it).
        init_value: Initial gate value ``g0`` in (0, 1); ``theta0 = sqrt(eps g0 / (1 - g0))``.
            Only ``theta / sqrt(eps)`` matters for the value, so the initial *value* is the
            meaningful knob: ``g0 = 0.9`` starts at ``theta0 = 3 sqrt(eps)``, on the steep part
            of the curve, where the budget penalty can move the gate.

    Attributes:
        alive: Bool buffer ``[C]``; False after the prox step set the channel to exact zero.
    """

    def __init__(self, channels: int, eps: float = 1e-2, init_value: float = 0.9) -> None:
        if not 0 < init_value < 1:
            raise ValueError(f"init_value must be in (0, 1), got {init_value}")
        super().__init__(channels, fn=SmoothedL0(eps), init=math.sqrt(eps * init_value / (1 - init_value)))
        self.register_buffer("alive", torch.ones(channels, dtype=torch.bool))

    def values(self) -> torch.Tensor:
        return self.fn(self.theta) * self.alive

    def score(self) -> torch.Tensor:
        """What the prox step compares with the threshold: the gate value."""
        return self.values()

    def kill_(self, index: torch.Tensor) -> None:
        """Prox step: ``theta = 0`` exactly and the channel marked dead."""
        with torch.no_grad():
            self.alive[index] = False
            self.theta[index] = 0.0

    def set_eps_(self, eps: float) -> None:
        self.fn.eps.fill_(eps)


class SampledGate(StochasticMask):
    """Sampling-based control gate: Bernoulli(p) masks in training, 0/1 alive mask in eval.

    Training: ``m ~ Bernoulli(p)`` per forward, straight-through to ``p`` (as
    :class:`~prunerep.pruning.gates.StochasticMask`), dead channels 0. Eval and
    :meth:`hard_mask`: the alive mask, so surgery is exact w.r.t. the eval-mode network.
    """

    def __init__(self, channels: int, init: float = 0.9) -> None:
        super().__init__(channels, init=init)
        self.register_buffer("alive", torch.ones(channels, dtype=torch.bool))
        # Once the budget is met the control trains the network it will be evaluated as (the alive
        # channels, deterministically), as GDP trains its frozen gated network.
        self.register_buffer("frozen", torch.zeros((), dtype=torch.bool))

    def values(self) -> torch.Tensor:
        p = self.probs() * self.alive
        if not self.training or bool(self.frozen):
            return self.alive.to(p.dtype)
        return straight_through(p, torch.bernoulli(p.detach()))

    def hard_mask(self) -> torch.Tensor:
        return self.alive.clone()

    def expected_keep(self) -> torch.Tensor:
        return (self.probs() * self.alive).sum()

    def score(self) -> torch.Tensor:
        return self.probs() * self.alive

    def kill_(self, index: torch.Tensor) -> None:
        with torch.no_grad():
            self.alive[index] = False


# -- configuration -------------------------------------------------------------------------------


def _default_train() -> OptimConfig:
    return OptimConfig(epochs=3, lr=0.02, schedule="cosine", weight_decay=5e-4)


@dataclass(frozen=True)
class GDPHyper:
    """GDP's hyper-parameters (the keyword arguments of ``get_method("gdp", ...)``).

    Every field is a choice the paper's available text does not pin down; the notebook lists
    them with their values.
    """

    train: OptimConfig = field(default_factory=_default_train)  # the gated training phase
    gate: Literal["polarized", "sampling"] = "polarized"  # sampling: the stability control
    eps: float = 1e-2                 # smoothed-L0 constant (with gate_lr_scale, sets the gates' speed)
    eps_final: float | None = None    # anneal eps geometrically to this over the phase (None: constant)
    gate_init: float = 0.9            # initial gate value g0 (polarized) ...
    sampling_init: float = 0.9        # ... or keep probability p (sampling control)
    sampling_kill: float = 0.5        # sampling control: a channel dies when p < this
    gate_lr_scale: float = 10.0       # gate lr = scale * weight lr (gates have no weight decay)
    zero_threshold: float = 1e-3      # prox step: g < this -> theta = 0, channel dead
    lam_init: float = 1e-2            # per-gate penalty weight at step 0 ...
    lam_max: float = 1.0              # ... rising geometrically to this over ramp_epochs
    ramp_epochs: float = 1.5
    polarization: float = 1.0         # weight of R_t (Eq. (P)) relative to the budget term
    polarization_t: float = 0.0       # t of R_t (0: the FLOPs term is the sparsity term)
    alternate_every: int = 1          # steps between switching the fixed bilinear factor
    after_target: Literal["settle", "stop"] = "settle"
    scope: Literal["all", "internal"] = "all"   # all: residual streams too (GDP's g1)
    trace_every: int = 1              # record loss/lambda/MACs every this many steps
    n_snapshots: int = 6              # gate-value snapshots through training (histograms)
    probe_images: int = 16            # random inputs on which surgery's output change is measured
    measure_kills: bool = True        # logits of a fixed training batch before/after every threshold kill

    def __post_init__(self) -> None:
        checks = [
            (self.eps > 0, "eps must be > 0"),
            (self.eps_final is None or self.eps_final > 0, "eps_final must be > 0 or null"),
            (0 < self.zero_threshold < 1, "zero_threshold must be in (0, 1)"),
            (0 < self.gate_init < 1, "gate_init must be in (0, 1)"),
            (0 < self.sampling_init < 1, "sampling_init must be in (0, 1)"),
            (0 < self.sampling_kill < 1, "sampling_kill must be in (0, 1)"),
            (0 < self.lam_init <= self.lam_max, "need 0 < lam_init <= lam_max"),
            (self.ramp_epochs >= 0, "ramp_epochs must be >= 0"),
            (self.polarization >= 0, "polarization must be >= 0"),
            (self.alternate_every >= 1, "alternate_every must be >= 1"),
            (self.gate_lr_scale > 0, "gate_lr_scale must be > 0"),
            (self.trace_every >= 1, "trace_every must be >= 1"),
            (self.n_snapshots >= 2, "n_snapshots must be >= 2"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)


# -- the method ----------------------------------------------------------------------------------


@register_method("gdp", hyper=GDPHyper)
class GDP(PruningMethod):
    """GDP on the shared method interface (see the module docstring for the equations).

    Keyword arguments are the fields of :class:`GDPHyper` (a ``train`` mapping becomes an
    :class:`~prunerep.engine.OptimConfig`). The budget must be ``Budget(macs_keep=...)``.
    """

    paper = "Guo et al., ICCV 2021, arXiv:2109.02220"
    exact_surgery = True

    def __init__(self, hyper: GDPHyper | None = None, **kwargs: Any) -> None:
        if hyper is not None and kwargs:
            raise TypeError("GDP: give a GDPHyper or its fields as keywords, not both")
        self.hp: GDPHyper = hyper if hyper is not None else from_dict(GDPHyper, kwargs, "gdp")
        self.gates: Any = None
        self.ids: list[str] = []
        self.reached = False
        self.reached_step: int | None = None
        self.lam_at_target: float | None = None
        self.forced = 0
        self.trace: list[dict[str, float]] = []
        self.snapshots: list[dict[str, Any]] = []
        self.exactness: dict[str, float] = {}
        self.kill_events: list[dict[str, float]] = []
        self._kill_batch: torch.Tensor | None = None
        self._capture: Any = None
        self._snap_steps: set[int] = set()
        self._last: dict[str, float] = {}

    @classmethod
    def from_hyper(cls, hyper: GDPHyper) -> GDP:
        return cls(hyper)

    # -- set-up ---------------------------------------------------------------------------------

    def prunable(self, group: ChannelGroup) -> bool:
        return in_scope(group, self.hp.scope)

    def prepare(self, model: nn.Module, ctx: MethodContext) -> nn.Module:
        if ctx.budget.macs_keep is None:
            raise ValueError("gdp: the budget must be a MACs fraction, Budget(macs_keep=...)")
        self.ctx = ctx
        hp = self.hp
        if hp.gate == "polarized":
            def make(g: ChannelGroup) -> PolarizedGate:
                return PolarizedGate(g.channels, eps=hp.eps, init_value=hp.gate_init)
        else:
            def make(g: ChannelGroup) -> SampledGate:
                return SampledGate(g.channels, init=hp.sampling_init)
        self.gates = attach_gates(model, ctx.prunable, make, placement="input")
        self.ids = self.gates.ids()
        self._sizes = torch.tensor([gate.channels for _, gate in self.gates.items()])
        self.n_gates = int(self._sizes.sum())
        self._group_index = {gid: i for i, gid in enumerate(ctx.cost_model.group_ids)}
        # groups whose channels an option-A shortcut copies (kills there are measured apart)
        self._copied = {g.id for g in ctx.prunable if g.selects_in}
        self._form = ctx.cost_model.bilinear()
        self.dense_macs = float(ctx.cost_model.dense_macs())
        self.target_macs = ctx.budget.macs_keep * self.dense_macs
        # Groups that may lose every channel (inside a residual branch: the whole block goes);
        # the others keep at least one channel.
        self.removable = set()
        for g in ctx.prunable:
            try:
                plan_surgery(ctx.groups, {g.id: torch.zeros(g.channels, dtype=torch.bool)})
                self.removable.add(g.id)
            except ValueError:
                pass
        return model

    def phases(self) -> list[tuple[str, OptimConfig]]:
        return [("gdp", self.hp.train)]

    def param_groups(self, model: nn.Module, weight_decay: float) -> list[dict[str, Any]] | None:
        # Gates: no weight decay (it would be an extra, uncontrolled sparsity pressure) and their
        # own learning-rate scale.
        gate_ids = {id(p) for p in self.gates.parameters()}
        weights = [p for p in model.parameters() if id(p) not in gate_ids]
        return [{"params": weights, "weight_decay": weight_decay},
                {"params": list(self.gates.parameters()), "weight_decay": 0.0,
                 "lr_scale": self.hp.gate_lr_scale}]

    # -- quantities -----------------------------------------------------------------------------

    def _gate_items(self) -> Iterator[tuple[str, Any]]:
        return iter(self.gates.items())

    def soft_widths(self) -> torch.Tensor:
        """Soft widths ``s_k = sum_c g_c`` of all groups (dense width where not gated), float64."""
        return self.ctx.cost_model.width_vector({gid: gate.expected_keep() for gid, gate in self._gate_items()})

    def hard_widths(self) -> dict[str, int]:
        """Alive channels per gated group."""
        with torch.no_grad():  # one device-to-host copy
            alive = torch.stack([gate.hard_mask().sum() for _, gate in self._gate_items()]).cpu().tolist()
        return dict(zip(self.ids, (int(a) for a in alive), strict=True))

    def hard_macs(self, widths: Mapping[str, int] | None = None) -> float:
        """Exact MACs of the network with the dead channels removed."""
        return float(self.ctx.cost_model.macs(dict(widths or self.hard_widths())))

    def soft_macs(self) -> float:
        a, b, c = self._form
        with torch.no_grad():
            return float(relaxed_macs(a, b, c, self.soft_widths(), "none"))

    def all_values(self) -> torch.Tensor:
        """Gate values (polarized) or keep probabilities (sampling), concatenated in group order."""
        with torch.no_grad():
            return torch.cat([gate.score().detach().float().cpu() for _, gate in self._gate_items()])

    def lam(self, step: int) -> float:
        return lambda_at(step, self._ramp_steps, self.hp.lam_init, self.hp.lam_max)

    # -- hooks ----------------------------------------------------------------------------------

    def on_train_start(self, model: nn.Module, state: TrainState) -> None:
        self._ramp_steps = max(1, round(self.hp.ramp_epochs * state.steps_per_epoch))
        self._total_steps = state.total_steps
        n = self.hp.n_snapshots
        self._snap_steps = {round(i * state.total_steps / (n - 1)) for i in range(n)}
        if state.step == 0 and not self.snapshots:
            self._snapshot(0)
        if self.hp.measure_kills and self._kill_batch is None and self._capture is None:
            # The first training batch (its first `probe_images` images) is the fixed batch on which
            # every kill's effect is measured; after a resume, the first batch after it.
            def capture(module: nn.Module, args: tuple[Any, ...]) -> None:
                if module.training and self._kill_batch is None:
                    self._kill_batch = args[0][: self.hp.probe_images].detach().clone()
                    self._capture.remove()
            self._capture = model.register_forward_pre_hook(capture)

    def _fix(self, step: int) -> str:
        """Which factor of the bilinear products is held fixed at this step (alternating)."""
        return "input" if (step // self.hp.alternate_every) % 2 == 0 else "output"

    def budget_weights(self, fix: str) -> torch.Tensor:
        """Per-group weight ``w_k = N d(F_relaxed / F_dense) / d s_k`` (Eq. (F)), float64 ``[G]``.

        ``N`` is the number of gates: the regulariser is ``lambda N (F / F_dense + mu R_t)``, so
        that ``lambda`` is a per-gate push with the same meaning on networks of any size (the
        average ``w_k`` is about 2 for any network).

        With one factor of every product fixed, the budget term is *linear* in each group's soft
        width, ``sum_k w_k s_k = sum_k w_k sum_c g_c``: a weighted smoothed-L0 penalty that is
        separable over the gates, which is what lets a per-gate proximal step handle it.
        """
        a, b, _ = self._form
        with torch.no_grad():
            sbar = self.soft_widths().cpu()
        w = (a.t() @ sbar if fix == "input" else a @ sbar) + b
        return w / self.dense_macs * self.n_gates

    def gate_coefficients(self, lam: float, fix: str) -> torch.Tensor:
        """Per-gate penalty coefficient ``kappa_c`` of the linearised regulariser, ``[N]``.

        ``lam * (w_k + mu * (t - sigma_c + mean(sigma)))``: the budget weight of the gate's
        group plus the subgradient of the polarization term (Eq. (P)) at the current mean, where
        ``sigma_c = sign(g_c - mean(g))``. Positive: pushed towards 0; negative (gates above
        the mean when the polarization term dominates): pushed away from 0. Gates in
        :meth:`all_values` order, on the gates' device.
        """
        w = self.budget_weights(fix)
        index = [self._group_index[gid] for gid in self.ids]
        with torch.no_grad():
            values = torch.cat([gate.values().detach() for _, gate in self._gate_items()])
        per_gate = w[index].to(values.device, values.dtype).repeat_interleave(self._sizes)
        if self.hp.polarization > 0:
            sigma = torch.sign(values - values.mean())
            # N * d R_t / d g_c (Eq. (P)); the N matches budget_weights
            per_gate = per_gate + self.hp.polarization * (self.hp.polarization_t - sigma + sigma.mean())
        return lam * per_gate

    def extra_loss(self, model: nn.Module, state: TrainState) -> torch.Tensor | None:
        # GDP's regulariser is applied by the proximal step (after_step). Only the sampling
        # control takes it as a loss term (its gates are Bernoulli logits: no prox).
        if state.phase != "weights" or self.reached or self.hp.gate != "sampling":
            return None
        a, b, c = self._form
        macs = relaxed_macs(a, b, c, self.soft_widths(), self._fix(state.step)) / self.dense_macs  # Eq. (F)
        reg = macs
        if self.hp.polarization > 0:
            # The same regulariser as GDP's prox step (Eq. (F) + mu R_t, Eq. (P)), here on the keep
            # probabilities: the control differs from GDP in its gates only.
            probs = torch.cat([gate.score() for _, gate in self._gate_items()])
            reg = reg + self.hp.polarization * polarization(probs, self.hp.polarization_t).to(reg)
        lam = self.lam(state.step)
        self._last = {"lam": lam}
        return (lam * self.n_gates * reg).float()

    def after_step(self, model: nn.Module, state: TrainState) -> None:
        hp = self.hp
        if hp.gate == "polarized" and hp.eps_final is not None:
            eps = eps_at(state.step, self._total_steps, hp.eps, hp.eps_final)
            for _, gate in self._gate_items():
                gate.set_eps_(eps)
        if not self.reached:
            if hp.gate == "polarized":
                # The step just taken is state.step - 1 (0-based); its learning rate is state.lr.
                lam = self.lam(state.step - 1)
                self._last = {"lam": lam}
                self._prox_step(lam, state.lr * hp.gate_lr_scale, self._fix(state.step - 1))
            self._kill_below_threshold(model, state.step)
            if self.hard_macs() <= self.target_macs:
                if hp.gate == "sampling":
                    for _, gate in self._gate_items():
                        gate.frozen.fill_(True)
                self.reached = True
                self.reached_step = state.step
                self.lam_at_target = self._last.get("lam")
                if hp.after_target == "stop":
                    state.stop = True
        if state.step % hp.trace_every == 0 or state.stop:
            self.trace.append({
                "step": state.step,
                "loss": float(state.loss.detach()) if state.loss is not None else float("nan"),
                "lam": self._last.get("lam", 0.0),
                "soft_macs_ratio": self.soft_macs() / self.dense_macs,
                "hard_macs_ratio": self.hard_macs() / self.dense_macs,
            })
        if state.step in self._snap_steps or state.stop:
            self._snapshot(state.step)
        state.logs.update({"gdp_lam": self._last.get("lam", 0.0),
                           "gdp_hard_macs_ratio": self.hard_macs() / self.dense_macs,
                           "gdp_reached": float(self.reached)})
        self._last = {}

    def _prox_step(self, lam: float, lr: float, fix: str) -> None:
        """Proximal step of the linearised regulariser on every gate's theta (Eq. (M))."""
        kappa = self.gate_coefficients(lam, fix).split(self._sizes.tolist())
        with torch.no_grad():
            for (_, gate), k in zip(self._gate_items(), kappa, strict=True):
                gate.theta.copy_(mm_prox(gate.theta, lr * k.to(gate.theta), gate.fn.eps) * gate.alive)

    def _candidates(self) -> list[tuple[float, str, int]]:
        """Alive channels whose gate fell below the kill threshold: (score, group, channel)."""
        thr = self.hp.zero_threshold if self.hp.gate == "polarized" else self.hp.sampling_kill
        with torch.no_grad():  # one device-to-host copy per step
            score = torch.cat([gate.score().detach().float() for _, gate in self._gate_items()])
            alive = torch.cat([gate.hard_mask() for _, gate in self._gate_items()])
            hits = ((score < thr) & alive).nonzero().flatten().cpu()
            values = score[hits.to(score.device)].cpu().tolist()
        group_of = torch.repeat_interleave(torch.arange(len(self.ids)), self._sizes)
        offsets = torch.cumsum(self._sizes, 0) - self._sizes
        out = []
        for flat, v in zip(hits.tolist(), values, strict=True):
            k = int(group_of[flat])
            out.append((v, self.ids[k], flat - int(offsets[k])))
        return sorted(out)

    def _select(self, order: Iterable[tuple[float, str, int]]) -> list[tuple[float, str, int]]:
        """The channels of `order` to kill: in order, while the hard MACs exceed the target."""
        widths = self.hard_widths()
        macs = self.hard_macs(widths)
        chosen = []
        for value, gid, ch in order:
            if macs <= self.target_macs:
                break
            if widths[gid] == 1 and gid not in self.removable:
                continue  # e.g. a VGG layer or a residual stream: keep its last channel
            widths[gid] -= 1
            macs = self.hard_macs(widths)
            chosen.append((value, gid, ch))
        return chosen

    def _apply_kills(self, chosen: Iterable[tuple[float, str, int]]) -> None:
        killed: dict[str, list[int]] = {}
        for _, gid, ch in chosen:
            killed.setdefault(gid, []).append(ch)
        for gid, chans in killed.items():
            self.gates[gid].kill_(torch.tensor(chans, dtype=torch.long))

    def _kill(self, order: Iterable[tuple[float, str, int]]) -> list[tuple[float, str, int]]:
        """Kill channels in `order` while the hard MACs exceed the target; returns those killed."""
        chosen = self._select(order)
        self._apply_kills(chosen)
        return chosen

    def _kill_below_threshold(self, model: nn.Module, step: int) -> None:
        """The threshold step; with `measure_kills`, the kill's effect on the fixed batch's logits.

        The kills are applied in two parts, each measured: channels the network sees only through
        their gates (scaled by g, so a kill at g < threshold is continuous), then channels of
        groups that an option-A shortcut copies (the copy follows the 0/1 keep pattern, see
        :mod:`prunerep.pruning.gates`, so it carries the channel at full weight until g is exactly
        0: such a kill is a cut, whatever g was). The order of kills within a step does not change
        the network the step ends with.
        """
        chosen = self._select(self._candidates())
        if not chosen:
            return
        if not (self.hp.measure_kills and self._kill_batch is not None):
            self._apply_kills(chosen)
            return
        logits = [self._probe_logits(model)]
        event: dict[str, float] = {"step": int(step), "channels": len(chosen),
                                   "max_killed_value": max(v for v, _, _ in chosen)}
        for part, key in ((False, "gated"), (True, "copied")):
            kills = [k for k in chosen if (k[1] in self._copied) == part]
            event[f"{key}_channels"] = len(kills)
            event[f"{key}_logit_change"] = float("nan")
            if kills:
                self._apply_kills(kills)
                logits.append(self._probe_logits(model))
                event[f"{key}_logit_change"] = float((logits[-1] - logits[-2]).abs().max())
        change = float((logits[-1] - logits[0]).abs().max())
        event["max_abs_logit_change"] = change
        event["max_rel_logit_change"] = change / float(logits[0].abs().max().clamp_min(1e-12))
        self.kill_events.append(event)

    def _probe_logits(self, model: nn.Module) -> torch.Tensor:
        """Logits of the fixed kill batch in eval mode (BN running statistics are not updated)."""
        was_training = model.training
        model.eval()
        with torch.no_grad():
            out = _logits(model(self._kill_batch)).float()
        model.train(was_training)
        return out

    def kill_effect(self) -> dict[str, float]:
        """The largest effect of one threshold kill during training (nan where none was measured).

        ``max_abs_logit_change``: the largest change of any logit of the fixed batch caused by one
        step's kills; ``max_rel_logit_change``: the same relative to that batch's largest logit;
        ``max_killed_value``: the largest gate value (or keep probability) set to zero;
        ``gated_logit_change`` / ``copied_logit_change``: the largest change caused by the kills
        of channels seen only through their gates / of channels an option-A shortcut copies
        (``copied_channels`` of the ``channels`` killed).
        """
        ev = self.kill_events

        def worst(key: str) -> float:
            values = [e[key] for e in ev if key in e and not math.isnan(e[key])]
            return max(values, default=float("nan"))

        return {"events": len(ev), "channels": sum(e["channels"] for e in ev),
                "copied_channels": sum(e.get("copied_channels", 0) for e in ev),
                "max_killed_value": worst("max_killed_value"),
                "max_abs_logit_change": worst("max_abs_logit_change"),
                "max_rel_logit_change": worst("max_rel_logit_change"),
                "gated_logit_change": worst("gated_logit_change"),
                "copied_logit_change": worst("copied_logit_change")}

    def _snapshot(self, step: int) -> None:
        # 5 significant digits: small (but non-zero) gates must not be rounded to exact zeros
        self.snapshots.append({"step": int(step), "values": [float(f"{v:.5g}") for v in self.all_values().tolist()]})

    # -- end ------------------------------------------------------------------------------------

    def finalize(self, model: nn.Module, ctx: MethodContext) -> nn.Module:
        if not self.reached:
            # The schedule ran out before the target: remove the smallest gates until it is met.
            # This changes the network (reported as `forced`), unlike GDP's normal ending.
            order = []
            for gid, gate in self._gate_items():
                score = gate.score().detach().float().cpu()
                alive = gate.hard_mask().cpu()
                order += [(float(score[ch]), gid, ch) for ch in alive.nonzero().flatten().tolist()]
            self.forced = len(self._kill(sorted(order)))
            self.reached = self.hard_macs() <= self.target_macs
        final_values = self.all_values()
        self.final_stats = polarization_stats(final_values)
        device = ctx.example_input.device
        gen = torch.Generator().manual_seed(0)
        probe = torch.randn(self.hp.probe_images, *ctx.example_input.shape[1:], generator=gen).to(device)
        was_training = model.training
        model.eval()
        with torch.no_grad():
            before = _logits(model(probe)).float()
            apply_gates(model, self.gates, ctx.groups)
            after = _logits(model(probe)).float()
        model.train(was_training)
        scale = float(before.abs().max().clamp_min(1e-12))
        self.exactness = {
            "max_abs_diff": float((after - before).abs().max()),
            "max_rel_diff": float((after - before).abs().max()) / scale,
            "argmax_agree": float((after.argmax(1) == before.argmax(1)).float().mean()),
        }
        return model

    def summary(self) -> dict[str, Any]:
        return {
            "gate": self.hp.gate,
            "target_macs_ratio": self.target_macs / self.dense_macs if self.ids else None,
            "reached": self.reached, "reached_step": self.reached_step,
            "lam_at_target": self.lam_at_target, "forced_removals": self.forced,
            "trace": self.trace, "snapshots": self.snapshots, "group_ids": self.ids,
            "residual_groups": [g.id for g in self.ctx.prunable if g.residual] if self.gates is not None else [],
            "group_sizes": [self.gates[g].channels for g in self.ids] if self.gates is not None else [],
            "final_stats": getattr(self, "final_stats", {}), "exactness": self.exactness,
            "kill_events": self.kill_events, "kill_effect": self.kill_effect(),
        }

    def state_dict(self) -> dict[str, Any]:
        # Gate parameters and alive masks live in the model's state dict; this is the rest.
        return {"reached": self.reached, "reached_step": self.reached_step,
                "lam_at_target": self.lam_at_target, "trace": self.trace, "snapshots": self.snapshots,
                "kill_events": self.kill_events}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.reached = bool(state["reached"])
        self.reached_step = state["reached_step"]
        self.lam_at_target = state["lam_at_target"]
        self.trace = list(state["trace"])
        self.snapshots = list(state["snapshots"])
        self.kill_events = list(state.get("kill_events", []))


def _logits(out: Any) -> torch.Tensor:
    """The prediction tensor of a classifier (tensor) or a torchvision segmentation model (dict)."""
    if isinstance(out, Mapping):
        return out["out"]
    return out
