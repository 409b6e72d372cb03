"""A measured latency dataset per device: width configurations of one network and their latency.

Latency predictors (W-Gates' LPNet, and any method that wants to prune against measured latency)
are trained on real measurements of pruned networks on the machine they will run on. This module
builds that dataset once per device and refuses to reuse it anywhere else:

1. **Configurations.** Per-group widths of one network (group ids of
   :func:`~prunerep.pruning.groups.find_groups`), sampled four ways: a *uniform* grid (every
   group keeps the same fraction, by the rule of the ``l1``/``random`` baselines), *per-stage*
   random fractions (groups of the same dense width share one), *per-layer* random fractions,
   and *given* width vectors (e.g. the networks other methods produced). Every group keeps at
   least one channel.
2. **Networks.** Each configuration becomes a network with exactly the shapes that surgery
   (:func:`~prunerep.pruning.surgery.prune_channels`, first channels kept) gives, built without
   re-tracing the model (:class:`NetworkBuilder`; the dense weights are sliced, so the values are
   realistic, and the exact MACs of every built network are checked against
   :class:`~prunerep.pruning.soft_cost.SoftCostModel`). Models the fast path does not cover fall
   back to surgery on a fresh copy.
3. **Measurement**, serially, by an injectable measure function (default: the engine's harness,
   :func:`~prunerep.pruning.latency.compare_latency`): configurations go in chunks; inside a
   chunk the networks and the dense reference are timed in interleaved rounds after a warm-up,
   for every batch size; each row keeps the median, the interquartile range, the minimum and the
   ratio to the dense network of the same rounds. The dense reference of every chunk shows the
   machine's drift over the build, and ``recheck`` configurations are measured a second time at
   the end: how far two measurements of the same network disagree is the noise a latency target
   can be met within. Optionally a per-layer lookup table (every conv/linear layer alone, on a
   grid of input and output widths) is measured too: the baseline predictor "sum of each layer's
   measured latency at its width".
4. **Storage**: one JSON file per (network, device), named by a key of the device fingerprint
   and the measurement settings, with a digest of its content. :func:`ensure_dataset` reuses a
   file for the same fingerprint and settings and builds a new one for another device; a file
   that is corrupt (unreadable, digest mismatch) or foreign (another format, network or device
   than its name says) is refused with a :class:`LatencyDatasetError` that says what to do.

The files are a cache, not a pipeline output: what they hold depends on the machine, which no
content hash of the inputs can see. A study calls :func:`ensure_dataset` when it needs the
dataset (W-Gates' notebook does, before its runs) and records the key and digest of the file it
used. To measure one ahead of time, with nothing else running, either through a study's settings
(``python -m prunerep.studies latency_dataset`` for W-Gates' ``params.yaml`` section) or directly::

    python -m prunerep.pruning.latency_dataset --checkpoint artifacts/pretrain/resnet20/model.pt \\
        --input-shape 3 32 32 --out artifacts/latency_dataset --key resnet20 --configs 1000
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from prunerep.io import atomic_write_text
from prunerep.pruning.cost import count_cost
from prunerep.pruning.groups import ChannelGroups, _channel_select_type, find_groups
from prunerep.pruning.latency import device_fingerprint
from prunerep.pruning.soft_cost import SoftCostModel

__all__ = [
    "FORMAT",
    "LatencyDataset",
    "LatencyDatasetError",
    "LayerTable",
    "MeasureFn",
    "MeasureSettings",
    "NetworkBuilder",
    "SamplerConfig",
    "WidthConfig",
    "build_dataset",
    "dataset_path",
    "device_key",
    "ensure_dataset",
    "harness_measure",
    "load_dataset",
    "sample_configs",
    "save_dataset",
    "uniform_widths",
]

FORMAT = "prunerep.latency_dataset/1"

Scope = Literal["all", "internal"]

#: ``measure_fn(models, input_shape, batch_size, warmup, repeats) -> {name: stats}``: time every
#: model (interleaved, after ``warmup`` untimed runs) on random input of shape
#: ``(batch_size, *input_shape)``; ``stats`` holds at least ``median_ms`` and ``iqr_ms`` (and may
#: hold ``min_ms``, ``repeats``). The first model is the reference of the ratios.
MeasureFn = Callable[[Mapping[str, nn.Module], tuple[int, ...], int, int, int], Mapping[str, Mapping[str, float]]]


class LatencyDatasetError(ValueError):
    """A latency dataset file that cannot be used: corrupt, or of another network or device."""


# ----------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class SamplerConfig:
    """How many width configurations, of which kinds.

    ``configs`` counts the sampled configurations (uniform + per-stage + per-layer; the dense
    network and the ``given`` ones come on top). Duplicates are dropped.
    """

    configs: int = 1000
    uniform: int = 40                 # points of the uniform grid (fractions 1 ... min_keep)
    stage_share: float = 0.3          # share of the random ones drawn per stage (the rest per layer)
    min_keep: float = 0.05            # smallest kept fraction drawn (every group keeps >= 1 channel)
    scope: Scope = "all"              # all groups vary, or only those inside residual branches
    seed: int = 0

    def __post_init__(self) -> None:
        if self.configs < 1 or self.uniform < 0 or self.uniform > self.configs:
            raise ValueError(f"need 0 <= uniform <= configs and configs >= 1, got {self.uniform}, {self.configs}")
        if not 0.0 <= self.stage_share <= 1.0:
            raise ValueError(f"stage_share must be in [0, 1], got {self.stage_share}")
        if not 0.0 < self.min_keep <= 1.0:
            raise ValueError(f"min_keep must be in (0, 1], got {self.min_keep}")


@dataclass(frozen=True)
class MeasureSettings:
    """How every configuration is timed (see the module docstring)."""

    batch_sizes: list[int] = field(default_factory=lambda: [1, 64])
    repeats: list[int] = field(default_factory=lambda: [15, 5])   # timed rounds, per batch size
    warmup: int = 3                   # untimed runs per network and batch size, per chunk
    chunk: int = 16                   # configurations timed together (plus the dense reference)
    recheck: int = 32                 # configurations measured a second time at the end (noise)
    threads: int | None = None        # torch threads while timing (None: this process's default)
    device: str = "cpu"               # cpu | cuda | cuda:N | auto (CUDA when present)
    layer_levels: int = 6             # widths per dimension of the per-layer lookup table (0: none)
    layer_repeats: list[int] = field(default_factory=lambda: [10, 3])

    def __post_init__(self) -> None:
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise ValueError(f"batch_sizes must be positive, got {self.batch_sizes}")
        for name in ("repeats", "layer_repeats"):
            value = getattr(self, name)
            if len(value) != len(self.batch_sizes) or any(r < 1 for r in value):
                raise ValueError(f"{name} needs one positive count per batch size {self.batch_sizes}, got {value}")
        if self.warmup < 0 or self.chunk < 1 or self.recheck < 0 or self.layer_levels < 0:
            raise ValueError("warmup, recheck and layer_levels must be >= 0 and chunk >= 1")
        if self.layer_levels == 1:
            raise ValueError("layer_levels must be 0 (no table) or >= 2")

    def resolved_threads(self) -> int:
        return int(self.threads) if self.threads is not None else torch.get_num_threads()

    def resolved_device(self) -> str:
        """``device`` with ``auto`` resolved (CUDA when present, else CPU)."""
        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device


@dataclass(frozen=True)
class WidthConfig:
    """One configuration: where it comes from and the width of every group (in group order)."""

    source: str                       # dense | uniform | stage | layer | given
    widths: tuple[int, ...]


# ----------------------------------------------------------------------------- sampling


def uniform_widths(channels: Sequence[int], ratio: float) -> list[int]:
    """Widths after removing ``min(ceil(ratio * C), C - 1)`` channels of every group.

    The rule of the uniform baselines (``prunerep.methods.budget.widths_from_ratio``), so that a
    uniform configuration here is the network ``l1``/``random`` build at the same MACs.
    """
    return [c - min(math.ceil(ratio * c - 1e-9), c - 1) for c in channels]


def _stage_keys(channels: Sequence[int]) -> list[int]:
    # Groups of the same dense width form one "stage" (the stages of ResNets / VGG blocks).
    return list(channels)


def sample_configs(
    channels: Sequence[int],
    variable: Sequence[bool],
    cfg: SamplerConfig,
    given: Sequence[Sequence[int]] = (),
) -> list[WidthConfig]:
    """The dense configuration, the uniform grid, per-stage and per-layer random ones, ``given``.

    Args:
        channels: Dense width of every group (group order).
        variable: Which groups vary; the others stay at their dense width.
        cfg: Counts and seed.
        given: Extra width vectors (group order), measured as they are (source ``given``).

    Returns:
        Unique configurations, dense first, in sampling order.
    """
    if len(channels) != len(variable):
        raise ValueError("channels and variable must have one entry per group")
    g = torch.Generator().manual_seed(cfg.seed)
    dense = tuple(int(c) for c in channels)
    out: list[WidthConfig] = [WidthConfig("dense", dense)]
    seen = {dense}

    def add(source: str, widths: Sequence[int]) -> None:
        w = tuple(int(x) if var else int(c) for x, c, var in zip(widths, channels, variable, strict=True))
        if any(not 1 <= x <= c for x, c in zip(w, channels, strict=True)):
            raise ValueError(f"{source} configuration {w} has a width outside [1, dense]")
        if w not in seen:
            seen.add(w)
            out.append(WidthConfig(source, w))

    if cfg.uniform:
        top = 1.0 - cfg.min_keep
        for i in range(cfg.uniform):
            ratio = top * (i + 1) / cfg.uniform   # dense itself is already in
            add("uniform", uniform_widths(channels, ratio))
    n_random = cfg.configs - cfg.uniform
    n_stage = round(cfg.stage_share * n_random)
    keys = _stage_keys(channels)
    stages = sorted(set(keys))

    def width(c: int, u: float) -> int:
        return max(1, min(c, round(u * c)))

    # Per-stage draws first, then per-layer ones, until each kind has its count (duplicates are
    # redrawn; a tiny network may not have that many distinct configurations: then fewer).
    for source, count in (("stage", n_stage), ("layer", n_random - n_stage)):
        added = attempts = 0
        while added < count and attempts < 20 * (count + 1):
            attempts += 1
            before = len(out)
            if source == "stage":
                u = cfg.min_keep + (1 - cfg.min_keep) * torch.rand(len(stages), generator=g)
                frac = {k: float(u[i]) for i, k in enumerate(stages)}
                add("stage", [width(c, frac[k]) for c, k in zip(channels, keys, strict=True)])
            else:
                u = cfg.min_keep + (1 - cfg.min_keep) * torch.rand(len(channels), generator=g)
                add("layer", [width(c, float(x)) for c, x in zip(channels, u, strict=True)])
            added += len(out) - before
    for widths in given:
        if len(widths) != len(channels):
            raise ValueError(f"a given configuration has {len(widths)} widths, the network {len(channels)} groups")
        add("given", widths)
    return out


# ----------------------------------------------------------------------------- networks at given widths


class _Unsupported(Exception):
    """The fast builder does not cover this model; use surgery instead."""


class NetworkBuilder:
    """Networks of one model at given group widths, with the shapes surgery would give.

    The fast path copies the dense model, replaces every conv / norm / linear / option-A copy
    by a module of the new shape (constructor arguments from the groups' layer roles, as
    :mod:`~prunerep.models.checkpoint` records them) and slices the dense weights (first
    channels kept). Models with concatenations, grouped convs or other coupled modules, and
    zero widths, go through surgery on a fresh copy (slow: it re-traces the model).

    Args:
        model: The dense network (not modified).
        example_input: Input for tracing, e.g. ``torch.zeros(1, 3, 32, 32)``.
        groups: Its groups (found on ``model``); traced here if not given.
        check: Verify the exact MACs of every built network against the soft cost model.
    """

    def __init__(self, model: nn.Module, example_input: torch.Tensor, groups: ChannelGroups | None = None,
                 check: bool = True) -> None:
        self.model = model
        self.example = example_input
        self.groups = groups if groups is not None else find_groups(model, example_input)
        self.cost_model = SoftCostModel.from_model(model, example_input, self.groups)
        self.ids = self.groups.ids()
        self.channels = [self.groups[g].channels for g in self.ids]
        self.check = check
        self.fast = True
        try:
            self._plan = self._make_plan()
        except _Unsupported as why:
            self.fast = False
            self.why_slow = str(why)
            self._plan = []
        self._state = {k: v.detach() for k, v in model.state_dict().items()}

    # -- the plan: for every module, how its constructor arguments follow the widths
    def _make_plan(self) -> list[tuple[str, str, dict[str, Any]]]:
        from prunerep.models.checkpoint import module_records

        select_t = _channel_select_type()
        io = self.groups._layer_io
        role: dict[str, tuple[str, str]] = {}
        for g in self.groups:
            if g.shared or g.others or g.constants or g.output_slices:
                raise _Unsupported(f"group {g.id} has concatenations or other coupled modules")
            for n in g.norms:
                role[n] = ("norm", g.id)
            for n in g.selects_in:
                role.setdefault(n + "#in", ("select_in", g.id))
            for n in g.selects_out:
                role.setdefault(n + "#out", ("select_out", g.id))
        plan = []
        modules = dict(self.model.named_modules())
        for name, record in module_records(self.model).items():
            m = modules[name]
            args = dict(record["args"])
            if select_t is not None and isinstance(m, select_t):
                plan.append((name, "select", {"args": args, "in": role.get(name + "#in", (None, None))[1],
                                              "out": role.get(name + "#out", (None, None))[1],
                                              "source": list(m.source())}))
            elif isinstance(m, nn.modules.conv._ConvNd | nn.Linear):
                layer = io.get(name)
                conv = isinstance(m, nn.modules.conv._ConvNd)
                in_key, out_key = ("in_channels", "out_channels") if conv else ("in_features", "out_features")
                if layer is None:
                    plan.append((name, "fixed", {"args": args}))
                    continue
                if layer.depthwise_slices:
                    raise _Unsupported(f"{name} is a depthwise conv over a concatenation")
                if layer.depthwise_of is not None:
                    plan.append((name, "depthwise", {"args": args, "group": layer.depthwise_of}))
                    continue
                if conv and m.groups != 1:
                    raise _Unsupported(f"{name} is a grouped conv")
                dense_in = args[in_key]
                fixed_in = dense_in - sum(r * self.groups[gid].channels for gid, r in layer.reads)
                plan.append((name, "layer", {"args": args, "in_key": in_key, "out_key": out_key,
                                             "fixed_in": fixed_in, "reads": list(layer.reads),
                                             "writes": layer.writes}))
            elif name in role and role[name][0] == "norm":
                plan.append((name, "norm", {"args": args, "group": role[name][1]}))
            elif record["type"].endswith("ConstantConv"):
                raise _Unsupported(f"{name} is a constant left by a removed branch")
            # anything else (norms of groups that are not prunable, identities) keeps its shape
        return plan

    def widths_dict(self, widths: Sequence[int] | Mapping[str, int]) -> dict[str, int]:
        if isinstance(widths, Mapping):
            unknown = set(widths) - set(self.ids)
            if unknown:
                raise KeyError(f"unknown channel groups {sorted(unknown)}")
            return {g: int(widths.get(g, c)) for g, c in zip(self.ids, self.channels, strict=True)}
        if len(widths) != len(self.ids):
            raise ValueError(f"{len(widths)} widths for {len(self.ids)} groups")
        return {g: int(w) for g, w in zip(self.ids, widths, strict=True)}

    def build(self, widths: Sequence[int] | Mapping[str, int]) -> nn.Module:
        """The network at ``widths`` (group order, or a mapping; missing groups dense), eval mode."""
        w = self.widths_dict(widths)
        for gid, c in zip(self.ids, self.channels, strict=True):
            if not 0 <= w[gid] <= c:
                raise ValueError(f"width {w[gid]} of group {gid!r} is outside [0, {c}]")
        net = self._build_fast(w) if self.fast and min(w.values()) >= 1 else self._build_surgery(w)
        net.eval()
        if self.check:
            macs = count_cost(net, tuple(self.example.shape)).macs
            expected = round(float(self.cost_model.macs(w)))
            if macs != expected:
                raise RuntimeError(f"the network built at these widths has {macs} MACs, the cost model says "
                                   f"{expected}: the builder does not cover this model; please report it")
        return net

    def _build_surgery(self, w: Mapping[str, int]) -> nn.Module:
        from prunerep.pruning.surgery import prune_channels

        net = copy.deepcopy(self.model).cpu()
        groups = find_groups(net, self.example.cpu())
        keep = {gid: torch.arange(c) < w[gid] for gid, c in zip(self.ids, self.channels, strict=True)}
        return prune_channels(net, groups, keep)

    def _build_fast(self, w: Mapping[str, int]) -> nn.Module:
        from prunerep.models.checkpoint import _CLASSES, module_records

        net = copy.deepcopy(self.model)
        types = {name: r["type"] for name, r in module_records(net).items()}
        for name, kind, p in self._plan:
            args = dict(p["args"])
            if kind == "fixed":
                continue
            if kind == "layer":
                args[p["in_key"]] = p["fixed_in"] + sum(r * w[g] for g, r in p["reads"])
                if p["writes"] is not None:
                    args[p["out_key"]] = w[p["writes"]]
            elif kind == "depthwise":
                args["in_channels"] = args["out_channels"] = args["groups"] = w[p["group"]]
            elif kind == "norm":
                args["num_features"] = w[p["group"]]
            elif kind == "select":
                k_in = w[p["in"]] if p["in"] is not None else args["in_channels"]
                k_out = w[p["out"]] if p["out"] is not None else args["out_channels"]
                # first channels kept on both sides: output j still copies input source[j] if kept
                args.update(in_channels=k_in, out_channels=k_out,
                            source=[s if 0 <= s < k_in else -1 for s in p["source"][:k_out]])
            if args == p["args"]:
                continue
            module = _CLASSES[types[name]][0](**args)
            if kind != "select":
                with torch.no_grad():
                    for key, t in module.state_dict().items():
                        dense = self._state[f"{name}.{key}"]
                        t.copy_(dense[tuple(slice(0, n) for n in t.shape)] if t.dim() else dense)
            module.to(next(iter(self._state.values())).device)
            parent, _, child = name.rpartition(".")
            setattr(net.get_submodule(parent) if parent else net, child, module)
        return net


# ----------------------------------------------------------------------------- measuring


def harness_measure(threads: int | None = None, device: str = "cpu") -> MeasureFn:
    """The default measure function: :func:`~prunerep.pruning.latency.compare_latency`.

    Interleaved rounds, the first model as reference (``paired_ratio``), the garbage collector
    paused, ``threads`` torch threads.
    """
    from prunerep.pruning.latency import compare_latency

    def measure(models: Mapping[str, nn.Module], input_shape: tuple[int, ...], batch_size: int, warmup: int,
                repeats: int) -> dict[str, dict[str, float]]:
        rows = compare_latency(models, input_shape, batch_sizes=(batch_size,), warmup=warmup, repeats=repeats,
                               threads=threads, device=device)
        return {r["model"]: {"median_ms": r["median_ms"], "iqr_ms": r["iqr_ms"], "min_ms": r["min_ms"],
                             "repeats": r["repeats"], "paired_ratio": r["paired_ratio"]} for r in rows}

    return measure


def _measure_chunk(measure_fn: MeasureFn, nets: Mapping[str, nn.Module], input_shape: tuple[int, ...],
                   settings: MeasureSettings, repeats: Sequence[int]) -> dict[str, dict[str, dict[str, float]]]:
    """{name: {batch size (str): stats}} for one chunk, every batch size."""
    out: dict[str, dict[str, dict[str, float]]] = {name: {} for name in nets}
    for bs, rep in zip(settings.batch_sizes, repeats, strict=True):
        stats = measure_fn(nets, input_shape, int(bs), settings.warmup, int(rep))
        missing = set(nets) - set(stats)
        if missing:
            raise ValueError(f"measure_fn returned no statistics for {sorted(missing)}")
        for name in nets:
            s = {k: float(v) for k, v in stats[name].items()}
            if not (math.isfinite(s.get("median_ms", math.nan)) and s["median_ms"] > 0):
                raise ValueError(f"measure_fn returned median_ms={s.get('median_ms')} for {name}")
            out[name][str(bs)] = s
    return out


def _ratio(stats: Mapping[str, float], dense: Mapping[str, float]) -> float:
    """Latency relative to the dense network of the same chunk: the median of the per-round ratios
    when the measure function gives it (robust to drift within the chunk), else the ratio of medians."""
    paired = stats.get("paired_ratio", math.nan)
    return float(paired) if math.isfinite(paired) and paired > 0 else stats["median_ms"] / dense["median_ms"]


def _fingerprint_part(fp: Mapping[str, Any], threads: int) -> dict[str, Any]:
    """The parts of a device fingerprint that change latency (not the OS string or Python)."""
    keep = ("device_type", "device_name", "cpu", "cpu_count", "usable_cpus", "torch", "mkldnn", "capability",
            "cuda", "cudnn", "cudnn_benchmark", "total_memory_gb")
    return {**{k: fp[k] for k in keep if k in fp}, "threads": int(threads)}


def device_key(fingerprint: Mapping[str, Any], settings: MeasureSettings, structure: Mapping[str, Any]) -> str:
    """Key of a dataset file: the device, the measurement settings, the network.

    ``settings.threads`` enters as configured: ``None`` (torch's default, which follows the
    machine's usable CPUs, part of the fingerprint) keys the same in the stage that measures and in
    the notebook that reads, whatever threads either process happens to run with.
    """
    blob = json.dumps({"device": _fingerprint_part(fingerprint, 0),
                       "settings": dataclasses.asdict(settings), "structure": structure}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _structure(builder: NetworkBuilder, arch: Any, input_shape: Sequence[int]) -> dict[str, Any]:
    return {"arch": arch, "input_shape": [int(d) for d in input_shape], "group_ids": list(builder.ids),
            "channels": list(builder.channels)}


def _progress(msg: str, on: bool) -> None:
    if on:
        print(msg, flush=True)


def build_dataset(
    model: nn.Module,
    example_input: torch.Tensor,
    *,
    sampler: SamplerConfig = SamplerConfig(),
    settings: MeasureSettings = MeasureSettings(),
    measure_fn: MeasureFn | None = None,
    fingerprint: Mapping[str, Any] | None = None,
    given: Sequence[Sequence[int] | Mapping[str, int]] = (),
    groups: ChannelGroups | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Sample, build and measure the configurations of ``model``; return the dataset as a dict.

    Args:
        model: The dense network (its weights are sliced into every configuration).
        example_input: ``(1, C, H, W)`` (its shape without the batch dim is the measured input).
        sampler: Which configurations.
        settings: How they are timed.
        measure_fn: See :data:`MeasureFn`; default :func:`harness_measure`.
        fingerprint: Device fingerprint recorded and keyed on (default: this machine's).
        given: Extra width vectors (group order, or ``{group id: width}``).
        groups: The model's groups (traced if not given).
        progress: Print one line per chunk.

    Returns:
        The JSON-able dataset (see :func:`save_dataset`).
    """
    t_start = time.perf_counter()
    model = model.eval()
    builder = NetworkBuilder(model, example_input, groups)
    measure_fn = measure_fn or harness_measure(settings.threads, settings.resolved_device())
    fp = dict(fingerprint) if fingerprint is not None else device_fingerprint(settings.resolved_device())
    arch = getattr(model, "arch_spec", {"name": type(model).__name__})
    input_shape = tuple(int(d) for d in example_input.shape[1:])
    structure = _structure(builder, arch, input_shape)
    variable = [sampler.scope == "all" or not builder.groups[g].residual for g in builder.ids]
    given_vectors = [[builder.widths_dict(v)[g] for g in builder.ids] if isinstance(v, Mapping) else list(v)
                     for v in given]
    configs = sample_configs(builder.channels, variable, sampler, given_vectors)
    # Measure in a shuffled order: drift of the machine over the build then hits every source alike.
    perm = torch.randperm(len(configs) - 1, generator=torch.Generator().manual_seed(sampler.seed + 1))
    order = [0, *(1 + perm).tolist()]
    rows: list[dict[str, Any]] = [{} for _ in configs]
    reference: list[dict[str, Any]] = []
    dense_net = builder.build(builder.channels)
    t_build = t_measure = 0.0
    n_chunks = math.ceil(len(order) / settings.chunk)
    for k in range(n_chunks):
        idx = order[k * settings.chunk:(k + 1) * settings.chunk]
        t0 = time.perf_counter()
        nets: dict[str, nn.Module] = {"dense": dense_net}
        macs = {}
        for i in idx:
            nets[f"c{i}"] = builder.build(configs[i].widths)
            macs[i] = round(float(builder.cost_model.macs(dict(zip(builder.ids, configs[i].widths, strict=True)))))
        t1 = time.perf_counter()
        stats = _measure_chunk(measure_fn, nets, input_shape, settings, settings.repeats)
        t_measure += time.perf_counter() - t1
        t_build += t1 - t0
        reference.append({"chunk": k, "latency": {bs: s["median_ms"] for bs, s in stats["dense"].items()}})
        for i in idx:
            lat = {}
            for bs, s in stats[f"c{i}"].items():
                lat[bs] = {**s, "ratio_to_dense": _ratio(s, stats["dense"][bs])}
            rows[i] = {"source": configs[i].source, "widths": list(configs[i].widths), "macs": macs[i],
                       "chunk": k, "latency": lat}
        _progress(f"[latency dataset] chunk {k + 1}/{n_chunks}: {len(idx)} networks, dense "
                  + ", ".join(f"batch {bs} {v:.3g} ms" for bs, v in reference[-1]["latency"].items()), progress)
    # Repeat noise: a second measurement of some configurations, at the end of the build.
    recheck: list[dict[str, Any]] = []
    chosen = order[1:1 + settings.recheck]
    for k in range(math.ceil(len(chosen) / settings.chunk)):
        idx = chosen[k * settings.chunk:(k + 1) * settings.chunk]
        nets = {"dense": dense_net, **{f"c{i}": builder.build(configs[i].widths) for i in idx}}
        t1 = time.perf_counter()
        stats = _measure_chunk(measure_fn, nets, input_shape, settings, settings.repeats)
        t_measure += time.perf_counter() - t1
        for i in idx:
            recheck.append({"row": i, "latency": {bs: s["median_ms"] for bs, s in stats[f"c{i}"].items()}})
    t_layers = time.perf_counter()
    table = (measure_layer_table(model, example_input, builder, settings, measure_fn, progress)
             if settings.layer_levels else None)
    t_layers = time.perf_counter() - t_layers
    dense_ms = {str(bs): _median([r["latency"][str(bs)] for r in reference]) for bs in settings.batch_sizes}
    return {
        "format": FORMAT,
        "key": device_key(fp, settings, structure),
        "structure": structure,
        "fingerprint": fp,
        "threads": settings.resolved_threads(),
        "settings": dataclasses.asdict(settings),
        "sampler": dataclasses.asdict(sampler),
        "variable": variable,
        "given": [list(map(int, v)) for v in given_vectors],
        "dense": {"macs": builder.cost_model.dense_macs(), "latency_ms": dense_ms},
        "rows": rows,
        "reference": reference,
        "recheck": recheck,
        "layer_table": table,
        "builder": "fast" if builder.fast else f"surgery ({builder.why_slow})",
        "timing": {"total_s": time.perf_counter() - t_start, "build_s": t_build, "measure_s": t_measure,
                   "layer_table_s": t_layers},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def _median(values: Sequence[float]) -> float:
    v = sorted(float(x) for x in values)
    n = len(v)
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])


