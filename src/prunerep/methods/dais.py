"""DAIS: Differentiable Annealing Indicator Search (reconstruction).

Guan, Liu, Zhao, Che, Bian, Wang, Tang. "DAIS: Automatic Channel Pruning via Differentiable
Annealing Indicator Search". IEEE TNNLS 34(12):9847-9858, 2023; arXiv:2011.02166. No official
code. What is verified is the abstract (``../shared/papers/dais.md`` §5.2 [ABS]): binary channel
indicators relaxed to continuous values, learned jointly with the weights by bi-level
optimisation; an annealing procedure that drives them to binary values, closing the gap between
the continuous and the binarised model; several regularisers from structural priors that
control the sparsity. The equation numbers below are those a third-party re-implementation
cites [3RD]; every form it leaves open is a named hyper-parameter (:class:`DAISHyper`) and is
listed in the notebook's assumptions table.

* **Relaxed indicator** (Eq. 7, [3RD]): ``I_c = sigmoid(alpha_c / T)``, multiplying the output of
  every norm layer of the channel's group (output placement, after BN, before the ReLU; the
  producer's output where no norm follows).
* **Where indicators live.** One indicator vector per *layer output* (the paper's per-layer
  ``I_l``): every channel group gets one vector, except a residual stream, whose producers (the
  stem and the last conv of every block of one stage) each get their own vector at their own
  BN (``per_tap=True``). The engine couples a stream's channels into one group, so surgery
  removes channel ``c`` of the stream from all of them or from none: at binarisation the
  stream's vectors are merged, channel ``c`` kept iff the mean of its logits is > 0. The
  *residual-structure regulariser* (Eq. 11, form ours) pulls the vectors of one stream together,
  so that the merge decides what every layer already decided. With ``per_tap=False`` a stream
  has one shared vector (the engine's structural tie) and the residual term is identically 0:
  the control that says what the regulariser adds on top of the structure.
* **Sparsity** (Eq. 8): ``R_s = sum_l ||I_l||_1`` over every indicator vector.
* **Expected FLOPs** (Eq. 9, generalised): the MACs of the network at the soft widths
  ``w_g = sum_c sigmoid(mean_t alpha_{t,c} / T)`` of every group, through the exact bilinear
  cost model (:class:`~prunerep.pruning.soft_cost.SoftCostModel`: ``sum_l p_l w_{l-1} w_l`` with
  ``p_l`` the per-channel-pair MACs of layer ``l``, linear terms for fixed inputs/outputs).
  It equals the exact MACs of the binarised network when the merged indicators are 0/1.
* **FLOPs regulariser** (Eq. 10): ``R_F = |log(E[F] / F_target)|``. The third party's form,
  ``+log E[F]`` above the target and ``-log E[F]`` below it, has the same gradient
  (``+-1/E[F]``) but jumps at the target; ours is continuous with value 0 there.
* **Residual-structure regulariser** (Eq. 11, form ours): for every stream with several vectors,
  ``R_r = sum_c sum_t (I_{t,c} - mean_t I_{t,c})^2``. It ties the indicator *values*, as the
  paper's wording says; its gradient passes through the sigmoid, so it acts while ``T`` is high
  (two layers that saturated on opposite sides late in the search stay apart; the merge then
  decides by the mean logit).
* **Annealing**: ``T`` follows a schedule from ``t_start`` to ``t_end`` over the search, per step:
  ``hyperbolic`` ``T = t_start / (1 + (t_start / t_end - 1) s)`` (the third party's
  ``1 / (1 + 49 e/E)`` per epoch, 1 -> 0.02, made continuous in the search fraction ``s``),
  ``exponential`` ``T = t_start (t_end / t_start)^s`` (the default), or ``constant`` (the
  ablation without annealing: ``T = t_start`` throughout). The default is exponential because
  the hyperbolic form is below ``T = 0.1`` for the last 82 % of the search (exponential: 41 %),
  and a logit has to cross 0 while the sigmoid still passes a gradient; a CPU-budget search has
  ~100 indicator steps. The logits' optimiser is Adam with a short second-moment memory
  (betas 0.5, 0.9): as ``T`` falls the gradients shrink by orders of magnitude, and a long
  memory (0.999) would freeze undecided logits before the budget is met.
* **Bi-level optimisation** (first-order DARTS alternation, as the third party reads the paper):
  every weight step (training part of the training split, indicators fixed: detached) is followed
  by one step of the logits on a held-out batch of the training split (never the validation
  split) with ``CE + lambda_s R_s + lambda_F R_F + lambda_r R_r`` (the engine's ``arch_loader``).
* **Binarisation and removal**: channel kept iff its merged logit is > 0 (``I > 0.5``), at least
  one channel per group; the exact MACs of that network are the search's own result (claim 2).
  With ``budget_repair`` the final widths are the largest network that meets the budget in the
  order of the merged logits (a global ranking: when the search met its target this keeps its
  decisions; the number of channels that changed is reported). The binarised network is then
  removed by the shared surgery (:func:`~prunerep.pruning.surgery.prune_channels`), which is
  exact for 0/1 indicators (checked on a probe batch, ``summary()["exactness"]``), and
  fine-tuned by the runner.

Measured inside the search (``summary()``): at ``gap_points`` evenly spaced steps the validation
accuracy (first ``gap_images`` images) of the continuous network and of its binarised network
(eval mode, the same BN statistics), the expected and binarised MACs, ``T``; and histograms of
all indicator values at ``snapshots`` points (the figures of the paper's annealing).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from prunerep.config import from_dict
from prunerep.engine import ArchOptimConfig, OptimConfig, TrainState
from prunerep.engine.evaluate import evaluate
from prunerep.methods.base import MethodContext, PruningMethod, register_method
from prunerep.methods.budget import global_widths_for_macs, top_k_masks
from prunerep.pruning.groups import ChannelGroup
from prunerep.pruning.surgery import prune_channels

__all__ = [
    "DAIS",
    "DAISHyper",
    "Indicators",
    "flops_penalty",
    "indicator",
    "residual_tie",
    "sparsity",
    "temperature_at",
]

Schedule = Literal["hyperbolic", "exponential", "constant"]
HIST_BINS = 20          # bins of the indicator histograms on [0, 1]
UNDECIDED = (0.01, 0.99)  # an indicator strictly inside this interval is "not binary yet"


# -- equations (pure functions) ------------------------------------------------------------------


def indicator(alpha: torch.Tensor, temperature: float | torch.Tensor) -> torch.Tensor:
    """Relaxed indicator ``sigmoid(alpha / T)`` (Eq. 7); tends to ``1[alpha > 0]`` as ``T -> 0``."""
    return torch.sigmoid(alpha / temperature)


def temperature_at(step: int, total_steps: int, t_start: float, t_end: float,
                   schedule: Schedule = "hyperbolic") -> float:
    """Temperature after `step` of `total_steps` search steps.

    ``hyperbolic``: ``t_start / (1 + (t_start / t_end - 1) s)``, ``s = step / total_steps``: the
    third party's ``1 / (1 + 49 e / E)`` (1 -> 0.02) in continuous form; it falls fast at first
    (half of ``t_start`` at ``s = 1 / (t_start / t_end - 1)``) and slowly at the end.
    ``exponential``: ``t_start (t_end / t_start)^s``. ``constant``: ``t_start`` (no annealing).
    Both annealed schedules give ``t_start`` at step 0 and ``t_end`` at the last step.
    """
    if t_start <= 0 or t_end <= 0:
        raise ValueError(f"temperatures must be > 0, got t_start={t_start}, t_end={t_end}")
    if schedule == "constant":
        return float(t_start)
    s = min(1.0, max(0.0, step / max(1, total_steps)))
    if schedule == "hyperbolic":
        return float(t_start / (1.0 + (t_start / t_end - 1.0) * s))
    if schedule == "exponential":
        return float(t_start * (t_end / t_start) ** s)
    raise ValueError(f"schedule must be 'hyperbolic', 'exponential' or 'constant', got {schedule!r}")


def sparsity(values: Iterable[torch.Tensor]) -> torch.Tensor:
    """Eq. 8: ``sum_l ||I_l||_1`` over indicator vectors (all entries are >= 0)."""
    terms = [v.abs().sum() for v in values]
    return torch.stack(terms).sum() if terms else torch.zeros(())


def flops_penalty(expected: torch.Tensor, target: float) -> torch.Tensor:
    """Eq. 10 (form ours): ``|log(E[F] / F_target)|``; 0 at the target, gradient ``+-1 / E[F]``."""
    if target <= 0:
        raise ValueError(f"the FLOPs target must be > 0, got {target}")
    return torch.log(expected / target).abs()


def residual_tie(vectors: torch.Tensor) -> torch.Tensor:
    """Eq. 11 (form ours): ``sum_c sum_t (I_{t,c} - mean_t I_{t,c})^2`` for the ``[T, C]`` indicator
    vectors of one residual stream (0 when every layer of the stream agrees on every channel)."""
    return ((vectors - vectors.mean(0, keepdim=True)) ** 2).sum()


# -- the indicators and their hooks ----------------------------------------------------------------


class Indicators(nn.Module):
    """The logits of every indicator vector, the temperature and the mode (soft or binary).

    ``alpha[i]`` is a ``[rows_i, C_i]`` parameter for group ``i``: one row per tap of a residual
    stream (``per_tap``), one row shared by all taps otherwise. ``binary=True`` replaces every
    indicator of group ``i`` by its merged 0/1 mask (``mean_t alpha > 0``, or ``masks`` when set):
    the network that surgery produces.

    Args:
        groups: The prunable groups (model order).
        per_tap: One vector per tap of every residual stream with several taps.
        init_logit: Initial value of every logit.
        temperature: Initial temperature.
    """

    def __init__(self, groups: Sequence[ChannelGroup], per_tap: bool, init_logit: float,
                 temperature: float) -> None:
        super().__init__()
        self.group_ids = [g.id for g in groups]
        self.channels = [g.channels for g in groups]
        self.taps: list[tuple[str, ...]] = []
        params = []
        for g in groups:
            taps = tuple(g.output_taps)
            if not taps:
                raise ValueError(f"dais: channel group {g.id!r} has no output position for an indicator")
            self.taps.append(taps)
            rows = len(taps) if (per_tap and g.residual and len(taps) > 1) else 1
            params.append(nn.Parameter(torch.full((rows, g.channels), float(init_logit))))
        self.alpha = nn.ParameterList(params)
        self.register_buffer("temperature", torch.tensor(float(temperature)))
        self.binary = False
        # Set by the method during the search: outside the arch step (`phase != "arch"`) the
        # indicators are constants, so weight steps never touch the logits.
        self.train_state: TrainState | None = None
        self.masks: list[torch.Tensor] | None = None  # binary mode: these masks instead of alpha > 0

    def rows(self, i: int) -> int:
        return int(self.alpha[i].shape[0])

    def logits(self, i: int) -> torch.Tensor:
        a = self.alpha[i]
        state = self.train_state
        return a.detach() if state is not None and state.phase != "arch" else a

    def values(self, i: int) -> torch.Tensor:
        """Soft indicators ``[rows, C]`` of group ``i``."""
        return indicator(self.logits(i), self.temperature)

    def merged_logits(self, i: int) -> torch.Tensor:
        """``mean_t alpha_{t,c}`` ``[C]``: the stream's one decision per channel."""
        return self.logits(i).mean(0)

    def merged_values(self, i: int) -> torch.Tensor:
        """Soft merged indicator ``sigmoid(mean_t alpha / T)`` ``[C]`` (FLOPs, shortcut copies)."""
        return indicator(self.merged_logits(i), self.temperature)

    def merged_mask(self, i: int) -> torch.Tensor:
        """Binary keep mask ``[C]``: ``mean_t alpha > 0`` with at least its best channel kept."""
        if self.masks is not None:
            return self.masks[i].to(self.alpha[i].device)
        a = self.alpha[i].detach().mean(0)
        keep = a > 0
        if not bool(keep.any()):
            keep[int(a.argmax())] = True
        return keep

    def tap_value(self, i: int, row: int) -> torch.Tensor:
        """What multiplies the output of tap ``row`` of group ``i`` in the current mode."""
        if self.binary:
            return self.merged_mask(i).to(self.alpha[i].dtype)
        return self.values(i)[min(row, self.rows(i) - 1)]

    def copy_value(self, i: int) -> torch.Tensor:
        """What multiplies an option-A shortcut copy written into group ``i`` (it has no indicator
        of its own: it follows the stream's merged indicator, 0/1 in binary mode)."""
        if self.binary:
            return self.merged_mask(i).to(self.alpha[i].dtype)
        return self.merged_values(i)

    def all_values(self) -> list[torch.Tensor]:
        return [self.values(i) for i in range(len(self.alpha))]

    def extra_repr(self) -> str:
        rows = sum(self.rows(i) for i in range(len(self.alpha)))
        return f"groups={len(self.alpha)}, vectors={rows}, temperature={float(self.temperature):.4g}"


