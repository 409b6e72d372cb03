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

Reproduced: Table 1 (same pruned filters, one-shot L1 vs GReg-1 on ResNet-56), Table 2's
ResNet-56 rows (GReg-1, GReg-2, L1 at 2.55x), Figure 1 (normalised std of filter L1 norms under
a uniformly rising penalty). Deviations (all listed in ``notebooks/greg.ipynb``):

- λ is kept as ``count · δλ`` in float64 (the code accumulates a float32 tensor); the
  comparisons with τ' and τ allow a relative fuzz of 1e-9, so λ = τ' exactly picks and λ = τ
  exactly does not stop.
- In filter mode the magnitude ratio uses mean |W| per filter, as the code; the penalty goes to
  the conv weights only (not BN), as the code.
- The CPU profiles compress the schedule (larger δλ, K_u = 1, shorter K_s) and set
  ``penalize_norm`` (λ also on the pruned channels' BN scale and shift: compressed, the conv-only
  penalty stalls where BN still re-normalises the shrinking filters); the ``paper`` profile keeps
  the official values (conv weights only).

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
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from prunerep.config import from_dict, register_section
from prunerep.engine import OptimConfig, RuntimeConfig, TrainHooks, TrainState
from prunerep.methods.base import Budget, MethodContext, PruningMethod, register_method
from prunerep.pruning.groups import ChannelGroup, ChannelGroups, find_groups
from prunerep.pruning.surgery import prune_channels
from prunerep.stages.common import SubsetConfig

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


def _finetune_default() -> OptimConfig:
    # README CIFAR fine-tuning: 120 epochs, lr 0.01 -> 0.001 @60 -> 1e-4 @90, wd 5e-4.
    return OptimConfig(epochs=120, lr=0.01, momentum=0.9, nesterov=False, weight_decay=5e-4,
                       schedule="multistep", milestones=[60, 90])


@dataclass(frozen=True)
class GRegSetting:
    """One setting of the paper's tables: dense model, data, layer ratios, recipe overrides."""

    model: str                                            # key of pretrain.models (the dense checkpoint)
    dataset: str = "cifar10"                              # data.dataset it needs; skipped otherwise
    stage_pr: list[float | str] = field(default_factory=list)   # ResNets: stem, stages..., classifier
    layer_pr: dict[str, float] = field(default_factory=dict)    # VGG: {"1-15": 0.7} by conv/linear index
    granularity: Granularity = "filter"
    methods: list[str] = field(default_factory=lambda: ["l1", "greg1", "greg2"])
    paper_rows: dict[str, str] = field(default_factory=dict)    # our method -> paper_results.yaml row
    input_size: int = 32                                  # example input side for tracing (224: ImageNet)
    reg: dict[str, Any] = field(default_factory=dict)           # overrides of greg.reg
    prune_optim: dict[str, Any] = field(default_factory=dict)   # overrides of greg.prune_optim
    finetune: dict[str, Any] = field(default_factory=dict)      # overrides of greg.finetune
    batch_size: int | None = None                         # None: greg.batch_size

    def __post_init__(self) -> None:
        if bool(self.stage_pr) == bool(self.layer_pr):
            raise ValueError(f"setting for {self.model!r}: give exactly one of stage_pr or layer_pr")
        for m in self.methods:
            if m not in METHOD_LABELS:
                raise ValueError(f"methods: {m!r} is not one of {sorted(METHOD_LABELS)}")


@dataclass(frozen=True)
class Table1Variant:
    """An extra GReg-1 column of Table 1 with other penalty settings (an ablation), e.g. the
    official conv-only penalty where the profile's GReg-1 also penalises BN."""

    name: str                                             # short id: variant column "greg1:<name>"
    label: str                                            # column title
    reg: dict[str, Any] = field(default_factory=dict)     # overrides of greg.reg
    ratios: list[float] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0])

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z0-9_]+", self.name):
            raise ValueError(f"table1.variants: name {self.name!r} must be lower-case letters, digits or _")
        if not self.ratios or not self.seeds:
            raise ValueError(f"table1.variants.{self.name}: give ratios and seeds")