# ----------------------------------------------------------------------------- per-layer lookup table


def _levels(c: int, n: int) -> list[int]:
    return sorted({max(1, round(1 + (c - 1) * i / (n - 1))) for i in range(n)}) if c > 1 else [1]


def _layer_specs(model: nn.Module, example_input: torch.Tensor, builder: NetworkBuilder) -> list[dict[str, Any]]:
    """Every conv/linear call (option-A copies excluded) with its input shape and width roles."""
    select_t = _channel_select_type()
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []

    def record(name: str) -> Callable[..., None]:
        def hook(mod: nn.Module, args: tuple[Any, ...], out: Any) -> None:
            shapes.setdefault(name, tuple(args[0].shape[1:]))   # returns None: output unchanged

        return hook

    for name, m in model.named_modules():
        if isinstance(m, nn.modules.conv._ConvNd | nn.Linear) and not (select_t and isinstance(m, select_t)):
            handles.append(m.register_forward_hook(record(name)))
    try:
        with torch.no_grad():
            model(example_input)
    finally:
        for h in handles:
            h.remove()
    io = builder.groups._layer_io
    specs = []
    for name, shape in shapes.items():
        m = model.get_submodule(name)
        conv = isinstance(m, nn.modules.conv._ConvNd)
        layer = io.get(name)
        dense_in = m.in_channels if conv else m.in_features
        dense_out = m.out_channels if conv else m.out_features
        if layer is not None and layer.depthwise_slices:
            raise _Unsupported(f"{name} is a depthwise conv over a concatenation")
        depthwise = layer.depthwise_of if layer is not None else None
        reads = list(layer.reads) if layer is not None and depthwise is None else []
        fixed_in = dense_in - sum(r * builder.groups[g].channels for g, r in reads)
        writes = layer.writes if layer is not None else None
        if conv and m.groups != 1 and depthwise is None:
            raise _Unsupported(f"{name} is a grouped conv")
        sig = {"kind": type(m).__name__, "in": dense_in, "out": dense_out, "spatial": list(shape[1:]),
               "depthwise": depthwise is not None}
        if conv:
            sig.update(kernel=list(m.kernel_size), stride=list(m.stride),
                       padding=m.padding if isinstance(m.padding, str) else list(m.padding),
                       dilation=list(m.dilation), bias=m.bias is not None)
        else:
            sig.update(bias=m.bias is not None)
        specs.append({"name": name, "signature": sig, "depthwise_of": depthwise, "reads": reads,
                      "fixed_in": fixed_in, "writes": writes, "dense_out": dense_out})
    return specs


