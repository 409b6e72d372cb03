"""W-Gates: weight-dependent gates pruned under a latency (or FLOPs) constraint (reconstruction).

Li, Wu, Liu, Zhang, Zhang, Yao, Yin. "Weight-dependent Gates for Differentiable Neural Network
Pruning", ECCV 2020 Workshops; journal version "Weight-dependent Gates for Network Pruning",
IEEE TCSVT 32 (2022). arXiv:2007.02066. No official code.

Verified (abstracts, ``../shared/papers/wgates.md``): the keep/prune decision of every filter is a
*learned function of that filter's own weights*, binary, trained end to end; a latency
predict net (LPNet) trained offline on measured latencies gives the latency of a candidate
network, so the gates and every layer's pruning ratio are optimised under a latency constraint;
in the journal version LPNet is an "efficiency module" switchable to FLOPs. Everything else below
is our reconstruction, each choice a named field of :class:`WGatesHyper`:

* **Gate generator** (one per channel group, the paper's per-layer "filter gates learning
  module"): the filters of the group's producers, each divided by its layer's standard
  deviation (so the generator sees the filters' shape, not the layer's scale) and concatenated
  per output channel, go through ``Linear(D, hidden) -> ReLU -> Linear(hidden, 1)``. Its scores
  are standardised over the group's channels and shifted by a learned per-group offset ``t_g``:
  ``s_c = z_c + t_g``. The gate is ``g_c = 1[s_c > 0]`` in the forward pass (the channel with
  the largest score always stays open, so no group dies) and passes the gradient straight
  through to ``s_c``. So ``z`` ranks the filters and ``t_g`` sets how many survive: the
  learned per-layer pruning ratio.
* **Generator initialisation** (``generator_init``, ours; the paper's was not retrieved):
  ``"random"`` (PyTorch's default init: at step 0 the generator ranks the filters at random, and
  the task loss must teach it the ranking through the straight-through gates) or ``"l1"``: before
  the gated training, each generator is fitted alone (Adam, ``init_steps``, no data, no other
  parameter touched) so that its standardised scores match the standardised L1 norms of the
  filters it reads, i.e. it starts as the L1-norm criterion and the task loss refines it. Its
  Spearman rank correlation with the L1 norms after the fit is in ``summary()["init_fit"]``.
* **Efficiency term**: the hinge ``lambda * max(0, log(E(w) / E(dense)) - log(target))`` of the
  network's efficiency at the widths ``w_g = sum_c g_c`` (differentiable through the
  straight-through gates): with a ``Budget(latency_keep=...)``, ``E`` is the frozen LPNet's
  predicted latency at ``latency_batch``, as a fraction of its prediction for the dense network
  (latency mode); with a ``Budget(macs_keep=...)``, ``E`` is the exact soft MACs of
  :class:`~prunerep.pruning.soft_cost.SoftCostModel` (FLOPs mode). ``lambda`` rises
  geometrically from ``lam_init`` to ``lam_max`` over ``ramp_epochs``, then holds.
* **Pressure per group** (ours): an offset moves all its group's gates at once, so the hinge
  pushes it in proportion to the group's share of the cost, and the residual streams (each
  channel read by several layers) are cut first and furthest. ``pressure="relative"`` rescales
  the gradient reaching each group's width so every offset gets the same push and only the task
  loss (through the straight-through gates) tells the groups apart; ``min_keep`` keeps the
  ``ceil(min_keep * C)`` best-scored channels of every group open (like slimming's floor here).
* **Freezing**: after ``freeze_at`` of the gated training the gates are fixed, or, with
  ``freeze_on_target``, as soon as the hard network first meets the target (like GDP's
  ``after_target: stop``: the efficiency hinge can drive the gates far past the target, e.g.
  every residual stream down to one channel, and a network trained at chance does not recover;
  measured with ``benchmarks/wgates_calibration.py``). If the hard
  network still exceeds the target, the open channels with the lowest scores are closed, one at
  a time, until it meets it (counted as ``forced``); if it is below the target (the one-sided
  hinge lets the gates overshoot), the closed channels with the highest scores are reopened
  while it stays within it (``reopened``); optionally every width is then rounded down to a
  multiple of ``round_to`` (hardware-friendly widths). The weights train on with the
  frozen gates until the phase ends, so they adapt to the network that will be kept.
* **Removal**: the gates are 0/1, so :func:`~prunerep.pruning.surgery.apply_gates` removes the
  closed channels and the pruned network computes exactly what the gated one did (measured on a
  probe batch, ``summary()["exactness"]``); fine-tuning is the runner's.

Which runs test the paper's claims is the study's business (:mod:`prunerep.studies.wgates`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from prunerep.config import from_dict
from prunerep.engine import OptimConfig, TrainState
from prunerep.methods.base import MethodContext, PruningMethod, register_method
from prunerep.methods.baselines import in_scope
from prunerep.pruning.gates import ChannelGate, attach_gates, straight_through
from prunerep.pruning.groups import ChannelGroup
from prunerep.pruning.rounding import rounded_width
from prunerep.pruning.surgery import apply_gates

__all__ = ["FilterWeights", "WGate", "WGates", "WGatesHyper", "choices_of_ours", "efficiency_penalty",
           "fit_generator_to_l1", "lambda_at"]


# -- pure functions ------------------------------------------------------------------------------


def efficiency_penalty(log_ratio: torch.Tensor, target: float, lam: float) -> torch.Tensor:
    """``lam * max(0, log_ratio - log(target))``: zero once the network meets its target."""
    return lam * torch.relu(log_ratio - math.log(target))


def lambda_at(step: int, ramp_steps: int, lam_init: float, lam_max: float) -> float:
    """Geometric ramp from ``lam_init`` (step 0) to ``lam_max`` (``ramp_steps`` on)."""
    if lam_init <= 0 or lam_max < lam_init:
        raise ValueError(f"need 0 < lam_init <= lam_max, got {lam_init}, {lam_max}")
    return lam_init * (lam_max / lam_init) ** min(1.0, step / max(1, ramp_steps))


# -- the gate ------------------------------------------------------------------------------------


def _standardised(x: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit standard deviation over the group's channels (the gate's scores and the L1 fit)."""
    return (x - x.mean()) / x.std().clamp_min(1e-6)


