"""Run a study's specs: parallel workers, content-keyed identity, saved networks, serial latency.

Every run prunes the dense checkpoint of its `model` key (the path comes from
:mod:`prunerep.paths`, checked against the architecture params.yaml names for that key). Its
identity, on which resume checkpoints and finished runs are keyed, is a digest of the resolved
spec, the data config and fingerprint, the *bytes* of the dense checkpoint and the source the run
executes (`prunerep.provenance.run_code_fingerprint`): retraining the dense model or changing that
code reruns it instead of resuming stale weights, while a finished run with the same identity,
from this study or another, is reused (a notebook edit or a new table does not retrain anything).

Latency of the pruned networks is measured after all runs have finished, one network at a time,
in this process: timing beside other runs on shared cores would measure the contention.

What a run prints (the training loop's epoch lines and progress bars, warnings) goes to its log
file, ``artifacts/<slug>/logs/<run name>.log``, in a worker process or in this one; the caller
(a notebook) sees one short line per finished run.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from prunerep import paths
from prunerep.config import to_dict
from prunerep.data import DataConfig, SubsetConfig, example_shape
from prunerep.engine.device import is_main_process
from prunerep.models.published import PublishedEntry, ensure_published
from prunerep.runner.iterative import IterativeSpec, run_iterative
from prunerep.runner.record import RunRecord
from prunerep.runner.run import RunResult, RunSpec, held_out_size, run_pruning

__all__ = ["LatencySettings", "StudyContext", "execute"]


@dataclass(frozen=True)
class LatencySettings:
    """How the pruned networks' latency is measured (median of `repeats` after `warmup`)."""

    enabled: bool = True
    batch_sizes: list[int] = field(default_factory=lambda: [1, 64])
    repeats: int = 30
    warmup: int = 5
    threads: int | None = None       # None: torch's default for this process (all cores)
    device: str = "auto"


@dataclass(frozen=True)
class StudyContext:
    """What a study's runs share: data, profile, workers, where inputs and outputs live."""

    slug: str
    profile: str
    data: DataConfig
    subset: SubsetConfig = SubsetConfig()
    workers: int = 1
    latency: LatencySettings = LatencySettings()
    expected_arch: Mapping[str, str] = field(default_factory=dict)   # pretrain key -> model name
    published: Mapping[str, PublishedEntry] = field(default_factory=dict)   # pretrain.published

    def dense_path(self, model_key: str) -> Path:
        """Where the dense checkpoint of `model_key` is; a `pretrain.published` key's is written
        first if needed (from torchvision's weights: `prunerep.models.published`)."""
        path = paths.dense_checkpoint(model_key)
        entry = self.published.get(model_key)
        if entry is not None:
            if entry.dataset != self.data.dataset:
                raise ValueError(f"pretrain.published.{model_key}: weights trained on {entry.dataset!r}, but this "
                                 f"pipeline's data.dataset is {self.data.dataset!r}; prune them on that dataset")
            ensure_published(model_key, entry, path)
        return path

    @cached_property
    def splits(self) -> Any:
        from prunerep.data import load_data

        return load_data(self.data, self.subset)

    @property
    def example_shape(self) -> tuple[int, int, int, int]:
        """(1, C, H, W) of the data: what every model is traced and counted at."""
        return example_shape(self.splits)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.example_shape[1:]

    def load_dense(self, model_key: str, map_location: str | torch.device = "cpu") -> torch.nn.Module:
        """The dense checkpoint of `model_key`, refusing a checkpoint of another architecture."""
        return load_dense(self.dense_path(model_key), model_key, self.expected_arch.get(model_key), map_location,
                          published=model_key in self.published)