def _micro(sig: Mapping[str, Any], c_in: int, c_out: int) -> tuple[nn.Module, tuple[int, ...]]:
    """One layer alone at widths (c_in, c_out), and its input shape without the batch dim."""
    if sig["kind"] == "Linear":
        return nn.Linear(c_in, c_out, bias=sig["bias"]), (c_in, *sig["spatial"])
    cls = getattr(nn, sig["kind"])
    groups = c_in if sig["depthwise"] else 1
    m = cls(c_in, c_out, sig["kernel"], stride=sig["stride"], padding=sig["padding"], dilation=sig["dilation"],
            groups=groups, bias=sig["bias"])
    return m, (c_in, *sig["spatial"])


def measure_layer_table(model: nn.Module, example_input: torch.Tensor, builder: NetworkBuilder,
                        settings: MeasureSettings, measure_fn: MeasureFn, progress: bool = False) -> dict[str, Any]:
    """Latency of every distinct conv/linear layer alone on a grid of (input, output) widths.

    Layers with the same signature (type, dense widths, kernel, stride, input size ...) share one
    grid. The grid has ``settings.layer_levels`` widths per dimension that varies with the groups
    (one where the width is fixed, e.g. the image channels or the classes); a depthwise conv has
    one dimension. :class:`LayerTable` interpolates it.
    """
    specs = _layer_specs(model, example_input.cpu(), builder)
    sigs: list[dict[str, Any]] = []
    keys: dict[str, int] = {}
    varies_in: dict[str, bool] = {}
    varies_out: dict[str, bool] = {}
    for s in specs:
        k = json.dumps(s["signature"], sort_keys=True)
        varies_in[k] = varies_in.get(k, False) or bool(s["reads"]) or s["depthwise_of"] is not None
        varies_out[k] = varies_out.get(k, False) or s["writes"] is not None or s["depthwise_of"] is not None
        if k not in keys:
            keys[k] = len(sigs)
            sigs.append({"signature": s["signature"]})
        s["sig"] = keys[k]
    n = settings.layer_levels
    for k, i in keys.items():
        sig = sigs[i]["signature"]
        ins = _levels(sig["in"], n) if varies_in[k] else [sig["in"]]
        outs = _levels(sig["out"], n) if varies_out[k] else [sig["out"]]
        if sig["depthwise"]:
            outs = ins
        sigs[i].update(in_levels=ins, out_levels=outs, ms={str(b): [] for b in settings.batch_sizes})
        for c_in in ins:
            pairs = [(c_in, c_in)] if sig["depthwise"] else [(c_in, c_out) for c_out in outs]
            nets, shape = {}, None
            for a, b in pairs:
                net, shape = _micro(sig, a, b)
                nets[f"o{b}"] = net.eval()
            assert shape is not None
            stats = _measure_chunk(measure_fn, nets, shape, settings, settings.layer_repeats)
            for bs in settings.batch_sizes:
                sigs[i]["ms"][str(bs)].append([stats[f"o{b}"][str(bs)]["median_ms"] for _, b in pairs])
        _progress(f"[latency dataset] layer table {i + 1}/{len(sigs)}: {sig['kind']} {sig['in']}->{sig['out']}",
                  progress)
    layers = [{"name": s["name"], "sig": s["sig"], "depthwise_of": s["depthwise_of"], "reads": s["reads"],
               "fixed_in": s["fixed_in"], "writes": s["writes"], "dense_out": s["dense_out"]} for s in specs]
    return {"levels": n, "signatures": sigs, "layers": layers}