@dataclass(frozen=True)
class Table1Config:
    """Table 1: the same pruned filters, one-shot L1 vs GReg-1, at uniform ratios r."""

    ratios: list[float] = field(default_factory=lambda: [0.5, 0.7, 0.9, 0.925, 0.95])
    stage_pr: list[float | str] = field(default_factory=lambda: [0, "r", "r", "r", 0])  # "r" = the row's ratio
    methods: list[str] = field(default_factory=lambda: ["l1", "greg1"])
    seeds: list[int] | None = None                        # None: greg.seeds
    seeds_by_ratio: dict[str, list[int]] = field(default_factory=dict)  # e.g. {"0.9": [0, 1, 2]}: more seeds where the claim is
    variants: list[Table1Variant] = field(default_factory=list)        # extra GReg-1 columns (ablations)

    def seeds_for(self, ratio: float, default: Sequence[int]) -> list[int]:
        """Seeds of the row with ratio `ratio` (keys of `seeds_by_ratio` compared as numbers)."""
        for key, seeds in self.seeds_by_ratio.items():
            if abs(float(key) - ratio) < 1e-9:
                return list(seeds)
        return list(self.seeds or default)


@dataclass(frozen=True)
class Figure1Config:
    """Figure 1: GReg-2's uniform rising penalty on the dense net, traced until every layer picks."""

    enabled: bool = True
    stage_pr: list[float | str] = field(default_factory=lambda: [0, 0.75, 0.75, 0.32, 0])
    reg: dict[str, Any] = field(default_factory=dict)     # overrides of greg.reg for this run
    trace_every: int = 100                                # iterations between two traced points
    layer: str = "layer2.3.conv1"                         # row 2: its normalised filter L1 norms
    snapshots: int = 4                                    # row 2: number of iterations shown


