"""GReg: neural pruning via growing regularization (GReg-1 and GReg-2).

Wang, Qin, Zhang, Fu, "Neural Pruning via Growing Regularization", ICLR 2021,
arXiv:2012.09243; official code https://github.com/MingSun-Tse/Regularization-Pruning (read at
commit a404402, ``pruner/reg_pruner.py``). Our own implementation on the shared interface.

Mechanics (paper §3, Algorithm 1; code ``_update_reg`` / ``_apply_reg``):

- Each weight group j (a filter, or a single weight in unstructured mode) has an L2 coefficient
  λ_j, initialised to 0. After ``loss.backward()`` and before the optimiser step, λ_j · w is added
  to the gradient of every weight of group j, on top of the optimiser's ordinary weight decay.
- λ is updated every K_u iterations (``update_reg_interval``), counting from iteration 0.
- **GReg-1** (a pruning *schedule*): the pruned set of each layer is chosen once, by L1 norm, on
  the pretrained weights. Its λ grows by δλ (``reg_granularity_prune``, 1e-4) per update; kept
  groups keep λ = 0. A layer stops growing when its λ exceeds τ (``reg_upper_limit``, 1) or when
  every layer's magnitude ratio (mean |w| of kept / of pruned groups, smoothed with momentum 0.9)
  reaches ``mag_ratio_limit`` (1000).
- **GReg-2** (a *criterion*): λ of every group of a pruned layer grows uniformly by
  ``reg_granularity_pick`` (1e-5) per update, so that the weights separate according to the
  local Hessian (paper Eq. 5-7: ŵ* = (H + δλ I)^-1 H w*, r_i = 1/(1 + δλ/h_ii)). When λ reaches
  τ' (``reg_upper_limit_pick``, 1e-2) the layer picks its pruned set by L1 norm *at that moment*;
  from then on the pruned groups grow by δλ per update and the kept groups get a constant
  negative coefficient (the code's ``reg_granularity_recover`` = -1e-4; the paper's Algorithm 1
  writes -γ, minus the weight decay: ``kept_reg: code | paper`` chooses). A layer stops when it has
  picked and (its magnitude ratio reaches the limit or λ exceeds τ).
- When every layer has stopped, λ is frozen for K_s iterations (``stabilize_reg_interval``), then
  the pruned filters are removed (shared surgery) or, in unstructured mode, the pruned weights
  are set to exact zero and kept there during fine-tuning by :class:`WeightMasks`.

Layer ratios are data (``stage_pr`` per ResNet stage, ``layer_pr`` per VGG layer index), mapped
onto channel groups by :func:`layer_ratios` / :func:`greg_budget`. In filter mode only groups
inside residual branches are pruned (the official rule: never the last conv of a block, the
shortcuts or the stem).

Tested by ``notebooks/greg.ipynb``: Table 1 (same pruned filters, one-shot L1 vs GReg-1 on
ResNet-56), Table 2's comparisons (GReg-1, GReg-2, L1 at its 2.55x layer ratios), Figure 1
(normalised std of filter L1 norms under a uniformly rising penalty). Deviations:

- λ is kept as ``count · δλ`` in float64 (the code accumulates a float32 tensor); the
  comparisons with τ' and τ allow a relative fuzz of 1e-9, so λ = τ' exactly picks and λ = τ
  exactly does not stop.
- In filter mode the magnitude ratio uses mean |W| per filter, as the code; the penalty goes to
  the conv weights only (not BN), as the code, unless ``penalize_norm`` (ours, off by default)
  also adds λ·γ and λ·β to the pruned channels' BN scale and shift: with a compressed schedule
  the conv-only penalty stalls where BN still re-normalises the shrinking filters. A run with it
  is a variant of ours and is labelled so by the study.
- The CPU profiles compress the schedule (larger δλ, K_u = 1, shorter K_s); the ``paper``
  profile keeps the official values.

Checked against a re-statement of the official update rule (``tests/unit/test_greg_official.py``:
λ per iteration, stop iterations and reasons, GReg-2's pick, pruned indices on a small conv net).

Cross-check with torch-pruning 1.6.1's ``GrowingRegPruner`` (``tests/unit/test_greg_crosscheck.py``):
with the same λ vector both add exactly λ · w to the pruned filters of the producer conv. They
differ in that torch-pruning (a) also adds λ · w to the *input* columns of the layers reading the
group (its BN branch is meant to penalise γ too, but writes into an advanced-indexing copy and
has no effect in 1.6.1), (b) grows every group's λ continuously by
δλ · (max-imp)/(max-min) from its current importance instead of a fixed pruned set, starting at
``reg`` (1e-5) rather than 0, and (c) has no stop conditions, stabilisation or GReg-2 picking; its
benchmark script calls ``update_reg()`` once per epoch, where the paper's code updates every K_u
iterations.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from prunerep.config import from_dict
from prunerep.engine import OptimConfig, TrainHooks, TrainState
from prunerep.methods.base import Budget, MethodContext, PruningMethod, register_method
from prunerep.pruning.groups import ChannelGroup, ChannelGroups, find_groups
from prunerep.pruning.surgery import prune_channels

Variant = Literal["greg1", "greg2"]
Granularity = Literal["filter", "weight"]
_FUZZ = 1e-9  # relative tolerance of the λ thresholds (λ is count · δλ in float64)


# ---------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class GRegHyper:
    """The penalty schedule (defaults: the official code with the README's CIFAR commands)."""

    update_reg_interval: int = 10            # K_u (README CIFAR; the code default 5 is ImageNet's)
    reg_granularity_prune: float = 1e-4      # δλ of GReg-1, and of GReg-2's pruned groups
    reg_granularity_pick: float = 1e-5       # GReg-2's uniform δλ before picking
    reg_granularity_recover: float = -1e-4   # GReg-2's kept groups after picking (code)
    kept_reg: Literal["code", "paper"] = "code"  # code: reg_granularity_recover; paper (Alg. 1): -weight decay
    reg_upper_limit: float = 1.0             # τ: stop growing once λ > τ
    reg_upper_limit_pick: float = 1e-2       # τ': GReg-2 picks once λ >= τ'
    mag_ratio_limit: float = 1000.0          # stop once mean|w| kept / pruned reaches this
    mag_ratio_momentum: float = 0.9          # smoothing of the magnitude ratio (code)
    stabilize_reg_interval: int = 10000      # K_s: iterations with λ frozen before removal (README CIFAR)
    max_iterations: int | None = None        # cap of the pruning phase; None: the schedule's own bound
    # Ours (off in the official recipe): in filter mode also add λ·γ and λ·β to the gradients of the
    # BatchNorm scale and shift of the *pruned* channels. A BN after the conv re-normalises a
    # shrinking filter, so the conv-only penalty changes nothing the network computes until the
    # filter's output variance falls below BN's eps (the paper's magnitude ratio 1000 on a converged
    # network); penalising γ and β fades the channel's output itself, within a short schedule.
    penalize_norm: bool = False

    def __post_init__(self) -> None:
        checks = [
            (self.update_reg_interval >= 1, "update_reg_interval must be >= 1 (iterations between λ updates)"),
            (self.reg_granularity_prune > 0, "reg_granularity_prune must be > 0"),
            (self.reg_granularity_pick > 0, "reg_granularity_pick must be > 0"),
            (self.reg_upper_limit > 0, "reg_upper_limit must be > 0"),
            (0 < self.reg_upper_limit_pick < self.reg_upper_limit,
             "reg_upper_limit_pick must be in (0, reg_upper_limit)"),
            (self.mag_ratio_limit > 1, "mag_ratio_limit must be > 1"),
            (0 <= self.mag_ratio_momentum < 1, "mag_ratio_momentum must be in [0, 1)"),
            (self.stabilize_reg_interval >= 0, "stabilize_reg_interval must be >= 0"),
            (self.max_iterations is None or self.max_iterations >= 1, "max_iterations must be >= 1 or null"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def kept_coefficient(self, weight_decay: float) -> float:
        """λ of GReg-2's kept groups after picking: the code's constant or the paper's -γ."""
        return self.reg_granularity_recover if self.kept_reg == "code" else -weight_decay


def _prune_optim_default() -> OptimConfig:
    # Official pruning optimiser: SGD lr_prune 0.001, momentum 0.9, wd 5e-4 (CIFAR), constant lr.
    return OptimConfig(epochs=1, lr=1e-3, momentum=0.9, nesterov=False, weight_decay=5e-4, schedule="constant")


# ---------------------------------------------------------------------------------------------
# layer ratios as data


_STAGE_RE = re.compile(r"(?:^|\.)layer(\d+)\.")


def _weighted_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Conv and linear layers in model order, without option-A ``ChannelSelect`` copies."""
    from prunerep.models.layers import ChannelSelect

    return [(n, m) for n, m in model.named_modules()
            if isinstance(m, nn.Conv2d | nn.Linear) and not isinstance(m, ChannelSelect)]


def fill_ratio(stage_pr: Sequence[float | str], r: float) -> list[float]:
    """Replace the placeholder "r" of a template such as ``[0, "r", "r", "r", 0]`` by `r`."""
    out = []
    for i, v in enumerate(stage_pr):
        if isinstance(v, str):
            if v.strip() != "r":
                raise ValueError(f"stage_pr[{i}] = {v!r}: use a number or the placeholder 'r'")
            out.append(float(r))
        else:
            out.append(float(v))
    return out


def _parse_layer_pr(layer_pr: Mapping[str, float]) -> dict[int, float]:
    out: dict[int, float] = {}
    for key, r in layer_pr.items():
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", str(key))
        if not m:
            raise ValueError(f"layer_pr key {key!r}: use a layer index '3' or a range '1-15'")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        for i in range(lo, hi + 1):
            out[i] = float(r)
    return out


def layer_ratios(model: nn.Module, *, stage_pr: Sequence[float | str] | None = None,
                 layer_pr: Mapping[str, float] | None = None) -> dict[str, float]:
    """Pruning ratio of every conv/linear layer, from GReg's ``--stage_pr`` conventions.

    Args:
        model: the dense network.
        stage_pr: ResNets: one ratio for the stem, one per stage (modules named ``layer<s>.``) and
            one for the classifier, e.g. ``[0, 0.75, 0.75, 0.32, 0]`` for ResNet-56 at 2.55x.
        layer_pr: single-branch nets (VGG): ratio by layer index, counting conv and linear layers
            from 0 in model order, e.g. ``{"1-15": 0.7}``; unlisted layers get 0.

    Returns:
        Module name -> ratio (0 for unpruned layers).
    """
    layers = _weighted_layers(model)
    if (stage_pr is None) == (layer_pr is None):
        raise ValueError("layer_ratios: give exactly one of stage_pr (ResNets) or layer_pr (VGG)")
    for r in ([v for v in stage_pr if not isinstance(v, str)] if stage_pr is not None else list(layer_pr.values())):
        if not 0 <= float(r) < 1:
            raise ValueError(f"pruning ratios must be in [0, 1), got {r}")
    out: dict[str, float] = {}
    if layer_pr is not None:
        by_index = _parse_layer_pr(layer_pr)
        if by_index and max(by_index) >= len(layers):
            raise ValueError(f"layer_pr names layer {max(by_index)} but the model has {len(layers)} "
                             f"conv/linear layers (indices 0..{len(layers) - 1})")
        return {name: by_index.get(i, 0.0) for i, (name, _) in enumerate(layers)}
    stage_pr = [float(v) if not isinstance(v, str) else v for v in stage_pr]
    if any(isinstance(v, str) for v in stage_pr):
        raise ValueError("stage_pr still holds the placeholder 'r': call fill_ratio(stage_pr, r) first")
    stages = sorted({int(m.group(1)) for n, _ in layers if (m := _STAGE_RE.search(n))})
    if not stages:
        raise ValueError("stage_pr needs ResNet-style module names 'layer<s>.'; use layer_pr for this model")
    if len(stage_pr) != max(stages) + 2:
        raise ValueError(f"stage_pr has {len(stage_pr)} entries; this model needs {max(stages) + 2}: "
                         f"stem, stages 1..{max(stages)}, classifier")
    seen = False
    for name, _ in layers:
        m = _STAGE_RE.search(name)
        if m:
            stage, seen = int(m.group(1)), True
        else:
            stage = len(stage_pr) - 1 if seen else 0   # before the stages: stem; after: classifier
        out[name] = float(stage_pr[stage])
    return out


def group_ratios(groups: ChannelGroups, per_layer: Mapping[str, float]) -> dict[str, float]:
    """Filter mode: the ratio of each group inside a residual branch, from its producer's ratio.

    Residual streams (the stem, the last conv of every block, the shortcuts) are never pruned:
    GReg's rule for ResNets, so their layer ratios are ignored.
    """
    out = {}
    for g in groups:
        if g.residual:
            continue
        rs = {float(per_layer.get(p, 0.0)) for p in g.producers}
        if len(rs) > 1:
            raise ValueError(f"group {g.id!r}: its producers {g.producers} have different ratios {sorted(rs)}")
        out[g.id] = rs.pop() if rs else 0.0
    return out


def greg_budget(model: nn.Module, *, stage_pr: Sequence[float | str] | None = None,
                layer_pr: Mapping[str, float] | None = None, granularity: Granularity = "filter",
                input_shape: tuple[int, ...]) -> Budget:
    """`Budget(ratios=...)` for GReg (and the one-shot L1 rows that prune the same filters).

    Filter mode: keyed by channel-group id (internal groups only). Weight mode: keyed by layer
    name (every conv/linear layer with a non-zero ratio). `input_shape` is the data's
    ``(1, C, H, W)`` (the study passes the shape of its dataset: it is never assumed).
    """
    per_layer = layer_ratios(model, stage_pr=stage_pr, layer_pr=layer_pr)
    if granularity == "weight":
        return Budget(ratios={n: r for n, r in per_layer.items() if r > 0})
    device = next(model.parameters()).device
    groups = find_groups(model, torch.zeros(input_shape, device=device))
    return Budget(ratios=group_ratios(groups, per_layer))


# ---------------------------------------------------------------------------------------------
# pure pieces of the schedule


def n_pruned(n: int, ratio: float) -> int:
    """``min(ceil(ratio * n), n - 1)``: at least one group is always kept (code ``_pick_pruned``)."""
    return min(math.ceil(ratio * n - 1e-9), n - 1) if ratio > 0 else 0


def pick_lowest(scores: torch.Tensor, ratio: float) -> torch.Tensor:
    """Bool mask of the ``n_pruned(len, ratio)`` lowest-scored entries (L1 sorting)."""
    scores = scores.detach().flatten().float().cpu()
    mask = torch.zeros(scores.numel(), dtype=torch.bool)
    k = n_pruned(scores.numel(), ratio)
    if k:
        mask[torch.sort(scores, stable=True).indices[:k]] = True
    return mask


def magnitude_ratio(w_abs: torch.Tensor, pruned: torch.Tensor) -> float:
    """Mean magnitude of the kept groups over that of the pruned ones (code ``_update_mag_ratio``)."""
    w_abs = w_abs.detach().float().cpu()
    pruned = pruned.cpu()
    if not bool(pruned.any()):
        return math.inf
    mean_pruned = float(w_abs[pruned].mean())
    mean_kept = float(w_abs[~pruned].mean()) if bool((~pruned).any()) else 0.0
    return math.inf if mean_pruned == 0 else mean_kept / mean_pruned


def smooth_ratio(previous: float | None, ratio: float, momentum: float = 0.9) -> float:
    """``momentum * previous + (1 - momentum) * ratio``; the first value is taken as is."""
    if previous is None or math.isinf(ratio):
        return ratio
    return momentum * previous + (1 - momentum) * ratio


def schedule_bound(variant: Variant, hyper: GRegHyper, *, pick_only: bool = False) -> int:
    """Iterations after which the schedule has certainly stopped (the pruning phase's cap).

    GReg-1 stops at the latest when λ = n·δλ > τ; GReg-2 after picking at τ' and growing the pruned
    groups past τ. Plus K_s stabilising iterations and a margin of two updates.
    """
    k = hyper.update_reg_interval
    if variant == "greg1":
        updates = math.floor(hyper.reg_upper_limit / hyper.reg_granularity_prune * (1 + _FUZZ)) + 1
    else:
        picks = math.ceil(hyper.reg_upper_limit_pick / hyper.reg_granularity_pick * (1 - _FUZZ))
        if pick_only:
            return (picks + 1) * k + 1
        rest = hyper.reg_upper_limit - picks * hyper.reg_granularity_pick
        updates = picks + math.floor(rest / hyper.reg_granularity_prune * (1 + _FUZZ)) + 1
    return (updates + 2) * k + hyper.stabilize_reg_interval + 1


# ---------------------------------------------------------------------------------------------
# the method


@dataclass
class _Layer:
    """Penalty state of one pruned layer (filter mode: one channel group)."""

    name: str                         # group id (filter) or module name (weight)
    modules: tuple[str, ...]          # weights penalised (the group's producers, or the layer)
    ratio: float
    units: int                        # filters or weights
    pruned: torch.Tensor | None = None   # bool [units]; None until GReg-2 picks
    l1_pruned: torch.Tensor | None = None  # the L1 choice on the dense weights (for the overlap)
    n_pick: int = 0                   # GReg-2 uniform updates
    n_prune: int = 0                  # updates of the pruned groups
    kept_coef: float = 0.0            # λ of kept groups after picking
    norms: tuple[str, ...] = ()       # BN layers of the group (penalised with penalize_norm)
    mag_ratio: float | None = None    # smoothed magnitude ratio
    picked_at: int | None = None
    finished_at: int | None = None
    finish_reason: str = ""

    def lam_pruned(self, hyper: GRegHyper) -> float:
        return self.n_pick * hyper.reg_granularity_pick + self.n_prune * hyper.reg_granularity_prune

    def lam_max(self, hyper: GRegHyper) -> float:
        if self.pruned is None:
            return self.n_pick * hyper.reg_granularity_pick
        return max(self.lam_pruned(hyper), self.kept_coef) if self.n_prune else self.lam_pruned(hyper)

    def lambdas(self, hyper: GRegHyper) -> torch.Tensor:
        """λ per unit (float64, CPU)."""
        if self.pruned is None:
            return torch.full((self.units,), self.n_pick * hyper.reg_granularity_pick, dtype=torch.float64)
        lam = torch.full((self.units,), self.kept_coef if self.n_prune else self.lam_pruned(hyper),
                         dtype=torch.float64)
        lam[self.pruned] = self.lam_pruned(hyper)
        return lam

    def to_state(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["modules"] = list(self.modules)
        d["norms"] = list(self.norms)
        return d


@dataclass(frozen=True)
class GRegMethodHyper:
    """The keyword arguments of :class:`GReg` (see its docstring); `reg` is the penalty schedule."""

    variant: Variant = "greg1"
    granularity: Granularity = "filter"
    reg: GRegHyper = field(default_factory=GRegHyper)
    prune_optim: OptimConfig = field(default_factory=_prune_optim_default)
    pick_only: bool = False
    trace_every: int = 0
    trace_layer: str | None = None


@register_method("greg", hyper=GRegMethodHyper)
class GReg(PruningMethod):
    """GReg-1 / GReg-2 on the shared interface (slug ``greg``; ``variant`` chooses).

    Args:
        variant: ``greg1`` (L1-chosen pruned set, rising penalty) or ``greg2`` (uniform rising
            penalty, pick by L1 at τ', then rise on the pruned and recover the kept).
        granularity: ``filter`` (structured; removed by surgery) or ``weight`` (unstructured;
            exact zeros kept through fine-tuning).
        reg: the penalty schedule (:class:`GRegHyper` or its dict).
        prune_optim: optimiser of the pruning phase (epochs are ignored: the phase ends when the
            schedule stops, at the latest after ``reg.max_iterations`` or the schedule's bound).
        pick_only: GReg-2 only: stop as soon as every layer has picked (the code's
            ``AdaReg_only_picking``), used for Figure 1.
        trace_every: every so many iterations, record the normalised std (std/mean) of the
            filter magnitudes of every pruned layer (Figure 1, row 1); 0 = off.
        trace_layer: the layer whose max-normalised sorted filter magnitudes are recorded at the
            same iterations (Figure 1, row 2).
    """

    paper = "Wang et al., ICLR 2021, arXiv:2012.09243"

    def __init__(self, variant: Variant = "greg1", granularity: Granularity = "filter",
                 reg: GRegHyper | Mapping[str, Any] | None = None,
                 prune_optim: OptimConfig | Mapping[str, Any] | None = None, *, pick_only: bool = False,
                 trace_every: int = 0, trace_layer: str | None = None) -> None:
        if variant not in ("greg1", "greg2"):
            raise ValueError(f"greg: variant must be 'greg1' or 'greg2', got {variant!r}")
        if granularity not in ("filter", "weight"):
            raise ValueError(f"greg: granularity must be 'filter' or 'weight', got {granularity!r}")
        if pick_only and variant != "greg2":
            raise ValueError("greg: pick_only applies to variant 'greg2' only")
        self.variant = variant
        self.granularity = granularity
        self.hyper = reg if isinstance(reg, GRegHyper) else from_dict(GRegHyper, reg or {}, "greg.reg")
        self.prune_optim = (prune_optim if isinstance(prune_optim, OptimConfig)
                            else from_dict(OptimConfig, {**dataclasses.asdict(_prune_optim_default()),
                                                         **(prune_optim or {})}, "greg.prune_optim"))
        self.pick_only = pick_only
        self.trace_every = int(trace_every)
        self.trace_layer = trace_layer
        self.layers: list[_Layer] = []
        self.stage = "update"           # update -> stabilize -> done
        self.stabilize_start: int | None = None
        self.iterations = 0
        self.trace: list[dict[str, Any]] = []
        self.masks: dict[str, torch.Tensor] = {}
        self._coef: dict[str, torch.Tensor] = {}
        self._mods: tuple[nn.Module, dict[str, nn.Module]] | None = None
        self._completed = False

    # -- setup ------------------------------------------------------------------------------

    def prunable(self, group: ChannelGroup) -> bool:
        return not group.residual   # GReg prunes only inside residual branches

    def prepare(self, model: nn.Module, ctx: MethodContext) -> nn.Module:
        super().prepare(model, ctx)
        ratios = ctx.budget.ratios
        if ratios is None:
            raise ValueError("greg uses fixed per-layer ratios (the paper's --stage_pr): give "
                             "Budget(ratios=...), e.g. greg_budget(model, stage_pr=[0, 0.75, 0.75, 0.32, 0])")
        modules = dict(model.named_modules())
        self.layers = []
        if self.granularity == "filter":
            prunable = {g.id: g for g in ctx.prunable}
            unknown = sorted(set(ratios) - set(prunable))
            if unknown:
                raise ValueError(f"greg: Budget.ratios names {unknown[:3]} which are not groups inside residual "
                                 f"branches; prunable groups: {sorted(prunable)[:6]}...")
            for gid, g in prunable.items():
                r = float(ratios.get(gid, 0.0))
                if r > 0:
                    self.layers.append(_Layer(name=gid, modules=tuple(g.producers), ratio=r, units=g.channels,
                                              norms=tuple(g.norms)))
        else:
            weighted = dict(_weighted_layers(model))
            unknown = sorted(set(ratios) - set(weighted))
            if unknown:
                raise ValueError(f"greg (weight mode): Budget.ratios names {unknown[:3]} which are not conv/linear "
                                 "layers; key the ratios by layer name (greg_budget(..., granularity='weight'))")
            for name, r in ratios.items():
                if r > 0:
                    self.layers.append(_Layer(name=name, modules=(name,), ratio=float(r),
                                              units=weighted[name].weight.numel()))
        if not self.layers:
            raise ValueError("greg: every ratio is 0, nothing to prune")
        for layer in self.layers:
            layer.l1_pruned = pick_lowest(self._w_abs(modules, layer), layer.ratio)
            if self.variant == "greg1":
                layer.pruned = layer.l1_pruned.clone()   # step 1 of GReg-1: L1 sorting on the pretrained model
        if self.trace_layer is not None and self.trace_layer not in {x.name for x in self.layers}:
            raise ValueError(f"greg: trace_layer {self.trace_layer!r} is not a pruned layer; "
                             f"choose one of {[x.name for x in self.layers][:6]}...")
        self._coef = {}
        return model

    def phases(self) -> list[tuple[str, OptimConfig]]:
        bound = schedule_bound(self.variant, self.hyper, pick_only=self.pick_only)
        cap = min(bound, self.hyper.max_iterations) if self.hyper.max_iterations else bound
        # The phase ends through state.stop when the schedule is done; max_steps only caps it.
        return [("prune", dataclasses.replace(self.prune_optim, epochs=float(cap), max_steps=cap))]

    # -- the schedule -----------------------------------------------------------------------

    def _w_abs(self, modules: Mapping[str, nn.Module], layer: _Layer) -> torch.Tensor:
        """Importance per unit: mean |W| per filter (code ``_get_score``) or |w| per weight."""
        ws = [modules[n].weight.detach() for n in layer.modules]
        if self.granularity == "weight":
            return ws[0].abs().flatten().float().cpu()
        return torch.cat([w.abs().flatten(1) for w in ws], dim=1).mean(1).float().cpu()

    def _update(self, model: nn.Module, t: int) -> None:
        """One λ update at iteration t (code ``_update_reg``), layer by layer in model order."""
        modules = self._modules(model)
        structured = self.granularity == "filter"
        for layer in self.layers:
            if layer.finished_at is not None:
                continue
            w_abs = self._w_abs(modules, layer) if structured or self.variant == "greg2" else None
            if self.variant == "greg1":
                finished, reason = self._greg1(layer, w_abs)
            else:
                finished, reason = self._greg2(layer, w_abs, t)
            self._coef.pop(layer.name, None)
            if finished:
                layer.finished_at, layer.finish_reason = t, reason
        if self.stage == "update" and all(x.finished_at is not None for x in self.layers):
            self.stage, self.stabilize_start = "stabilize", t

    def _greg1(self, layer: _Layer, w_abs: torch.Tensor | None) -> tuple[bool, str]:
        h = self.hyper
        if w_abs is not None:  # unstructured: no magnitude ratio (too costly in the code)
            layer.mag_ratio = smooth_ratio(layer.mag_ratio, magnitude_ratio(w_abs, layer.pruned),
                                           h.mag_ratio_momentum)
        layer.n_prune += 1
        # "Once in every layer the magnitude ratio reaches the limit". The code checks only the
        # layers measured so far, so at iteration 0 its first layer could stop alone; here a
        # layer not measured yet counts as not reached.
        if w_abs is not None and all(x.mag_ratio is not None and x.mag_ratio >= h.mag_ratio_limit
                                     for x in self.layers):
            return True, "magnitude ratio (all layers)"
        if layer.lam_pruned(h) > h.reg_upper_limit * (1 + _FUZZ):
            return True, "ceiling"
        return False, ""

    def _greg2(self, layer: _Layer, w_abs: torch.Tensor, t: int) -> tuple[bool, str]:
        h = self.hyper
        if layer.pruned is not None:
            layer.n_prune += 1                              # push the pruned groups further
            layer.kept_coef = h.kept_coefficient(self.prune_optim.weight_decay)  # recover the kept ones
        else:
            layer.n_pick += 1                               # uniform rise: let the Hessian separate them
        if self.granularity == "filter":
            pruned = layer.pruned if layer.pruned is not None else pick_lowest(w_abs, layer.ratio)
            layer.mag_ratio = smooth_ratio(layer.mag_ratio, magnitude_ratio(w_abs, pruned), h.mag_ratio_momentum)
        if layer.pruned is None and layer.lam_max(h) >= h.reg_upper_limit_pick * (1 - _FUZZ):
            layer.pruned = pick_lowest(w_abs, layer.ratio)  # the criterion: L1 at this moment
            layer.picked_at = t
        if self.pick_only or layer.pruned is None:
            return False, ""
        if self.granularity == "filter" and layer.mag_ratio >= h.mag_ratio_limit:
            return True, "magnitude ratio"
        if layer.lam_max(h) > h.reg_upper_limit * (1 + _FUZZ):
            return True, "ceiling"
        return False, ""

    def _coefficient(self, layer: _Layer, device: torch.device) -> torch.Tensor:
        coef = self._coef.get(layer.name)
        if coef is None or coef.device != device:
            coef = layer.lambdas(self.hyper).to(device=device, dtype=torch.float32)
            self._coef[layer.name] = coef
        return coef

    def _modules(self, model: nn.Module) -> dict[str, nn.Module]:
        # Cached per model: the loop calls the hooks every iteration with the same network.
        if self._mods is None or self._mods[0] is not model:
            self._mods = (model, dict(model.named_modules()))
        return self._mods[1]

    def _record_trace(self, model: nn.Module, t: int) -> None:
        modules = self._modules(model)
        point: dict[str, Any] = {"iteration": t, "lambda_max": max(x.lam_max(self.hyper) for x in self.layers),
                                 "norm_std": {}}
        for layer in self.layers:
            w_abs = self._w_abs(modules, layer)
            point["norm_std"][layer.name] = float(w_abs.std(unbiased=False) / w_abs.mean().clamp_min(1e-30))
            if layer.name == self.trace_layer:
                point["sorted_norm"] = (w_abs.sort(descending=True).values / w_abs.max().clamp_min(1e-30)).tolist()
        self.trace.append(point)

    # -- hooks ------------------------------------------------------------------------------

    def after_backward(self, model: nn.Module, state: TrainState) -> None:
        t = state.step  # iteration index from 0, the code's total_iter
        if self.trace_every and t % self.trace_every == 0 and self.stage == "update":
            self._record_trace(model, t)
        if self.stage == "update" and t % self.hyper.update_reg_interval == 0:
            self._update(model, t)
        modules = self._modules(model)
        for layer in self.layers:
            for name in layer.modules:
                w = modules[name].weight
                if w.grad is None:
                    continue
                coef = self._coefficient(layer, w.device)
                coef = coef.view_as(w) if self.granularity == "weight" else coef.view(-1, *([1] * (w.dim() - 1)))
                w.grad.addcmul_(coef, w.detach())  # Eq. (2): g += λ_j · w on top of weight decay
            if self.hyper.penalize_norm and layer.pruned is not None:
                for name in layer.norms:
                    bn = modules[name]
                    coef = self._coefficient(layer, bn.weight.device) * layer.pruned.to(bn.weight.device)
                    for param in (bn.weight, bn.bias):
                        if param is not None and param.grad is not None:
                            param.grad.addcmul_(coef, param.detach())
        self.iterations = t + 1

    def after_step(self, model: nn.Module, state: TrainState) -> None:
        picked = self.pick_only and all(x.pruned is not None for x in self.layers)
        stable = (self.stage == "stabilize"
                  and state.step >= self.stabilize_start + self.hyper.stabilize_reg_interval + 1)
        if picked or stable:  # the code prunes after the step of iteration stabilize_start + K_s
            self.stage, self._completed, state.stop = "done", True, True

    def on_epoch_end(self, model: nn.Module, state: TrainState) -> None:
        ratios = [x.mag_ratio for x in self.layers if x.mag_ratio is not None]
        state.logs.update({
            "greg_lambda_max": max(x.lam_max(self.hyper) for x in self.layers),
            "greg_mag_ratio_min": min(ratios) if ratios else float("nan"),
            "greg_layers_finished": float(sum(x.finished_at is not None for x in self.layers)),
            "greg_layers_picked": float(sum(x.pruned is not None for x in self.layers)),
            "greg_stabilizing": float(self.stage != "update"),
        })

    def state_dict(self) -> dict[str, Any]:
        return {"layers": [x.to_state() for x in self.layers], "stage": self.stage,
                "stabilize_start": self.stabilize_start, "iterations": self.iterations,
                "completed": self._completed, "trace": self.trace}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.layers = [_Layer(**{**d, "modules": tuple(d["modules"]), "norms": tuple(d.get("norms", ()))})
                       for d in state["layers"]]
        self.stage, self.stabilize_start = state["stage"], state["stabilize_start"]
        self.iterations, self._completed = state["iterations"], state["completed"]
        self.trace = list(state["trace"])
        self._coef = {}

    def lambdas(self) -> dict[str, torch.Tensor]:
        """Current λ per unit of every pruned layer (float64, CPU)."""
        return {x.name: x.lambdas(self.hyper) for x in self.layers}

    # -- removal ----------------------------------------------------------------------------

    def finalize(self, model: nn.Module, ctx: MethodContext) -> nn.Module:
        self._mods, self._coef = None, {}
        modules = dict(model.named_modules())
        for layer in self.layers:
            if layer.pruned is None:  # cap reached before GReg-2 picked: pick now, reported in summary()
                layer.pruned = pick_lowest(self._w_abs(modules, layer), layer.ratio)
        if self.granularity == "filter":
            return prune_channels(model, ctx.groups, {x.name: ~x.pruned for x in self.layers})
        self.masks = {}
        with torch.no_grad():
            for layer in self.layers:
                w = modules[layer.name].weight
                keep = (~layer.pruned).view_as(w).to(w.device)
                w.mul_(keep)
                self.masks[layer.name] = keep.cpu()
        return model

    def finetune_hooks(self) -> list[TrainHooks]:
        return [WeightMasks(self.masks)] if self.masks else []

    def summary(self) -> dict[str, Any]:
        h = self.hyper
        out: dict[str, Any] = {
            "variant": self.variant, "granularity": self.granularity, "completed": self._completed,
            "iterations": self.iterations, "stabilize_start": self.stabilize_start,
            "layers": {x.name: {
                "ratio": x.ratio, "lambda_max": x.lam_max(h), "mag_ratio": x.mag_ratio,
                "picked_at": x.picked_at, "finished_at": x.finished_at, "finish_reason": x.finish_reason,
                "l1_overlap": (float((x.pruned & x.l1_pruned).sum() / x.pruned.sum().clamp_min(1))
                               if x.pruned is not None and x.l1_pruned is not None else None),
            } for x in self.layers},
            "trace": self.trace,
        }
        if self.masks:
            zeros = sum(int((~m).sum()) for m in self.masks.values())
            out["sparsity_pruned_layers"] = zeros / sum(m.numel() for m in self.masks.values())
        return out


class WeightMasks(TrainHooks):
    """Keeps pruned weights at exact zero while training (unstructured fine-tuning).

    The masked gradients are zeroed after backward (so momentum never builds up there) and the
    weights are re-multiplied by the mask after every step (weight decay of a zero is zero, but
    this makes the zeros exact whatever the optimiser does).
    """

    def __init__(self, masks: Mapping[str, torch.Tensor]) -> None:
        self.masks = {k: v.bool() for k, v in masks.items()}
        self._device_masks: dict[str, torch.Tensor] = {}

    def _mask(self, name: str, w: torch.Tensor) -> torch.Tensor:
        m = self._device_masks.get(name)
        if m is None or m.device != w.device:
            m = self.masks[name].to(w.device).view_as(w).to(w.dtype)
            self._device_masks[name] = m
        return m

    def _apply(self, model: nn.Module) -> None:
        modules = dict(model.named_modules())
        with torch.no_grad():
            for name in self.masks:
                w = modules[name].weight
                w.mul_(self._mask(name, w))

    def on_train_start(self, model: nn.Module, state: TrainState) -> None:
        self._apply(model)

    def after_backward(self, model: nn.Module, state: TrainState) -> None:
        modules = dict(model.named_modules())
        for name in self.masks:
            w = modules[name].weight
            if w.grad is not None:
                w.grad.mul_(self._mask(name, w))

    def after_step(self, model: nn.Module, state: TrainState) -> None:
        self._apply(model)