def _interp(levels: Sequence[int], x: float) -> tuple[int, int, float]:
    """Index pair and weight of the upper one for linear interpolation (clamped at the ends)."""
    if len(levels) == 1 or x <= levels[0]:
        return 0, 0, 0.0
    if x >= levels[-1]:
        return len(levels) - 1, len(levels) - 1, 0.0
    j = next(i for i in range(1, len(levels)) if levels[i] >= x)
    lo, hi = levels[j - 1], levels[j]
    return j - 1, j, (x - lo) / (hi - lo)


class LayerTable:
    """The per-layer lookup predictor: sum over layers of the table at the layer's widths.

    Args:
        table: The ``layer_table`` of a dataset.
        group_ids: Group order of the width vectors.
    """

    def __init__(self, table: Mapping[str, Any], group_ids: Sequence[str]) -> None:
        self.table = table
        self.index = {g: i for i, g in enumerate(group_ids)}

    def layer_widths(self, widths: Sequence[int]) -> list[tuple[int, float, float]]:
        """(signature, input width, output width) of every layer at ``widths``."""
        out = []
        for layer in self.table["layers"]:
            if layer["depthwise_of"] is not None:
                c = float(widths[self.index[layer["depthwise_of"]]])
                out.append((layer["sig"], c, c))
                continue
            c_in = layer["fixed_in"] + sum(r * widths[self.index[g]] for g, r in layer["reads"])
            c_out = widths[self.index[layer["writes"]]] if layer["writes"] is not None else layer["dense_out"]
            out.append((layer["sig"], float(c_in), float(c_out)))
        return out

    def predict(self, widths: Sequence[int], batch_size: int) -> float:
        """Sum of the interpolated per-layer latencies (ms) at ``widths``."""
        total = 0.0
        for sig_i, c_in, c_out in self.layer_widths(widths):
            sig = self.table["signatures"][sig_i]
            grid = sig["ms"][str(batch_size)]
            i0, i1, a = _interp(sig["in_levels"], c_in)
            if sig["signature"]["depthwise"]:
                total += (1 - a) * grid[i0][0] + a * grid[i1][0]
                continue
            j0, j1, b = _interp(sig["out_levels"], c_out)
            total += ((1 - a) * ((1 - b) * grid[i0][j0] + b * grid[i0][j1])
                      + a * ((1 - b) * grid[i1][j0] + b * grid[i1][j1]))
        return total


