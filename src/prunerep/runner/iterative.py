"""Iterative budgeted pruning: prune a little, fine-tune, repeat until the MACs budget is met.

The "traditional budgeted pruning flow" DSA (Ning et al., ECCV 2020, arXiv:2004.02164) compares
its time cost against: instead of learning the allocation, reach the budget ``B`` in ``K``
steps, each a one-shot pruning of the current network followed by fine-tuning. Step ``k`` keeps
``B^(k/K)`` of the dense MACs (a geometric schedule: every step removes the same fraction of
what is left), with the one-shot method of the spec (``l1``: uniform L1-norm filter pruning,
Li et al., ICLR 2017, arXiv:1608.08710). Every step is one `run_pruning` on the *physically
pruned* network of the step before, so later fine-tunings run on smaller networks, as they do
in practice; the last step uses the spec's fine-tuning, the others ``step_finetune``.

With ``pretrain`` set, the flow starts from scratch, as the traditional pretrain → prune →
fine-tune flow does: a fresh, seeded initialisation of the dense architecture is trained for
that recipe (phase ``pretrain``; the checkpoint of the best validation epoch) before step 1.

    result = run_iterative(IterativeSpec(RunSpec("l1", Budget(macs_keep=0.5), finetune=ft),
                                         steps=3, step_finetune=ft), dense, splits)

Each step checkpoints under ``checkpoint_dir/step<k>`` and resumes after a kill (finished steps
are replayed from their last checkpoint, which skips their training).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunerep.data.describe import example_shape
from prunerep.engine import OptimConfig, fit, pick_device, seed_everything
from prunerep.engine.device import set_threads
from prunerep.engine.distributed import per_rank_batch, shard
from prunerep.methods.base import Budget
from prunerep.pruning.cost import count_cost
from prunerep.pruning.groups import find_groups
from prunerep.pruning.soft_cost import group_widths
from prunerep.runner.run import RunResult, RunSpec, run_pruning

__all__ = ["IterativeSpec", "run_iterative", "step_budgets"]


@dataclass(frozen=True)
class IterativeSpec:
    """An iterative pruning run.

    Attributes:
        spec: the one-shot method, the *final* budget (``macs_keep``), the final fine-tuning,
            seed, batch size, runtime and label.
        steps: number of prune + fine-tune steps ``K`` (>= 1; 1 is the one-shot method).
        step_finetune: fine-tuning after each intermediate step (None: ``spec.finetune``).
        pretrain: None (prune the given dense network), or the recipe that trains a fresh
            initialisation of its architecture first (the traditional flow from scratch).
    """

    spec: RunSpec
    steps: int = 3
    step_finetune: OptimConfig | None = None
    pretrain: OptimConfig | None = None

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"IterativeSpec.steps must be >= 1, got {self.steps}")
        if self.spec.budget.macs_keep is None:
            raise ValueError("IterativeSpec: the spec's budget must be Budget(macs_keep=...)")


def step_budgets(final_keep: float, steps: int) -> list[float]:
    """Fraction of the dense MACs kept after each step: ``B^(k/K)``, k = 1..K."""
    return [final_keep ** (k / steps) for k in range(1, steps + 1)]


def run_iterative(it: IterativeSpec, dense: nn.Module, splits: Any, *, checkpoint_dir: str | Path | None = None,
                  run_key: str = "", keep_model: bool = True) -> RunResult:
    """Prune a copy of `dense` in `it.steps` steps; the result is reported like `run_pruning`'s.

    Phase times: ``pretrain`` (with ``it.pretrain``), ``prune`` (selection + surgery of every
    step), ``step_finetune`` (intermediate fine-tunings) and ``finetune`` (the last one), so the
    record's ``pruning_time_s + finetune_time_s`` is the whole pruning process.
    """
    spec = it.spec
    shape = example_shape(splits)
    dense_cost = count_cost(dense, shape)
    current = dense
    times = {"prune": 0.0, "step_finetune": 0.0, "finetune": 0.0}
    histories: dict[str, list[dict[str, Any]]] = {}
    if it.pretrain is not None:
        t0 = time.perf_counter()
        current, histories["pretrain"] = _pretrain(spec, it.pretrain, dense, splits, checkpoint_dir, run_key)
        times = {"pretrain": time.perf_counter() - t0, **times}
    steps_info = []
    result = None
    for k, keep in enumerate(step_budgets(spec.budget.macs_keep, it.steps), start=1):
        last = k == it.steps
        macs_now = count_cost(current, shape).macs
        relative = min(1.0, keep * dense_cost.macs / macs_now)
        step_spec = replace(spec, budget=Budget(macs_keep=relative),
                            finetune=spec.finetune if last else (it.step_finetune or spec.finetune),
                            label=f"{spec.label or spec.method} step {k}/{it.steps}")
        ckpt = Path(checkpoint_dir) / f"step{k}" if checkpoint_dir else None
        result = run_pruning(step_spec, current, splits, checkpoint_dir=ckpt, run_key=f"{run_key}/step{k}",
                             keep_model=True)
        for name, t in result.phase_time_s.items():
            if name == "finetune":
                times["finetune" if last else "step_finetune"] += t
            else:
                times["prune"] += t
        for name, h in result.histories.items():
            histories[f"step{k}/{name}"] = h
        steps_info.append({"step": k, "target_keep": keep, "macs_keep": result.macs / dense_cost.macs,
                           "val_acc": result.val_acc, "val_acc_before_finetune": result.val_acc_before_finetune})
        current = result.model
    assert result is not None and current is not None
    example = torch.zeros(shape)
    dense_groups = find_groups(copy.deepcopy(dense).cpu(), example)
    widths = group_widths(current, dense_groups)
    return RunResult(
        label=spec.label or f"iterative_{spec.method}", method=f"iterative_{spec.method}", seed=spec.seed,
        budget=spec.budget.describe(), dense_macs=dense_cost.macs, dense_params=dense_cost.params,
        macs=result.macs, params=result.params, val_acc_before_finetune=result.val_acc_before_finetune,
        test_acc_before_finetune=result.test_acc_before_finetune, val_acc=result.val_acc,
        test_acc=result.test_acc, widths=widths, phase_time_s=times, histories=histories,
        method_summary={"steps": steps_info, "widths": widths}, model=current if keep_model else None,
        selection=result.selection)


def _pretrain(spec: RunSpec, recipe: OptimConfig, dense: nn.Module, splits: Any, checkpoint_dir: str | Path | None,
              run_key: str) -> tuple[nn.Module, list[dict[str, Any]]]:
    """A fresh initialisation of `dense`'s architecture trained for `recipe` on the training split
    (best validation epoch), seeded by the spec; checkpointed and resumable like every phase."""
    from prunerep.models import build_model

    if not hasattr(dense, "arch_spec"):
        raise ValueError("IterativeSpec.pretrain: the dense model has no arch_spec to re-initialise from")
    set_threads(spec.runtime.threads)
    device = pick_device(spec.runtime.device)
    seed_everything(spec.seed)
    model = build_model(dense.arch_spec).to(device).train()

    def loader(ds: Any, train: bool, bs: int) -> Any:
        return splits.loader(ds, per_rank_batch(bs, "RunSpec.batch_size") if train else bs, train=train,
                             device=device, channels_last=spec.runtime.channels_last, seed=spec.seed,
                             shard=shard() if train else None)

    res = fit(model, loader(splits.train, True, spec.batch_size), optim=recipe, runtime=spec.runtime,
              val_loader=loader(splits.val, False, spec.eval_batch_size),
              checkpoint_dir=Path(checkpoint_dir) / "pretrain" if checkpoint_dir else None,
              run_key=f"{run_key}/pretrain", select="best_val", desc=f"{spec.label or spec.method} pretrain")
    return model.cpu(), res.history
