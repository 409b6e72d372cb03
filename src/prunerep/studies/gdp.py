"""GDP's study: the runs that test its claims, and its tables and figures (notebooks/gdp.ipynb).

The algorithm is :mod:`prunerep.methods.gdp`; this module plans GDP and its baselines at equal
MACs from the same dense checkpoint, under three training protocols that separate the method
from its training budget, plus the sampling-gate control, and turns the run records into the
paper's tables, figures and claim evidence.

Protocols (claim 3; every fine-tuning reports its last epoch, ``SELECT``):

* **paper protocol** (equal total epochs): GDP trains its gates for ``epochs``, meets its target
  part-way and trains the frozen gated network to the end, no fine-tuning; L1 prunes at once
  and fine-tunes for ``epochs`` from a fresh schedule; slimming splits ``epochs`` into sparse
  training and fine-tuning.
* **equal post-pruning training** (the verdict): GDP stops when it meets its target, then gets
  exactly the fine-tuning L1 gets (``epochs``, same schedule); slimming too, after its sparse
  phase. Each method's pruning procedure differs; what follows it does not.
* **equal post-target steps**: L1 fine-tuned for as many steps as GDP (paper protocol, same
  seed) trained after meeting its target.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import torch
from torch import nn

from prunerep.config import register_section, to_dict
from prunerep.data import SubsetConfig
from prunerep.engine import OptimConfig, RuntimeConfig
from prunerep.methods.base import Budget, MethodContext, build_hyper
from prunerep.methods.gdp import GDP, GDPHyper, _default_train, curve_roughness, polarization_stats
from prunerep.models.segmentation import SegmentationLogits, SegmentationNet
from prunerep.reporting.ledger import Evidence, load_claims
from prunerep.reporting.stats import (
    Interval,
    fmt_mean_std,
    mean_interval,
    mean_std,
    paired_difference,
)
from prunerep.runner import LatencySettings, RunRecord, RunSpec, StudyContext
from prunerep.studies.base import arms as _arms
from prunerep.studies.base import describe_splits, group, records_by_seed
from prunerep.studies.base import mean_of as _mean

#: The one epoch-selection rule of every fine-tuning in this study: the last weights. GDP's
#: paper protocol has no fine-tuning, so its reported network is its last one; choosing the best
#: validation epoch for the baselines only would give them a selection GDP does not get.
SELECT: Literal["last"] = "last"

#: What each run variant is, as tables and figures name it.
VARIANTS: dict[str, str] = {
    "gdp": "GDP, no fine-tuning (paper protocol)",
    "gdp+ft": "GDP stopped at target + fine-tuning",
    "l1": "L1-norm + fine-tuning",
    "l1-post": "L1-norm + fine-tuning for GDP's post-target steps",
    "slimming": "slimming: sparse training + fine-tuning, equal total epochs",
    "slimming+ft": "slimming: sparse training + the full fine-tuning",
    "random": "random channels + fine-tuning",
    "gdp-sampling": "sampling gates, no fine-tuning (control, ours)",
}


@dataclass(frozen=True)
class Comparison:
    """GDP arm minus baseline arm at the same model, MACs budget and seed, under one protocol."""

    protocol: str
    gdp: str                     # variant of the GDP arm
    baseline: str                # variant of the baseline arm
    claim: str | None = None     # claims.yaml id judged on this comparison (None: reported only)


EQUAL_POST = "equal post-pruning training"
PAPER = "paper protocol (equal total epochs)"
POST_STEPS = "equal post-target steps"

#: Every comparison the study reports; the verdicts of claim 3 come from the equal-post-pruning pair.
COMPARISONS: tuple[Comparison, ...] = (
    Comparison(EQUAL_POST, "gdp+ft", "l1", "gdp.acc_vs_l1"),
    Comparison(EQUAL_POST, "gdp+ft", "slimming+ft", "gdp.acc_vs_slimming"),
    Comparison(POST_STEPS, "gdp", "l1-post"),
    Comparison(PAPER, "gdp", "l1"),
    Comparison(PAPER, "gdp", "slimming"),
    Comparison(PAPER, "gdp", "random"),
)


@dataclass(frozen=True)
class StabilityConfig:
    """The stability comparison: GDP vs the sampling control on one model and budget."""

    model: str = "resnet56"
    macs_keep: float = 0.5
    seeds: list[int] = field(default_factory=lambda: [0])


@dataclass(frozen=True)
class ControlsConfig:
    """Where the protocol controls of claim 3 run (its verdicts come from here).

    At each budget and seed: GDP (paper protocol), GDP stopped at target + fine-tuning, L1 +
    fine-tuning, L1 + fine-tuning for GDP's post-target steps, and slimming + the full fine-tuning
    (when ``slimming`` is a baseline). No seeds: no controls.
    """

    model: str = "resnet56"
    budgets: list[float] = field(default_factory=lambda: [0.5])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])


@dataclass(frozen=True)
class LargeScaleConfig:
    """A large-scale setting of the paper (runnable where its dataset exists)."""

    name: str                                     # e.g. imagenet_resnet50
    model: str                                    # registry name, e.g. tv_resnet50
    task: Literal["classification", "segmentation"] = "classification"
    dataset: str = "imagenet"                     # imagenet | voc2012 (what the user's loaders read)
    input_size: int = 224                         # training crop (traces groups and MACs)
    in_channels: int = 3                          # image channels of that dataset
    num_classes: int = 1000
    macs_keep: float = 0.5
    method: GDPHyper = field(default_factory=GDPHyper)   # method.train: epochs, lr, batch size


@register_section("gdp")
@dataclass(frozen=True)
class GDPConfig:
    """The `gdp` section of params.yaml (notebooks/gdp.ipynb)."""

    models: list[str] = field(default_factory=lambda: ["resnet56"])  # keys of pretrain.models to prune
    # pretrain.models key -> fractions of the dense MACs to keep (one row of results per budget)
    budgets: dict[str, list[float]] = field(default_factory=lambda: {"resnet56": [0.5]})
    seeds: list[int] = field(default_factory=lambda: [0])  # seeds of the paper-protocol grid
    workers: int = 1                                       # independent runs side by side
    subset: SubsetConfig = SubsetConfig()                  # class-stratified data subsets (None: all)
    batch_size: int = 128
    epochs: float = 3.0          # GDP's gated training = every method's fine-tuning, in epochs
    optim: OptimConfig = field(default_factory=_default_train)  # lr/schedule of every phase (epochs set per method)
    gdp: GDPHyper = field(default_factory=GDPHyper)  # GDP's knobs; gdp.train.epochs is set to `epochs`
    baselines: list[str] = field(default_factory=lambda: ["l1", "slimming"])
    baseline_scope: Literal["all", "internal"] = "all"
    slimming_sparsity: float = 1e-4   # s of network slimming (its paper's CIFAR value)
    slimming_fraction: float = 0.5    # sparse training of slimming, as a share of `epochs`
    slimming_min_keep: float = 0.0    # per-group floor of slimming's global threshold (paper: none)
    controls: ControlsConfig = ControlsConfig()
    stability: StabilityConfig = StabilityConfig()
    large_scale: list[LargeScaleConfig] = field(default_factory=list)
    runtime: RuntimeConfig = RuntimeConfig(progress=False)
    latency: LatencySettings = LatencySettings()

    def __post_init__(self) -> None:
        if not self.models:
            raise ValueError("models: give at least one key of pretrain.models, e.g. [resnet56]")
        if not self.seeds:
            raise ValueError("seeds: give at least one seed of the paper-protocol grid, e.g. [0, 1]")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.epochs <= 0:
            raise ValueError(f"epochs must be > 0 (GDP's gated training and every fine-tuning), got {self.epochs}")
        for key in self.models:
            values = self.budgets.get(key)
            if not values:
                raise ValueError(f"budgets.{key}: missing; give the MACs fractions to keep for model {key!r}")
            if not all(0 < b < 1 for b in values):
                raise ValueError(f"budgets.{key}: give MACs fractions in (0, 1), got {values}")
        if not all(0 < b < 1 for b in self.controls.budgets):
            raise ValueError(f"controls.budgets: give MACs fractions in (0, 1), got {self.controls.budgets}")
        if not 0 < self.stability.macs_keep < 1:
            raise ValueError(f"stability.macs_keep: give a MACs fraction in (0, 1), got {self.stability.macs_keep}")
        if not 0 < self.slimming_fraction < 1:
            raise ValueError("slimming_fraction must be in (0, 1)")
        unknown = set(self.baselines) - {"l1", "slimming", "random"}
        if unknown:
            raise ValueError(f"baselines: unknown {sorted(unknown)}; choose from l1, slimming, random")

    def pretrain_keys(self) -> dict[str, str]:
        """Key path (in this section) -> the pretrain.models key it names (checked by `config check`)."""
        keys = {f"models[{i}]": key for i, key in enumerate(self.models)}
        if self.controls.seeds:
            keys["controls.model"] = self.controls.model
        if self.stability.seeds:
            keys["stability.model"] = self.stability.model
        return keys

    @property
    def all_models(self) -> list[str]:
        """Every pretrain.models key a run of the section prunes (grid, controls, stability)."""
        keys = list(self.models)
        if self.controls.seeds:
            keys.append(self.controls.model)
        if self.stability.seeds:
            keys.append(self.stability.model)
        return list(dict.fromkeys(keys))


# -- specs -----------------------------------------------------------------------------------


def gdp_hyper(cfg: GDPConfig, **overrides: Any) -> GDPHyper:
    """GDP's hyper-parameters from the section: its training phase = `optim` for `epochs`."""
    return dataclasses.replace(cfg.gdp, train=dataclasses.replace(cfg.optim, epochs=cfg.epochs,
                                                                  batch_size=cfg.batch_size), **overrides)