def _mul(x: torch.Tensor, v: torch.Tensor, where: str) -> torch.Tensor:
    if x.dim() < 2 or x.shape[1] != v.numel():
        raise ValueError(f"dais indicator of {v.numel()} channels cannot multiply the output of {where} of shape "
                         f"{tuple(x.shape)}; find_groups again after changing the model")
    return x * v.to(x.dtype).view(1, -1, *([1] * (x.dim() - 2)))


class _TapHook:
    """Forward hook of one tap: its output times its indicator vector (a callable object, so that
    ``copy.deepcopy(model)`` maps it onto the copied indicators)."""

    def __init__(self, ind: Indicators, index: int, row: int, name: str) -> None:
        self.ind, self.index, self.row, self.name = ind, index, row, name

    def __call__(self, module: nn.Module, args: Any, out: Any) -> Any:
        return _mul(out, self.ind.tap_value(self.index, self.row), repr(self.name))


class _CopyHook:
    """Forward hook of an option-A shortcut copy written into a group: times the merged indicator."""

    def __init__(self, ind: Indicators, index: int, name: str) -> None:
        self.ind, self.index, self.name = ind, index, name

    def __call__(self, module: nn.Module, args: Any, out: Any) -> Any:
        return _mul(out, self.ind.copy_value(self.index), repr(self.name))