def load_dense(path: Path, model_key: str, expected: str | None, map_location: Any = "cpu", *,
               published: bool = False) -> torch.nn.Module:
    from prunerep.models.checkpoint import load_model

    if published:   # written from torchvision's weights by `StudyContext.dense_path`, not by a pretrain stage
        entry, missing, other = (f"pretrain.published.{model_key}", "rerun (the study writes it again)",
                                 "delete it and rerun (the study writes it again)")
    else:
        entry, missing, other = (f"pretrain.models.{model_key}", f"run `dvc repro pretrain@{model_key}` first",
                                 f"rerun `dvc repro pretrain@{model_key}`")
    if not path.exists():
        raise FileNotFoundError(f"{path}: dense checkpoint of {model_key!r} is missing; {missing} "
                                f"(or remove {model_key!r} from the section)")
    model, _ = load_model(path, map_location=map_location)
    arch = getattr(model, "arch_spec", {}).get("name")
    if expected is not None and arch != expected:
        raise ValueError(f"{path}: holds a {arch!r} network but {entry}.name is {expected!r}; {other}")
    return model


def _base(spec: RunSpec | IterativeSpec) -> RunSpec:
    return spec.spec if isinstance(spec, IterativeSpec) else spec


def run_name(spec: RunSpec | IterativeSpec) -> str:
    """File-system name of a run: its label and seed."""
    base = _base(spec)
    return re.sub(r"[^A-Za-z0-9_.@=+-]", "_", f"{base.model}-{base.label or base.method}-s{base.seed}")