def run_spec(cfg: GDPConfig, variant: str, model: str, budget: float, seed: int, *,
             post_steps: int | None = None) -> RunSpec:
    """The run of one variant (see `VARIANTS`) at one model, MACs budget and seed.

    Every run starts from the same dense checkpoint; L1, random and slimming prune the same
    groups as GDP when ``baseline_scope: all`` (residual streams too). Every fine-tuning uses
    `optim` with a fresh schedule and reports its last epoch (`SELECT`).

    Args:
        post_steps: for ``l1-post`` only: the fine-tuning steps (GDP's post-target steps of the
            same seed; 0 reports the pruned network without fine-tuning).
    """
    if variant not in VARIANTS:
        raise KeyError(f"unknown variant {variant!r}; variants: {sorted(VARIANTS)}")
    if (variant == "l1-post") != (post_steps is not None):
        raise ValueError("post_steps is given for variant 'l1-post' and for no other")
    ft = dataclasses.replace(cfg.optim, epochs=cfg.epochs, batch_size=cfg.batch_size)
    sparse = dataclasses.replace(ft, epochs=cfg.slimming_fraction * cfg.epochs)
    hyper: Any
    finetune: OptimConfig | None = ft
    if variant == "gdp":
        method, hyper, finetune = "gdp", gdp_hyper(cfg), None
    elif variant == "gdp-sampling":
        method, hyper, finetune = "gdp", gdp_hyper(cfg, gate="sampling"), None
    elif variant == "gdp+ft":
        method, hyper = "gdp", gdp_hyper(cfg, after_target="stop")
    else:
        method = variant.split("-")[0].removesuffix("+ft")
        fields: dict[str, Any] = {"scope": cfg.baseline_scope, "seed": seed}
        if method == "slimming":
            fields.update(sparsity=cfg.slimming_sparsity, min_keep=cfg.slimming_min_keep, sparse_train=sparse)
            if variant == "slimming":   # equal total epochs: the sparse phase comes out of the fine-tuning
                finetune = dataclasses.replace(ft, epochs=cfg.epochs - sparse.epochs)
        if variant == "l1-post":
            # same epochs as GDP's phase, capped at GDP's post-target steps: a fresh schedule over them
            finetune = dataclasses.replace(ft, max_steps=post_steps) if post_steps else None
        hyper = dataclasses.replace(build_hyper(method), **fields)
    return RunSpec(method=method, hyper=hyper, finetune=finetune, select=SELECT, budget=Budget(macs_keep=budget),
                   seed=seed, batch_size=cfg.batch_size, runtime=cfg.runtime, model=model,
                   label=f"{variant}@{budget:g}", tags={"variant": variant, "target": budget})


def _grid(cfg: GDPConfig) -> list[tuple[str, str, float, int]]:
    """(variant, model, budget, seed) of the first wave, each once, cheap control runs last."""
    keys: list[tuple[str, str, float, int]] = []
    for model in cfg.models:
        for budget in cfg.budgets[model]:
            for seed in cfg.seeds:
                keys += [(v, model, budget, seed) for v in ("gdp", *cfg.baselines)]
    st = cfg.stability
    for seed in st.seeds:
        keys += [("gdp", st.model, st.macs_keep, seed), ("gdp-sampling", st.model, st.macs_keep, seed)]
    c = cfg.controls
    extra = ["gdp", "gdp+ft"] + [v for v, b in (("l1", "l1"), ("slimming+ft", "slimming")) if b in cfg.baselines]
    for budget in c.budgets:
        for seed in c.seeds:
            keys += [(v, c.model, budget, seed) for v in extra]
    return list(dict.fromkeys(keys))


def plan(cfg: GDPConfig) -> list[RunSpec]:
    """The first wave: the paper-protocol grid, the stability pair and the controls (all but
    ``l1-post``, which needs GDP's outcome: `post_target_specs`)."""
    return [run_spec(cfg, *key) for key in _grid(cfg)]


def post_pruning_steps(record: RunRecord) -> int:
    """Steps the network trained after its channels were fixed: GDP's steps after it met its
    target (0 if the target was forced at the end), plus any fine-tuning."""
    steps = 0
    gated = record.histories.get("gdp")
    reached = record.summary.get("reached_step")
    if gated and reached is not None and not record.summary.get("forced_removals"):
        steps += int(gated[-1]["step"]) - int(reached)
    fine = record.histories.get("finetune")
    if fine:
        steps += int(fine[-1]["step"])
    return steps


