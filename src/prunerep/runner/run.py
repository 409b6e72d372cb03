"""One pruning run, identical for every method: prepare → phases → surgery → fine-tune → report.

    result = run_pruning(RunSpec(method="l1", budget=Budget(macs_keep=0.5), ...), dense, splits)

The example input that traces groups and counts MACs has the data's shape (channels, size),
never an assumed one.

The dense model is copied, never modified. Weights train on the training split; bi-level methods
get held-out batches carved out of the training split (`arch_fraction`); checkpoints are
selected on the validation split; the test split is evaluated once at the end. Every phase
checkpoints per epoch under `checkpoint_dir` and resumes after a kill.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from prunerep.data.describe import example_shape
from prunerep.engine import OptimConfig, RuntimeConfig, evaluate, fit, pick_device, seed_everything
from prunerep.engine.device import set_threads
from prunerep.engine.distributed import per_rank_batch, shard
from prunerep.methods.base import Budget, MethodContext, build_hyper, get_method
from prunerep.methods.importance import filter_l1
from prunerep.pruning.cost import count_cost
from prunerep.pruning.groups import find_groups
from prunerep.pruning.rounding import round_pruned_widths
from prunerep.pruning.soft_cost import SoftCostModel, group_widths, verify_soft_cost


@dataclass(frozen=True)
class RunSpec:
    """Everything that defines one pruning run (a row of a results table)."""

    method: str
    budget: Budget
    hyper: Any = None                  # the method's hyper dataclass (a mapping is validated into one)
    finetune: OptimConfig | None = None                    # None: report without fine-tuning
    select: Literal["best_val", "last"] = "best_val"       # which fine-tuning epoch's weights are reported
    seed: int = 0
    batch_size: int = 128
    eval_batch_size: int = 512
    arch_fraction: float = 0.1        # share of the training split held out for bi-level methods
    runtime: RuntimeConfig = RuntimeConfig()
    label: str = ""                   # row label in tables: says what ran
    model: str = ""                   # pretrain.models key of the dense checkpoint (set by studies)
    tags: Mapping[str, Any] = field(default_factory=dict)  # the study's coordinates of the run

    def __post_init__(self) -> None:
        # Typed once, here: the runner and the record see the validated dataclass, never a dict.
        object.__setattr__(self, "hyper", build_hyper(self.method, self.hyper))
        object.__setattr__(self, "tags", dict(self.tags))


@dataclass
class RunResult:
    """What one run returns in its process; `execute` turns it into a `RunRecord` (which derives
    the table columns)."""

    label: str
    method: str
    seed: int
    budget: str
    dense_macs: int
    dense_params: int
    macs: int
    params: int
    val_acc_before_finetune: float
    test_acc_before_finetune: float
    val_acc: float
    test_acc: float
    widths: dict[str, int]
    phase_time_s: dict[str, float]
    histories: dict[str, list[dict[str, Any]]]
    method_summary: dict[str, Any]
    model: nn.Module | None = None
    selection: str = "best_val"

    @property
    def macs_keep(self) -> float:
        return self.macs / self.dense_macs


def held_out_size(n_train: int, arch_fraction: float, batch_size: int) -> int:
    """Training images a bi-level method holds out for its architecture parameters (at least one
    batch); it trains its weights on the rest."""
    return max(batch_size, round(arch_fraction * n_train))


def round_to_budget(model: nn.Module, example: torch.Tensor, budget: Budget, prunable: Any) -> dict[str, int]:
    """After the method's surgery: round the widths of its groups down to ``budget.round_to``
    (the same rule after every method; a method may have rounded with its own scores first)."""
    if not budget.round_to:
        return {}
    return round_pruned_widths(model, example, budget.round_to, filter_l1, {g.id for g in prunable})


def with_rounding(summary: dict[str, Any], budget: Budget, removed: Mapping[str, int]) -> dict[str, Any]:
    """The method's summary, plus the channels the rounding removed per group (if it ran)."""
    return {**summary, "rounding_removed": dict(removed)} if budget.round_to else summary