# -- the method --------------------------------------------------------------------------------------


def _optim(value: Any, path: str) -> OptimConfig:
    return value if isinstance(value, OptimConfig) else from_dict(OptimConfig, value or {}, path)


def _default_arch_optim() -> ArchOptimConfig:
    return ArchOptimConfig(optimizer="adam", lr=0.05, betas=(0.5, 0.9), weight_decay=0.0)


@dataclass(frozen=True)
class DAISHyper:
    """DAIS's hyper-parameters (the keyword arguments of :class:`DAIS`; see its docstring)."""

    search: OptimConfig = field(default_factory=OptimConfig)
    arch_optim: ArchOptimConfig = field(default_factory=_default_arch_optim)
    init_logit: float = 1.0
    t_start: float = 1.0
    t_end: float = 0.02
    schedule: Schedule = "exponential"
    lam_sparsity: float = 5.0e-3
    lam_flops: float = 20.0
    lam_residual: float = 0.1
    per_tap: bool = True
    budget_repair: bool = True
    gap_points: int = 6
    gap_images: int = 500
    snapshots: int = 5


class _Take:
    """The first `n` samples of a loader (whole batches, the last one cut)."""

    def __init__(self, loader: Iterable[tuple[torch.Tensor, torch.Tensor]], n: int) -> None:
        self.loader, self.n = loader, n

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        seen = 0
        for x, y in self.loader:
            if seen >= self.n:
                break
            k = min(len(y), self.n - seen)
            seen += k
            yield x[:k], y[:k]