@register_section("greg")
@dataclass(frozen=True)
class GRegConfig:
    """The `greg` section of params.yaml."""

    model: str = "resnet56"                                # key of pretrain.models (the dense checkpoint)
    seeds: list[int] = field(default_factory=lambda: [0])  # claims are reported as mean ± std over these
    workers: int = 1                                       # independent runs side by side
    subset: SubsetConfig = SubsetConfig()                  # class-stratified data subsets (fast profiles)
    batch_size: int = 128                                  # README: 128 for ResNet-56, 256 for VGG-19
    reg: GRegHyper = GRegHyper()
    prune_optim: OptimConfig = field(default_factory=_prune_optim_default)
    finetune: OptimConfig = field(default_factory=_finetune_default)
    runtime: RuntimeConfig = RuntimeConfig()
    table1: Table1Config = Table1Config()
    table2: dict[str, GRegSetting] = field(default_factory=dict)
    figure1: Figure1Config = Figure1Config()
    checkpoint_dir: str = "artifacts/checkpoints/greg"    # resumable runs (not a DVC output)

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ValueError("seeds: give at least one seed")
        if self.workers < 1:
            raise ValueError("workers must be >= 1")


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
                input_shape: tuple[int, ...] = (1, 3, 32, 32)) -> Budget:
    """`Budget(ratios=...)` for GReg (and the one-shot L1 rows that prune the same filters).

    Filter mode: keyed by channel-group id (internal groups only). Weight mode: keyed by layer
    name (every conv/linear layer with a non-zero ratio).
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


METHOD_LABELS = {"l1": "L1 (one-shot)", "greg1": "GReg-1", "greg2": "GReg-2"}


@register_method
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

    slug = "greg"
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


# ---------------------------------------------------------------------------------------------
# the notebook's runs and tables (kept here so the notebook only calls and plots)


def dense_path(model_key: str) -> Path:
    """The shared dense checkpoint every method prunes (output of the `pretrain` stage)."""
    return Path("artifacts/pretrain") / model_key / "model.pt"


def dense_accuracy(models: Mapping[str, nn.Module], splits: Any, runtime: RuntimeConfig,
                   batch_size: int = 512) -> dict[str, float]:
    """Test accuracy of each dense model on the same test split as the pruned runs."""
    import copy

    from prunerep.data import Loader
    from prunerep.engine import evaluate, pick_device

    device = pick_device(runtime.device)
    loader = Loader(splits.test, batch_size, mean=splits.mean, std=splits.std, shuffle=False, augment=False,
                    device=device)
    return {key: float(evaluate(copy.deepcopy(m).to(device), loader)["acc"]) for key, m in models.items()}


@dataclass(frozen=True)
class PlannedRun:
    """One run of the notebook: which table/row it fills, and its spec."""

    table: str        # "table1" | "table2" | "figure1"
    setting: str      # Table 1: "r=0.9"; Table 2: the setting's name; Figure 1: "trace"
    method: str       # l1 | greg1 | greg2
    ratio: float | None
    model: str        # pretrain key of the dense net it prunes
    spec: Any         # prunerep.methods.run.RunSpec


def _merged(base: Any, overrides: Mapping[str, Any], cls: type, path: str) -> Any:
    return from_dict(cls, {**dataclasses.asdict(base), **overrides}, path) if overrides else base


def run_spec(method: str, budget: Budget, *, granularity: Granularity, reg: GRegHyper, prune_optim: OptimConfig,
          finetune: OptimConfig | None, seed: int, batch_size: int, runtime: RuntimeConfig, label: str,
          extra: Mapping[str, Any] | None = None) -> Any:
    """The `RunSpec` of one row: ``l1`` (one-shot, inside residual branches) or ``greg1``/``greg2``."""
    from prunerep.methods.run import RunSpec

    if method == "l1":
        # One-shot L1 on the same groups (Li et al. 2017 with GReg's scope: inside residual branches).
        kwargs: dict[str, Any] = {"scope": "internal"}
    else:
        kwargs = {"variant": method, "granularity": granularity, "reg": dataclasses.asdict(reg),
                  "prune_optim": dataclasses.asdict(prune_optim), **(extra or {})}
    return RunSpec(method="l1" if method == "l1" else "greg", budget=budget, kwargs=kwargs, finetune=finetune,
                   seed=seed, batch_size=batch_size, runtime=runtime, label=label)


def plan_runs(cfg: GRegConfig, dense_models: Mapping[str, nn.Module], dataset: str) -> tuple[list[PlannedRun], list[dict]]:
    """Every run of the notebook (Table 1, Table 2, Figure 1), longest first.

    Args:
        cfg: the resolved `greg` section.
        dense_models: dense nets by pretrain key (only used to map ratios onto groups).
        dataset: ``data.dataset`` of this pipeline; Table 2 settings needing another are skipped.

    Returns:
        (runs, skipped) where skipped lists the Table 2 settings not runnable here, with why.
    """
    runs: list[PlannedRun] = []
    skipped: list[dict] = []
    if cfg.table1.ratios:
        dense = dense_models[cfg.model]
        # Columns of Table 1: (variant id, GReg variant, reg, ratio -> seeds); the ablation variants
        # are GReg-1 with their own reg overrides. One budget per ratio, traced once.
        columns = [(m, m, cfg.reg, {r: cfg.table1.seeds_for(r, cfg.seeds) for r in cfg.table1.ratios})
                   for m in cfg.table1.methods]
        columns += [(f"greg1:{v.name}", "greg1", _merged(cfg.reg, v.reg, GRegHyper, f"greg.table1.variants.{v.name}.reg"),
                     {r: list(v.seeds) for r in v.ratios}) for v in cfg.table1.variants]
        budgets: dict[float, Budget] = {}
        for column, method, reg, seeds_by_ratio in columns:
            for r, seeds in seeds_by_ratio.items():
                if r not in budgets:
                    budgets[r] = greg_budget(dense, stage_pr=fill_ratio(cfg.table1.stage_pr, r))
                for seed in seeds:
                    runs.append(PlannedRun("table1", f"r={r:g}", column, r, cfg.model, run_spec(
                        method, budgets[r], granularity="filter", reg=reg, prune_optim=cfg.prune_optim,
                        finetune=cfg.finetune, seed=seed, batch_size=cfg.batch_size, runtime=cfg.runtime,
                        label=f"t1-{column.replace(':', '-')}-r{r:g}")))
    for name, s in cfg.table2.items():
        if s.dataset != dataset or s.model not in dense_models:
            why = (f"needs data.dataset = {s.dataset}" if s.dataset != dataset
                   else f"needs the dense model {s.model!r} (pretrain stage)")
            skipped.append({"setting": name, "model": s.model, "dataset": s.dataset, "reason": why})
            continue
        dense = dense_models[s.model]
        budget = greg_budget(dense, stage_pr=fill_ratio(s.stage_pr, 0) if s.stage_pr else None,
                             layer_pr=s.layer_pr or None, granularity=s.granularity,
                             input_shape=(1, 3, s.input_size, s.input_size))
        reg = _merged(cfg.reg, s.reg, GRegHyper, f"greg.table2.{name}.reg")
        prune_optim = _merged(cfg.prune_optim, s.prune_optim, OptimConfig, f"greg.table2.{name}.prune_optim")
        finetune = _merged(cfg.finetune, s.finetune, OptimConfig, f"greg.table2.{name}.finetune")
        for method in s.methods:
            for seed in cfg.seeds:
                runs.append(PlannedRun("table2", name, method, None, s.model, run_spec(
                    method, budget, granularity=s.granularity, reg=reg, prune_optim=prune_optim,
                    finetune=finetune, seed=seed, batch_size=s.batch_size or cfg.batch_size,
                    runtime=cfg.runtime, label=f"t2-{name}-{method}")))
    f = cfg.figure1
    if f.enabled:
        dense = dense_models[cfg.model]
        budget = greg_budget(dense, stage_pr=fill_ratio(f.stage_pr, 0))
        reg = _merged(cfg.reg, f.reg, GRegHyper, "greg.figure1.reg")
        runs.append(PlannedRun("figure1", "trace", "greg2", None, cfg.model, run_spec(
            "greg2", budget, granularity="filter", reg=reg, prune_optim=cfg.prune_optim, finetune=None,
            seed=cfg.seeds[0], batch_size=cfg.batch_size, runtime=cfg.runtime, label="f1-greg2-pick",
            extra={"pick_only": True, "trace_every": f.trace_every, "trace_layer": f.layer})))
    # Longest first, so that the last job of the pool is a short one (GReg runs carry a pruning phase).
    order = {"figure1": 0, "greg2": 1, "greg1": 2, "l1": 3}
    runs.sort(key=lambda p: (order["figure1"] if p.table == "figure1" else order[p.method.split(":")[0]],
                             -(p.ratio or 0)))
    return runs, skipped


def load_dense_models(cfg: GRegConfig, dataset: str) -> dict[str, nn.Module]:
    """The dense checkpoints this notebook prunes (those that exist and fit `dataset`)."""
    from prunerep.models.checkpoint import load_model

    keys = [cfg.model] + [s.model for s in cfg.table2.values() if s.dataset == dataset]
    out = {}
    for key in dict.fromkeys(keys):
        path = dense_path(key)
        if path.exists():
            out[key] = load_model(path)[0].eval()
        elif key == cfg.model:
            raise FileNotFoundError(f"{path}: dense checkpoint missing; run the pretrain stage "
                                    f"(`dvc repro pretrain@{key}`) first")
    return out


def execute(runs: Sequence[PlannedRun], cfg: GRegConfig, data_cfg: Any, profile: str) -> list[dict[str, Any]]:
    """Run every planned run (``run_many``, `cfg.workers` processes), in plan order.

    Runs checkpoint under ``cfg.checkpoint_dir/<profile>/<label>-s<seed>`` and resume after a kill.
    """
    from prunerep.methods.run import run_many

    outputs: list[dict[str, Any] | None] = [None] * len(runs)
    for key in dict.fromkeys(p.model for p in runs):
        idx = [i for i, p in enumerate(runs) if p.model == key]
        res = run_many([runs[i].spec for i in idx], dense_path=dense_path(key), data_cfg=data_cfg,
                       subset=cfg.subset, checkpoint_root=Path(cfg.checkpoint_dir) / profile, workers=cfg.workers,
                       key_prefix=f"greg/{key}")
        for i, out in zip(idx, res, strict=True):
            outputs[i] = out
    return outputs  # type: ignore[return-value]


def budget_text(cfg: GRegConfig, splits: Any, profile: str) -> str:
    """One sentence stating the compute budget, for every table caption."""
    r, f = cfg.reg, cfg.finetune
    t1 = ", ".join(f"r={x:g}: n={len(cfg.table1.seeds_for(x, cfg.seeds))}" for x in cfg.table1.ratios)
    steps_per_epoch = len(splits.train) // cfg.batch_size
    ft_steps = round(f.epochs * steps_per_epoch)
    return (f"Profile `{profile}`: {len(splits.train)} training images, batch {cfg.batch_size}; pruning SGD lr "
            f"{cfg.prune_optim.lr:g}, K_u={r.update_reg_interval}, δλ={r.reg_granularity_prune:g} "
            f"(GReg-2 pick δλ={r.reg_granularity_pick:g} to τ'={r.reg_upper_limit_pick:g}), τ={r.reg_upper_limit:g}, "
            f"magnitude-ratio limit {r.mag_ratio_limit:g}, K_s={r.stabilize_reg_interval}; fine-tuning "
            f"{f.epochs:g} epochs (≈{ft_steps} iterations, lr {f.lr:g}, {f.schedule}); {len(splits.test)} test "
            f"images; seeds per row: Table 1 {t1}, elsewhere {list(cfg.seeds)}.")


def claim_check(df: Any, min_ratio: float = 0.9) -> Any:
    """Table 1's claim at r >= `min_ratio`: GReg-1 beats one-shot L1 on the same filters.

    Verdict per ratio: "reproduced" if the mean gain is positive and larger than the spread
    (sqrt of the sum of the two variances of the means), "same sign, within noise" if positive
    but smaller, "not reproduced" otherwise.
    """
    import pandas as pd

    d = df[(df.table == "table1") & (df.ratio >= min_ratio - 1e-12)]
    rows = []
    for r in sorted(d.ratio.unique()):
        l1 = d[(d.ratio == r) & (d.variant == "l1")].test_acc
        g1 = d[(d.ratio == r) & (d.variant == "greg1")].test_acc
        if not len(l1) or not len(g1):
            continue
        gain = float(g1.mean() - l1.mean())
        var = sum(float(x.var()) / len(x) for x in (l1, g1) if len(x) > 1)
        spread = math.sqrt(var) if var > 0 else float("nan")
        verdict = ("reproduced" if gain > 0 and (math.isnan(spread) or gain > spread)
                   else "same sign, within noise" if gain > 0 else "not reproduced")
        if math.isnan(spread) and gain > 0:
            verdict = "same sign (n=1, no spread)"
        rows.append({"r": f"{r:g}", "GReg-1 - L1 (mean)": gain, "spread of the difference": spread,
                     "n (L1, GReg-1)": f"{len(l1)}, {len(g1)}", "verdict": verdict})
    return pd.DataFrame(rows)


def table1_plot(df: Any, paper: Any, title: str = "") -> Any:
    """Accuracy vs ratio: ours (mean ± std over seeds) and the paper's (dashed)."""
    import matplotlib.pyplot as plt

    d = df[df.table == "table1"]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for i, (variant, label) in enumerate((("l1", "L1 one-shot"), ("greg1", "GReg-1"))):
        sub = d[d.variant == variant].groupby("ratio").test_acc
        if not len(d[d.variant == variant]):
            continue
        mean, std = sub.mean(), sub.std().fillna(0)
        ax.errorbar(mean.index, mean.values, yerr=std.values, marker="o", capsize=3, color=f"C{i}",
                    label=f"{label} (ours)")
        prow = "L1" if variant == "l1" else "GReg-1"
        pv = [_paper(paper, row=f"{prow} r={r:g}", metric="test_acc_mean") for r in mean.index]
        if all(isinstance(v, float) for v in pv):
            ax.plot(mean.index, pv, ls="--", marker="x", color=f"C{i}", alpha=0.7, label=f"{label} (paper)")
    ax.set(xlabel="pruning ratio r (first conv of every block)", ylabel="test accuracy (%)")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def results_frame(runs: Sequence[PlannedRun], outputs: Sequence[Mapping[str, Any]]) -> Any:
    """One row per run: the plan's identity plus the runner's flat metrics and GReg's summary."""
    import pandas as pd

    rows = []
    for plan, out in zip(runs, outputs, strict=True):
        row = {"table": plan.table, "setting": plan.setting, "ratio": plan.ratio,
               "variant": plan.method, **out["row"]}
        summ = out.get("summary") or {}
        if "iterations" in summ:
            row["prune_iterations"] = summ["iterations"]
            row["schedule_completed"] = summ["completed"]
            reasons = {v["finish_reason"] for v in summ["layers"].values() if v["finish_reason"]}
            row["stop_reason"] = ", ".join(sorted(reasons))
        rows.append(row)
    return pd.DataFrame(rows)