# ----------------------------------------------------------------------------- files


def _digest(data: Mapping[str, Any]) -> str:
    body = {k: v for k, v in data.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, allow_nan=True).encode()).hexdigest()


def save_dataset(data: Mapping[str, Any], path: str | Path) -> Path:
    """Write the dataset as JSON with a digest of its content, atomically."""
    body = dict(data)
    body["digest"] = _digest(body)
    return atomic_write_text(json.dumps(body, sort_keys=True, allow_nan=True) + "\n", Path(path))


_REQUIRED = ("format", "key", "structure", "fingerprint", "settings", "sampler", "dense", "rows", "reference",
             "recheck", "layer_table", "timing", "digest")


def _read(path: Path) -> dict[str, Any]:
    fix = f"delete {path}; the next use measures it again (with nothing else running)"
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise LatencyDatasetError(f"{path}: corrupt latency dataset, not readable JSON ({err}); {fix}") from err
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        got = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise LatencyDatasetError(f"{path}: not a latency dataset of this project (format {got!r}, expected "
                                  f"{FORMAT!r}); remove it from the dataset folder")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise LatencyDatasetError(f"{path}: corrupt latency dataset, keys {missing} missing; {fix}")
    if data["digest"] != _digest(data):
        raise LatencyDatasetError(f"{path}: corrupt latency dataset, its content does not match its digest "
                                  f"(edited or truncated); {fix}")
    return data