def post_target_specs(cfg: GDPConfig, records: Sequence[RunRecord]) -> list[RunSpec]:
    """The second wave: ``l1-post`` for every GDP paper-protocol run of the controls."""
    if "l1" not in cfg.baselines:
        return []
    c = cfg.controls
    specs = []
    for r in records:
        if r.tags["variant"] == "gdp" and r.model == c.model and r.target in c.budgets and r.seed in c.seeds:
            specs.append(run_spec(cfg, "l1-post", r.model, r.target, r.seed, post_steps=post_pruning_steps(r)))
    return specs


def run(cfg: GDPConfig, study: StudyContext) -> list[RunRecord]:
    """Every run of the section, in two waves (the second sized by the first's GDP runs)."""
    from prunerep.runner import execute

    records = execute(plan(cfg), study)
    return records + execute(post_target_specs(cfg, records), study)


# -- large-scale settings (ImageNet, Pascal VOC) -------------------------------------------------


def build_large_scale(entry: LargeScaleConfig, *, input_size: int | None = None,
                      model: nn.Module | None = None, device: str | torch.device = "cpu"
                      ) -> tuple[nn.Module, GDP, MethodContext]:
    """The torchvision model of `entry` with GDP's gates attached.

    Args:
        entry: The setting.
        input_size: Spatial size of the example input used to trace the groups and costs
            (default: ``entry.input_size``; tests use a tiny one).
        model: A model to use instead of building ``entry.model`` (e.g. with pretrained weights).
        device: Where the model lives.

    Returns:
        ``(model, method, ctx)``: the gated model, the GDP hook and its context, ready for
        :func:`prunerep.engine.fit` with ``hooks=[method]`` and then ``method.finalize``.
    """
    from prunerep.models import get_model
    from prunerep.pruning.groups import find_groups
    from prunerep.pruning.soft_cost import SoftCostModel

    if model is None:
        kwargs = {"num_classes": entry.num_classes}
        model = get_model(entry.model, **kwargs)
    if entry.task == "segmentation" and not isinstance(model, SegmentationLogits | SegmentationNet):   # dict output
        model = SegmentationLogits(model)
    model = model.to(device)
    size = input_size or entry.input_size
    example = torch.zeros(1, entry.in_channels, size, size, device=device)
    method = GDP(**to_dict(entry.method))
    groups = find_groups(model, example)
    prunable = list(groups.select(method.prunable))
    ctx = MethodContext(groups=groups, prunable=prunable, example_input=example,
                        budget=Budget(macs_keep=entry.macs_keep),
                        cost_model=SoftCostModel.from_model(model, example, groups))
    model = method.prepare(model, ctx)
    return model, method, ctx