def _mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    t = torch.tensor([float(v) for v in values], dtype=torch.float64)
    return float(t.mean()), float(t.std()) if t.numel() > 1 else float("nan"), int(t.numel())


def fmt_mean_std(values: Sequence[float]) -> str:
    """"m ± s (n=k)" with the sample std (ddof 1); "m (n=1)" for a single run."""
    m, s, n = _mean_std(values)
    return f"{m:.2f} (n=1)" if n == 1 else f"{m:.2f} ± {s:.2f} (n={n})"


def _paper(paper: Any, **match: str) -> float | str:
    """The paper's value, "not transcribed" (null in the data file) or "not in the paper"."""
    from prunerep.reporting.paper import paper_value

    try:
        return paper_value(paper, **match)
    except KeyError:
        return "not in the paper"


def table1(df: Any, paper: Any, variants: Sequence[Table1Variant] | None = None) -> Any:
    """Table 1: per ratio, our L1 and GReg-1 (mean ± std over seeds) beside the paper's, plus
    the `variants` (ablation columns) where they ran."""
    import pandas as pd

    d = df[df.table == "table1"]
    rows = []
    for r in sorted(d.ratio.unique()):
        sub = d[d.ratio == r]
        l1 = sub[sub.variant == "l1"]
        g1 = sub[sub.variant == "greg1"]
        row: dict[str, Any] = {"r": f"{r:g}", "speedup (ours, MACs)": sub.speedup.mean(),
                               "params kept % (ours)": 100 * sub.params_keep.mean()}
        if len(l1):
            row["L1 one-shot, before FT"] = fmt_mean_std(l1.test_acc_before_finetune)
            row["L1 one-shot"] = fmt_mean_std(l1.test_acc)
        if len(g1):
            row["GReg-1, before FT"] = fmt_mean_std(g1.test_acc_before_finetune)
            row["GReg-1"] = fmt_mean_std(g1.test_acc)
        if len(l1) and len(g1):
            row["gain (ours)"] = g1.test_acc.mean() - l1.test_acc.mean()
        for v in variants or []:
            extra = sub[sub.variant == f"greg1:{v.name}"]
            row[f"{v.label}, before FT"] = fmt_mean_std(extra.test_acc_before_finetune) if len(extra) else "not run"
            row[v.label] = fmt_mean_std(extra.test_acc) if len(extra) else "not run"
        key = f"r={r:g}"
        row["paper speedup"] = _paper(paper, row=key, metric="speedup")
        row["paper L1"] = _paper(paper, row=f"L1 {key}", metric="test_acc_mean")
        row["paper GReg-1"] = _paper(paper, row=f"GReg-1 {key}", metric="test_acc_mean")
        if all(isinstance(row[k], float) for k in ("paper L1", "paper GReg-1")):
            row["paper gain"] = row["paper GReg-1"] - row["paper L1"]
        rows.append(row)
    return pd.DataFrame(rows)


