"""What every study shares: its context from a notebook, dense references, budget captions."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

from prunerep.config import resolve_section
from prunerep.data import SubsetConfig
from prunerep.engine import OptimConfig
from prunerep.runner import LatencySettings, RunRecord, StudyContext
from prunerep.runner.run import held_out_size

__all__ = ["arms", "dense_reference", "equal_steps", "mean_of", "open_study", "optim_text", "records_by_seed",
           "weight_images"]


def open_study(nb: Any, cfg: Any) -> StudyContext:
    """The runner's context of notebook `nb` (a `NotebookContext`) for section `cfg`.

    The expected architecture of each dense checkpoint comes from params.yaml's `pretrain`
    section, so a checkpoint of another network at a model key's path is refused; its
    `published` entries are written on first use (`StudyContext.dense_path`).
    """
    pretrain = resolve_section("pretrain", profile=nb.profile)
    return StudyContext(slug=nb.slug, profile=nb.profile, data=nb.data, subset=getattr(cfg, "subset", SubsetConfig()),
                        workers=getattr(cfg, "workers", 1), latency=getattr(cfg, "latency", LatencySettings()),
                        expected_arch=pretrain.dense_names(), published=pretrain.published)


def dense_reference(ctx: StudyContext, model_key: str, batch_size: int = 512) -> dict[str, Any]:
    """Test accuracy, MACs, params and measured latency of a dense checkpoint on the study's split."""
    from prunerep.engine import evaluate, pick_device
    from prunerep.pruning.cost import count_cost
    from prunerep.pruning.latency import measure_latency

    device = pick_device("auto")
    splits = ctx.splits
    model = ctx.load_dense(model_key, map_location=device)
    loader = splits.loader(splits.test, batch_size, train=False, device=device)
    acc = float(evaluate(model, loader)["acc"])
    cost = count_cost(model.cpu(), ctx.example_shape)
    out: dict[str, Any] = {"model": model_key, "test_acc": acc, "macs": int(cost.macs), "params": int(cost.params)}
    if ctx.latency.enabled:
        for r in measure_latency(model.to(device), ctx.input_shape, batch_sizes=ctx.latency.batch_sizes,
                                 repeats=ctx.latency.repeats, warmup=ctx.latency.warmup,
                                 threads=ctx.latency.threads):
            out[f"batch_{r.batch_size}_ms"] = r.median_ms
    return out


def records_by_seed(records: Sequence[RunRecord], value: str = "test_acc") -> dict[int, float]:
    """seed -> value (an attribute of the record), for paired comparisons across arms."""
    out: dict[int, float] = {}
    for r in records:
        if r.seed in out:
            raise ValueError(f"records_by_seed: seed {r.seed} appears twice among {[x.label for x in records]}")
        out[r.seed] = float(getattr(r, value))
    return out


def group(records: Sequence[RunRecord], *keys: str) -> dict[tuple, list[RunRecord]]:
    """Records grouped by attributes or tags (in first-seen order)."""
    out: dict[tuple, list[RunRecord]] = {}
    for r in records:
        k = tuple(getattr(r, key) if hasattr(r, key) else r.tags.get(key) for key in keys)
        out.setdefault(k, []).append(r)
    return out


def describe_splits(ctx: StudyContext) -> str:
    """Caption part on the data (read from the data, never assumed) and the shape MACs are counted at."""
    from prunerep.data import describe_data, format_shape

    return f"{describe_data(ctx.data, ctx.splits)}; MACs counted at {format_shape(ctx.example_shape)}"


def seeds_text(seeds: Sequence[int]) -> str:
    """``[2, 0]`` -> "seeds 0, 2"; ``[1]`` -> "seed 1" (for notes and captions)."""
    s = sorted(int(x) for x in seeds)
    return f"seed {s[0]}" if len(s) == 1 else "seeds " + ", ".join(str(x) for x in s)


def arms(records: Sequence[RunRecord]) -> dict[tuple[str, float, str], list[RunRecord]]:
    """Records by (model, MACs target, variant): the arms of a study's comparisons."""
    return {k: v for k, v in group(records, "model", "target", "variant").items()}


def mean_of(values: Iterable[float]) -> float:
    """Plain mean (NaN when empty), for table cells."""
    xs = list(values)
    return sum(xs) / len(xs) if xs else float("nan")


def weight_images(n_train: int, arch_fraction: float, batch_size: int) -> int:
    """Training images a bi-level method trains its weights on (the runner's split: `held_out_size`)."""
    return n_train - held_out_size(n_train, arch_fraction, batch_size)


def equal_steps(optim: OptimConfig, arch_fraction: float, n_train: int | None = None,
                batch_size: int | None = None) -> OptimConfig:
    """The recipe `optim` for a run on the whole training split that takes as many SGD steps as a
    bi-level method takes with `optim` over the part it trains its weights on.

    Without the data size the epochs are scaled by ``1 - arch_fraction`` (equal up to the rounding
    of each epoch). With it (``n_train``, ``batch_size``) the count is exact: the same epochs,
    capped at the bi-level method's steps (``max_steps``; the learning-rate schedule spans exactly
    those steps).
    """
    if n_train is None or batch_size is None:
        return dataclasses.replace(optim, epochs=optim.epochs * (1.0 - arch_fraction))
    per_epoch = weight_images(n_train, arch_fraction, batch_size) // batch_size   # the loader drops the last batch
    steps = max(1, round(optim.epochs * per_epoch))
    if optim.max_steps is not None:
        steps = min(steps, optim.max_steps)
    return dataclasses.replace(optim, max_steps=steps)


def optim_text(o: OptimConfig) -> str:
    """``"2 ep"``, ``"1.5 ep (max 40 steps)"``: a recipe's length for captions."""
    return f"{o.epochs:g} ep" + (f" (max {o.max_steps} steps)" if o.max_steps else "")