def _points(total: int, n: int) -> set[int]:
    """`n` steps evenly spaced over ``1..total``, the last one included."""
    if n <= 0 or total <= 0:
        return set()
    return {max(1, round(total * (k + 1) / n)) for k in range(n)}


@register_method("dais", hyper=DAISHyper)
class DAIS(PruningMethod):
    """Differentiable annealing indicator search under a MACs budget (see the module docstring).

    Args:
        search: weight optimiser of the search (the indicator-gated training).
        arch_optim: optimiser of the logits on held-out batches (default Adam, lr 0.05).
        init_logit: initial logit of every indicator (``I = sigmoid(init_logit / t_start)``).
        t_start, t_end: temperature at the first and the last search step.
        schedule: ``exponential`` (default), ``hyperbolic`` or ``constant`` (no annealing).
        lam_sparsity, lam_flops, lam_residual: weights of Eq. 8, 10 and 11 (0 turns one off).
        per_tap: one indicator vector per layer of a residual stream (True) or one per stream.
        budget_repair: make the final widths meet the budget in the order of the merged logits.
        gap_points: search steps at which the continuous and binarised accuracies are measured.
        gap_images: validation images per measurement.
        snapshots: indicator histograms recorded over the search (first step to last).
    """

    paper = "Guan et al., TNNLS 2023, arXiv:2011.02166"
    bilevel = True
    exact_surgery = True    # the binarised network and the pruned one agree (``exactness``, the contract test)

    def __init__(self, search: Any = None, arch_optim: Any = None, init_logit: float = 1.0, t_start: float = 1.0,
                 t_end: float = 0.02, schedule: Schedule = "exponential", lam_sparsity: float = 5.0e-3,
                 lam_flops: float = 20.0, lam_residual: float = 0.1, per_tap: bool = True,
                 budget_repair: bool = True, gap_points: int = 6, gap_images: int = 500,
                 snapshots: int = 5) -> None:
        if schedule not in ("hyperbolic", "exponential", "constant"):
            raise ValueError(f"dais.schedule: {schedule!r} is not one of ['hyperbolic', 'exponential', 'constant']")
        if t_start <= 0 or t_end <= 0 or t_end > t_start:
            raise ValueError(f"dais: need 0 < t_end <= t_start, got t_start={t_start}, t_end={t_end}")
        for name, lam in (("lam_sparsity", lam_sparsity), ("lam_flops", lam_flops), ("lam_residual", lam_residual)):
            if lam < 0:
                raise ValueError(f"dais.{name} must be >= 0, got {lam}")
        self.search = _optim(search, "dais.search")
        self.arch_optim = (arch_optim if isinstance(arch_optim, ArchOptimConfig)
                           else from_dict(ArchOptimConfig, {"optimizer": "adam", "lr": 0.05, "betas": (0.5, 0.9), **(arch_optim or {})},
                                          "dais.arch_optim"))
        self.init_logit = float(init_logit)
        self.t_start, self.t_end, self.schedule = float(t_start), float(t_end), schedule
        self.lam_sparsity, self.lam_flops, self.lam_residual = float(lam_sparsity), float(lam_flops), float(lam_residual)
        self.per_tap = bool(per_tap)
        self.budget_repair = bool(budget_repair)
        self.gap_points, self.gap_images, self.snapshots = int(gap_points), int(gap_images), int(snapshots)
        self.trace: list[dict[str, float]] = []
        self.hists: list[dict[str, Any]] = []
        self.final: dict[str, Any] = {}
        self.state: TrainState | None = None
        self._handles: list[Any] = []

    # -- set-up ------------------------------------------------------------------------------------

    def prunable(self, group: ChannelGroup) -> bool:
        # A norm over a concatenation (DenseNet) would need an indicator on a slice of it.
        return not group.output_slices

    def prepare(self, model: nn.Module, ctx: MethodContext) -> nn.Module:
        super().prepare(model, ctx)
        if ctx.budget.macs_keep is None:
            raise ValueError("dais searches under a MACs budget: give Budget(macs_keep=...)")
        groups = list(ctx.prunable)
        if not groups:
            raise ValueError("dais: the model has no prunable channel group")
        device = ctx.example_input.device
        ind = Indicators(groups, self.per_tap, self.init_logit, self.t_start).to(device)
        model.dais = ind
        self.ind = ind
        self.groups = groups
        for i, g in enumerate(groups):
            for row, tap in enumerate(ind.taps[i]):
                self._handles.append(model.get_submodule(tap).register_forward_hook(_TapHook(ind, i, row, tap)))
            for copy in g.selects_out:
                self._handles.append(model.get_submodule(copy).register_forward_hook(_CopyHook(ind, i, copy)))
        self.cost_model = ctx.cost_model
        self.dense = float(ctx.cost_model.dense_macs())
        self.target = float(ctx.budget.macs_keep) * self.dense
        return model

    def phases(self) -> list[tuple[str, OptimConfig]]:
        return [("search", self.search)]

    def arch_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        return list(self.ind.alpha)

    def arch_optimizer_config(self) -> ArchOptimConfig:
        return self.arch_optim

    # -- the objective -------------------------------------------------------------------------------

    def expected_macs(self) -> torch.Tensor:
        """Eq. 9: MACs at the soft widths ``sum_c sigmoid(mean_t alpha / T)`` (float64, differentiable)."""
        widths = {gid: self.ind.merged_values(i).sum() for i, gid in enumerate(self.ind.group_ids)}
        return self.cost_model.macs(widths)

    def binary_macs(self, masks: Sequence[torch.Tensor] | None = None) -> float:
        """Exact MACs of the binarised network (merged masks, or the given ones)."""
        widths = {gid: int((masks[i] if masks is not None else self.ind.merged_mask(i)).sum())
                  for i, gid in enumerate(self.ind.group_ids)}
        return float(self.cost_model.macs(widths))

    def regularizers(self) -> dict[str, torch.Tensor]:
        """The three terms (unweighted) at the current logits and temperature."""
        values = self.ind.all_values()
        res = [residual_tie(v) for v in values if v.shape[0] > 1]
        return {"sparsity": sparsity(values),
                "flops": flops_penalty(self.expected_macs(), self.target),
                "residual": torch.stack(res).sum() if res else torch.zeros((), device=values[0].device)}

    def objective(self) -> torch.Tensor:
        """``lambda_s R_s + lambda_F R_F + lambda_r R_r`` (added to the held-out CE in the arch step)."""
        terms = self.regularizers()
        total = (self.lam_sparsity * terms["sparsity"].double() + self.lam_flops * terms["flops"]
                 + self.lam_residual * terms["residual"].double())
        return total.float()

    # -- hooks ---------------------------------------------------------------------------------------

    def _set_temperature(self, step: int, total: int) -> float:
        t = temperature_at(step, total, self.t_start, self.t_end, self.schedule)
        self.ind.temperature.fill_(t)
        return t

    def on_train_start(self, model: nn.Module, state: TrainState) -> None:
        self.state = state
        self._gap_steps = _points(state.total_steps, self.gap_points)
        self._hist_steps = {0, *_points(state.total_steps, max(0, self.snapshots - 1))} if self.snapshots > 0 else set()
        self._set_temperature(state.step, state.total_steps)
        self.ind.train_state = state
        if state.step == 0 and 0 in self._hist_steps and not self.hists:
            self.hists.append(self._histogram(0))

    def extra_loss(self, model: nn.Module, state: TrainState) -> torch.Tensor | None:
        # The weight step sees the indicators as constants (Indicators.logits); the arch step
        # adds the regularisers to the held-out cross-entropy.
        return self.objective() if state.phase == "arch" else None

    def after_step(self, model: nn.Module, state: TrainState) -> None:
        self._set_temperature(state.step, state.total_steps)
        if state.step in self._hist_steps:
            self.hists.append(self._histogram(state.step))
        if state.step in self._gap_steps:
            self.trace.append(self._measure(model, state))

    def on_epoch_end(self, model: nn.Module, state: TrainState) -> None:
        with torch.no_grad():
            state.logs.update({"temperature": float(self.ind.temperature),
                               "macs_keep_expected": float(self.expected_macs()) / self.dense,
                               "macs_keep_binarised": self.binary_macs() / self.dense})

    def state_dict(self) -> dict[str, Any]:
        return {"trace": list(self.trace), "hists": list(self.hists)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.trace = list(state.get("trace", []))
        self.hists = list(state.get("hists", []))

    # -- measurements --------------------------------------------------------------------------------

    @torch.no_grad()
    def _histogram(self, step: int) -> dict[str, Any]:
        v = torch.cat([x.flatten() for x in self.ind.all_values()]).double().cpu()
        counts = torch.histc(v, bins=HIST_BINS, min=0.0, max=1.0)
        lo, hi = UNDECIDED
        return {"step": step, "temperature": float(self.ind.temperature), "counts": [int(c) for c in counts.tolist()],
                "undecided": float(((v > lo) & (v < hi)).double().mean())}

    @torch.no_grad()
    def _measure(self, model: nn.Module, state: TrainState) -> dict[str, float]:
        """Continuous vs binarised network (eval mode) on the first validation images, and the MACs."""
        row: dict[str, float] = {"step": float(state.step), "epoch": state.epoch_progress,
                                 "temperature": float(self.ind.temperature),
                                 "macs_keep_expected": float(self.expected_macs()) / self.dense,
                                 "macs_keep_binarised": self.binary_macs() / self.dense,
                                 "tap_disagreement": self.tap_disagreement()}
        loader = getattr(self.ctx, "val_loader", None)
        if loader is not None and self.gap_images > 0:
            take = _Take(loader, self.gap_images)
            row["acc_continuous"] = evaluate(model, take)["acc"]
            self.ind.binary = True
            try:
                row["acc_binarised"] = evaluate(model, take)["acc"]
            finally:
                self.ind.binary = False
        return row

    @torch.no_grad()
    def tap_disagreement(self) -> float:
        """Share of the channels of multi-vector streams whose layers' own decisions
        (``alpha_t > 0``) are not all equal (0 when no stream has several vectors)."""
        split = total = 0
        for a in self.ind.alpha:
            if a.shape[0] > 1:
                keep = a.detach() > 0
                split += int((keep.any(0) & ~keep.all(0)).sum())
                total += a.shape[1]
        return split / total if total else 0.0

    # -- binarisation and surgery ------------------------------------------------------------------

    @torch.no_grad()
    def final_masks(self) -> tuple[list[torch.Tensor], dict[str, Any]]:
        """The search's binarisation (``mean_t alpha > 0``) and, with ``budget_repair``, the largest
        network within the budget in the order of the merged logits. Returns the masks used and
        what the search gave."""
        ind = self.ind
        search = [ind.merged_mask(i).cpu() for i in range(len(ind.alpha))]
        info: dict[str, Any] = {"macs_keep_search": self.binary_macs(search) / self.dense,
                                "widths_search": {gid: int(m.sum()) for gid, m in zip(ind.group_ids, search, strict=True)}}
        masks = search
        if self.budget_repair:
            scores = {gid: ind.alpha[i].detach().mean(0).float().cpu() for i, gid in enumerate(ind.group_ids)}
            widths = global_widths_for_macs(self.cost_model, self.groups, scores, self.target)
            chosen = top_k_masks(scores, widths)
            masks = [chosen[gid] for gid in ind.group_ids]
        info["repaired_channels"] = int(sum(int((a != b).sum()) for a, b in zip(search, masks, strict=True)))
        return masks, info

    def finalize(self, model: nn.Module, ctx: MethodContext) -> nn.Module:
        masks, info = self.final_masks()
        ind = self.ind
        # The binarised network with these masks, on a probe batch, against the pruned one.
        was_training = model.training
        model.eval()
        probe = torch.randn((4, *ctx.example_input.shape[1:]), generator=torch.Generator().manual_seed(0))
        probe = probe.to(ctx.example_input.device)
        ind.binary, ind.masks = True, masks
        with torch.no_grad():
            before = model(probe).float()
        ind.binary, ind.masks = False, None
        self.final = {
            **info,
            "temperature_end": float(ind.temperature),
            "macs_keep_final_model": self.binary_macs(masks) / self.dense,
            "budget": self.target / self.dense,
            "widths": {gid: int(m.sum()) for gid, m in zip(ind.group_ids, masks, strict=True)},
            "channels": dict(zip(ind.group_ids, ind.channels, strict=True)),
            "vectors": {gid: ind.rows(i) for i, gid in enumerate(ind.group_ids)},
            "residual_groups": [g.id for g in self.groups if g.residual],
            "tap_disagreement": self.tap_disagreement(),
            "undecided_end": self._histogram(-1)["undecided"],
        }
        for h in self._handles:
            h.remove()
        self._handles = []
        del model.dais
        keep = {gid: m for gid, m in zip(ind.group_ids, masks, strict=True)}
        pruned = prune_channels(model, ctx.groups, keep)
        with torch.no_grad():
            after = pruned(probe).float()
        diff = (after - before).abs()
        # The key names GDP uses (``exactness``), so the method contract checks the surgery of both.
        self.final["exactness"] = {"max_abs_diff": float(diff.max()),
                                   "max_rel_diff": float(diff.max() / before.abs().max().clamp_min(1e-12)),
                                   "argmax_agree": float((after.argmax(1) == before.argmax(1)).float().mean())}
        pruned.train(was_training)
        ind.train_state = None
        self.state = None
        return pruned

    def summary(self) -> dict[str, Any]:
        return {**self.final, "trace": list(self.trace), "histograms": list(self.hists), "hist_bins": HIST_BINS,
                "schedule": self.schedule, "per_tap": self.per_tap,
                "lambdas": {"sparsity": self.lam_sparsity, "flops": self.lam_flops, "residual": self.lam_residual}}