def table2(df: Any, paper: Any, dense_acc: Mapping[str, float], settings: Mapping[str, GRegSetting]) -> Any:
    """Table 2: our rows per setting (mean ± std) and the paper's printed rows for it."""
    import pandas as pd

    from prunerep.reporting.paper import NOT_TRANSCRIBED

    d = df[df.table == "table2"]
    rows = []
    for name in d.setting.unique():
        s = settings[name]
        sub = d[d.setting == name]
        base = dense_acc.get(s.model, float("nan"))
        for method in s.methods:
            m = sub[sub.variant == method]
            if not len(m):
                continue
            rows.append({"source": "ours", "setting": name, "method": METHOD_LABELS[method],
                         "base": base, "pruned": fmt_mean_std(m.test_acc), "drop": base - m.test_acc.mean(),
                         "speedup": m.speedup.mean(), "FLOPs reduction %": 100 * (1 - m.macs_keep.mean())})
        for method, row_name in s.paper_rows.items():
            sel = paper[(paper.row == row_name) & (paper.metric == "test_acc")]
            base_sel = paper[(paper.row == row_name) & (paper.metric == "base_test_acc")]
            sp = paper[(paper.row == row_name) & (paper.metric == "speedup")]
            value = NOT_TRANSCRIBED if sel.empty or pd.isna(sel.value.iloc[0]) else float(sel.value.iloc[0])
            pbase = float(base_sel.value.iloc[0]) if not base_sel.empty and not pd.isna(base_sel.value.iloc[0]) else None
            speed = float(sp.value.iloc[0]) if not sp.empty and not pd.isna(sp.value.iloc[0]) else None
            rows.append({"source": "paper", "setting": name, "method": method, "base": pbase, "pruned": value,
                         "drop": (pbase - value) if pbase is not None and isinstance(value, float) else None,
                         "speedup": speed, "FLOPs reduction %": 100 * (1 - 1 / speed) if speed else None})
    return pd.DataFrame(rows)