def load_dataset(path: str | Path, *, key: str | None = None, structure: Mapping[str, Any] | None = None,
                 fingerprint: Mapping[str, Any] | None = None) -> LatencyDataset:
    """Read and check a dataset file.

    Args:
        path: The JSON file.
        key: If given, the file must carry this key (device + settings + network).
        structure: If given, the file must describe this network (architecture, input, groups).
        fingerprint: If given, the file must have been measured on this device.

    Raises:
        LatencyDatasetError: Corrupt (unreadable, digest mismatch, keys missing) or foreign
            (another format, key, network or device); the message says what to do.
    """
    path = Path(path)
    data = _read(path)
    foreign = f"{path}: foreign latency dataset"
    if structure is not None and json.loads(json.dumps(structure)) != data["structure"]:
        raise LatencyDatasetError(f"{foreign}: it was measured on another network ({data['structure'].get('arch')},"
                                  f" groups {len(data['structure'].get('group_ids', []))}); it cannot predict this "
                                  "one. Remove it or point to the right folder")
    if fingerprint is not None:
        mine = _fingerprint_part(fingerprint, int(data.get("threads", 0)))
        theirs = _fingerprint_part(data["fingerprint"], int(data.get("threads", 0)))
        if mine != theirs:
            diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            raise LatencyDatasetError(f"{foreign}: it was measured on another device (differs in {diff}); "
                                      "latency does not transfer between devices. Remove it; the next use "
                                      "measures this device's own file")
    if key is not None and data["key"] != key:
        raise LatencyDatasetError(f"{foreign}: its key {data['key']} is not {key} (another device, network or "
                                  "measurement settings than its file name says); remove it and rebuild")
    return LatencyDataset(data, path)


