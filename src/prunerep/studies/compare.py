"""One fair comparison of every method (notebooks/compare.ipynb): same network, same budget, same
post-pruning training, a random control, measured latency.

Every registered method (the six papers and the baselines) prunes **the same dense checkpoint**
(``compare.model``, a ``pretrain.models`` key) to **the same MACs targets**, each followed by
**the same fine-tuning** (the same number of SGD steps at the same batch size and schedule) and
**one selection rule** on the validation split, over the same seeds. The runs are built by the
public API's `prunerep.api.spec_for` (so the API is what the comparison exercises) and executed
by `prunerep.runner.execute`: a run whose spec equals another stage's finished run is reused.

Fairness rules, each a function below:

* **MACs**: a method whose native budget is not a MACs fraction (GReg's per-group ratios) gets
  the largest uniform ratio over the groups it prunes within the target (`api.native_budget`);
  every table shows the MACs each run actually kept.
* **Training steps** (`equal_recipe`): a method's own training phases (GDP's gated training, the
  searches of DSA and DAIS, slimming's sparse training, W-Gates' gated training) last
  ``prune_epochs`` of the training split, counted in SGD steps; a bi-level method, which trains
  its weights on the part of the training split it does not hold out, gets the same number of
  steps (more passes over its part), and so does its fine-tuning. GReg's phase ends when its
  penalty schedule does (``hyper.greg.reg``, sized to about the same steps).
* **Latency** (`run_latency_arm`, ``latency_arm``): W-Gates' native budget is a latency
  (LPNet's prediction). Where the arm is on, W-Gates also runs in latency mode at each MACs
  target, its latency target set to the measured latency ratio of L1's networks there (timed
  interleaved with the dense network), and is paired with L1 at equal measured latency
  (`equal_latency_table`), both sides timed again in one session. The latency dataset, LPNet and
  the interleaved measurement are the wgates study's (`prunerep.studies.latency`).
* **Verdicts** (`comparison_table`): each method minus L1 and minus random, paired by seed, by the
  project's one rule (`prunerep.reporting.stats.verdict`) on "more accurate than the baseline"
  (difference > 0); no verdict with fewer than 3 seeds.
* **Nothing silently dropped** (`status_table`): a paper whose method is not registered is "not
  implemented", a target a method cannot reach is "not run" with the reason, a run that fails
  is "failed" with its error.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import torch

from prunerep.config import register_section, to_dict
from prunerep.data import SubsetConfig
from prunerep.engine import OptimConfig, RuntimeConfig
from prunerep.methods.wgates import choices_of_ours
from prunerep.pruning.latency_dataset import MeasureFn, MeasureSettings, SamplerConfig
from prunerep.reporting.stats import (
    FEW_SEEDS,
    NOT_IMPLEMENTED,
    NOT_SUPPORTED,
    SUPPORTED,
    VERDICT_RULE,
    Interval,
    fmt_mean_std,
    mean_std,
    paired_difference,
    verdict,
)
from prunerep.runner import LatencySettings, RunRecord, RunSpec, StudyContext
from prunerep.runner.run import held_out_size
from prunerep.studies.base import describe_splits, group, records_by_seed
from prunerep.studies.latency import PredictorConfig, PredictorFit

#: The baselines every method is paired against.
BASELINES: tuple[str, ...] = ("l1", "random")

#: The latency arm: W-Gates in latency mode (the variant tag of its runs) at the measured latency
#: of `MATCHED`'s networks (`LatencyArmConfig`).
LATENCY_METHOD, LATENCY_ARM, MATCHED = "wgates", "wgates_latency", "l1"

#: The question each verdict answers: method minus baseline, test accuracy, "greater" than 0.
DIRECTION, THRESHOLD = "greater", 0.0

NOT_RUN = "not run"
FAILED = "failed"
RAN = "ran"


def _default_finetune() -> OptimConfig:
    return OptimConfig(epochs=1.0, lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4, schedule="cosine")


@dataclass(frozen=True)
class RoundsConfig:
    """An interleaved measurement at ``latency_batch``: the networks of a chunk and the dense
    network timed in turn, ``repeats`` rounds after ``warmup`` untimed runs; each network's ratio
    is the median over rounds of its time over the dense time of the same round."""

    repeats: int = 30
    warmup: int = 5
    chunk: int = 16

    def __post_init__(self) -> None:
        if self.repeats < 1 or self.warmup < 0 or self.chunk < 1:
            bad = "repeats" if self.repeats < 1 else "warmup" if self.warmup < 0 else "chunk"
            raise ValueError(f"{bad}: need repeats >= 1, warmup >= 0 and chunk >= 1, got "
                             f"{self.repeats}, {self.warmup}, {self.chunk}")


@dataclass(frozen=True)
class LatencyArmConfig:
    """W-Gates in its native latency mode at L1-norm's measured latency (issue #19: "and W-Gates
    also to the same measured latency").

    Per MACs target, after the other runs: the L1-norm networks (the baseline every method is
    paired with) are measured interleaved with the dense network at ``latency_batch`` (``rounds``);
    the ``statistic`` of their ratios over seeds, rounded to 3 decimals, becomes W-Gates'
    ``Budget(latency_keep=...)``, enforced through LPNet (fitted on this device's latency
    dataset, ``sampler`` and ``measure``, the first split seed of ``predictor``). Then W-Gates
    runs with the same hyper-parameters (``hyper.wgates``), training phases and fine-tuning as
    in FLOPs mode, and its networks are measured in the same interleaved sessions as the L1
    networks of the same target. The table "at equal measured latency" shows both measured ratios
    and gives a verdict only where they are equal within ``tolerance`` (`latency_match`) and a
    later re-timing agrees; where they are not, W-Gates runs again at a new target
    (`next_target`), up to ``iterations`` rounds.

    L1, not each method, sets the target: it is the baseline of every verdict here, and the
    latency of a uniform one-shot network is what a practitioner gets for free. Median by
    default: one slow measurement of one seed does not move the target. Keep ``sampler`` and
    ``measure`` equal to ``wgates.dataset``'s at the same profile: the dataset is a per-device
    cache keyed by those settings (``artifacts/latency_dataset/``), so the wgates stage and this
    one then measure it once (``tests/unit/test_compare_latency_arm.py`` checks they agree).
    """

    enabled: bool = False
    statistic: Literal["median", "mean"] = "median"   # of L1's measured ratios over seeds
    sampler: SamplerConfig = SamplerConfig()
    measure: MeasureSettings = MeasureSettings()
    predictor: PredictorConfig = PredictorConfig()    # only the first split seed's LPNet is fitted (the runs')
    rounds: RoundsConfig = RoundsConfig()
    # Interleaved sessions behind every measured ratio (each network's ratio: the median over
    # sessions): one session's ratios can move together by more than the gaps compared here.
    sessions: int = 3
    # Equal measured latency: the 95% interval of W-Gates' ratio minus L1's (paired by seed, same
    # sessions) lies within +-tolerance (fractions of the dense latency). Otherwise no verdict of
    # "more accurate at equal latency", unless one side is both faster and more accurate.
    tolerance: float = 0.05
    # W-Gates rounds at most: while the latencies are not equal, W-Gates runs again at a new
    # target (`next_target`: scaled by the measured L1/W-Gates ratio, then the secant).
    iterations: int = 3

    def __post_init__(self) -> None:
        if self.sessions < 1:
            raise ValueError(f"sessions: give at least 1 interleaved timing session, got {self.sessions}")
        if not 0 < self.tolerance < 1:
            raise ValueError(f"tolerance: give a fraction of the dense latency in (0, 1), e.g. 0.05, got "
                             f"{self.tolerance}")
        if self.iterations < 1:
            raise ValueError(f"iterations: give at least 1 W-Gates round, got {self.iterations}")


@register_section("compare")
@dataclass(frozen=True)
class CompareConfig:
    """The `compare` section of params.yaml (notebooks/compare.ipynb)."""

    model: str = "resnet56"                  # pretrain.models key of the one dense checkpoint
    targets: list[float] = field(default_factory=lambda: [0.7, 0.5, 0.3])   # fractions of dense MACs kept
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    methods: list[str] = field(default_factory=list)   # [] = every registered method
    workers: int = 1
    subset: SubsetConfig = SubsetConfig()
    batch_size: int = 128
    eval_batch_size: int = 512
    prune_epochs: float = 1.0        # every method's own training phases, in epochs of the training split
    prune_max_steps: int | None = None   # cap on those phases (smoke runs)
    finetune: OptimConfig = field(default_factory=_default_finetune)   # the same for every method
    select: Literal["best_val", "last"] = "best_val"   # one rule, on the validation split
    arch_fraction: float = 0.1       # held-out share of the training split of the bi-level methods
    hyper: dict[str, dict[str, Any]] = field(default_factory=dict)     # per-method hyper-parameters
    runtime: RuntimeConfig = RuntimeConfig(progress=False)
    latency: LatencySettings = LatencySettings()
    latency_batch: int = 1           # the measured batch size the accuracy-vs-latency figure plots
    # Hardware-friendly widths: every method also runs with its widths rounded down to multiples
    # of `round_to` (`Budget.round_to`) at `round_targets` ([]: every target); null: not run.
    round_to: int | None = None
    round_targets: list[float] = field(default_factory=list)
    # W-Gates in latency mode (LPNet) at L1's measured latency, per MACs target (LatencyArmConfig)
    latency_arm: LatencyArmConfig = LatencyArmConfig()

    def __post_init__(self) -> None:
        from prunerep.config import ConfigError
        from prunerep.methods import list_methods
        from prunerep.methods.base import Budget, build_hyper
        from prunerep.reporting.ledger import PAPERS

        if not self.targets or not all(0 < t <= 1 for t in self.targets):
            raise ValueError(f"targets: give fractions of the dense MACs to keep, in (0, 1], got {self.targets}")
        if len(set(self.targets)) != len(self.targets) or len(set(self.seeds)) != len(self.seeds) or not self.seeds:
            raise ValueError("targets and seeds: give each value once (and at least one seed)")
        if self.prune_epochs <= 0 or not 0 < self.arch_fraction < 1:
            raise ValueError("prune_epochs must be > 0 and arch_fraction in (0, 1)")
        if self.latency.enabled and self.latency_batch not in self.latency.batch_sizes:
            raise ValueError(f"latency_batch: {self.latency_batch} is not measured; add it to latency.batch_sizes "
                             f"({self.latency.batch_sizes})")
        try:   # the budget's own check, one rule
            Budget(macs_keep=1.0, round_to=self.round_to)
        except ValueError:
            raise ValueError(f"round_to: give a positive integer (e.g. 8) or null, got {self.round_to!r}") from None
        stray = [t for t in self.round_targets if t not in self.targets]
        if stray:
            raise ValueError(f"round_targets: {stray} are not in targets {self.targets}")
        registered = list_methods()
        unknown = [m for m in self.methods if m not in registered and m not in PAPERS]
        if unknown:
            raise ValueError(f"methods: {unknown} are neither registered methods nor papers; registered: {registered}")
        for slug, value in self.hyper.items():
            if slug not in registered:
                raise ValueError(f"hyper.{slug}: not a registered method; registered: {registered}")
            try:
                build_hyper(slug, value)
            except ConfigError as err:
                raise ValueError(f"hyper.{err}") from None
        if self.latency_arm.enabled:
            self._check_latency_arm(registered)

    def _check_latency_arm(self, registered: Sequence[str]) -> None:
        """What the latency arm needs, each refusal naming the key to change."""
        from prunerep.methods.base import build_hyper

        off = "or set latency_arm.enabled: false"
        if LATENCY_METHOD not in registered or MATCHED not in registered:
            raise ValueError(f"latency_arm.enabled: needs the registered methods {LATENCY_METHOD!r} and {MATCHED!r}")
        missing = [m for m in (LATENCY_METHOD, MATCHED) if self.methods and m not in self.methods]
        if missing:
            raise ValueError(f"latency_arm.enabled: needs {missing} among methods (W-Gates runs in both modes; the "
                             f"measured latency of L1's networks sets the target); add them to methods {off}")
        if not self.latency.enabled:
            raise ValueError(f"latency_arm.enabled: needs latency.enabled: true (the networks are measured) {off}")
        if self.latency_batch not in self.latency_arm.measure.batch_sizes:
            raise ValueError(f"latency_arm.measure.batch_sizes: {self.latency_arm.measure.batch_sizes} lacks "
                             f"latency_batch {self.latency_batch}; LPNet predicts only the batch sizes measured")
        scope = build_hyper(LATENCY_METHOD, self.hyper.get(LATENCY_METHOD)).scope
        if self.latency_arm.sampler.scope != scope:
            raise ValueError(f"latency_arm.sampler.scope: {self.latency_arm.sampler.scope!r} differs from W-Gates' "
                             f"scope {scope!r} (hyper.wgates.scope): LPNet must vary the groups W-Gates prunes")

    @property
    def all_models(self) -> list[str]:
        return [self.model]

    @property
    def rounded_targets(self) -> list[float]:
        """The targets at which the rounded arms run ([] when `round_to` is null)."""
        return [] if self.round_to is None else [t for t in self.targets if not self.round_targets
                                                 or t in self.round_targets]


# -- plan --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Skipped:
    """A (method, target) without runs, and why: not implemented, not run (the budget cannot be
    met by the method), or failed (the error)."""

    method: str
    target: float | None
    status: str
    reason: str


@dataclass(frozen=True)
class ComparePlan:
    specs: list[RunSpec]
    skipped: list[Skipped]


def methods(cfg: CompareConfig) -> list[str]:
    """The methods that run: `cfg.methods`, or every registered one."""
    from prunerep.methods import list_methods

    registered = list_methods()
    return [m for m in (cfg.methods or registered) if m in registered]


def not_implemented(cfg: CompareConfig) -> list[str]:
    """Papers (of the six) without a registered method: shown, never dropped."""
    from prunerep.methods import list_methods
    from prunerep.reporting.ledger import PAPERS

    registered = set(list_methods())
    wanted = cfg.methods or list(PAPERS)
    return [p for p in PAPERS if p in wanted and p not in registered]


def is_bilevel(method: str) -> bool:
    from prunerep.methods import get_method

    return bool(type(get_method(method)).bilevel)


def steps_per_epoch(n_train: int, batch_size: int, bilevel: bool, arch_fraction: float) -> int:
    """SGD steps of one pass over the images a method trains its weights on (the runner's
    training loader drops the last incomplete batch; a bi-level method holds out
    `held_out_size` images)."""
    n = n_train - held_out_size(n_train, arch_fraction, batch_size) if bilevel else n_train
    if n < batch_size:
        raise ValueError(f"{n} training images are fewer than one batch of {batch_size}")
    return n // batch_size


def equal_recipe(optim: OptimConfig, epochs: float, n_train: int, batch_size: int, bilevel: bool,
                 arch_fraction: float) -> OptimConfig:
    """`optim` lasting ``round(epochs * (n_train // batch_size))`` SGD steps for every method.

    The steps are those of `epochs` passes over the whole training split; a bi-level method gets
    as many steps over its part (its epochs, milestones and warm-up are scaled by the same factor,
    so the schedule is the same function of the step). `optim.max_steps` still caps it.
    """
    steps = max(1, round(epochs * (n_train // batch_size)))
    if optim.max_steps is not None:
        steps = min(steps, optim.max_steps)
    factor = (n_train // batch_size) / steps_per_epoch(n_train, batch_size, bilevel, arch_fraction)
    return dataclasses.replace(optim, epochs=epochs * factor, milestones=[m * factor for m in optim.milestones],
                               warmup_epochs=optim.warmup_epochs * factor, max_steps=steps, batch_size=batch_size)


def _order(method: str, cfg: CompareConfig) -> tuple[int, int]:
    """Longest runs first (bi-level searches, then other trained methods, then one-shot ones), so
    that the last runs on the workers are short ones."""
    from prunerep.methods.base import build_hyper

    hyper = build_hyper(method, cfg.hyper.get(method))
    trained = any(isinstance(getattr(hyper, f.name), OptimConfig) for f in dataclasses.fields(hyper))
    return (-int(is_bilevel(method)), -int(trained))


def _recipes(cfg: CompareConfig, method: str, n_train: int) -> tuple[OptimConfig, OptimConfig]:
    """(fine-tuning, the method's own training phases) of `method`: `equal_recipe` of each."""
    bilevel = is_bilevel(method)
    finetune = equal_recipe(cfg.finetune, cfg.finetune.epochs, n_train, cfg.batch_size, bilevel, cfg.arch_fraction)
    phase = equal_recipe(OptimConfig(max_steps=cfg.prune_max_steps), cfg.prune_epochs, n_train, cfg.batch_size,
                         bilevel, cfg.arch_fraction)
    return finetune, phase


def plan(cfg: CompareConfig, ctx: StudyContext) -> ComparePlan:
    """Every (method, target, seed) run, built by the public API's `spec_for` from the one dense
    checkpoint; a target a method cannot reach is `Skipped` (with the reason) for every seed."""
    from prunerep.api import PruneError, native_budget, spec_for

    dense = ctx.load_dense(cfg.model)
    example = torch.zeros(ctx.example_shape)
    n_train = len(ctx.splits.train)
    specs: list[RunSpec] = []
    skipped = [Skipped(m, None, NOT_IMPLEMENTED, "no method module registered for this paper yet")
               for m in not_implemented(cfg)]
    for method in sorted(methods(cfg), key=lambda m: _order(m, cfg)):
        finetune, phase = _recipes(cfg, method, n_train)
        for target in cfg.targets:
            try:
                native_budget(method, target, dense, example, cfg.hyper.get(method))
            except PruneError as err:
                skipped.append(Skipped(method, target, NOT_RUN, str(err)))
                continue
            roundings = [None] + ([cfg.round_to] if target in cfg.rounded_targets else [])
            for round_to in roundings:
                suffix = f"+r{round_to}" if round_to else ""
                for seed in cfg.seeds:
                    specs.append(spec_for(
                        method, target, hyper=cfg.hyper.get(method), finetune=finetune, select=cfg.select, seed=seed,
                        batch_size=cfg.batch_size, eval_batch_size=cfg.eval_batch_size,
                        arch_fraction=cfg.arch_fraction, epochs=phase.epochs, phase_max_steps=phase.max_steps,
                        runtime=cfg.runtime, model=dense, example_input=example, model_key=cfg.model,
                        label=f"{method}@{target:g}{suffix}", round_to=round_to,
                        tags={"variant": f"{method}{suffix}", **({"round_to": round_to} if round_to else {})}))
    return ComparePlan(specs, skipped)


def is_rounded(record: RunRecord) -> bool:
    """A run of the rounded arms (widths rounded down to multiples of ``round_to``)."""
    return bool(record.tags.get("round_to"))


def is_latency_arm(record: RunRecord) -> bool:
    """A run of the latency arm (W-Gates in latency mode at L1's measured latency)."""
    return record.tags.get("variant") == LATENCY_ARM


def split_rounded(records: Sequence[RunRecord]) -> tuple[list[RunRecord], list[RunRecord]]:
    """(the runs at the plain budgets, the runs with rounded widths): every table and figure of
    the comparison reads the first; the rounding section compares the two. Runs of the latency
    arm are in neither (its section reads them)."""
    return ([r for r in records if not is_rounded(r) and not is_latency_arm(r)],
            [r for r in records if is_rounded(r) and not is_latency_arm(r)])


def run(cfg: CompareConfig, study: StudyContext, the_plan: ComparePlan | None = None
        ) -> tuple[list[RunRecord], list[Skipped]]:
    """Execute the plan. If a run fails, every (method, target) is executed on its own, so that
    the failing ones are reported as failed (with their error) and the others still run
    (finished runs are reused by identity, killed ones resume: the retry recomputes little)."""
    from prunerep.runner import execute

    p = the_plan or plan(cfg, study)
    try:
        return execute(p.specs, study), list(p.skipped)
    except Exception as err:   # which method failed? run them one method at a time; the rest is reused
        first = err
    records: list[RunRecord] = []
    skipped = list(p.skipped)
    arms: dict[tuple[str, float], list[RunSpec]] = {}
    for spec in p.specs:
        arms.setdefault((spec.method, float(spec.tags["target"])), []).append(spec)
    for (method, target), specs in arms.items():
        try:
            records += execute(specs, study)
        except Exception as err:
            message = f"{type(err).__name__}: {err}".splitlines()[0][:300]
            skipped.append(Skipped(method, target, FAILED, message))
    if not records:
        raise RuntimeError("compare: every method failed; see the run logs under artifacts/compare/logs/") from first
    return records, skipped


# -- the latency arm: W-Gates in latency mode at L1's measured latency ----------------------------------


@dataclass(frozen=True)
class LatencyTarget:
    """One MACs target of the latency arm: the measured latency ratios (to the dense network, at
    ``latency_batch``) of L1's networks by seed, and W-Gates' latency target set from them, or
    the reason there is none (``latency_keep`` None)."""

    macs_target: float
    l1_ratios: dict[int, float]
    latency_keep: float | None
    reason: str = ""


@dataclass(frozen=True)
class Attempt:
    """One W-Gates round of the latency arm at one MACs target: the latency target it ran at, and
    the medians over seeds of both sides' measured ratios in the sessions that followed."""

    macs_target: float
    round: int
    latency_keep: float
    wgates_ratio: float
    l1_ratio: float
    equal: bool = False          # `latency_match` found the two at equal latency

    @property
    def gap(self) -> float:
        return self.wgates_ratio - self.l1_ratio

    @property
    def relative(self) -> float:
        """W-Gates' measured latency over L1's (NaN when either is not measured)."""
        return self.wgates_ratio / self.l1_ratio if self.l1_ratio > 0 else math.nan

    def describe(self) -> str:
        return (f"round {self.round}: target {self.latency_keep:.3f}, measured {self.wgates_ratio:.3f} vs "
                f"L1 {self.l1_ratio:.3f}" + (" (equal)" if self.equal else ""))


@dataclass
class LatencyArm:
    """What the latency arm ran and measured (``enabled`` False: nothing, the arm is off)."""

    enabled: bool
    batch_size: int = 1
    statistic: str = "median"
    targets: list[LatencyTarget] = field(default_factory=list)
    tolerance: float = 0.05
    records: list[RunRecord] = field(default_factory=list)      # W-Gates' runs of each target's paired round
    before: pd.DataFrame = field(default_factory=pd.DataFrame)   # L1 measured to set the targets
    after: pd.DataFrame = field(default_factory=pd.DataFrame)    # both sides, the paired round's sessions
    attempts: list[Attempt] = field(default_factory=list)        # every W-Gates round, in order
    paired: dict[float, int] = field(default_factory=dict)       # MACs target -> the round the table pairs
    confirm: pd.DataFrame = field(default_factory=pd.DataFrame)  # the paired networks re-timed after all rounds
    fit: PredictorFit | None = None
    dataset: str = ""                                            # how the latency dataset was built
    failed: str = ""                                             # the runs' error, if they failed


def latency_target(ratios: Sequence[float], statistic: str = "median") -> float:
    """W-Gates' latency target from L1's measured ratios over seeds: their median (or mean),
    rounded to 3 decimals (the measurement is not finer; a rerun that measures within the same
    thousandth keeps the runs' identity)."""
    values = [float(x) for x in ratios if math.isfinite(x)]
    if not values:
        raise ValueError("latency_target: no finite measured ratio")
    value = statistics.median(values) if statistic == "median" else statistics.fmean(values)
    return round(value, 3)


def measured_ratios(measured: pd.DataFrame, batch_size: int, variant: str = MATCHED) -> dict[float, dict[int, float]]:
    """``{MACs target: {seed: ratio}}`` of `variant`'s networks in an interleaved measurement
    (`measure_arm`'s rows)."""
    out: dict[float, dict[int, float]] = {}
    if not len(measured):
        return out
    for row in measured[measured["variant"] == variant].itertuples(index=False):
        out.setdefault(float(row.target), {})[int(row.seed)] = float(getattr(row, f"ratio_b{batch_size}"))
    return out


def combine_sessions(sessions: Sequence[pd.DataFrame], batch_size: int) -> pd.DataFrame:
    """One row per network (label, seed) from the rows of several interleaved sessions: its ratio
    ``ratio_b<B>`` is the median over sessions, ``sessions_b<B>`` lists each session's ratio."""
    frames = [df for df in sessions if len(df)]
    if not frames:
        return pd.DataFrame()
    col = f"ratio_b{batch_size}"
    rows = []
    for _, g in pd.concat(frames, ignore_index=True).groupby(["label", "seed"], sort=False):
        ratios = [float(x) for x in g[col]]
        rows.append({**g.iloc[0].to_dict(), col: statistics.median(ratios),
                     f"sessions_b{batch_size}": " / ".join(f"{x:.3f}" for x in ratios)})
    return pd.DataFrame(rows)


def latency_targets(cfg: CompareConfig, l1_ratios: Mapping[float, Mapping[int, float]]) -> list[LatencyTarget]:
    """Per MACs target: W-Gates' latency target, `latency_target` of L1's measured ratios at that
    target, or why there is none (no measured L1 network, or L1 no faster than dense)."""
    out = []
    for t in cfg.targets:
        ratios = {s: r for s, r in (l1_ratios.get(float(t)) or {}).items() if math.isfinite(r)}
        keep, reason = None, ""
        if not ratios:
            reason = f"no {MATCHED} network with a measured latency at this target"
        else:
            value = latency_target(list(ratios.values()), cfg.latency_arm.statistic)
            if not 0 < value < 1:
                reason = (f"{MATCHED}'s measured latency is {value:.3f} of the dense network's at batch "
                          f"{cfg.latency_batch}: no latency target below the dense network to drive W-Gates to")
            else:
                keep = value
        out.append(LatencyTarget(float(t), dict(sorted(ratios.items())), keep, reason))
    return out


def measure_arm(records: Sequence[RunRecord], study: StudyContext, cfg: CompareConfig, *,
                measure_fn: MeasureFn | None = None) -> pd.DataFrame:
    """`records`' saved networks measured interleaved with the dense network at
    ``latency_batch`` in ``latency_arm.sessions`` sessions (``latency_arm.rounds`` each; threads
    and device of ``latency_arm.measure``, as the latency dataset was measured): one row per run
    (`prunerep.studies.latency.measure_interleaved`), its ratio the median over sessions
    (`combine_sessions`)."""
    from prunerep.studies.latency import default_measure, measure_interleaved

    arm = cfg.latency_arm
    fn = measure_fn or default_measure(arm.measure)
    sessions = [measure_interleaved(
        records, study.load_dense, study.input_shape, [cfg.latency_batch], [arm.rounds.repeats],
        warmup=arm.rounds.warmup, chunk=arm.rounds.chunk, measure_fn=fn,
        describe=lambda r: {"method": r.method, "variant": r.tags.get("variant"), "target": _target(r),
                            "test_acc": r.test_acc}) for _ in range(arm.sessions)]
    return combine_sessions(sessions, cfg.latency_batch)


def latency_arm_specs(cfg: CompareConfig, study: StudyContext, targets: Sequence[LatencyTarget],
                      lpnet_path: str, lpnet_digest: str) -> list[RunSpec]:
    """W-Gates with ``Budget(latency_keep=...)`` at every target that has one, every seed: the
    FLOPs-mode W-Gates run of `plan` (same hyper-parameters, training phases, fine-tuning,
    selection), with the LPNet file, its digest and ``latency_batch`` added to its
    hyper-parameters and the latency budget in place of the MACs one."""
    from prunerep.api import spec_for
    from prunerep.methods.base import Budget

    finetune, phase = _recipes(cfg, LATENCY_METHOD, len(study.splits.train))
    hyper = {**(cfg.hyper.get(LATENCY_METHOD) or {}), "lpnet": lpnet_path, "lpnet_digest": lpnet_digest,
             "latency_batch": cfg.latency_batch}
    specs = []
    for t in targets:
        if t.latency_keep is None:
            continue
        for seed in cfg.seeds:
            spec = spec_for(LATENCY_METHOD, t.macs_target, hyper=hyper, finetune=finetune, select=cfg.select,
                            seed=seed, batch_size=cfg.batch_size, eval_batch_size=cfg.eval_batch_size,
                            arch_fraction=cfg.arch_fraction, epochs=phase.epochs, phase_max_steps=phase.max_steps,
                            runtime=cfg.runtime, model_key=cfg.model, label=f"{LATENCY_ARM}@{t.macs_target:g}",
                            tags={"variant": LATENCY_ARM, "latency_target": t.latency_keep,
                                  "latency_batch": cfg.latency_batch})
            specs.append(dataclasses.replace(spec, budget=Budget(latency_keep=t.latency_keep)))
    return specs


def run_latency_arm(cfg: CompareConfig, study: StudyContext, records: Sequence[RunRecord], *,
                    measure_fn: MeasureFn | None = None, fingerprint: Mapping[str, Any] | None = None,
                    dataset_dir: Any = None, lpnet_dir: Any = None, progress: bool = True) -> LatencyArm:
    """The latency arm end to end (nothing when ``latency_arm.enabled`` is false).

    1. the latency dataset of ``model`` on this device (reused from the per-device cache the
       wgates stage fills, or measured now, serially: the other runs have finished) and the LPNet
       of the first split seed fitted on it (or reused): `prunerep.studies.latency`;
    2. L1's plain networks measured interleaved with the dense network (`measure_arm`,
       ``sessions`` sessions), and the latency target of every MACs target from their ratios
       (`latency_targets`);
    3. W-Gates in latency mode at those targets (`latency_arm_specs`, the runner: a run finished
       before with the same identity is reused);
    4. its networks and L1's at the same targets measured again, in the same sessions;
    5. where the two are not at equal measured latency (`latency_match`) and rounds are left
       (``iterations``), a new target (`next_target`) and steps 3-4 again. Every round is an
       `Attempt`; the table pairs each target's round at equal latency, or else the round whose
       median latencies are closest (a choice on latency only, never on accuracy);
    6. the paired networks (W-Gates' and L1's) timed once more in new sessions (``confirm``): on a
       device whose state drifts for minutes, a latency relation (equal, faster, slower) counts
       only if this re-timing finds the same one.

    `measure_fn` and `fingerprint` replace the timing harness and the device fingerprint (tests).
    """
    from prunerep import paths
    from prunerep.runner import execute
    from prunerep.studies import latency

    arm = cfg.latency_arm
    out = LatencyArm(enabled=arm.enabled, batch_size=cfg.latency_batch, statistic=arm.statistic,
                     tolerance=arm.tolerance)
    if not arm.enabled:
        return out
    dataset = latency.DatasetConfig(models=[cfg.model], sampler=arm.sampler, measure=arm.measure)
    ds = latency.ensure_datasets(dataset, study.example_shape, study.load_dense,
                                 directory=dataset_dir or latency.DATASET_DIR, measure_fn=measure_fn,
                                 fingerprint=fingerprint, progress=progress,
                                 log=paths.run_logs(study.slug) / "latency_dataset.log")[cfg.model]
    out.dataset = f"{ds.describe()}, file {Path(str(ds.path)).name if ds.path else '—'}, digest {ds.digest[:12]}"
    predictor = dataclasses.replace(arm.predictor, seeds=arm.predictor.seeds[:1])
    out.fit = latency.fit_predictors(predictor, ds, cfg.model, directory=lpnet_dir or latency.LPNET_DIR)
    l1 = [r for r in records if r.method == MATCHED and not is_rounded(r) and not is_latency_arm(r)]
    out.before = measure_arm(l1, study, cfg, measure_fn=measure_fn)
    out.targets = latency_targets(cfg, measured_ratios(out.before, cfg.latency_batch))
    pending = [t for t in out.targets if t.latency_keep is not None]
    rounds: dict[float, list[tuple[Attempt, list[RunRecord], pd.DataFrame]]] = {}
    for k in range(1, arm.iterations + 1):
        specs = latency_arm_specs(cfg, study, pending, out.fit.lpnet_path, out.fit.lpnet_digest)
        if not specs:
            break
        try:
            ran = execute(specs, study)
        except Exception as err:   # reported in the arm's table, like a failed method in the status table
            out.failed = f"{type(err).__name__}: {err}".splitlines()[0][:300]
            break
        macs = {_target(r) for r in ran}
        after = measure_arm([*[r for r in l1 if _target(r) in macs], *ran], study, cfg, measure_fn=measure_fn)
        wgates_ratios = measured_ratios(after, cfg.latency_batch, LATENCY_ARM)
        l1_ratios = measured_ratios(after, cfg.latency_batch)
        retry = []
        for t in pending:
            mine = [r for r in ran if _target(r) == t.macs_target]
            w, b = wgates_ratios.get(t.macs_target, {}), l1_ratios.get(t.macs_target, {})
            status, _ = latency_match(w, b, arm.tolerance)
            attempt = Attempt(t.macs_target, k, float(t.latency_keep or math.nan), _median(w.values()),
                              _median(b.values()), status == EQUAL_LATENCY)
            out.attempts.append(attempt)
            rounds.setdefault(t.macs_target, []).append((attempt, mine, after[after["target"] == t.macs_target]))
            following = next_target([a for a, _, _ in rounds[t.macs_target]])
            if k < arm.iterations and not attempt.equal and following is not None:
                retry.append(dataclasses.replace(t, latency_keep=following))
        pending = retry
    finals = []
    for macs_target, tried in rounds.items():
        attempt, mine, after = min(tried, key=lambda x: (not x[0].equal, abs(x[0].gap) if math.isfinite(x[0].gap)
                                                         else math.inf))
        out.paired[macs_target] = attempt.round
        out.records.extend(mine)
        finals.append(after)
    out.after = pd.concat(finals, ignore_index=True) if finals else pd.DataFrame()
    if out.records:   # the paired networks timed once more, later: a relation that does not replicate is none
        macs = {_target(r) for r in out.records}
        out.confirm = measure_arm([*[r for r in l1 if _target(r) in macs], *out.records], study, cfg,
                                  measure_fn=measure_fn)
    return out


def _median(values: Any) -> float:
    xs = [float(x) for x in values if math.isfinite(float(x))]
    return statistics.median(xs) if xs else math.nan


#: How W-Gates' measured latency relates to L1's (`latency_match`).
EQUAL_LATENCY, FASTER, SLOWER, UNRESOLVED = "equal", "faster", "slower", "not established"


def latency_match(wgates: Mapping[int, float], l1: Mapping[int, float], tolerance: float
                  ) -> tuple[str, Interval | None]:
    """Whether W-Gates' networks are at L1's measured latency: the 95% t-interval of W-Gates'
    ratio minus L1's, paired by seed (both timed in the same sessions). ``equal`` when the whole
    interval lies within +-`tolerance` (an equivalence test: noise wide enough to hide a gap of
    `tolerance` is not equality); otherwise ``faster`` / ``slower`` when it lies wholly below /
    above 0; ``not established`` when it straddles or fewer than `MIN_SEEDS` seeds pair."""
    from prunerep.reporting.stats import MIN_SEEDS

    shared = sorted(s for s in set(wgates) & set(l1) if math.isfinite(wgates[s]) and math.isfinite(l1[s]))
    if not shared:
        return UNRESOLVED, None
    iv = paired_difference({s: wgates[s] for s in shared}, {s: l1[s] for s in shared})
    if iv.n < MIN_SEEDS:
        return UNRESOLVED, iv
    if -tolerance <= iv.lo and iv.hi <= tolerance:
        return EQUAL_LATENCY, iv
    if iv.hi < 0:
        return FASTER, iv
    if iv.lo > 0:
        return SLOWER, iv
    return UNRESOLVED, iv


def next_target(tried: Sequence[Attempt]) -> float | None:
    """The next round's latency target from the rounds run so far at one MACs target, aiming at
    W-Gates' measured ratio over L1's (each round's own sessions, so the device's drift between
    rounds cancels) = 1. After one round: its target scaled by L1/W-Gates (LPNet's relative error
    on W-Gates' networks). After two: the secant through the last two (target, W-Gates/L1) points
    (LPNet also compresses the range: a target change moves the measured latency by more), or the
    scaling again when those two do not increase together (noise). Rounded to 3 decimals; None
    when nothing is measured, the value is not a latency below the dense one, or it was tried."""
    if not tried:
        return None
    last = tried[-1]
    r2 = last.relative
    if not (math.isfinite(r2) and r2 > 0):
        return None
    value = last.latency_keep / r2
    if len(tried) >= 2:
        prev = tried[-2]
        r1, dt = prev.relative, last.latency_keep - prev.latency_keep
        if math.isfinite(r1) and dt != 0 and (r2 - r1) / dt > 0:
            value = last.latency_keep + (1.0 - r2) * dt / (r2 - r1)
    value = round(value, 3)
    return value if 0 < value < 1 and value not in {a.latency_keep for a in tried} else None


def equal_latency_verdict(accuracy: str, match: str) -> str:
    """The verdict of "more accurate than L1 at equal measured latency": the one rule's verdict on
    the accuracy difference when the latencies are equal (`latency_match`); when they are not, a
    network both faster and more accurate (supported) or both slower and less accurate (not
    supported) still answers it; anything else is withheld."""
    if accuracy == FEW_SEEDS or match == EQUAL_LATENCY:
        return accuracy
    if match == FASTER and accuracy == SUPPORTED:
        return SUPPORTED
    if match == SLOWER and accuracy == NOT_SUPPORTED:
        return NOT_SUPPORTED
    return WITHHELD


#: The verdict when the two sides did not reach equal measured latency.
WITHHELD = "no verdict: equal latency not established"


def _measured(arm: LatencyArm, record: RunRecord, frame: pd.DataFrame | None = None) -> float:
    """`record`'s ratio to dense in the sessions of its round (``arm.after``), or in `frame`
    (NaN if not measured there)."""
    df = arm.after if frame is None else frame
    if not len(df):
        return math.nan
    m = df[(df["label"] == record.label) & (df["seed"] == record.seed)]
    return float(m[f"ratio_b{arm.batch_size}"].iloc[0]) if len(m) else math.nan


def equal_latency_table(arm: LatencyArm, records: Sequence[RunRecord]) -> pd.DataFrame:
    """W-Gates (latency mode, LPNet) − L1 at equal measured latency, one row per MACs target:
    the latency target of every round (the first set from L1's measured ratios), test accuracy of
    both, their measured latency ratios in the same interleaved sessions, whether those are equal
    (`latency_match`, within ``tolerance``), and the accuracy difference paired by seed with
    the verdict (`equal_latency_verdict`: the one rule, withheld when the latencies are not
    equal). A target without runs says why. Internal column ``_interval`` holds the interval."""
    b = arm.batch_size
    cols = ["MACs target", "latency target", "set from L1's measured ratios", "rounds", "what ran", "status", "n",
            "W-Gates (latency mode): test acc (%)", "L1-norm: test acc (%)",
            f"W-Gates (latency mode): measured latency, batch {b} (fraction of dense)",
            f"L1-norm: measured latency, batch {b} (fraction of dense)",
            f"latency, W-Gates − L1 (95% CI; equal within ±{arm.tolerance:g})",
            "− L1 (points, 95% CI)", "better than L1 at equal latency?", "_interval"]
    rows = []
    ours, base = _arms(arm.records), _arms([r for r in records if r.method == MATCHED])
    for t in arm.targets:
        a, l1 = ours.get((LATENCY_METHOD, t.macs_target), []), base.get((MATCHED, t.macs_target), [])
        ga, gb = (records_by_seed(a), records_by_seed(l1)) if a else ({}, {})
        shared = sorted(set(ga) & set(gb))
        iv = paired_difference({s: ga[s] for s in shared}, {s: gb[s] for s in shared}) if shared else None
        status = (RAN if a else FAILED if arm.failed else NOT_RUN)
        detail = (f"seeds {sorted(ga)}" + (f"; a later round failed: {arm.failed}" if arm.failed else "")
                  if a else arm.failed or t.reason or "no record")
        by_seed = {r.seed: r for r in l1}
        lat_a = {r.seed: x for r in a if math.isfinite(x := _measured(arm, r))}
        lat_b = {s: x for s in shared if math.isfinite(x := _measured(arm, by_seed[s]))}
        match, gap = latency_match(lat_a, lat_b, arm.tolerance) if a else (UNRESOLVED, None)
        again, regap = latency_match({r.seed: _measured(arm, r, arm.confirm) for r in a},
                                     {s: _measured(arm, by_seed[s], arm.confirm) for s in shared},
                                     arm.tolerance) if a and len(arm.confirm) else (UNRESOLVED, None)
        gap_text = "—" if gap is None else f"{gap.format(3, bound_digits=3)}: {match}"
        if regap is not None:
            gap_text += f"; re-timed: {regap.format(3, bound_digits=3)}: {again}"
        settled = match if regap is None or again == match else UNRESOLVED
        rounds = [x for x in arm.attempts if x.macs_target == t.macs_target]
        accuracy = verdict(iv, DIRECTION, THRESHOLD) if a else "—"
        rows.append({
            "MACs target": t.macs_target,
            "latency target": "—" if t.latency_keep is None else " → ".join(
                f"{x.latency_keep:.3f}" for x in rounds) or f"{t.latency_keep:.3f}",
            "set from L1's measured ratios": (f"{arm.statistic} of " + ", ".join(
                f"{r:.3f} (seed {s})" for s, r in t.l1_ratios.items())) if t.l1_ratios else "—",
            "rounds": "; ".join(x.describe() + (" ← paired" if arm.paired.get(t.macs_target) == x.round
                                                 and len(rounds) > 1 else "") for x in rounds) or "—",
            "what ran": record_name(a[0]) if a else method_name(LATENCY_METHOD, {"lpnet": "LPNet"}),
            "status": f"{status}: {detail}", "n": len(shared),
            "W-Gates (latency mode): test acc (%)": fmt_mean_std([r.test_acc for r in a]) if a else "—",
            "L1-norm: test acc (%)": fmt_mean_std([gb[s] for s in shared]) if shared else "—",
            f"W-Gates (latency mode): measured latency, batch {b} (fraction of dense)":
                fmt_mean_std(list(lat_a.values()), 3) if lat_a else "not measured",
            f"L1-norm: measured latency, batch {b} (fraction of dense)":
                fmt_mean_std(list(lat_b.values()), 3) if lat_b else "not measured",
            f"latency, W-Gates − L1 (95% CI; equal within ±{arm.tolerance:g})":
                gap_text,
            "− L1 (points, 95% CI)": "—" if iv is None else str(iv),
            "better than L1 at equal latency?": equal_latency_verdict(accuracy, settled) if a else "—",
            "_interval": iv,
        })
    return pd.DataFrame(rows, columns=cols)


def equal_latency_display(table: pd.DataFrame) -> pd.DataFrame:
    """`equal_latency_table` without its internal column."""
    return table.drop(columns=[c for c in table.columns if c.startswith("_")])


def equal_latency_caption(arm: LatencyArm) -> str:
    b = arm.batch_size
    fit = arm.fit
    lp = ("" if fit is None else f" LPNet file {Path(fit.lpnet_path).name} (sha256 {fit.lpnet_digest[:12]}), fitted "
          f"on the latency dataset of this device ({arm.dataset}).")
    return (f"W-Gates in latency mode (Budget(latency_keep), enforced through LPNet's prediction at batch {b}) at the "
            f"{arm.statistic} over seeds of L1-norm's measured latency ratio at each MACs target (L1's networks and "
            f"the dense network timed interleaved), rounded to 3 decimals; then both arms' networks timed again in "
            f"the same interleaved sessions with the dense network (a network's ratio: the median over sessions of "
            f"the median over rounds of its time over the dense time in the same round). The latencies are equal "
            f"when the 95% t-interval of W-Gates' ratio minus L1's, paired by seed, lies within "
            f"±{arm.tolerance:g}; if not, W-Gates ran again at a new target (after one round: scaled by the "
            f"measured L1/W-Gates ratio; after two: the secant through the last two; column rounds); the round paired is the one at equal latency, else the closest. Its networks are "
            f"then re-timed in new sessions, and the relation (equal, faster, slower) counts only if the re-timing "
            f"finds the same one. Test accuracy difference paired by seed (95% t-interval), verdict of \"more "
            f"accurate than L1\" (difference > 0) by the one rule, given only at equal latency, or when W-Gates is "
            f"both faster and more accurate (supported) or both slower and less accurate (not supported); "
            f"otherwise \"{WITHHELD}\".{lp} **Verdict rule.** {VERDICT_RULE}")


def latency_arm_metrics(arm: LatencyArm, table: pd.DataFrame) -> dict[str, Any]:
    """Headline scalars of the latency arm ({} when it is off, so the other metrics stay as they were)."""
    out: dict[str, Any] = {}
    if not arm.enabled:
        return out
    by_target = {float(row["MACs target"]): row for _, row in table.iterrows()}
    for t in arm.targets:
        key = f"{LATENCY_ARM}@{t.macs_target:g}"
        if t.latency_keep is not None:
            out[f"{key}/latency_target"] = t.latency_keep
        rs = [r for r in arm.records if _target(r) == t.macs_target]
        if rs:
            out[f"{key}/test_acc_mean"] = _mean([r.test_acc for r in rs])
            lat = [x for r in rs if math.isfinite(x := _measured(arm, r))]
            if lat:
                out[f"{key}/measured_ratio_mean"] = _mean(lat)
        row = by_target.get(t.macs_target)
        iv = None if row is None else row.get("_interval")
        if isinstance(iv, Interval):
            out[f"{key}/minus_l1"] = iv.mean
        rounds = {x.round: x for x in arm.attempts if x.macs_target == t.macs_target}
        if rounds:
            out[f"{key}/rounds"] = len(rounds)
            paired = rounds.get(arm.paired.get(t.macs_target, max(rounds)))
            if paired is not None and math.isfinite(paired.gap):
                out[f"{key}/latency_gap"] = paired.gap
    return out


# -- names ----------------------------------------------------------------------------------------------


#: Each method's name, and what is always true of it here (a reconstruction: no official
#: training code was available).
NAMES: dict[str, tuple[str, tuple[str, ...]]] = {
    "gdp": ("GDP", ("reconstruction",)),
    "wgates": ("W-Gates", ("reconstruction",)),
    "functionality": ("functionality", ()),
    "dsa": ("DSA", ("training reconstructed",)),
    "dais": ("DAIS", ("reconstruction",)),
    "greg": ("GReg", ()),
    "l1": ("L1-norm", ()),
    "random": ("random channels", ()),
    "slimming": ("network slimming", ()),
    "fpgm": ("FPGM criterion", ("one-shot",)),
    "sensitivity": ("sensitivity-scan allocation", ("one-shot",)),
}

#: What a run's resolved hyper-parameters add to its name: choices of ours say "ours".
_NOTES: dict[str, Callable[[Mapping[str, Any]], list[str]]] = {
    "gdp": lambda h: (["sampling gates, ours"] if h.get("gate") == "sampling" else [])
    + (["stopped at its target"] if h.get("after_target") == "stop" else []),
    "wgates": lambda h: ["latency mode, LPNet" if h.get("lpnet") else "FLOPs mode", *choices_of_ours(h)]
    + ([f"widths rounded to {h['round_to']}"] if h.get("round_to") else []),
    "functionality": lambda h: ([f"{str(h.get('descriptor', '')).replace('_', '-')} descriptor, ours"]
                                if h.get("descriptor", "response") in ("response", "class_gradient")
                                else ["activation-maximisation descriptor, reconstruction"]),
    "greg": lambda h: [f"GReg-{str(h.get('variant', 'greg1'))[-1]}, residual streams not pruned"]
    + (["+ BN penalty, ours"] if (h.get("reg") or {}).get("penalize_norm") else []),
    "slimming": lambda h: [f"{h['min_keep']:.0%} per-layer floor, ours"] if h.get("min_keep") else [],
}


def method_name(method: str, hyper: Mapping[str, Any] | None = None) -> str:
    """What ran, as tables and figures name it (a choice of ours says so)."""
    base, fixed = NAMES.get(method, (method, ()))
    notes = [*fixed, *_NOTES.get(method, lambda h: [])(hyper or {})]
    return f"{base} ({'; '.join(notes)})" if notes else base


def record_name(record: RunRecord) -> str:
    return method_name(record.method, record.hyper)


# -- tables -------------------------------------------------------------------------------------------


def _target(record: RunRecord) -> float:
    return float(record.tags["target"])


def _arms(records: Sequence[RunRecord]) -> dict[tuple[str, float], list[RunRecord]]:
    """Records by (method, MACs target asked for). The target is the run's tag: a ratio-budget
    method's record has no MACs fraction in its budget."""
    out: dict[tuple[str, float], list[RunRecord]] = {}
    for r in records:
        out.setdefault((r.method, _target(r)), []).append(r)
    return out


def status_table(cfg: CompareConfig, records: Sequence[RunRecord], skipped: Sequence[Skipped]) -> pd.DataFrame:
    """One row per method and target: what ran (n seeds) or why nothing did."""
    arms = _arms(records)
    rows = []
    for method in [*methods(cfg), *not_implemented(cfg)]:
        for target in cfg.targets:
            rs = arms.get((method, float(target)), [])
            why = [s for s in skipped if s.method == method and (s.target is None or s.target == target)]
            if rs:
                status, reason = RAN, f"seeds {sorted(r.seed for r in rs)}"
            elif why:
                status, reason = why[0].status, why[0].reason
            else:
                status, reason = NOT_RUN, "no record"
            rows.append({"method": method, "what ran": method_name(method, rs[0].hyper if rs else cfg.hyper.get(method)),
                         "MACs target": target, "n": len(rs), "status": status, "detail": reason})
    return pd.DataFrame(rows, columns=["method", "what ran", "MACs target", "n", "status", "detail"])


def runs_table(records: Sequence[RunRecord]) -> pd.DataFrame:
    """One row per run."""
    rows = []
    batches = measured_batches(records)
    arm = any(is_latency_arm(r) for r in records)
    for r in records:
        fine = r.histories.get("finetune") or []
        rows.append({"method": r.method, "MACs target": _target(r), "seed": r.seed, "MACs kept": r.macs_keep,
                     "params kept": r.params_keep, "test acc (%)": r.test_acc, "val acc (%)": r.val_acc,
                     "test acc after surgery (%)": r.test_acc_before_finetune, "selection": r.selection,
                     "fine-tuning steps": int(fine[-1]["step"]) if fine else 0,
                     "pruning time (s)": r.pruning_time_s, "fine-tuning time (s)": r.finetune_time_s,
                     **{f"latency bs{b} (ms)": r.latency_ms(b) for b in batches},
                     "widths rounded to": r.tags.get("round_to") or "—",
                     # only where the latency arm ran (the tables of a profile without it stay as they were)
                     **({"latency target (W-Gates, latency mode)": r.tags.get("latency_target") or "—"}
                        if arm else {})})
    return pd.DataFrame(rows)


def measured_batches(records: Sequence[RunRecord]) -> list[int]:
    """The batch sizes at which some run's latency was measured."""
    found = {int(k.removeprefix("batch_").removesuffix("_ms")) for r in records for k in (r.latency or {})
             if k.startswith("batch_") and k.endswith("_ms")}
    return sorted(found)


def _latencies(records: Sequence[RunRecord], batch_size: int) -> list[float]:
    """The measured latencies at `batch_size` of the records that have one."""
    return [ms for r in records if (ms := r.latency_ms(batch_size)) is not None]


def paired(records: Sequence[RunRecord], method: str, baseline: str, target: float) -> Interval | None:
    """`method` minus `baseline` test accuracy at `target`, paired by seed (None: no shared seed)."""
    arms = _arms(records)
    a, b = arms.get((method, float(target))), arms.get((baseline, float(target)))
    if not a or not b:
        return None
    ga, gb = records_by_seed(a), records_by_seed(b)
    return paired_difference(ga, gb) if set(ga) & set(gb) else None


def comparison_table(records: Sequence[RunRecord], baselines: Sequence[str] = BASELINES) -> pd.DataFrame:
    """Mean ± std per method and target, and each method minus each baseline (paired by seed,
    95% t-interval) with the verdict of "more accurate than the baseline" by the one rule.

    Internal columns ``_<baseline>`` hold the intervals (for metrics and figures)."""
    rows = []
    batches = measured_batches(records) or [1]
    for (method, target), rs in sorted(_arms(records).items(), key=lambda kv: (-kv[0][1], kv[0][0])):
        accs = [r.test_acc for r in rs]
        mean, std, n = mean_std(accs)
        row: dict[str, Any] = {"MACs target": target, "method": method, "what ran": record_name(rs[0]), "n": n,
                               "MACs kept": sum(r.macs_keep for r in rs) / n,
                               "test acc (%)": fmt_mean_std(accs), "test_acc_mean": mean, "test_acc_std": std}
        for b in batches:
            lat = _latencies(rs, b)
            row[f"latency bs{b} (ms)"] = fmt_mean_std(lat, 3) if lat else "not measured"
        for b in baselines:
            iv = None if method == b else paired(records, method, b, target)
            short = NAMES.get(b, (b, ()))[0].split(" ")[0]
            row[f"− {short} (points, 95% CI)"] = "—" if iv is None else str(iv)
            row[f"better than {short}?"] = "—" if method == b else verdict(iv, DIRECTION, THRESHOLD)
            row[f"_{b}"] = iv
        rows.append(row)
    return pd.DataFrame(rows)


def comparison_display(table: pd.DataFrame) -> pd.DataFrame:
    """`comparison_table` without its internal columns."""
    return table.drop(columns=[c for c in table.columns if c.startswith("_") or c.startswith("test_acc_")])


def timing_table(records: Sequence[RunRecord]) -> pd.DataFrame:
    """Wall time of each method's pruning phase (prepare, its own training phases, surgery) and of
    the common fine-tuning, mean ± std over seeds and targets, with the phases it consists of."""
    rows = []
    for method, rs in group(records, "method").items():
        method = method[0]
        phases: dict[str, list[float]] = {}
        for r in rs:
            for k, v in r.phase_time_s.items():
                if k != "finetune":
                    phases.setdefault(k, []).append(v)
        prune_t = [r.pruning_time_s for r in rs]
        rows.append({"method": method, "what ran": record_name(rs[0]), "runs": len(rs),
                     "pruning phase (s)": fmt_mean_std(prune_t, 1), "pruning_time_mean": mean_std(prune_t)[0],
                     "of which": "; ".join(f"{k} {sum(v) / len(v):.1f}" for k, v in phases.items()),
                     "fine-tuning (s)": fmt_mean_std([r.finetune_time_s for r in rs], 1)})
    return pd.DataFrame(rows).sort_values("pruning_time_mean", ascending=False, ignore_index=True)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def rounding_pairs(plain: Sequence[RunRecord], rounded: Sequence[RunRecord]
                   ) -> list[tuple[str, float, list[RunRecord], list[RunRecord]]]:
    """``(method, target, runs as pruned, runs with rounded widths)`` for every method and target
    with both, highest target first."""
    base = _arms(plain)
    return [(method, target, base[(method, target)], rs)
            for (method, target), rs in sorted(_arms(rounded).items(), key=lambda kv: (-kv[0][1], kv[0][0]))
            if base.get((method, target))]


def rounding_table(plain: Sequence[RunRecord], rounded: Sequence[RunRecord]) -> pd.DataFrame:
    """Per method and target with rounded runs: MACs kept, measured latency and test accuracy as
    pruned → with the widths rounded (means over seeds), and the accuracy cost of the rounding
    (rounded minus as pruned, paired by seed, 95% t-interval)."""
    rows = []
    for _, target, ps, rs in rounding_pairs(plain, rounded):
        row: dict[str, Any] = {"MACs target": target, "what ran": record_name(ps[0]),
                               "rounded to": rs[0].tags["round_to"], "n": len(rs),
                               "MACs kept": f"{_mean([r.macs_keep for r in ps]):.3f} → "
                                            f"{_mean([r.macs_keep for r in rs]):.3f}"}
        for b in measured_batches([*ps, *rs]):
            lp, lr = _latencies(ps, b), _latencies(rs, b)
            row[f"latency bs{b} (ms)"] = f"{_mean(lp):.2f} → {_mean(lr):.2f}" if lp and lr else "not measured"
            row[f"latency bs{b} change"] = f"{_mean(lr) / _mean(lp) - 1:+.1%}" if lp and lr else "—"
        row["test acc (%)"] = f"{fmt_mean_std([r.test_acc for r in ps])} → {fmt_mean_std([r.test_acc for r in rs])}"
        ga, gb = records_by_seed(rs), records_by_seed(ps)
        iv = paired_difference(ga, gb) if set(ga) & set(gb) else None
        row["rounded − as pruned (points, 95% CI)"] = "—" if iv is None else str(iv)
        rows.append(row)
    return pd.DataFrame(rows)


# -- figures -------------------------------------------------------------------------------------------


def rounding_figure(plain: Sequence[RunRecord], rounded: Sequence[RunRecord], batch_size: int, title: str) -> Any:
    """Test accuracy vs measured latency of each method as pruned (filled) and with its widths
    rounded (hollow, arrow from the first): means over seeds."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    colors = plt.get_cmap("tab20").colors
    drawn, multiple = 0, None
    for _, target, ps, rs in sorted(rounding_pairs(plain, rounded), key=lambda p: (p[1], p[0])):
        points = []
        for group_ in (ps, rs):
            lat = _latencies(group_, batch_size)
            points.append((_mean(lat), _mean([r.test_acc for r in group_])) if lat else None)
        if None in points:
            continue
        (x0, y0), (x1, y1) = points
        color = colors[drawn % len(colors)]
        multiple = rs[0].tags["round_to"]
        ax.plot([x0], [y0], "o", color=color, label=f"{record_name(ps[0])} @ {target:g}")
        ax.plot([x1], [y1], "o", mfc="none", color=color)
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0), arrowprops={"arrowstyle": "->", "color": color, "lw": 1})
        drawn += 1
    if not drawn:
        ax.text(0.5, 0.5, "no rounded runs with a measured latency", ha="center", va="center", transform=ax.transAxes)
    else:
        handles, labels = ax.get_legend_handles_labels()
        handles += [Line2D([], [], ls="none", marker="o", color="grey"),
                    Line2D([], [], ls="none", marker="o", mfc="none", color="grey")]
        labels += ["as pruned (filled)", f"widths rounded down to multiples of {multiple} (hollow)"]
        ax.legend(handles, labels, fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.set(xlabel=f"measured latency, batch {batch_size} (ms, median; mean over seeds)",
           ylabel="test accuracy (%, mean over seeds)", title=title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig



def dense_groups(ctx: StudyContext, model_key: str) -> list[tuple[str, int, bool]]:
    """(group id, dense width, residual stream?) of the dense network, in model order."""
    from prunerep.pruning.groups import find_groups

    dense = ctx.load_dense(model_key)
    return [(g.id, g.channels, g.residual) for g in find_groups(dense, torch.zeros(ctx.example_shape))]


def widths_figure(records: Sequence[RunRecord], groups: Sequence[tuple[str, int, bool]], target: float,
                  title: str = "") -> Any:
    """Kept fraction of every channel group (columns, model order) per method (rows) at one MACs
    target: mean over seeds, the mean kept channels written in each cell."""
    import matplotlib.pyplot as plt
    import numpy as np

    arms = {m: rs for (m, t), rs in _arms(records).items() if t == float(target)}
    names = sorted(arms, key=lambda m: record_name(arms[m][0]))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.42 * len(groups) + 3), 0.42 * max(len(names), 1) + 2.2))
    if not names:
        ax.text(0.5, 0.5, "no runs at this target", ha="center", va="center", transform=ax.transAxes)
        return fig
    kept = np.array([[sum(r.widths.get(g, 0) for r in arms[m]) / len(arms[m]) for g, _, _ in groups] for m in names])
    dense = np.array([c for _, c, _ in groups], dtype=float)
    im = ax.imshow(kept / dense, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    for i in range(len(names)):
        for j in range(len(groups)):
            ax.text(j, i, f"{kept[i, j]:.0f}", ha="center", va="center", fontsize=6,
                    color="white" if kept[i, j] / dense[j] < 0.5 else "black")
    ax.set_xticks(range(len(groups)), [f"{g} ({c}, stream)" if res else f"{g} ({c})" for g, c, res in groups],
                  rotation=90, fontsize=6)
    ax.set_yticks(range(len(names)), [record_name(arms[m][0]) for m in names], fontsize=7)
    fig.colorbar(im, ax=ax, label="kept fraction of the group (mean over seeds)")
    ax.set_title(title or f"kept channels per group at {target:.0%} MACs (cell: mean kept channels; "
                          "column: group, dense width)", fontsize=9)
    fig.tight_layout()
    return fig


def timing_figure(records: Sequence[RunRecord], title: str) -> Any:
    """Pruning-phase wall time per method (mean over its runs, ± std where n > 1)."""
    import matplotlib.pyplot as plt

    table = timing_table(records)
    fig, ax = plt.subplots(figsize=(7, 0.35 * max(len(table), 1) + 1.6))
    for i, method in enumerate(table["method"]):
        times = [r.pruning_time_s for r in records if r.method == method]
        mean, std, n = mean_std(times)
        ax.barh(i, mean, color="C0", xerr=std if n > 1 and std is not None else None, capsize=3)
    ax.set_yticks(range(len(table)), list(table["what ran"]), fontsize=7)
    ax.invert_yaxis()
    ax.set(xlabel="wall time before fine-tuning (s): prepare + the method's phases + surgery", title=title)
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return fig


# -- captions, metrics, deviations ------------------------------------------------------------------


def _epochs(x: float) -> str:
    return f"{x:g} epoch" + ("" if x == 1 else "s")


def recipe_text(cfg: CompareConfig, specs: Sequence[RunSpec]) -> str:
    """The steps every method got, read from the specs that ran."""
    ft = [s.finetune for s in specs if s.finetune is not None]
    if not ft:
        return "no fine-tuning"
    f0 = ft[0]
    return (f"fine-tuning: {f0.max_steps} SGD steps at batch {cfg.batch_size}, lr {f0.lr:g} ({f0.schedule}), "
            f"the {cfg.select.replace('_', ' ')} epoch's weights")


def budget_text(cfg: CompareConfig, ctx: StudyContext, specs: Sequence[RunSpec] = ()) -> str:
    """One sentence on the budget behind every number (for captions)."""
    n_train = len(ctx.splits.train)
    steps = max(1, round(cfg.prune_epochs * (n_train // cfg.batch_size)))
    if cfg.prune_max_steps is not None:
        steps = min(steps, cfg.prune_max_steps)
    return (f"Profile `{ctx.profile}`: {cfg.model} dense checkpoint, MACs targets "
            f"{', '.join(f'{t:g}' for t in cfg.targets)}, seeds {list(cfg.seeds)}; each method's own training "
            f"phases {steps} SGD steps ({_epochs(cfg.prune_epochs)} of the training split); "
            f"{recipe_text(cfg, specs)}, the same for every method; {describe_splits(ctx)}.")


def metrics(cfg: CompareConfig, records: Sequence[RunRecord], table: pd.DataFrame, skipped: Sequence[Skipped],
            dense: Mapping[str, Any], profile: str) -> dict[str, Any]:
    """Headline scalars for DVC: mean test accuracy per method and target, paired differences."""
    out: dict[str, Any] = {"profile": profile, "model": cfg.model, "runs": len(records),
                           "not_run": sum(1 for s in skipped if s.status != NOT_IMPLEMENTED),
                           "not_implemented": sorted({s.method for s in skipped if s.status == NOT_IMPLEMENTED}),
                           "dense/test_acc": dense.get("test_acc")}
    for _, row in table.iterrows():
        key = f"{row['method']}@{row['MACs target']:g}"
        out[f"{key}/test_acc_mean"] = row["test_acc_mean"]
        for b in BASELINES:
            iv = row.get(f"_{b}")
            if isinstance(iv, Interval):
                out[f"{key}/minus_{b}"] = iv.mean
    return out


def rounding_metrics(plain: Sequence[RunRecord], rounded: Sequence[RunRecord], batch_size: int) -> dict[str, Any]:
    """Headline scalars of the rounded arms: mean test accuracy and measured latency (at
    `batch_size`) relative to the same method as pruned."""
    out: dict[str, Any] = {}
    for method, target, ps, rs in rounding_pairs(plain, rounded):
        key = f"{method}@{target:g}+r{rs[0].tags['round_to']}"
        out[f"{key}/test_acc_mean"] = _mean([r.test_acc for r in rs])
        lp, lr = _latencies(ps, batch_size), _latencies(rs, batch_size)
        if lp and lr:
            out[f"{key}/latency_bs{batch_size}_vs_plain"] = _mean(lr) / _mean(lp)
    return out


def deviations_table(cfg: CompareConfig, records: Sequence[RunRecord], specs: Sequence[RunSpec]) -> pd.DataFrame:
    """Where this comparison departs from each paper's own protocol, and why; measured effects
    computed from the runs."""
    greg = [r for r in records if r.method == "greg"]
    greg_effect = ("—" if not greg else "MACs kept at each target: " + ", ".join(
        f"{t:g}: {sum(r.macs_keep for r in rs) / len(rs):.3f}" for (_, t), rs in _arms(greg).items()))
    times = timing_table(records) if records else pd.DataFrame()
    time_effect = ("—" if times.empty else "pruning phase, mean s: " + ", ".join(
        f"{m} {t:.0f}" for m, t in zip(times["method"], times["pruning_time_mean"], strict=True)))
    ft_text = recipe_text(cfg, specs)
    bilevel_steps = ", ".join(sorted({f"{s.method} {_epochs(round(s.finetune.epochs, 2))}" for s in specs
                                      if s.finetune is not None and is_bilevel(s.method)})) or "none ran"
    rows = [
        ("each paper's own network, checkpoint and training budget",
         f"one dense checkpoint ({cfg.model}), the same MACs targets and {ft_text}, for every method",
         "separates each method from its training budget: only the pruning procedure differs", "—"),
        ("each method's own pruning-phase length",
         f"every method's own training phases last {_epochs(cfg.prune_epochs)} of the training split in SGD steps; "
         "GReg's phase is its penalty schedule (compare.hyper.greg.reg), sized to about the same steps",
         "equal compute for the procedures that train; one-shot methods have no phase", time_effect),
        ("bi-level methods train their weights on the training split minus their held-out part",
         f"held out: {cfg.arch_fraction:.0%} of the training split (the runner's split); they get the same number "
         f"of weight steps (more passes over their part) in their search and fine-tuning (fine-tuning over their "
         f"part: {bilevel_steps})",
         "equal steps; the runner fine-tunes a bi-level method on the part its weights trained on", "—"),
        ("GReg's per-layer ratios (the paper's --stage_pr)",
         "the largest uniform ratio over the groups GReg prunes (inside residual branches only) whose exact MACs "
         "are within each target",
         "drives every method to the same MACs; GReg never prunes the residual streams, so it reaches a target "
         "with less structural freedom than the methods that do", greg_effect),
        ("W-Gates under a latency constraint (LPNet on the target device)",
         "W-Gates in its FLOPs mode (the journal version's switch) at the same MACs targets" + (
             "; and in its latency mode (LPNet fitted on this device's latency dataset) at the "
             f"{cfg.latency_arm.statistic} measured latency of L1's networks at each MACs target, paired with L1 "
             "(latency_arm)" if cfg.latency_arm.enabled else ""),
         "a MACs comparison" + ("; and one at equal measured latency, W-Gates' native budget" if cfg.latency_arm.enabled
                                else "; the latency-constrained runs are the wgates stage's"),
         "the table at equal measured latency" if cfg.latency_arm.enabled else "—"),
        ("GDP without fine-tuning, training on after its target is met",
         "GDP stops when its hard network meets the target (after_target: stop, where set in compare.hyper.gdp), "
         "then the common fine-tuning",
         "equal training after the channels are fixed (the gdp stage's verdict protocol)", "—"),
        ("model selection", f"one rule for every method: {cfg.select.replace('_', ' ')} of the fine-tuning on the "
         "validation split (held out of the training set); the test split is only reported",
         "no method is chosen on test data", "—"),
        ("widths rounded for the hardware (round_to; none of the papers rounds)",
         (f"every method also ran with its pruned widths rounded down to multiples of {cfg.round_to} at "
          f"{', '.join(f'{t:g}' for t in cfg.rounded_targets)} of the MACs: the runner removes the channels with the "
          "smallest filter L1 norm after the method (W-Gates rounds with its own gate scores first); the plain "
          "arms' tables are unaffected" if cfg.rounded_targets else "not run at this profile (round_to: null)"),
         "on these CPUs widths that are multiples of 8 run faster per MAC (benchmarks/latency.py): the rounded "
         "arms measure how much latency that buys and what it costs in accuracy; rounding down lowers the MACs "
         "below the target", "the rounding table" if cfg.rounded_targets else "—"),
        ("full data, the papers' epochs", "class-stratified subsets and a few hundred SGD steps per phase at the "
         "default profile (the paper profile: full data, long schedules)",
         "CPU budget: absolute accuracies are far below the papers'; the methods are compared on equal terms", "—"),
    ]
    return pd.DataFrame(rows, columns=["the papers'", "ours", "why", "measured effect"])


def verdict_caption() -> str:
    return ("Each method minus L1 and minus random channels at the same MACs target, test accuracy (points), "
            "paired by seed, with the verdict of \"more accurate than the baseline\" (difference > 0). "
            f"**Verdict rule.** {VERDICT_RULE}")


def hyper_table(records: Sequence[RunRecord]) -> pd.DataFrame:
    """Each method's hyper-parameters as run, where they differ from the method's defaults (one row
    per method; its runs differ only in the ``seed`` field; runs.jsonl holds them all)."""
    from prunerep.methods.base import build_hyper

    rows = []
    for (method,), rs in group(records, "method").items():
        ran = dict(rs[0].hyper)
        ran.pop("seed", None)
        try:
            default = to_dict(build_hyper(method))
        except ValueError:
            default = {}
        changed = _changed(ran, default)
        rows.append({"method": method, "what ran": record_name(rs[0]),
                     "changed from the method's defaults": ", ".join(f"{k}={_short(v)}" for k, v in changed) or "none"})
    return pd.DataFrame(rows, columns=["method", "what ran", "changed from the method's defaults"])


def _changed(ran: Mapping[str, Any], default: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in ran.items():
        d = default.get(k)
        if isinstance(v, Mapping) and isinstance(d, Mapping):
            out += _changed(v, d, f"{prefix}{k}.")
        elif v != d:
            out.append((f"{prefix}{k}", v))
    return out


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