@contextlib.contextmanager
def _output_to(log_path: str | None, name: str) -> Iterator[None]:
    """stdout and stderr (prints, progress bars, warnings) appended to `log_path` meanwhile."""
    if not log_path:
        yield
        return
    path = Path(log_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", buffering=1) as log:
        log.write(f"=== {name}: started {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            try:
                yield
            except BaseException:
                traceback.print_exc(file=log)
                raise
        log.write(f"\n=== {name}: finished {time.strftime('%Y-%m-%d %H:%M:%S')}\n")


def _run_job(job: dict[str, Any]) -> RunRecord:
    """Worker body, its output in the run's log file (see `_run_one`)."""
    with _output_to(job.get("log_path"), job.get("name", "run")):
        return _run_one(job)


def _run_one(job: dict[str, Any]) -> RunRecord:
    """Load data and the dense checkpoint, run one spec, save the pruned network."""
    from prunerep.data import load_data
    from prunerep.models.checkpoint import save_model
    from prunerep.provenance import code_fingerprint

    if job["threads"]:
        torch.set_num_threads(job["threads"])
    spec = job["spec"]
    base = _base(spec)
    wall0 = time.perf_counter()
    splits = load_data(job["data"], job["subset"])
    dense = load_dense(Path(job["dense_path"]), base.model, job["expected_arch"], published=job.get("published", False))
    runner = run_iterative if isinstance(spec, IterativeSpec) else run_pruning
    cpu0 = time.process_time()
    result: RunResult = runner(spec, dense, splits, checkpoint_dir=job["checkpoint_dir"], run_key=job["identity"],
                               keep_model=True)
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - wall0
    model_path = None
    if (job["model_path"] and result.model is not None and hasattr(result.model, "arch_spec")
            and is_main_process()):   # under torchrun every rank holds the network; rank 0 saves it
        kept = paths.finished_run(job["identity"]) / FINISHED_MODEL
        save_model(result.model, kept, meta={"label": result.label, "seed": result.seed, "identity": job["identity"]})
        _copy_atomic(kept, Path(job["model_path"]))
        model_path = job["model_path"]
    hyper = to_dict(base.hyper)
    if isinstance(spec, IterativeSpec):
        hyper = {"method": base.method, "hyper": hyper, "steps": spec.steps,
                 "step_finetune": to_dict(spec.step_finetune), "pretrain": to_dict(spec.pretrain)}
    return RunRecord(
        slug=job["slug"], label=result.label, method=result.method, model=base.model, seed=base.seed,
        tags=dict(base.tags), hyper=hyper,
        budget={"describe": base.budget.describe(), "macs_keep": base.budget.macs_keep,
                "latency_keep": base.budget.latency_keep, "round_to": base.budget.round_to},
        dense_macs=result.dense_macs, dense_params=result.dense_params, macs=result.macs, params=result.params,
        widths=result.widths, val_acc=result.val_acc, test_acc=result.test_acc,
        val_acc_before_finetune=result.val_acc_before_finetune,
        test_acc_before_finetune=result.test_acc_before_finetune, selection=result.selection,
        phase_time_s=result.phase_time_s, wall_time_s=wall, process_time_s=cpu, summary=result.method_summary,
        histories=result.histories, model_path=model_path,
        provenance={"profile": job["profile"], "data_fingerprint": splits.fingerprint, "code": job["code"],
                    "package_code": code_fingerprint(),
                    "dense_checkpoint": job["dense_path"], "dense_digest": job["dense_digest"],
                    "identity": job["identity"], "finetune": to_dict(base.finetune),
                    "batch_size": base.batch_size, "threads": torch.get_num_threads()})


#: A command prefix that launches one run on several processes, e.g.
#: ``torchrun --standalone --nproc_per_node 4`` (docs/distributed.md). When set, each run of a study
#: is started as ``<prefix> -m prunerep.runner.job <job file>`` and its record read back from the
#: finished runs; unset, runs go to ``ctx.workers`` local processes.
LAUNCHER_ENV = "PRUNEREP_LAUNCHER"


def _launched(job: dict[str, Any], launcher: str) -> RunRecord:
    """Run `job` as a distributed job (every rank runs it; rank 0 saves the network and the
    finished record) and return that record."""
    import shlex
    import subprocess

    from prunerep.io import atomic_torch_save

    job_file = Path(job["checkpoint_dir"]) / "job.pt"
    job_file.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(dict(job, threads=None), job_file)
    command = [*shlex.split(launcher), "-m", "prunerep.runner.job", str(job_file)]
    done = subprocess.run(command, check=False)
    record = _load_finished(job)
    if done.returncode != 0 or record is None:
        raise RuntimeError(f"run {job['name']!r}: `{' '.join(command)}` exited with {done.returncode} without a "
                           f"finished record; its output is in {job['log_path']} (rank 0) and beside it (other ranks)")
    return record


#: What a finished run leaves in its checkpoint directory: its record (written last) and its network.
FINISHED_RECORD = "finished.json"
FINISHED_MODEL = "finished_model.pt"


def _copy_atomic(src: Path, dst: Path) -> None:
    from prunerep.io import atomic_write_bytes

    atomic_write_bytes(src.read_bytes(), dst)


def _save_finished(record: RunRecord, job: dict[str, Any]) -> None:
    from prunerep.io import atomic_write_text

    atomic_write_text(record.to_json() + "\n", paths.finished_run(job["identity"]) / FINISHED_RECORD)


def _load_finished(job: dict[str, Any]) -> RunRecord | None:
    """The record of this exact run (same identity), if any study finished it before, its network
    restored to `model_path`; None when none did (or its files are unreadable: it simply reruns)."""
    import json

    directory = paths.finished_run(job["identity"])
    try:
        record = RunRecord.from_dict(json.loads((directory / FINISHED_RECORD).read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if record.provenance.get("identity") != job["identity"]:
        return None
    record = replace(record, slug=job["slug"])       # another study may have run it
    if job["model_path"] and record.model_path is not None:
        if not (directory / FINISHED_MODEL).exists():
            return None
        _copy_atomic(directory / FINISHED_MODEL, Path(job["model_path"]))
        record = replace(record, model_path=job["model_path"])
    elif job["model_path"] is None:
        record = replace(record, model_path=None)
    return replace(record, latency=None)


def measure_record_latency(record: RunRecord, input_shape: tuple[int, ...], settings: LatencySettings) -> RunRecord:
    """The record with the measured latency of its saved pruned network."""
    from prunerep.engine import pick_device
    from prunerep.models.checkpoint import load_model
    from prunerep.pruning.latency import measure_latency

    if not settings.enabled or record.model_path is None:
        return record
    device = pick_device(settings.device)
    model, _ = load_model(record.model_path, map_location=device)
    results = measure_latency(model, tuple(input_shape), batch_sizes=settings.batch_sizes, repeats=settings.repeats,
                              warmup=settings.warmup, threads=settings.threads)
    latency: dict[str, Any] = {f"batch_{r.batch_size}_ms": r.median_ms for r in results}
    latency.update({"threads": results[0].threads, "device": results[0].device, "repeats": settings.repeats,
                    "fingerprint": results[0].fingerprint})
    return replace(record, latency=latency)


def _preflight(specs: Sequence[RunSpec | IterativeSpec], ctx: StudyContext) -> None:
    """What would stop a run midway, found before any run starts (one error naming the file or
    the setting, and the fix): a dense checkpoint that cannot be read or holds another
    architecture than params.yaml names, a batch larger than the images a run trains its weights
    on, a MACs budget below the smallest network pruning can reach (one channel per group,
    removable residual branches gone: no method can go lower, so no feasible budget is refused)."""
    from prunerep.methods import get_method
    from prunerep.pruning.groups import find_groups
    from prunerep.pruning.soft_cost import SoftCostModel
    from prunerep.pruning.surgery import plan_surgery

    def removable(groups: Any) -> set[str]:
        """Groups that surgery can empty (a residual branch goes with them), as GDP finds them."""
        out = set()
        for g in groups.select(lambda _: True):
            try:
                plan_surgery(groups, {g.id: torch.zeros(g.channels, dtype=torch.bool)})
                out.add(g.id)
            except ValueError:
                pass
        return out

    n_train = len(ctx.splits.train)
    dense: dict[str, torch.nn.Module] = {}
    traced: dict[str, tuple[Any, Any, set[str]]] = {}   # model key -> (groups, cost model, removable)
    for spec in specs:
        base = _base(spec)
        if base.model not in dense:
            dense[base.model] = ctx.load_dense(base.model)   # refuses an unreadable or foreign checkpoint
        method = get_method(base.method, base.hyper)
        n_weights = n_train - held_out_size(n_train, base.arch_fraction, base.batch_size) if method.bilevel else n_train
        try:
            trains = isinstance(spec, IterativeSpec) or base.finetune is not None or bool(method.phases())
        except Exception:  # a method whose phases need `prepare` first: assume it trains
            trains = True
        if trains and base.batch_size > n_weights:   # its training loader (drop_last) would be empty
            held = f" after {n_train - n_weights} held out for its architecture parameters" if method.bilevel else ""
            raise ValueError(f"{ctx.slug}: run {run_name(spec)!r} trains on batches of {base.batch_size} but has "
                             f"{max(n_weights, 0)} training images{held}; lower {ctx.slug}.batch_size or raise "
                             f"{ctx.slug}.subset.train in params.yaml")
        keep = base.budget.macs_keep
        if keep is None:
            continue
        if base.model not in traced:
            example = torch.zeros(ctx.example_shape)
            groups = find_groups(dense[base.model], example)
            traced[base.model] = (groups, SoftCostModel.from_model(dense[base.model], example, groups),
                                  removable(groups))
        groups, cost, empty = traced[base.model]
        prunable = groups.select(method.prunable)
        # The smallest network any method can reach: every removable group emptied (its residual
        # branch gone), one channel left in every other prunable group.
        floor = float(cost.macs({g.id: 0 if g.id in empty else 1 for g in prunable}) / cost.macs({}))
        if keep < floor:
            raise ValueError(f"{ctx.slug}: run {run_name(spec)!r} keeps {keep:g} of the dense MACs of "
                             f"{base.model!r}, but the smallest network that pruning its {len(prunable)} groups can "
                             f"reach (one channel per group, residual branches removed) costs {floor:.4f} of them; "
                             f"give budgets above {floor:.4f} in the {ctx.slug} section of params.yaml")


def execute(specs: Sequence[RunSpec | IterativeSpec], ctx: StudyContext, *, save_models: bool = True) -> list[RunRecord]:
    """Run every spec (``ctx.workers`` processes side by side), in order; one record each.

    Runs checkpoint under ``artifacts/checkpoints/<slug>/<profile>/<run name>`` and resume after a
    kill; a run finished before with the same identity (by any study) is reused from
    ``artifacts/finished/<identity>/``; pruned networks are saved under ``artifacts/<slug>/models/``; then latency is measured
    serially (``ctx.latency``). Each run's output goes to ``artifacts/<slug>/logs/<run name>.log``;
    this prints one line per finished run.
    """
    from prunerep.engine.parallel import map_jobs
    from prunerep.methods import method_module
    from prunerep.provenance import file_digest, run_code_fingerprint, run_key

    jobs, names, digests = [], set(), {}
    for spec in specs:
        base = _base(spec)
        if not base.model:
            raise ValueError(f"run {base.label!r}: RunSpec.model (the pretrain.models key) is not set")
        name = run_name(spec)
        if name in names:
            raise ValueError(f"{ctx.slug}: two runs are named {name!r}; give them distinct labels")
        names.add(name)
        dense = ctx.dense_path(base.model)
        if base.model not in digests:
            if not dense.exists():
                raise FileNotFoundError(f"{dense}: dense checkpoint of {base.model!r} is missing; run "
                                        f"`dvc repro pretrain@{base.model}` first")
            digests[base.model] = file_digest(dense)
        code = run_code_fingerprint(method_module(base.method))
        # no slug: a run another study finished with the identical spec is the same run
        identity = run_key(spec, ctx.data, ctx.subset, ctx.splits.fingerprint, digests[base.model], code=code)
        jobs.append({
            "code": code,
            "slug": ctx.slug, "profile": ctx.profile, "spec": spec, "data": ctx.data, "subset": ctx.subset,
            "dense_path": str(dense), "dense_digest": digests[base.model], "identity": identity,
            "expected_arch": ctx.expected_arch.get(base.model), "published": base.model in ctx.published,
            "checkpoint_dir": str(paths.CHECKPOINTS / ctx.slug / ctx.profile / name),
            "model_path": str(paths.pruned_models(ctx.slug) / f"{name}.pt") if save_models else None,
            "name": name, "log_path": (paths.run_logs(ctx.slug) / f"{name}.log").as_posix(),
        })
    _preflight(specs, ctx)
    finished = {i: r for i, job in enumerate(jobs) if (r := _load_finished(job)) is not None}
    todo = [job for i, job in enumerate(jobs) if i not in finished]
    launcher = os.environ.get(LAUNCHER_ENV, "").strip()
    fresh = (iter(_launched(job, launcher) for job in todo) if launcher
             else iter(map_jobs(_run_job, todo, workers=ctx.workers, lazy=True)))
    records = []
    for i, job in enumerate(jobs):
        if i in finished:
            record, how = finished[i], "finished before, reused"
        else:
            record = next(fresh)
            _save_finished(record, job)
            how = f"{record.wall_time_s:.0f} s" if record.wall_time_s is not None else "done"
        records.append(record)
        print(f"[{i + 1}/{len(jobs)}] {job['name']}: test acc {record.test_acc:.2f}% ({how})", file=sys.stdout,
              flush=True)
    if jobs:
        where = (f"one after the other, each by `{launcher}`" if launcher
                 else f"on {min(ctx.workers, max(1, len(todo)))} worker(s)")
        print(f"{len(todo)} runs {where}, {len(finished)} reused "
              f"(same identity: spec, data, dense checkpoint, code); per-run logs in "
              f"{paths.run_logs(ctx.slug).as_posix()}/", flush=True)
    shape = ctx.input_shape
    return [measure_record_latency(r, shape, ctx.latency) for r in records]