def dataset_path(directory: str | Path, name: str, key: str) -> Path:
    """``<directory>/<name>-<key>.json``: one file per network name and device key."""
    return Path(directory) / f"{name}-{key}.json"


def ensure_dataset(
    directory: str | Path,
    name: str,
    model: nn.Module,
    example_input: torch.Tensor,
    *,
    sampler: SamplerConfig = SamplerConfig(),
    settings: MeasureSettings = MeasureSettings(),
    measure_fn: MeasureFn | None = None,
    fingerprint: Mapping[str, Any] | None = None,
    given: Sequence[Sequence[int] | Mapping[str, int]] = (),
    allow_build: bool = True,
    progress: bool = True,
) -> tuple[LatencyDataset, bool]:
    """The dataset of network ``name`` on this device: reused if its file exists, else built.

    The file name carries :func:`device_key` (device fingerprint, threads, measurement settings,
    network structure), so another device or other settings build a new file beside the old
    one. An existing file is checked (digest, format, key, network, device) and refused with a
    :class:`LatencyDatasetError` if it does not match. A valid file of this device is reused;
    ``given`` configurations it lacks are measured and appended (the same chunk protocol, with
    the dense reference); one sampled with another ``sampler`` is rebuilt, with a message.

    Args:
        allow_build: False: never measure (raise if the file is missing or incomplete), for a
            reader that must only use what was measured before.

    Returns:
        ``(dataset, measured)``: ``measured`` is False when the file was reused as it was.
    """
    fp = dict(fingerprint) if fingerprint is not None else device_fingerprint(settings.resolved_device())
    builder = NetworkBuilder(model.eval(), example_input)
    arch = getattr(model, "arch_spec", {"name": type(model).__name__})
    structure = _structure(builder, arch, tuple(example_input.shape[1:]))
    key = device_key(fp, settings, structure)
    path = dataset_path(directory, name, key)
    wanted = [[builder.widths_dict(v)[g] for g in builder.ids] if isinstance(v, Mapping) else [int(x) for x in v]
              for v in given]
    stop = (f"no complete latency dataset of {name} for this device and these settings at {path}, and measuring "
            "was not allowed here (allow_build=False); measure it first, with nothing else running")
    if path.exists():
        ds = load_dataset(path, key=key, structure=structure, fingerprint=fp)
        if ds.data["sampler"] == dataclasses.asdict(sampler):
            have = {tuple(r["widths"]) for r in ds.rows}
            missing = [w for w in dict.fromkeys(map(tuple, wanted)) if w not in have]
            if not missing:
                _progress(f"[latency dataset] reusing {path} (same device and settings)", progress)
                return ds, False
            if not allow_build:
                raise LatencyDatasetError(stop)
            _progress(f"[latency dataset] {path}: measuring {len(missing)} given configurations it lacks", progress)
            data = _append_given(dict(ds.data), builder, [list(w) for w in missing], settings,
                                 measure_fn or harness_measure(settings.threads, settings.resolved_device()), progress)
            save_dataset(data, path)
            return load_dataset(path, key=key), True
        _progress(f"[latency dataset] {path}: other sampled configurations asked for; rebuilding", progress)
    if not allow_build:
        raise LatencyDatasetError(stop)
    data = build_dataset(model, example_input, sampler=sampler, settings=settings, measure_fn=measure_fn,
                         fingerprint=fp, given=wanted, groups=builder.groups, progress=progress)
    save_dataset(data, path)
    _progress(f"[latency dataset] wrote {path} ({len(data['rows'])} networks, "
              f"{data['timing']['total_s'] / 60:.1f} min)", progress)
    return load_dataset(path, key=key), True


def _append_given(data: dict[str, Any], builder: NetworkBuilder, vectors: list[list[int]],
                  settings: MeasureSettings, measure_fn: MeasureFn, progress: bool) -> dict[str, Any]:
    """``data`` with the configurations ``vectors`` measured (chunks with the dense reference)."""
    t0 = time.perf_counter()
    input_shape = tuple(data["structure"]["input_shape"])
    dense_net = builder.build(builder.channels)
    rows, reference = list(data["rows"]), list(data["reference"])
    first_chunk = 1 + max((r["chunk"] for r in reference), default=-1)
    for k in range(math.ceil(len(vectors) / settings.chunk)):
        part = vectors[k * settings.chunk:(k + 1) * settings.chunk]
        nets = {"dense": dense_net, **{f"g{i}": builder.build(w) for i, w in enumerate(part)}}
        stats = _measure_chunk(measure_fn, nets, input_shape, settings, settings.repeats)
        chunk = first_chunk + k
        reference.append({"chunk": chunk, "latency": {bs: s["median_ms"] for bs, s in stats["dense"].items()}})
        for i, w in enumerate(part):
            lat = {bs: {**s, "ratio_to_dense": _ratio(s, stats["dense"][bs])} for bs, s in stats[f"g{i}"].items()}
            rows.append({"source": "given", "widths": list(w), "chunk": chunk, "latency": lat,
                         "macs": round(float(builder.cost_model.macs(dict(zip(builder.ids, w, strict=True)))))})
        _progress(f"[latency dataset] given chunk {k + 1}: {len(part)} networks", progress)
    timing = dict(data["timing"])
    timing["appended_s"] = timing.get("appended_s", 0.0) + time.perf_counter() - t0
    return {**data, "rows": rows, "reference": reference, "given": [*data.get("given", []), *vectors],
            "timing": timing}


# ----------------------------------------------------------------------------- reading a dataset