def run_large_scale(entry: LargeScaleConfig, train_loader: Any, val_loader: Any, *,
                    model: nn.Module | None = None, checkpoint_dir: str | Path | None = None,
                    runtime: RuntimeConfig | None = None, run_key: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Train GDP on a large-scale setting with the shared loop and return the pruned model.

    The loaders must yield ``(images, targets)`` on the model's device and have ``set_epoch``
    (see :class:`prunerep.engine.trainer.BatchLoader`), e.g. a torchvision ImageNet/VOC dataset
    wrapped by the user; this project does not ship those datasets.

    `run_key` names what the training checkpoints in `checkpoint_dir` may resume (a killed run of the
    same configuration); default: the setting's name.

    Returns:
        ``(pruned model, method summary)``.
    """
    from prunerep.engine import fit, pick_device

    runtime = runtime or RuntimeConfig()
    device = pick_device(runtime.device)
    model, method, ctx = build_large_scale(entry, model=model, device=device)
    for name, optim in method.phases():
        fit(model, train_loader, optim=optim, runtime=runtime, hooks=[method], val_loader=val_loader,
            checkpoint_dir=Path(checkpoint_dir) / name if checkpoint_dir else None,
            run_key=f"{run_key or f'gdp-large/{entry.name}'}/{name}", desc=f"gdp {entry.name}")
    model = method.finalize(model, ctx)
    return model, method.summary()


def published_dense_for(entry: LargeScaleConfig, published: Mapping[str, Any], where: str = "gdp.large_scale") -> str:
    """The ``pretrain.published`` key whose weights fit `entry`: the same torchvision network
    (``tv_deeplabv3_resnet50`` and the tensor-returning ``deeplabv3_resnet50`` share one) on the
    same dataset; exactly one must exist."""
    from prunerep.config import ConfigError
    from prunerep.models.published import torchvision_fn

    try:
        network = torchvision_fn(entry.model)
    except ValueError as err:
        raise ConfigError(f"{where}.model: {err}") from None
    keys = [k for k, pub in published.items() if pub.dataset == entry.dataset and torchvision_fn(pub.name) == network]
    if len(keys) != 1:
        found = f"several ({sorted(keys)}); keep one" if keys else "none"
        raise ConfigError(f"{where}: pretrain.published entries with torchvision's {network!r} weights on "
                          f"{entry.dataset!r}: {found}. GDP prunes a pretrained network; e.g. "
                          f"pretrain.published.<key>: {{name: {entry.model.replace('tv_deeplabv3', 'deeplabv3')}, weights: <torchvision member>, "
                          f"dataset: {entry.dataset}}}")
    return keys[0]


def run_large_scale_setting(name: str, params: Mapping[str, Any], *, profile: str | None = None, seed: int = 0,
                            out_root: str | Path = "results", artifacts: str | Path = "artifacts") -> dict[str, Any]:
    """Run `gdp.large_scale` entry `name` on the pipeline's dataset, from its published dense weights.

    What the paper's ImageNet and VOC rows need beyond the CIFAR grid: ``data`` pointed at the
    dataset (``data.dataset`` = the entry's) and a ``pretrain.published`` entry of the same network
    on it (`published_dense_for`; e.g. DeepLabV3-ResNet50 with torchvision's VOC weights). GDP trains with the shared loop on the
    streamed splits (under torchrun each rank its slice of every global batch), then the network
    is pruned and scored on the test split: top-1 for classification, mIoU for segmentation.
    Rank 0 writes ``<artifacts>/gdp/large_scale/<name>-s<seed>.pt`` and
    ``<out_root>/gdp/large_scale/<name>-s<seed>.json``; training checkpoints under
    ``<artifacts>/gdp/large_scale/<name>-s<seed>/`` resume a killed run of the same configuration.

    Raises:
        ConfigError: no such entry, no published weights for it, or another dataset than the pipeline's.
    """
    from prunerep.config import ConfigError, active_profile, check_params, resolve_section
    from prunerep.engine import pick_device
    from prunerep.engine.device import is_main_process, seed_everything
    from prunerep.engine.distributed import per_rank_batch, shard
    from prunerep.engine.evaluate import evaluate, segmentation_miou
    from prunerep.io import write_json
    from prunerep.models.checkpoint import save_model
    from prunerep.models.published import published_weights
    from prunerep.provenance import file_digest, run_code_fingerprint, run_key
    from prunerep.pruning.cost import count_cost
    from prunerep.runner.execute import load_dense

    check_params(params)
    profile = profile or active_profile(params)
    cfg: GDPConfig = resolve_section("gdp", params, profile=profile)
    data = resolve_section("data", params, profile=profile)
    pretrain = resolve_section("pretrain", params, profile=profile)
    entries = {e.name: e for e in cfg.large_scale}
    if name not in entries:
        raise ConfigError(f"gdp.large_scale: no entry named {name!r} at profile {profile!r}; entries: {sorted(entries)}")
    entry = entries[name]
    where = f"gdp.large_scale[{list(entries).index(name)}]"
    if entry.dataset != data.dataset:
        raise ConfigError(f"{where}.dataset is {entry.dataset!r} but data.dataset is {data.dataset!r}: point `data` "
                          f"at that dataset (docs/datasets.md) to run this setting")
    dense_key = published_dense_for(entry, pretrain.published, where)
    study = StudyContext(slug="gdp", profile=profile, data=data, subset=cfg.subset,
                         expected_arch=pretrain.dense_names(), published=pretrain.published)
    dense_path = study.dense_path(dense_key)   # written from the published weights once, read once
    dense = load_dense(dense_path, dense_key, study.expected_arch.get(dense_key), published=True)
    splits = study.splits
    runtime = cfg.runtime
    device = pick_device(runtime.device)
    train_cfg = entry.method.train
    train = splits.loader(splits.train, per_rank_batch(train_cfg.batch_size, f"{where}.method.train.batch_size"),
                          train=True, device=device, channels_last=runtime.channels_last, seed=seed,
                          shard=shard())
    val, test = (splits.loader(split, train_cfg.batch_size, train=False, device=device) for split in (splits.val, splits.test))
    example = (1, entry.in_channels, entry.input_size, entry.input_size)
    dense_cost = count_cost(dense, example)
    seed_everything(seed)
    directory = Path(artifacts) / "gdp" / "large_scale"
    run_name = f"{name}-s{seed}"
    # a killed run resumes only into the same setting, data, seed and dense weights
    identity = run_key(entry, data, cfg.subset, runtime, {"seed": seed, "dense": file_digest(dense_path)},
                       code=run_code_fingerprint(GDP.__module__))
    model, summary = run_large_scale(entry, train, val, model=dense, checkpoint_dir=directory / run_name,
                                     runtime=runtime, run_key=f"gdp-large/{run_name}/{identity}")
    segmentation = entry.task == "segmentation"
    scores = (segmentation_miou(model, test, entry.num_classes) if segmentation else evaluate(model, test))
    cost = count_cost(model, example)
    result = {"setting": name, "profile": profile, "dataset": data.dataset, "seed": seed, "dense": dense_key,
              "dense_weights": published_weights(pretrain.published[dense_key]).name, "task": entry.task,
              "macs_keep_target": entry.macs_keep, "input": list(example[1:]),
              "dense_macs": dense_cost.macs, "dense_params": dense_cost.params, "macs": cost.macs, "params": cost.params,
              "test": ({"miou": scores["miou"], "pixel_acc": scores["pixel_acc"]} if segmentation
                       else {"top1": scores["acc"]}),
              "method_summary": {k: summary[k] for k in ("target_macs_ratio", "reached", "reached_step", "lam_at_target",
                                                         "forced_removals", "kill_effect") if k in summary}}
    if is_main_process():
        save_model(model.cpu(), directory / f"{run_name}.pt",
                   meta={"setting": name, "dense": dense_key, "seed": seed, "macs": cost.macs})
        write_json(result, Path(out_root) / "gdp" / "large_scale" / f"{run_name}.json")
    return result


def large_scale_main(argv: Sequence[str] | None = None) -> int:
    """``python -m prunerep.studies gdp_large <setting> [--params FILE] [--profile NAME] [--seed N] [--out DIR]``
    (under ``torchrun ... -m prunerep.studies gdp_large ...`` on several processes)."""
    import argparse
    import sys

    from prunerep.config import ConfigError, read_params
    from prunerep.engine.device import init_distributed, is_distributed

    p = argparse.ArgumentParser(prog="python -m prunerep.studies gdp_large",
                                description="Run one of GDP's large-scale settings (gdp.large_scale) on the "
                                            "pipeline's dataset from its published dense weights.")
    p.add_argument("setting", help="name of a gdp.large_scale entry, e.g. voc_deeplabv3_resnet50")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--profile", default=None, help="default: the active profile of the params file")
    p.add_argument("--seed", type=int, default=0, help="seed of the data order and of the gates' init")
    p.add_argument("--out", default="results", help="results folder (<out>/gdp/large_scale/<setting>-s<seed>.json)")
    args = p.parse_args(argv)
    init_distributed()
    try:
        result = run_large_scale_setting(args.setting, read_params(args.params), profile=args.profile,
                                         seed=args.seed, out_root=args.out)
    except (ConfigError, RuntimeError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        if is_distributed():
            import torch.distributed as dist

            dist.barrier()   # rank 0 may still be writing the network and the result
            dist.destroy_process_group()
    score = ", ".join(f"{k} {v:.2f}" for k, v in result["test"].items())
    print(f"[gdp_large {args.setting}] MACs {result['macs'] / result['dense_macs']:.3f} of dense, test {score}")
    return 0


def ratio_label(macs_keep: float) -> str:
    """``0.5 -> "50% MACs (2.00x)"``."""
    return f"{macs_keep:.0%} MACs ({1 / macs_keep:.2f}x)"


# -- tables ----------------------------------------------------------------------------------------


def floor_suffix(variant: str, records: Sequence[RunRecord] = ()) -> str:
    """``" (10% per-layer floor, ours)"`` for a slimming variant whose runs (`records`) had our
    per-layer floor on the global threshold (not network slimming's); "" otherwise."""
    if not variant.startswith("slimming"):
        return ""
    floors = sorted({float(r.hyper.get("min_keep", 0.0) or 0.0) for r in records if r.tags.get("variant") == variant}
                    - {0.0})
    return f" ({'/'.join(f'{x:.0%}' for x in floors)} per-layer floor, ours)" if floors else ""


def variant_name(variant: str, records: Sequence[RunRecord] = ()) -> str:
    """What a variant is, as tables and figures name it (with `floor_suffix`)."""
    return VARIANTS.get(variant, variant) + floor_suffix(variant, records)


def runs_table(records: Sequence[RunRecord]) -> pd.DataFrame:
    """One row per run: cost, accuracy, post-pruning training, time, measured latency."""
    rows = []
    for r in records:
        row = {"model": r.model, "variant": r.tags["variant"], "target MACs": r.target, "seed": r.seed,
               "MACs kept": r.macs_keep, "params kept": r.params_keep, "test acc (%)": r.test_acc,
               "val acc (%)": r.val_acc, "test acc before fine-tuning (%)": r.test_acc_before_finetune,
               "post-pruning steps": post_pruning_steps(r), "selection": r.selection,
               "pruning time (s)": r.pruning_time_s, "fine-tuning time (s)": r.finetune_time_s,
               "reached step": r.summary.get("reached_step"), "forced removals": r.summary.get("forced_removals")}
        for bs in (1, 64):
            if r.latency_ms(bs) is not None:
                row[f"latency bs{bs} (ms)"] = r.latency_ms(bs)
        rows.append(row)
    return pd.DataFrame(rows)


def summary_table(records: Sequence[RunRecord]) -> pd.DataFrame:
    """Mean ± std over seeds per model, budget and variant (n = number of seeds)."""
    rows = []
    for (model, target, variant), rs in group(records, "model", "target", "variant").items():
        accs = [r.test_acc for r in rs]
        mean, std, n = mean_std(accs)
        lat = [r.latency_ms(1) for r in rs if r.latency_ms(1) is not None]
        rows.append({"model": model, "MACs target": target, "variant": variant, "what ran": variant_name(variant, rs),
                     "n": n, "MACs kept (fraction of dense)": sum(r.macs_keep for r in rs) / n,
                     "post-pruning steps": sum(post_pruning_steps(r) for r in rs) / n,
                     "test acc (%)": fmt_mean_std(accs), "test_acc_mean": mean, "test_acc_std": std,
                     "latency bs1 (ms)": sum(lat) / len(lat) if lat else None})
    return pd.DataFrame(rows).sort_values(["model", "MACs target", "variant"], ascending=[True, False, True],
                                          ignore_index=True)


def claim3_table(records: Sequence[RunRecord]) -> pd.DataFrame:
    """Every comparison of `COMPARISONS` that ran: GDP arm minus baseline arm, paired by seed.

    ``post-pruning steps``: mean over seeds of each arm's training after its channels were
    fixed (`post_pruning_steps`), so a reader sees which pairs are equal in it. ``verdict pair``:
    the comparison whose interval the claim's verdict uses.
    """
    arms = _arms(records)
    rows = []
    for model, target in dict.fromkeys((m, t) for m, t, _ in arms):
        for c in COMPARISONS:
            a, b = arms.get((model, target, c.gdp)), arms.get((model, target, c.baseline))
            if not a or not b:
                continue
            ga, gb = records_by_seed(a), records_by_seed(b)
            if not set(ga) & set(gb):
                continue
            diff = paired_difference(ga, gb)
            rows.append({"protocol": c.protocol, "model": model, "MACs target": target,
                         "GDP arm": variant_name(c.gdp, a), "baseline arm": variant_name(c.baseline, b), "_floor": floor_suffix(c.baseline, b),
                         "baseline": c.baseline.split("-")[0].removesuffix("+ft"), "n": diff.n,
                         "post-pruning steps, GDP / baseline":
                             f"{_mean(post_pruning_steps(r) for r in a):.0f} / "
                             f"{_mean(post_pruning_steps(r) for r in b):.0f}",
                         "GDP (%)": fmt_mean_std(list(ga.values())),
                         "baseline (%)": fmt_mean_std(list(gb.values())),
                         "GDP − baseline (points, 95% CI)": str(diff), "verdict pair": c.claim is not None,
                         "claim": c.claim, "_interval": diff})
    return pd.DataFrame(rows)


def claim3_display(claim3: pd.DataFrame) -> pd.DataFrame:
    """`claim3_table` as the notebook shows it: no internal columns, the verdict pair as yes/no."""
    out = claim3.drop(columns=["_interval", "_floor", "claim", "baseline"], errors="ignore")
    if "verdict pair" in out:
        out["verdict pair"] = out["verdict pair"].map({True: "yes", False: "no"})
    return out


def claim1_table(records: Sequence[RunRecord]) -> pd.DataFrame:
    """Per gated run: the gate values at the end of GDP's training and the effect of its kills.

    ``zero``, ``(0, m)``: shares of exact zeros and of gates strictly between 0 and m (for the
    sampling control: keep probabilities); ``kill steps``: threshold steps that set gates to 0;
    ``largest gate killed``: the largest value set to zero; ``logit change by one kill step``:
    the largest change of any logit of a fixed training batch (eval mode) caused by one step's
    kills of channels the network sees only through their gates, and of channels an option-A
    shortcut copies (that copy follows the 0/1 keep pattern: such a kill is a cut).
    """
    rows = []
    for r in records:
        if r.tags["variant"] not in ("gdp", "gdp-sampling"):
            continue
        s = r.summary
        st, kill = s.get("final_stats", {}), s.get("kill_effect", {})
        rows.append({"model": r.model, "variant": r.tags["variant"], "MACs target": r.target, "seed": r.seed,
                     "zero": st.get("zero"), "(0, 0.01)": st.get("between_0_0.01"),
                     "(0, 0.1)": st.get("between_0_0.1"), "(0, 0.5)": st.get("between_0_0.5"),
                     "smallest non-zero": st.get("min_nonzero"),
                     "reached step": s.get("reached_step"),
                     "steps": s["trace"][-1]["step"] if s.get("trace") else None,
                     "kill steps": kill.get("events"), "channels killed": kill.get("channels"),
                     "of which shortcut-copied": kill.get("copied_channels"),
                     "largest gate killed": kill.get("max_killed_value"),
                     "logit change by one kill step, gated channels": kill.get("gated_logit_change"),
                     "logit change by one kill step, shortcut-copied channels": kill.get("copied_logit_change")})
    return pd.DataFrame(rows)


def claim2_table(records: Sequence[RunRecord]) -> pd.DataFrame:
    """Surgery without damage, per GDP run: the gated network (end of training) vs the pruned one.

    Validation accuracy of the gated network (last epoch of the ``gdp`` phase, eval mode) against
    that of the physically pruned network on the same split, and the largest logit change on
    the probe batch (absolute and relative to the largest logit).
    """
    rows = []
    for r in records:
        if not r.tags["variant"].startswith("gdp"):
            continue
        hist = r.histories.get("gdp") or [{}]
        ex = r.summary.get("exactness", {})
        gated = hist[-1].get("val_acc", float("nan"))
        pruned = r.val_acc_before_finetune
        rows.append({"model": r.model, "variant": r.tags["variant"], "MACs target": r.target, "seed": r.seed,
                     "val acc gated (%)": gated, "val acc pruned (%)": pruned, "change (points)": pruned - gated,
                     "largest logit change": ex.get("max_abs_diff"),
                     "relative to the largest logit": ex.get("max_rel_diff"),
                     "argmax agreement": ex.get("argmax_agree"),
                     "forced removals": r.summary.get("forced_removals")})
    return pd.DataFrame(rows)


def stability_table(records: Sequence[RunRecord], model: str, target: float) -> pd.DataFrame:
    """GDP vs the sampling control at one model/budget: smoothness of the training curves.

    ``loss roughness``: per-step noise of the training loss (:func:`curve_roughness`) over the
    whole phase; ``largest val acc drop``: the largest fall of validation accuracy from one epoch
    to the next; ``largest one-step MACs drop``: the largest fall of the hard network's MACs
    (fraction of dense) in one step (a whole group dying at once shows here); plus the test
    accuracy.
    """
    rows = []
    for r in records:
        if r.model != model or r.target != target or r.tags["variant"] not in ("gdp", "gdp-sampling"):
            continue
        trace = r.summary.get("trace", [])
        losses = [t["loss"] for t in trace]
        val = [h["val_acc"] for h in r.histories.get("gdp", []) if "val_acc" in h]
        drops = [a - b for a, b in itertools.pairwise(val)]
        hard = [t["hard_macs_ratio"] for t in trace]
        macs_drops = [a - b for a, b in itertools.pairwise(hard)]
        tail = losses[-max(1, len(losses) // 10):]
        rows.append({"variant": r.tags["variant"], "seed": r.seed, "steps": len(losses),
                     "loss roughness": curve_roughness(losses),
                     "loss, mean of last 10% of steps": sum(tail) / len(tail) if tail else float("nan"),
                     "largest val acc drop (points)": max(drops) if drops else float("nan"),
                     "largest one-step MACs drop": max(macs_drops) if macs_drops else float("nan"),
                     "reached step": r.summary.get("reached_step"), "test acc (%)": r.test_acc})
    return pd.DataFrame(rows)


#: Short tick labels of the protocols (gain plot).
PROTOCOL_TICKS: dict[str, str] = {EQUAL_POST: "equal post-pruning\ntraining (verdict)",
                                  POST_STEPS: "equal post-target\nsteps", PAPER: "paper protocol\n(equal epochs)"}
BASELINE_NAMES: dict[str, str] = {"l1": "L1", "slimming": "slimming", "random": "random"}


def gain_rows(claim3: pd.DataFrame, model: str, target: float) -> list[dict[str, Any]]:
    """Rows for `gain_plot`: every comparison at one model/budget, x = protocol, label = baseline."""
    out = []
    for _, row in claim3[(claim3["model"] == model) & (claim3["MACs target"] == target)].iterrows():
        iv: Interval = row["_interval"]
        out.append({"protocol": PROTOCOL_TICKS.get(row["protocol"], row["protocol"]), "mean": iv.mean, "lo": iv.lo,
                    "hi": iv.hi, "n": iv.n, "label": f"GDP − {BASELINE_NAMES.get(row['baseline'], row['baseline'])}{row['_floor']}"})
    return out


# -- claims ----------------------------------------------------------------------------------------


def _sci(x: float | None) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.1e}"


def _worst(kills: Sequence[Mapping[str, Any]], key: str) -> float:
    values = [float(k[key]) for k in kills if k.get(key) is not None and not math.isnan(float(k[key]))]
    return max(values, default=float("nan"))


def kill_sentence(records: Sequence[RunRecord]) -> str:
    """The largest effect of GDP's threshold kills over its paper-protocol runs, in words."""
    kills = [r.summary.get("kill_effect", {}) for r in records if r.tags["variant"] == "gdp"]
    kills = [k for k in kills if k.get("events")]
    if not kills:
        return "no threshold kill was measured"
    copied, total = sum(k.get("copied_channels", 0) for k in kills), sum(k["channels"] for k in kills)
    return (f"largest change of any logit of a fixed training batch caused by one step's kills: "
            f"{_sci(_worst(kills, 'gated_logit_change'))} for channels seen only through their gates; "
            f"{_sci(_worst(kills, 'copied_logit_change'))} for residual-stream channels that option-A shortcuts "
            f"copy ({copied} of {total} killed channels; the copy keeps a channel at full weight until its gate is "
            f"exactly 0, so such a kill is a cut); largest gate killed {_sci(_worst(kills, 'max_killed_value'))}; "
            f"{sum(k['events'] for k in kills)} kill steps in {len(kills)} runs")


def evidence(cfg: GDPConfig, records: Sequence[RunRecord], budget: str) -> list[Evidence]:
    """The claims' evidence, by the one verdict rule (references/claims/gdp.yaml ids gdp.*)."""
    claims = load_claims()
    out: list[Evidence] = []
    gated = [r for r in records if r.tags["variant"] == "gdp"]
    between = [float(r.summary["final_stats"]["between_0_0.1"]) for r in gated
               if r.summary.get("final_stats", {}).get("between_0_0.1") is not None]
    note = "exact zeros are set by the threshold; " + kill_sentence(records)
    out.append(Evidence.judge(
        claims["gdp.polarization"], mean_interval(between) if between else None,
        test=f"share of GDP's gates strictly inside (0, 0.1) at the end of training, every GDP run (paper "
             f"protocol); exact zeros come from the prox step followed by a hard threshold (g < "
             f"{cfg.gdp.zero_threshold:g} set to 0)", ours=fmt_mean_std(between, 4), budget=budget, note=note))
    exact = [r for r in records if r.tags["variant"] in ("gdp", "gdp+ft")]
    change = [float(r.summary["exactness"]["max_abs_diff"]) for r in exact
              if r.summary.get("exactness", {}).get("max_abs_diff") is not None]
    iv = mean_interval(change) if change else None
    out.append(Evidence.judge(
        claims["gdp.no_damage"], iv,
        test="largest logit change on a probe batch from surgery (zero gates removed, others folded), every "
             "GDP run", ours=(f"{iv.mean:.1e} (max {max(change):.1e}, n={iv.n})" if iv else None), budget=budget))
    c3 = claim3_table(records)
    for claim_id in ("gdp.acc_vs_l1", "gdp.acc_vs_slimming"):
        rows = c3[c3["claim"] == claim_id] if len(c3) else c3
        if not len(rows):
            out.append(Evidence.judge(claims[claim_id], None, test="GDP − baseline at equal MACs and equal "
                                      "post-pruning training", budget=budget))
            continue
        base = rows.iloc[0]["baseline"]
        others = c3[(c3["baseline"] == base) & ~c3["verdict pair"]]
        other_text = "; ".join(f"{o['protocol']}, {o['model']} at {o['MACs target']:.0%}: "
                               f"{o['GDP − baseline (points, 95% CI)']}" for _, o in others.iterrows())
        for _, row in rows.iterrows():
            out.append(Evidence.judge(
                claims[claim_id], row["_interval"],
                test=f"{row['GDP arm']} − {row['baseline arm']} ({epochs_text(cfg.epochs)} each, last epoch), test "
                     f"accuracy (points), {row['model']} at {row['MACs target']:.0%} MACs, paired by seed",
                budget=budget,
                note=(f"equal post-pruning training; the controls run on {cfg.controls.model}, since the claim is "
                      f"not about one network. Other protocols (not judged): {other_text or 'none run'}")))
    st = cfg.stability
    stab = stability_table(records, st.model, st.macs_keep)
    if len(stab) and {"gdp", "gdp-sampling"} <= set(stab["variant"]):
        by = {m: dict(zip(g["seed"], g["largest one-step MACs drop"], strict=True)) for m, g in stab.groupby("variant")}
        diff = paired_difference(by["gdp"], by["gdp-sampling"])
        out.append(Evidence.judge(claims["gdp.stability"], diff,
                                  test=f"largest one-step drop of the hard network's MACs (fraction of dense), GDP − "
                                       f"sampling gates, {st.model} at {st.macs_keep:.0%} MACs, paired by seed",
                                  budget=budget))
    else:
        out.append(Evidence.judge(claims["gdp.stability"], None, test="GDP vs sampling gates", budget=budget))
    return out


def epochs_text(epochs: float) -> str:
    """``1 -> "1 epoch"``, ``2.5 -> "2.5 epochs"``."""
    return f"{epochs:g} epoch" + ("" if epochs == 1 else "s")


def budget_text(cfg: GDPConfig, ctx: StudyContext) -> str:
    """One sentence on the compute budget behind every number (for captions and the ledger)."""
    c = cfg.controls
    controls = (f"; controls on {c.model} at {', '.join(f'{b:.0%}' for b in c.budgets)} MACs, seeds {list(c.seeds)}"
                if c.seeds else "")
    return (f"Profile `{ctx.profile}`: GDP trains its gates for {epochs_text(cfg.epochs)}; every fine-tuning is "
            f"{epochs_text(cfg.epochs)} from a fresh schedule and reports its last epoch (slimming first trains "
            f"sparse for {epochs_text(cfg.slimming_fraction * cfg.epochs)}); {describe_splits(ctx)}; grid seeds "
            f"{list(cfg.seeds)}{controls}.")


# -- figures -------------------------------------------------------------------------------------


def seed_rows(records: Sequence[RunRecord], model: str) -> pd.DataFrame:
    """One row per run of `model` (for `mean_spread_plot`): MACs kept (%), test accuracy, variant."""
    return pd.DataFrame([{"MACs kept (% of dense)": 100 * r.macs_keep, "test accuracy (%)": r.test_acc,
                          "method": variant_name(r.tags["variant"], [r]), "seed": r.seed}
                         for r in records if r.model == model])


def gate_histograms_figure(record: RunRecord, bins: int = 40):
    """Histograms of all gate values at the snapshots through training, exact zeros in their own bin.

    The red bar left of the axis counts gates that are exactly 0 (removed); the blue histogram
    counts the non-zero values on (0, 1], so a gate at 1e-4 shows in the first blue bin, not
    among the zeros.
    """
    import matplotlib.pyplot as plt

    snaps = record.summary["snapshots"]
    fig, axes = plt.subplots(1, len(snaps), figsize=(2.7 * len(snaps), 2.8), sharey=True, squeeze=False)
    zero_x, zero_w = -0.08, 0.05
    for ax, snap in zip(axes[0], snaps, strict=True):
        v = torch.tensor(snap["values"], dtype=torch.float64)
        stats = polarization_stats(v)
        zeros = int((v == 0).sum())
        if zeros:
            ax.bar([zero_x], [zeros], width=zero_w, color="C3")
        ax.hist(v[v != 0].numpy(), bins=bins, range=(0.0, 1.0), color="C0")
        ax.set_yscale("log")
        ax.set_xlim(zero_x - zero_w, 1.02)
        ax.set_xticks([zero_x, 0.25, 0.5, 0.75, 1.0], ["=0", "0.25", "0.5", "0.75", "1"])
        ax.set(title=f"step {snap['step']}", xlabel="gate value")
        ax.text(0.55, 0.95, f"exact 0: {stats['zero']:.0%}\nin (0, 0.1): {stats['between_0_0.1']:.1%}",
                transform=ax.transAxes, ha="center", va="top", fontsize=8)
    axes[0][0].set_ylabel("gates (log scale)")
    fig.suptitle(f"{record.model}, {variant_name(record.tags['variant'], [record])}, {record.target:.0%} MACs, seed "
                 f"{record.seed}: red = exact zeros, blue = non-zero gates", fontsize=9)
    fig.tight_layout()
    return fig


def widths_figure(records: Sequence[RunRecord], dense_widths: Mapping[str, int],
                  residual: Iterable[str] = ()):
    """Kept channels per group (model order) for several runs of one model/budget/seed.

    Groups are named after their first producer; residual streams are marked "(stream)".
    """
    import matplotlib.pyplot as plt

    ids = list(dense_widths)
    residual = set(residual)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.28 * len(ids)), 3.6))
    n = len(records) + 1
    width = 0.8 / n
    xs = torch.arange(len(ids), dtype=torch.float64)
    ax.bar((xs - 0.4 + width / 2).numpy(), [dense_widths[g] for g in ids], width, color="0.8", label="dense")
    for i, r in enumerate(records, start=1):
        ax.bar((xs - 0.4 + width / 2 + i * width).numpy(), [r.widths.get(g, 0) for g in ids], width,
               label=f"{r.tags['variant']} ({r.macs_keep:.0%} MACs)")
    ax.set_xticks(xs.numpy(), [f"{g} (stream)" if g in residual else g for g in ids], rotation=90, fontsize=6)
    ax.set(ylabel="channels", title="kept width per channel group")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def stability_figure(records: Sequence[RunRecord]):
    """Per-step training loss and hard-MACs ratio, and per-epoch validation accuracy, of GDP
    (blue) and the sampling control (red), one line style per seed."""
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_macs, ax_val) = plt.subplots(1, 3, figsize=(14, 3.6))
    seeds = sorted({r.seed for r in records})
    styles = ["-", "--", ":", "-."]
    for r in records:
        color = "C0" if r.tags["variant"] == "gdp" else "C3"
        ls = styles[seeds.index(r.seed) % len(styles)]
        trace = r.summary["trace"]
        label = f"{'GDP' if r.tags['variant'] == 'gdp' else 'sampling'}, seed {r.seed}"
        ax_loss.plot([t["step"] for t in trace], [t["loss"] for t in trace], color=color, lw=0.7, ls=ls, label=label)
        ax_macs.plot([t["step"] for t in trace], [t["hard_macs_ratio"] for t in trace], color=color, ls=ls,
                     label=label)
        hist = r.histories.get("gdp", [])
        ax_val.plot([h["epoch"] for h in hist], [h.get("val_acc") for h in hist], color=color, marker="o", ls=ls,
                    label=label)
    ax_loss.set(xlabel="step", ylabel="training loss (per batch)")
    ax_macs.set(xlabel="step", ylabel="MACs of the hard network / dense")
    ax_val.set(xlabel="epoch", ylabel="val accuracy (%), gated net")
    for ax in (ax_loss, ax_macs, ax_val):
        ax.legend(fontsize=7)
    if records:
        r0 = records[0]
        fig.suptitle(f"{r0.model} at {r0.target:.0%} MACs, seeds {seeds}: GDP vs sampling gates", fontsize=10)
    fig.tight_layout()
    return fig


# -- notebook summaries -------------------------------------------------------------------------


def large_scale_table(cfg: GDPConfig) -> pd.DataFrame:
    """The configured large-scale settings (run only where their datasets exist)."""
    return pd.DataFrame([{"name": e.name, "model": e.model, "task": e.task, "dataset": e.dataset,
                          "input size": e.input_size, "MACs target": e.macs_keep, "epochs": e.method.train.epochs}
                         for e in cfg.large_scale],
                        columns=["name", "model", "task", "dataset", "input size", "MACs target", "epochs"])


def _paired(records: Sequence[RunRecord], a: str, b: str) -> str:
    """`a` minus `b` test accuracy, paired by seed, at every model/budget where both ran."""
    out = []
    for (model, target), rs in group(records, "model", "target").items():
        arms = group(rs, "variant")
        if (a,) in arms and (b,) in arms:
            ga, gb = records_by_seed(arms[(a,)]), records_by_seed(arms[(b,)])
            if set(ga) & set(gb):
                out.append(f"{model} at {target:.0%}: {paired_difference(ga, gb)}")
    return "; ".join(out) or "not run"


def deviations_table(cfg: GDPConfig, records: Sequence[RunRecord], claim3: pd.DataFrame) -> pd.DataFrame:
    """Assumptions and deviations: the paper's | ours | why | measured effect (from the runs)."""
    gated = [r for r in records if r.tags["variant"] == "gdp"]
    kills = [k for k in (r.summary.get("kill_effect", {}) for r in gated) if k.get("events")]
    gated_effect = (f"largest logit change by one kill step: {_sci(_worst(kills, 'gated_logit_change'))}"
                    if kills else "—")
    copied_effect = (f"largest logit change by one kill step: {_sci(_worst(kills, 'copied_logit_change'))}"
                     if kills else "—")
    reached = [(r.summary.get("reached_step"), r.summary["trace"][-1]["step"]) for r in gated
               if r.summary.get("trace")]
    hit = [a / b for a, b in reached if a is not None]
    forced = sum(1 for r in gated if r.summary.get("forced_removals"))
    schedule = (f"target met after {min(hit):.0%} to {max(hit):.0%} of the steps; {forced} of {len(gated)} runs "
                "forced" if hit else "—")
    hp = cfg.gdp
    rows = [
        ("smoothed-L0 gates (form not read)", f"g = θ²/(θ² + ε), ε = {hp.eps:g}, initial g = {hp.gate_init:g}",
         "zero iff θ = 0; its slope vanishes at 0 and for large θ, which makes values bimodal", "—"),
        ("\"principled optimization\" (details not read)",
         "per-gate majorize-minimize proximal step of the linearised regulariser after every SGD step",
         "an explicit gradient step of this stiff penalty oscillates around 0", "—"),
        ("gates decrease smoothly to exact zero",
         f"prox step, then a hard threshold: g < {hp.zero_threshold:g} is set to 0 and stays 0",
         "a smooth penalty never reaches 0", gated_effect),
        ("g1 (Fig. 2): one gate per residual stream, used twice",
         "the stream's gate scales it at every conv reader; option-A shortcut copies follow its 0/1 keep pattern",
         "a copy has no weights to absorb a non-zero gate: this keeps the gated network equal to the pruned one",
         copied_effect),
        ("polarization regulariser (form not read)",
         f"Zhuang et al. (NeurIPS 2020) t·mean(g) − mean|g − mean(g)|, weight {hp.polarization:g}, t = "
         f"{hp.polarization_t:g}", "a published regulariser with polarized minimisers", "—"),
        ("bilinear FLOPs term, alternating relaxation",
         f"exact bilinear MACs of the soft widths; the fixed factor alternates every {hp.alternate_every} step(s)",
         "linear in every gate once one factor is fixed, so the prox step applies", "—"),
        ("schedule (not read)",
         f"λ rises geometrically {hp.lam_init:g} → {hp.lam_max:g} over {epochs_text(hp.ramp_epochs)} until the hard "
         f"network meets the target; then the zero set is frozen and training goes on",
         "the scale at which gates die is not known beforehand", schedule),
        ("training epochs and learning rates (not read)",
         f"{epochs_text(cfg.epochs)} for GDP and for every fine-tuning, the same SGD settings; last epoch reported",
         "CPU budget; one selection rule for every method",
         f"GDP + fine-tuning − GDP without: {_paired(records, 'gdp+ft', 'gdp')}"),
        ("L1 and slimming as reported in the literature",
         f"the same groups as GDP (scope `{cfg.baseline_scope}`), from the same checkpoint; slimming's threshold "
         f"keeps at least {cfg.slimming_min_keep:.0%} of each group",
         "a short sparse phase does not separate the BN scales; without a floor the global threshold can "
         "empty a layer", "—"),
        ("no sampling-gate baseline specified",
         "Bernoulli masks with learnable keep probabilities, GDP's regulariser as a loss, the same schedule; a "
         f"channel dies when p < {hp.sampling_kill:g}; deterministic once the target is met",
         "the two differ in their gates only", "stability table"),
        ("the paper's networks (ResNet-56, VGG-16)",
         f"protocol controls of claim 3 and the stability pair on {cfg.controls.model} / {cfg.stability.model}",
         "the claims are not about one network; extra seeds are cheaper there", "—"),
        ("the full training set, long training",
         "class-stratified subsets, a few epochs, briefly trained dense checkpoints",
         "CPU budget: absolute accuracies are far below the paper's; methods are compared on equal terms", "—"),
        ("ImageNet, Pascal VOC (DeepLabV3+)", "configured (torchvision DeepLabV3), tested on tiny inputs, not run",
         "datasets not shipped; GPU budgets", "—"),
    ]
    return pd.DataFrame(rows, columns=["the paper's", "ours", "why", "measured effect"])


def metrics(cfg: GDPConfig, records: Sequence[RunRecord], claim3: pd.DataFrame,
            dense: Mapping[str, Mapping[str, Any]], profile: str) -> dict[str, Any]:
    """Headline scalars for DVC metrics: mean test accuracy per arm, the verdict pairs, claims 1-2."""
    out: dict[str, Any] = {"profile": profile, "runs": len(records)}
    for (model, target, variant), rs in group(records, "model", "target", "variant").items():
        out[f"{model}/{variant}@{target:g}/test_acc_mean"] = mean_std([r.test_acc for r in rs])[0]
    for m, d in dense.items():
        out[f"dense/{m}/test_acc"] = d["test_acc"]
    for _, row in claim3[claim3["verdict pair"]].iterrows() if len(claim3) else []:
        iv = row["_interval"]
        out[f"claim3/{row['model']}@{row['MACs target']:g}/gdp_minus_{row['baseline']}"] = iv.mean
    exact = [r.summary.get("exactness", {}).get("max_abs_diff") for r in records
             if r.tags["variant"] in ("gdp", "gdp+ft")]
    exact = [e for e in exact if e is not None]
    out["claim2/max_abs_logit_change"] = max(exact) if exact else None
    kills = [k for k in (r.summary.get("kill_effect", {}) for r in records if r.tags["variant"] == "gdp")
             if k.get("events")]
    for key in ("gated_logit_change", "copied_logit_change"):
        worst = _worst(kills, key)
        out[f"claim1/max_{key}_per_kill_step"] = None if math.isnan(worst) else worst
    return out