def run_pruning(spec: RunSpec, dense: nn.Module, splits: Any, *, checkpoint_dir: str | Path | None = None,
                run_key: str = "", keep_model: bool = True) -> RunResult:
    """Prune a copy of `dense` with `spec` and report accuracy, cost and timings."""
    set_threads(spec.runtime.threads)
    device = pick_device(spec.runtime.device)
    seed_everything(spec.seed)
    model = copy.deepcopy(dense).to(device).train()
    method = get_method(spec.method, spec.hyper)

    shape = example_shape(splits)
    example = torch.zeros(shape, device=device)
    groups = find_groups(model, example)
    prunable = [g for g in groups.select(method.prunable)]
    cost_model = SoftCostModel.from_model(model, example, groups)
    dense_cost = count_cost(model, shape)
    ctx = MethodContext(groups=groups, prunable=prunable, example_input=example, budget=spec.budget,
                        cost_model=cost_model)

    train_set, arch_set = splits.train, None
    if method.bilevel:
        g = torch.Generator().manual_seed(spec.seed)
        order = torch.randperm(len(splits.train), generator=g)
        n_arch = held_out_size(len(order), spec.arch_fraction, spec.batch_size)
        arch_set, train_set = splits.train.subset(order[:n_arch]), splits.train.subset(order[n_arch:])

    def loader(ds: Any, train: bool, bs: int) -> Any:
        # under torchrun each rank takes its slice of every (global) training batch; every rank
        # evaluates the whole validation and test split
        return splits.loader(ds, per_rank_batch(bs, "RunSpec.batch_size") if train else bs, train=train,
                             device=device, channels_last=spec.runtime.channels_last, seed=spec.seed,
                             shard=shard() if train else None)

    train_loader = loader(train_set, True, spec.batch_size)
    val_loader = loader(splits.val, False, spec.eval_batch_size)
    test_loader = loader(splits.test, False, spec.eval_batch_size)
    ctx.val_loader = val_loader
    arch_loader = loader(arch_set, True, spec.batch_size) if arch_set is not None else None

    ckpt = Path(checkpoint_dir) if checkpoint_dir else None
    times: dict[str, float] = {}
    histories: dict[str, list[dict[str, Any]]] = {}
    t0 = time.perf_counter()
    model = method.prepare(model, ctx)
    times["prepare"] = time.perf_counter() - t0
    for name, optim in method.phases():
        t0 = time.perf_counter()
        res = fit(model, train_loader, optim=optim, runtime=spec.runtime, hooks=[method], val_loader=val_loader,
                  arch_loader=arch_loader, arch_optim=method.arch_optimizer_config(),
                  checkpoint_dir=ckpt / name if ckpt else None,
                  run_key=f"{run_key}/{name}", desc=f"{spec.label or spec.method} {name}")
        # + the earlier attempts' time up to the checkpoint this one resumed from (0 if none):
        # timing claims need the whole phase, not the part after the last kill
        times[name] = time.perf_counter() - t0 + res.elapsed_before_resume_s
        histories[name] = res.history
    t0 = time.perf_counter()
    model = method.finalize(model, ctx)
    rounded = round_to_budget(model, example, spec.budget, prunable)
    times["surgery"] = time.perf_counter() - t0
    before_val = evaluate(model, val_loader)["acc"]
    before_test = evaluate(model, test_loader)["acc"]
    if spec.finetune is not None:
        t0 = time.perf_counter()
        res = fit(model, train_loader, optim=spec.finetune, runtime=spec.runtime, hooks=method.finetune_hooks(),
                  val_loader=val_loader,
                  checkpoint_dir=ckpt / "finetune" if ckpt else None, run_key=f"{run_key}/finetune",
                  select=spec.select, desc=f"{spec.label or spec.method} finetune")
        times["finetune"] = time.perf_counter() - t0 + res.elapsed_before_resume_s
        histories["finetune"] = res.history
        val_acc = evaluate(model, val_loader)["acc"]
        test_acc = evaluate(model, test_loader)["acc"]
    else:   # nothing changed the network since the evaluation right after surgery
        val_acc, test_acc = before_val, before_test
    cost = count_cost(model, shape)
    # The methods' budgets were computed on the soft (bilinear) cost: it must equal the exact
    # count of the network they produced, or every budget built on it was silently off.
    verify_soft_cost(cost_model, groups, model, example)
    widths = group_widths(model, groups)
    selection = spec.select if spec.finetune is not None else "last (no fine-tuning)"
    return RunResult(
        label=spec.label or spec.method, method=spec.method, seed=spec.seed, budget=spec.budget.describe(),
        dense_macs=dense_cost.macs, dense_params=dense_cost.params, macs=cost.macs, params=cost.params,
        val_acc_before_finetune=before_val, test_acc_before_finetune=before_test,
        val_acc=val_acc, test_acc=test_acc, widths=widths, phase_time_s=times, histories=histories,
        method_summary=with_rounding(method.summary(), spec.budget, rounded), model=model.cpu() if keep_model else None, selection=selection)