class LatencyDataset:
    """A loaded dataset: widths, MACs and measured latencies as arrays, plus its noise figures."""

    def __init__(self, data: dict[str, Any], path: Path | None = None) -> None:
        self.data = data
        self.path = path
        self.group_ids: list[str] = list(data["structure"]["group_ids"])
        self.channels: list[int] = list(data["structure"]["channels"])
        self.batch_sizes: list[int] = [int(b) for b in data["settings"]["batch_sizes"]]
        self.rows: list[dict[str, Any]] = data["rows"]

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def key(self) -> str:
        return str(self.data["key"])

    @property
    def digest(self) -> str:
        """The digest of the file's content (checked when it was loaded): which measurements these are."""
        return str(self.data["digest"])

    def restrict_given(self, wanted: Sequence[Sequence[int] | Mapping[str, int]]) -> LatencyDataset:
        """This dataset with only the ``given`` rows whose widths are among ``wanted``.

        A file keeps the given configurations of every earlier request (they were measured once);
        a reader that asks for other ones (or none) must not see those, or what it reports would
        depend on the file's history rather than on its own inputs. The sampled rows, fixed by the
        key and the sampler, all stay. ``digest`` and ``path`` still name the file.
        """
        channels, variable = self.channels, self.data.get("variable", [True] * len(self.channels))

        def vector(w: Sequence[int] | Mapping[str, int]) -> tuple[int, ...]:
            v = [int(w.get(g, c)) for g, c in zip(self.group_ids, channels, strict=True)] if isinstance(w, Mapping) \
                else [int(x) for x in w]
            # as the sampler stores them: groups that do not vary keep their dense width
            return tuple(x if var else c for x, c, var in zip(v, channels, variable, strict=True))

        keep_w = {vector(w) for w in wanted}
        keep = [i for i, r in enumerate(self.rows) if r["source"] != "given" or vector(r["widths"]) in keep_w]
        if len(keep) == len(self.rows):
            return self
        new = {old: k for k, old in enumerate(keep)}
        data = {**self.data, "rows": [self.rows[i] for i in keep],
                "recheck": [{**c, "row": new[c["row"]]} for c in self.data["recheck"] if c["row"] in new]}
        return LatencyDataset(data, self.path)

    def widths(self) -> torch.Tensor:
        """``[N, G]`` widths (float64)."""
        return torch.tensor([r["widths"] for r in self.rows], dtype=torch.float64)

    def fractions(self) -> torch.Tensor:
        """``[N, G]`` widths as fractions of the dense widths (LPNet's input encoding)."""
        return self.widths() / torch.tensor(self.channels, dtype=torch.float64)

    def latency(self, batch_size: int, what: str = "median_ms") -> torch.Tensor:
        """``[N]`` measured latency (ms) at ``batch_size`` (``what``: a stats key)."""
        return torch.tensor([r["latency"][str(batch_size)][what] for r in self.rows], dtype=torch.float64)

    def macs(self) -> torch.Tensor:
        return torch.tensor([r["macs"] for r in self.rows], dtype=torch.float64)

    def sources(self) -> list[str]:
        return [r["source"] for r in self.rows]

    def dense_ms(self, batch_size: int) -> float:
        """Median over chunks of the dense reference's latency."""
        return float(self.data["dense"]["latency_ms"][str(batch_size)])

    def layer_table(self) -> LayerTable | None:
        table = self.data.get("layer_table")
        return LayerTable(table, self.group_ids) if table else None

    def noise(self, batch_size: int) -> dict[str, float]:
        """How noisy the measurements are at ``batch_size`` (fractions, not %).

        ``repeat_median`` / ``repeat_p90``: median and 90th percentile over the rechecked
        configurations of ``|second / first - 1|``; ``iqr_median``: median relative
        interquartile range of the timed rounds of one measurement; ``drift``: (max - min) /
        median of the dense reference over the chunks.
        """
        b = str(batch_size)
        first = {i: r["latency"][b]["median_ms"] for i, r in enumerate(self.rows)}
        rel = sorted(abs(c["latency"][b] / first[c["row"]] - 1) for c in self.data["recheck"])
        iqr = sorted(r["latency"][b]["iqr_ms"] / r["latency"][b]["median_ms"] for r in self.rows)
        ref = [c["latency"][b] for c in self.data["reference"]]

        def q(v: list[float], p: float) -> float:
            return v[min(len(v) - 1, round(p * (len(v) - 1)))] if v else math.nan

        return {"repeat_median": q(rel, 0.5), "repeat_p90": q(rel, 0.9), "rechecked": float(len(rel)),
                "iqr_median": q(iqr, 0.5), "drift": (max(ref) - min(ref)) / _median(ref) if ref else math.nan}

    def uniform_curve(self, batch_size: int) -> list[tuple[float, float, list[int]]]:
        """(MACs fraction of dense, latency ratio to dense, widths) of the dense and uniform rows."""
        dense_macs = float(self.data["dense"]["macs"])
        out = [(r["macs"] / dense_macs, r["latency"][str(batch_size)]["ratio_to_dense"], list(r["widths"]))
               for r in self.rows if r["source"] in ("dense", "uniform")]
        return sorted(out, key=lambda t: -t[0])

    def describe(self) -> str:
        fp = self.data["fingerprint"]
        t = self.data["timing"]
        return (f"{len(self)} networks of {self.data['structure']['arch'].get('name', '?')} measured on "
                f"{fp.get('device_name', '?')} ({self.data['threads']} threads, torch {fp.get('torch', '?')}) in "
                f"{t['total_s'] / 60:.1f} min")


# ----------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """Build (or reuse) the dataset of one checkpoint; see the module docstring."""
    from prunerep.models.checkpoint import load_model

    p = argparse.ArgumentParser(prog="python -m prunerep.pruning.latency_dataset", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True, help="dense checkpoint (prunerep.models.checkpoint format)")
    p.add_argument("--input-shape", type=int, nargs="+", required=True, help="C H W of one input")
    p.add_argument("--out", required=True, help="folder of the dataset files")
    p.add_argument("--key", default=None, help="name of the network in the file name (default: its arch name)")
    p.add_argument("--configs", type=int, default=SamplerConfig.configs)
    p.add_argument("--uniform", type=int, default=SamplerConfig.uniform)
    p.add_argument("--scope", choices=("all", "internal"), default="all")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64])
    p.add_argument("--repeats", type=int, nargs="+", default=[15, 5])
    p.add_argument("--warmup", type=int, default=MeasureSettings.warmup)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--layer-levels", type=int, default=MeasureSettings.layer_levels)
    args = p.parse_args(argv)
    model, _ = load_model(args.checkpoint)
    sampler = SamplerConfig(configs=args.configs, uniform=args.uniform, scope=args.scope, seed=args.seed)
    settings = MeasureSettings(batch_sizes=args.batch_sizes, repeats=args.repeats, warmup=args.warmup,
                               threads=args.threads, layer_levels=args.layer_levels,
                               layer_repeats=[max(1, r // 2) for r in args.repeats])
    name = args.key or model.arch_spec.get("name", "model")
    ds, built = ensure_dataset(args.out, name, model, torch.zeros(1, *args.input_shape), sampler=sampler,
                               settings=settings)
    print(("built " if built else "reused ") + f"{ds.path}: {ds.describe()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