def figure1(trace: Sequence[Mapping[str, Any]], layer: str, snapshots: int = 4, title: str = "") -> Any:
    """Row 1: normalised std (std/mean) of filter magnitudes vs iteration, one line per layer.
    Row 2: max-normalised sorted filter magnitudes of `layer` at `snapshots` iterations."""
    import matplotlib.pyplot as plt

    its = [p["iteration"] for p in trace]
    layers = list(trace[0]["norm_std"]) if trace else []
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    ax = axes[0]
    for i, name in enumerate(layers):
        ax.plot(its, [p["norm_std"][name] for p in trace], lw=0.8, alpha=0.5, color=f"C{i % 10}")
    if layers:
        mean_curve = [sum(p["norm_std"].values()) / len(layers) for p in trace]
        ax.plot(its, mean_curve, color="k", lw=2.2, label="mean over layers")
        ax.legend(fontsize=8)
    ax.set(xlabel="iteration", ylabel="std / mean of filter L1 norms",
           title="(row 1) normalised std rises as λ grows")
    ax2 = ax.twinx()
    ax2.plot(its, [p["lambda_max"] for p in trace], color="C3", ls="--", lw=1)
    ax2.set_ylabel("λ (dashed)", color="C3")
    ax = axes[1]
    with_norms = [p for p in trace if "sorted_norm" in p]
    if with_norms:
        idx = sorted({round(i * (len(with_norms) - 1) / max(snapshots - 1, 1)) for i in range(snapshots)})
        for j, k in enumerate(idx):
            p = with_norms[k]
            ax.plot(p["sorted_norm"], color=plt.cm.viridis(j / max(len(idx) - 1, 1)), label=f"iter {p['iteration']}")
        ax.legend(fontsize=8)
    ax.set(xlabel="filter (sorted)", ylabel="L1 norm / max", ylim=(0, 1.02), title=f"(row 2) {layer}")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