class FilterWeights:
    """The current filters of a group's producers, as the gate generator's input ``[C, D]``.

    Each producer's weight ``[C, ...]`` is flattened per output channel and divided by its
    standard deviation; the producers are concatenated along ``D``. A plain object holding the
    modules (not a closure), so ``copy.deepcopy`` of the model maps it onto the copied modules.

    Args:
        modules: The producers (convs / linears writing the group).
        detach: Stop the gates' gradient from reaching the filters.
    """

    def __init__(self, modules: list[nn.Module], detach: bool = False) -> None:
        self.modules = modules
        self.detach = detach

    def __call__(self) -> torch.Tensor:
        parts = []
        for m in self.modules:
            w = m.weight.detach() if self.detach else m.weight
            w = w.flatten(1)
            parts.append(w / w.detach().std().clamp_min(1e-12))
        return torch.cat(parts, dim=1)


class WGate(ChannelGate):
    """Binary gate from the channel's own filters: ``1[z_c + t > 0]``, straight-through.

    ``z`` are the generator's scores standardised over the group's channels, ``t`` the learned
    offset of the group. After :meth:`freeze_` the gate is a fixed 0/1 mask.

    Args:
        weight_fn: :class:`FilterWeights` of the group.
        hidden: Hidden width of the generator.
        offset_init: Initial ``t`` (large: every gate starts open).
        floor: The number of best-scored channels that stay open whatever their score (>= 1).
    """

    def __init__(self, weight_fn: FilterWeights, hidden: int = 16, offset_init: float = 3.0,
                 floor: int = 1) -> None:
        w = weight_fn()
        super().__init__(w.shape[0])
        self.weight_fn = weight_fn
        self.floor = max(1, min(int(floor), self.channels))
        self.mlp = nn.Sequential(nn.Linear(w.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.mlp.to(device=w.device, dtype=w.dtype)
        self.offset = nn.Parameter(torch.tensor(float(offset_init), device=w.device, dtype=w.dtype))
        self.register_buffer("frozen", torch.zeros((), dtype=torch.bool, device=w.device))
        self.register_buffer("mask", torch.ones(self.channels, dtype=torch.bool, device=w.device))

    def raw_scores(self) -> torch.Tensor:
        """Generator output per channel ``[C]``."""
        w = self.weight_fn()
        if w.shape[0] != self.channels:
            raise ValueError(f"the producers have {w.shape[0]} filters, the gate {self.channels}")
        return self.mlp(w).squeeze(1)

    def scores(self) -> torch.Tensor:
        """``z_c + t``: the gate is open where this is > 0."""
        raw = self.raw_scores()
        if self.channels < 2:
            return raw - raw.detach() + self.offset   # one channel: nothing to rank
        return _standardised(raw) + self.offset

    def values(self) -> torch.Tensor:
        if bool(self.frozen):
            return self.mask.to(self.offset.dtype)
        s = self.scores()
        hard = s > 0
        # The `floor` best-scored channels always stay open (at least one: no group dies).
        top = torch.zeros_like(hard)
        top[torch.topk(s.detach(), self.floor).indices] = True
        return straight_through(s, hard | top)

    def hard_mask(self) -> torch.Tensor:
        if bool(self.frozen):
            return self.mask.clone()
        with torch.no_grad():
            return self.values().detach() != 0

    def freeze_(self, mask: torch.Tensor) -> None:
        """Fix the gate to ``mask`` (bool ``[C]``, at least one True)."""
        mask = mask.to(device=self.mask.device, dtype=torch.bool)
        if mask.shape != self.mask.shape or not bool(mask.any()):
            raise ValueError(f"freeze_: need a bool mask of {self.channels} entries with at least one True")
        self.mask.copy_(mask)
        self.frozen.fill_(True)


def fit_generator_to_l1(gate: WGate, steps: int = 100, lr: float = 0.03) -> float:
    """Fit ``gate``'s generator alone so its standardised scores match the standardised L1 norms
    of the filters it reads (as it reads them: each producer divided by its standard deviation).

    Only the generator's parameters move (Adam, ``steps`` full-batch steps on the group's own
    filters, no data); the filters and the offset are untouched. Returns the Spearman rank
    correlation between the fitted scores and the L1 norms (NaN for a one-channel group, which has
    nothing to rank).
    """
    from prunerep.pruning.latency_model import spearman

    if gate.channels < 2:
        return math.nan
    with torch.enable_grad():
        x = gate.weight_fn().detach()
        target = _standardised(x.abs().sum(1))
        opt = torch.optim.Adam(gate.mlp.parameters(), lr=lr)
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss = (_standardised(gate.mlp(x).squeeze(1)) - target).pow(2).mean()
            loss.backward()
            opt.step()
        opt.zero_grad(set_to_none=True)   # no stale gradient left for the first training step
    with torch.no_grad():
        return spearman(gate.mlp(x).squeeze(1).cpu(), target.cpu())


# -- configuration -------------------------------------------------------------------------------


def _default_train() -> OptimConfig:
    return OptimConfig(epochs=2, lr=0.02, schedule="cosine", weight_decay=5e-4)


@dataclass(frozen=True)
class WGatesHyper:
    """W-Gates' hyper-parameters (keyword arguments of ``get_method("wgates", ...)``).

    The paper's values were not retrieved: every field is our choice, listed in the notebook.
    The mode follows the budget: ``Budget(latency_keep=...)`` needs ``lpnet``; a
    ``Budget(macs_keep=...)`` uses the exact soft MACs.
    """

    train: OptimConfig = field(default_factory=_default_train)   # the gated training phase
    hidden: int = 16                 # hidden width of each gate generator
    offset_init: float = 3.0         # initial per-group offset t (all gates open)
    gate_lr_scale: float = 10.0      # generators' and offsets' lr = scale x the weights' lr, no weight decay
    lam_init: float = 0.1            # efficiency-hinge weight at step 0 ...
    lam_max: float = 10.0            # ... rising geometrically to this over ramp_epochs
    ramp_epochs: float = 1.0
    freeze_at: float = 0.75          # fraction of the gated training after which the gates are fixed
    freeze_on_target: bool = True    # ... or as soon as the hard network first meets the target
    round_to: int | None = None      # round widths down to multiples of this after freezing (null: no)
    # per-group floor: ceil(min_keep x C) best-scored channels stay open (the budget wins if the
    # floors alone exceed it). 0.33 and freeze_on_target: chosen on validation, see the notebook
    min_keep: float = 0.33
    # How the efficiency hinge's gradient reaches the groups' offsets. "cost": as it comes (each
    # group's offset is pushed by its share of the cost: the residual streams, read by many layers,
    # most); "relative": every group's offset gets the same push, (the mean of the groups' shares),
    # so only the task loss tells the groups apart (ours: see the module docstring).
    pressure: Literal["cost", "relative"] = "cost"
    scope: Literal["all", "internal"] = "all"   # all: residual streams too
    detach_weights: bool = False     # True: the gates' gradient does not reach the filters
    # "random": the generators' default init; "l1": each generator first fitted to rank its filters
    # by L1 norm (ours, see the module docstring), with init_steps Adam steps at init_lr. "l1" was
    # chosen on the validation split (benchmarks/wgates_calibration.py; see the notebook)
    generator_init: Literal["random", "l1"] = "l1"
    init_steps: int = 100
    init_lr: float = 0.03
    lpnet: str = ""                  # LPNet file (latency budgets)
    lpnet_digest: str = ""           # its sha256 (the run refuses another file)
    latency_batch: int = 1           # which LPNet output is the constraint
    probe_images: int = 16           # random inputs on which surgery's output change is measured
    trace_every: int = 1

    def __post_init__(self) -> None:
        checks = [
            (self.hidden >= 1, "hidden must be >= 1"),
            (0 < self.lam_init <= self.lam_max, "need 0 < lam_init <= lam_max"),
            (self.ramp_epochs >= 0, "ramp_epochs must be >= 0"),
            (0 < self.freeze_at <= 1, "freeze_at must be in (0, 1]"),
            (self.round_to is None or self.round_to >= 1, "round_to must be >= 1 or null"),
            (0.0 <= self.min_keep < 1.0, "min_keep must be in [0, 1)"),
            (self.pressure in ("cost", "relative"), "pressure must be 'cost' or 'relative'"),
            (self.gate_lr_scale > 0, "gate_lr_scale must be > 0"),
            (self.trace_every >= 1, "trace_every must be >= 1"),
            (self.generator_init in ("random", "l1"), "generator_init must be 'random' or 'l1'"),
            (self.init_steps >= 1, "init_steps must be >= 1"),
            (self.init_lr > 0, "init_lr must be > 0"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)


def choices_of_ours(hyper: Mapping[str, Any] | None) -> list[str]:
    """The choices of ours a run's resolved hyper-parameters make, as every table names them (the
    wgates and compare studies both label runs with these)."""
    hyper = hyper or {}
    return ([f"{hyper['min_keep']:.0%} per-group floor, ours"] if hyper.get("min_keep") else []) + \
        (["equal pressure per group, ours"] if hyper.get("pressure") == "relative" else []) + \
        (["generators initialised to the L1 ranking, ours"] if hyper.get("generator_init") == "l1" else [])


# -- the method ----------------------------------------------------------------------------------


@register_method("wgates", hyper=WGatesHyper)
class WGates(PruningMethod):
    """W-Gates on the shared method interface (see the module docstring)."""

    paper = "Li et al., ECCV-W 2020 / TCSVT 2022, arXiv:2007.02066"
    exact_surgery = True

    def __init__(self, hyper: WGatesHyper | None = None, **kwargs: Any) -> None:
        if hyper is not None and kwargs:
            raise TypeError("WGates: give a WGatesHyper or its fields as keywords, not both")
        self.hp: WGatesHyper = hyper if hyper is not None else from_dict(WGatesHyper, kwargs, "wgates")
        self.gates: Any = None
        self.lpnet: Any = None
        self.mode = ""
        self.target = 1.0
        self.reached_step: int | None = None
        self.frozen_step: int | None = None
        self.forced = 0
        self.reopened = 0
        self.floor_breaks = 0
        self.trace: list[dict[str, float]] = []
        self.exactness: dict[str, float] = {}
        self.init_fit: dict[str, float] = {}
        self._freeze_step = 0
        self._ramp_steps = 1
        self._last: dict[str, float] = {}

    @classmethod
    def from_hyper(cls, hyper: WGatesHyper) -> WGates:
        return cls(hyper)

    # -- set-up ---------------------------------------------------------------------------------

    def prunable(self, group: ChannelGroup) -> bool:
        return in_scope(group, self.hp.scope)

    def prepare(self, model: nn.Module, ctx: MethodContext) -> nn.Module:
        self.ctx = ctx
        hp = self.hp
        budget = ctx.budget
        self._ids_all = list(ctx.cost_model.group_ids)
        self._dense = torch.tensor([ctx.cost_model.dense_widths[g] for g in self._ids_all], dtype=torch.float64)
        self._arch = getattr(model, "arch_spec", None)
        if budget.latency_keep is not None:
            self.mode, self.target = "latency", float(budget.latency_keep)
            self._load_lpnet(ctx)
        elif budget.macs_keep is not None:
            self.mode, self.target = "flops", float(budget.macs_keep)
            self.dense_macs = float(ctx.cost_model.dense_macs())
        else:
            raise ValueError("wgates: the budget must be Budget(latency_keep=...) or Budget(macs_keep=...)")
        modules = dict(model.named_modules())

        def make(g: ChannelGroup) -> WGate:
            producers = [modules[n] for n in g.producers]
            floor = max(1, math.ceil(hp.min_keep * g.channels - 1e-9))
            return WGate(FilterWeights(producers, hp.detach_weights), hidden=hp.hidden, offset_init=hp.offset_init,
                         floor=floor)

        self.gates = attach_gates(model, ctx.prunable, make, placement="output")
        self.ids = self.gates.ids()
        if hp.generator_init == "l1":
            self.init_fit = {gid: fit_generator_to_l1(gate, hp.init_steps, hp.init_lr)
                             for gid, gate in self._gate_items()}
        return model

    def _load_lpnet(self, ctx: MethodContext) -> None:
        from prunerep.pruning.latency_model import load_lpnet

        if not self.hp.lpnet:
            raise ValueError("wgates: a latency budget needs an LPNet file (hyper-parameter `lpnet`)")
        net, meta = load_lpnet(self.hp.lpnet, self.hp.lpnet_digest or None)
        order = list(meta.get("group_ids", []))
        dense = dict(zip(self._ids_all, self._dense.tolist(), strict=True))
        same = sorted(order) == sorted(self._ids_all) and all(
            dense[g] == c for g, c in zip(order, meta.get("channels", [dense.get(g) for g in order]), strict=True))
        arch = getattr(self, "_arch", None)
        if not same or (arch is not None and "arch" in meta and meta["arch"] != arch):
            raise ValueError(f"wgates: {self.hp.lpnet} was fitted on another network (groups, widths or "
                             "architecture differ from this model's); refit it on this network's latency dataset")
        self._lp_index = torch.tensor([self._ids_all.index(g) for g in order])
        self._lp_out = net.output(self.hp.latency_batch)
        self.lpnet = net.to(ctx.example_input.device)
        with torch.no_grad():
            self._lp_dense = float(self.lpnet.log_ms(torch.ones(1, len(order), device=ctx.example_input.device))
                                   [0, self._lp_out])

    def phases(self) -> list[tuple[str, OptimConfig]]:
        return [("wgates", self.hp.train)]

    def param_groups(self, model: nn.Module, weight_decay: float) -> list[dict[str, Any]] | None:
        # Generators and offsets: no weight decay (an uncontrolled push on the scores) and their
        # own learning-rate scale.
        gate_params = list(self.gates.parameters())
        gate_ids = {id(p) for p in gate_params}
        weights = [p for p in model.parameters() if id(p) not in gate_ids]
        return [{"params": weights, "weight_decay": weight_decay},
                {"params": gate_params, "weight_decay": 0.0, "lr_scale": self.hp.gate_lr_scale}]

    # -- quantities -----------------------------------------------------------------------------

    def _gate_items(self) -> Iterator[tuple[str, WGate]]:
        return iter(self.gates.items())

    def _width_vector(self, widths: Mapping[str, Any]) -> torch.Tensor:
        return self.ctx.cost_model.width_vector(dict(widths))

    def log_ratio(self, widths: Mapping[str, Any]) -> torch.Tensor:
        """``log(E(w) / E(dense))`` at the given widths (differentiable): LPNet or exact MACs."""
        if self.mode == "latency":
            w = self._width_vector(widths)
            x = (w / self._dense.to(w.device))[self._lp_index.to(w.device)].float().unsqueeze(0)
            return self.lpnet.log_ms(x.to(self.lpnet.y_mean.device))[0, self._lp_out].double() - self._lp_dense
        return torch.log(self.ctx.cost_model.macs(dict(widths)) / self.dense_macs)

    def _equal_pressure(self, widths: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The same widths, with each group's gradient rescaled so every offset gets the same push.

        A group's offset moves all its straight-through gates at once, so the hinge pushes it by
        ``a_g = C_g * d log E / d w_g``: the group's share of the cost. Scaling the gradient that
        reaches ``w_g`` by ``mean(a) / a_g`` (values unchanged) gives every offset ``mean(a)``.
        """
        names = list(widths)
        probe = {g: widths[g].detach().clone().requires_grad_(True) for g in names}
        grads = torch.autograd.grad(self.log_ratio(probe), [probe[g] for g in names], allow_unused=True)
        share = torch.stack([(gr if gr is not None else torch.zeros(())).double().abs().reshape(())
                             * self.gates[g].channels for g, gr in zip(names, grads, strict=True)])
        scale = share.mean() / share.clamp_min(1e-12)
        out = {}
        for g, k in zip(names, scale.tolist(), strict=True):
            w = widths[g]
            out[g] = w * k + (w * (1.0 - k)).detach()
        return out

    def hard_widths(self) -> dict[str, int]:
        with torch.no_grad():
            return {gid: int(gate.hard_mask().sum()) for gid, gate in self._gate_items()}

    def hard_ratio(self, widths: Mapping[str, int] | None = None) -> float:
        """``E(w) / E(dense)`` of the network with the closed channels removed."""
        with torch.no_grad():
            return float(torch.exp(self.log_ratio(widths if widths is not None else self.hard_widths())))

    def lam(self, step: int) -> float:
        return lambda_at(step, self._ramp_steps, self.hp.lam_init, self.hp.lam_max)

    # -- hooks ----------------------------------------------------------------------------------

    def on_train_start(self, model: nn.Module, state: TrainState) -> None:
        self._ramp_steps = max(1, round(self.hp.ramp_epochs * state.steps_per_epoch))
        self._freeze_step = max(1, round(self.hp.freeze_at * state.total_steps))
        self._ratio = self.hard_ratio()

    def _frozen(self) -> bool:
        return self.frozen_step is not None

    def extra_loss(self, model: nn.Module, state: TrainState) -> torch.Tensor | None:
        if state.phase != "weights" or self._frozen():
            return None
        widths = {gid: gate.expected_keep() for gid, gate in self._gate_items()}
        if self.hp.pressure == "relative":
            widths = self._equal_pressure(widths)
        log_ratio = self.log_ratio(widths)
        lam = self.lam(state.step)
        self._last = {"lam": lam, "soft_ratio": float(torch.exp(log_ratio.detach()))}
        return efficiency_penalty(log_ratio, self.target, lam).float()

    def after_step(self, model: nn.Module, state: TrainState) -> None:
        if not self._frozen():
            ratio = self.hard_ratio()
            if self.reached_step is None and ratio <= self.target:
                self.reached_step = state.step
            if state.step >= self._freeze_step or (self.hp.freeze_on_target and ratio <= self.target):
                self.freeze(state.step)
                ratio = self.hard_ratio()
            self._ratio = ratio
        ratio = self._ratio
        if state.step % self.hp.trace_every == 0 or self.frozen_step == state.step:
            self.trace.append({"step": state.step,
                               "loss": float(state.loss.detach()) if state.loss is not None else math.nan,
                               "lam": self._last.get("lam", 0.0), "soft_ratio": self._last.get("soft_ratio", math.nan),
                               "hard_ratio": ratio, "frozen": float(self._frozen())})
        state.logs.update({"wgates_hard_ratio": ratio, "wgates_frozen": float(self._frozen())})
        self._last = {}

    def freeze(self, step: int) -> None:
        """Fix every gate: close the lowest-scored open channels until the target is met, round."""
        masks, scores = {}, {}
        with torch.no_grad():
            for gid, gate in self._gate_items():
                masks[gid] = gate.hard_mask().cpu().clone()
                scores[gid] = gate.scores().detach().float().cpu()
        widths = {gid: int(m.sum()) for gid, m in masks.items()}
        order = sorted((float(scores[gid][c]), gid, c) for gid, m in masks.items() for c in m.nonzero().flatten().tolist())
        # Close above the floors first; if the floors alone cost more than the target, the budget
        # wins: close below them too (down to one channel), counted in `floor_breaks`.
        for respect_floor in (True, False):
            for _, gid, c in order:
                if self.hard_ratio(widths) <= self.target:
                    break
                if not masks[gid][c] or widths[gid] <= (self.gates[gid].floor if respect_floor else 1):
                    continue
                masks[gid][c] = False
                widths[gid] -= 1
                self.forced += 1
                self.floor_breaks += int(not respect_floor)
        if not self.forced:
            # Below the target (the one-sided hinge lets momentum overshoot): reopen the best-scored
            # closed channels while the network stays within it, so no arm gets less than its budget.
            closed = sorted(((float(scores[gid][c]), gid, c) for gid, m in masks.items()
                             for c in (~m).nonzero().flatten().tolist()), reverse=True)
            for _, gid, c in closed:
                widths[gid] += 1
                if self.hard_ratio(widths) <= self.target:
                    masks[gid][c] = True
                    self.reopened += 1
                else:
                    widths[gid] -= 1
        m = self.hp.round_to or self.ctx.budget.round_to
        if m:
            for gid, mask in masks.items():
                keep = int(mask.sum())
                rounded = rounded_width(keep, m)
                if rounded < keep:
                    idx = mask.nonzero().flatten()
                    drop = idx[torch.argsort(scores[gid][idx])[: keep - rounded]]
                    mask[drop] = False
        for gid, gate in self._gate_items():
            gate.freeze_(masks[gid])
        self.frozen_step = step

    # -- end ------------------------------------------------------------------------------------

    def finalize(self, model: nn.Module, ctx: MethodContext) -> nn.Module:
        if not self._frozen():
            self.freeze(-1)   # the phase ended before the freeze point (e.g. a step cap)
        self.final_ratio = self.hard_ratio()
        self.final_widths = self.hard_widths()
        device = ctx.example_input.device
        gen = torch.Generator().manual_seed(0)
        probe = torch.randn(self.hp.probe_images, *ctx.example_input.shape[1:], generator=gen).to(device)
        was_training = model.training
        model.eval()
        with torch.no_grad():
            before = model(probe).float()
            apply_gates(model, self.gates, ctx.groups)
            after = model(probe).float()
        model.train(was_training)
        scale = float(before.abs().max().clamp_min(1e-12))
        self.exactness = {"max_abs_diff": float((after - before).abs().max()),
                          "max_rel_diff": float((after - before).abs().max()) / scale,
                          "argmax_agree": float((after.argmax(1) == before.argmax(1)).float().mean())}
        return model

    def summary(self) -> dict[str, Any]:
        channels = {gid: gate.channels for gid, gate in self._gate_items()} if self.gates is not None else {}
        offsets = {gid: float(gate.offset.detach()) for gid, gate in self._gate_items()} if self.gates else {}
        return {"mode": self.mode, "target": self.target, "final_ratio": getattr(self, "final_ratio", None),
                "reached_step": self.reached_step, "frozen_step": self.frozen_step, "forced_closures": self.forced, "reopened": self.reopened,
                "floor_breaks": self.floor_breaks,
                "channels": channels, "widths": getattr(self, "final_widths", {}), "offsets": offsets,
                "latency_batch": self.hp.latency_batch if self.mode == "latency" else None,
                "trace": self.trace, "exactness": self.exactness,
                **({"init_fit": self.init_fit} if self.init_fit else {})}

    def state_dict(self) -> dict[str, Any]:
        # Generators, offsets and frozen masks live in the model's state dict; this is the rest.
        return {"reached_step": self.reached_step, "frozen_step": self.frozen_step, "forced": self.forced,
                "reopened": self.reopened, "floor_breaks": self.floor_breaks, "trace": self.trace}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.reached_step = state["reached_step"]
        self.frozen_step = state["frozen_step"]
        self.forced = int(state["forced"])
        self.reopened = int(state.get("reopened", 0))
        self.floor_breaks = int(state.get("floor_breaks", 0))
        self.trace = list(state["trace"])
