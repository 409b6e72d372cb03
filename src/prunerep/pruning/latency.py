"""Latency measurement on the current device.

Pruning papers report FLOP/MAC reductions, but what a deployment sees is wall-clock latency, and
the two often disagree (thin layers under-use vector units, launch and memory costs do not shrink
with channel count). This module times forward passes so that both numbers can be reported side
by side.

Measurement protocol:

* the model runs in eval mode under :func:`torch.inference_mode`; every submodule's ``training``
  flag is restored afterwards (mixed train/eval states survive);
* the input is built before timing, so only the forward pass is timed;
* ``warmup`` untimed runs (allocator, oneDNN/cuDNN kernel selection, lazy init) precede
  ``repeats`` timed runs; the median and the interquartile range are the reported statistics,
  because a shared machine produces occasional slow outliers that would drag a mean;
* on CPU each run is timed with :func:`time.perf_counter`; on CUDA with
  ``torch.cuda.Event(enable_timing=True)``, with the device synchronised before each run (so every
  run starts from an idle GPU and measures single-request latency, not pipelined throughput);
* the Python garbage collector is paused during the timed loop (as :mod:`timeit` does) so that a
  collection does not land inside one run.

The model passed in is never modified. If the requested ``device``, ``dtype`` or
``channels_last`` layout needs a conversion, a deep copy is converted and timed (this costs one
extra copy of the weights in memory for the duration of the call); otherwise the model itself is
timed and only its train/eval flags are toggled and then restored.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import gc
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = [
    "LatencyResult",
    "compare_latency",
    "device_fingerprint",
    "measure_latency",
]


@dataclass(frozen=True)
class LatencyResult:
    """Timing statistics of one model at one batch size.

    All times are per forward pass of the whole batch, in milliseconds, unless named per-image.

    Attributes:
        batch_size: Number of images per forward pass.
        median_ms: Median time of the timed runs.
        iqr_ms: Interquartile range (75th minus 25th percentile) of the timed runs.
        mean_ms: Mean time of the timed runs.
        std_ms: Sample standard deviation of the timed runs (0 for a single run).
        min_ms: Fastest timed run.
        repeats: Number of timed runs actually made (at least the requested number; more if
            ``min_time_s`` asked for it).
        warmup: Number of untimed warm-up runs.
        per_image_ms: ``median_ms / batch_size``.
        images_per_s: Throughput implied by the median, ``1000 * batch_size / median_ms``.
        device: Device the runs were made on, e.g. ``"cpu"`` or ``"cuda:0"``.
        threads: ``torch.get_num_threads()`` during the runs.
        channels_last: Whether the model and input used the channels-last memory format.
        dtype: Floating-point dtype of the model and input, e.g. ``"float32"``.
        fingerprint: Description of the machine, see :func:`device_fingerprint`.
    """

    batch_size: int
    median_ms: float
    iqr_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    repeats: int
    warmup: int
    per_image_ms: float
    images_per_s: float
    device: str
    threads: int
    channels_last: bool
    dtype: str
    fingerprint: dict

    def as_dict(self) -> dict:
        """Return the fields as a plain (deep-copied) dict, e.g. for a DataFrame row or JSON."""
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------------------
# Device fingerprint
# --------------------------------------------------------------------------------------------------


def _cpu_model_name() -> str:
    """CPU model string: /proc/cpuinfo on Linux, else whatever :mod:`platform` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _usable_cpus() -> int | None:
    # The affinity mask (containers, taskset) is what limits us, not the machine's core count.
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


def device_fingerprint(device: torch.device | str) -> dict:
    """Describe the machine a latency number was measured on.

    Latency numbers are meaningless without the hardware and software they came from, so every
    :class:`LatencyResult` carries this dict.

    Args:
        device: The device the measurement runs on.

    Returns:
        A JSON-serialisable dict with the device name (CPU model, or GPU name with CUDA and cuDNN
        versions), torch version, current thread counts, OS and Python version.
    """
    device = torch.device(device)
    fp: dict[str, Any] = {
        "device_type": device.type,
        "cpu": _cpu_model_name(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": _usable_cpus(),
        "torch": torch.__version__,
        "num_threads": torch.get_num_threads(),
        "num_interop_threads": torch.get_num_interop_threads(),
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
        "os": platform.platform(),
        "python": platform.python_version(),
    }
    if device.type == "cpu":
        fp["device_name"] = fp["cpu"]
    elif device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        fp.update(
            device_name=torch.cuda.get_device_name(index),
            device_index=index,
            capability=f"{props.major}.{props.minor}",
            total_memory_gb=round(props.total_memory / 2**30, 2),
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            # benchmark mode changes which convolution kernels run, hence the latency.
            cudnn_benchmark=bool(torch.backends.cudnn.benchmark),
        )
    else:
        fp["device_name"] = str(device)
    return fp


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def _model_device(model: nn.Module) -> torch.device:
    for tensor in _tensors(model):
        return tensor.device
    # A parameter-free model (e.g. a pure function wrapped in a Module) runs wherever its input is.
    return torch.device("cpu")


def _tensors(model: nn.Module) -> Iterator[torch.Tensor]:
    yield from model.parameters()
    yield from model.buffers()


def _memory_format(ndim: int) -> torch.memory_format:
    """Channels-last format for an input with ``ndim`` dims (batch included)."""
    if ndim == 4:
        return torch.channels_last
    if ndim == 5:
        return torch.channels_last_3d
    raise ValueError(
        f"channels_last needs an image-like input of rank 4 or 5 (batch included), got rank {ndim}"
    )


def _normalize_device(device: torch.device) -> torch.device:
    # "cuda" means the current CUDA device; pin the index so the timer, the fingerprint and the
    # result all name the same device.
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def _same_device(a: torch.device, b: torch.device) -> bool:
    if a.type != b.type:
        return False
    if a.index == b.index or a.type == "cpu":
        return True
    return _normalize_device(a) == _normalize_device(b)


def _needs_copy(
    model: nn.Module, device: torch.device, dtype: torch.dtype, channels_last: bool
) -> bool:
    if channels_last:
        # Converting the weights' layout in place would change the caller's model; always copy.
        return True
    for tensor in _tensors(model):
        if not _same_device(tensor.device, device):
            return True
        if tensor.is_floating_point() and tensor.dtype != dtype:
            return True
    return False


@contextlib.contextmanager
def _num_threads(threads: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op thread count, restoring it even on error."""
    previous = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _make_timer(device: torch.device) -> Callable[[Callable[[], object]], float]:
    """Return ``time_ms(fn)``: run ``fn`` once and return its duration in milliseconds."""
    if device.type == "cuda":

        def time_cuda(fn: Callable[[], object]) -> float:
            with torch.cuda.device(device):
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                # Start from an idle device so the run measures its own latency, not a queue.
                torch.cuda.synchronize()
                start.record()
                fn()
                end.record()
                end.synchronize()
                return float(start.elapsed_time(end))

        return time_cuda

    sync: Callable[[], None] | None = None
    if device.type != "cpu":
        # Other accelerators (mps, xpu, ...) are asynchronous too; wall-clock with a sync on
        # both sides is the portable fallback when no event API is used.
        backend = getattr(torch, device.type, None)
        sync = getattr(backend, "synchronize", None)

    def time_wall(fn: Callable[[], object]) -> float:
        if sync is not None:
            sync()
        t0 = time.perf_counter()
        fn()
        if sync is not None:
            sync()
        return (time.perf_counter() - t0) * 1e3

    return time_wall


class _Session:
    """One model prepared for timing: converted copy (if needed), eval mode, cached inputs."""

    def __init__(
        self,
        model: nn.Module,
        input_shape: tuple[int, ...],
        device: torch.device | str | None,
        channels_last: bool,
        dtype: torch.dtype,
    ) -> None:
        self.device = _normalize_device(
            torch.device(device) if device is not None else _model_device(model)
        )
        self.dtype = dtype
        self.input_shape = tuple(int(d) for d in input_shape)
        self.memory_format = (
            _memory_format(len(self.input_shape) + 1) if channels_last else torch.contiguous_format
        )
        self.channels_last = channels_last
        if _needs_copy(model, self.device, dtype, channels_last):
            self.model = copy.deepcopy(model).to(device=self.device, dtype=dtype)
            if channels_last:
                self.model = self.model.to(memory_format=self.memory_format)
        else:
            self.model = model
        # Remember every submodule's flag: model.train(prev) would flatten mixed states such as
        # frozen BatchNorm inside a training model.
        self._flags = [(m, m.training) for m in model.modules()]
        self.model.eval()
        self.timer = _make_timer(self.device)
        self.x: torch.Tensor | None = None

    def prepare(self, batch_size: int) -> None:
        # Input generated on CPU with a fixed seed (no global RNG side effects), then moved, so the
        # data-dependent paths (if any) see the same values on every device.
        gen = torch.Generator().manual_seed(0)
        x = torch.randn((batch_size, *self.input_shape), generator=gen)
        x = x.to(device=self.device, dtype=self.dtype)
        self.x = x.contiguous(memory_format=self.memory_format)

    def run(self) -> None:
        self.model(self.x)

    def time_once(self) -> float:
        return self.timer(self.run)

    def restore(self) -> None:
        self.x = None
        for module, flag in self._flags:
            module.training = flag


def _stats(times_ms: Sequence[float]) -> dict[str, float]:
    n = len(times_ms)
    if n >= 2:
        q1, _, q3 = statistics.quantiles(times_ms, n=4, method="inclusive")
        iqr, std = q3 - q1, statistics.stdev(times_ms)
    else:
        iqr = std = 0.0
    return {
        "median_ms": float(statistics.median(times_ms)),
        "iqr_ms": float(iqr),
        "mean_ms": float(statistics.fmean(times_ms)),
        "std_ms": float(std),
        "min_ms": float(min(times_ms)),
    }


def _check_args(batch_sizes: Sequence[int], warmup: int, repeats: int, min_time_s: float) -> None:
    if not batch_sizes or any(int(b) < 1 for b in batch_sizes):
        raise ValueError(
            f"batch_sizes must be a non-empty sequence of positive ints, got {batch_sizes}"
        )
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if min_time_s < 0:
        raise ValueError(f"min_time_s must be >= 0, got {min_time_s}")


def _interleaved(
    sessions: Sequence[_Session], warmup: int, repeats: int, min_time_s: float
) -> list[list[float]]:
    """Time all sessions in alternating rounds; return one list of times (ms) per session.

    Every round times each session once, and the starting session rotates between rounds so that
    no model is always the one that runs right after another (cache and frequency effects).
    Rounds continue past ``repeats`` until every session has accumulated ``min_time_s`` of timed
    runs, so all sessions keep the same number of paired samples.
    """
    for _ in range(warmup):
        for s in sessions:
            s.run()
    times: list[list[float]] = [[] for _ in sessions]
    n = len(sessions)
    rounds = 0
    with _gc_paused():
        while rounds < repeats or min(sum(t) for t in times) < min_time_s * 1e3:
            for k in range(n):
                i = (rounds + k) % n
                times[i].append(sessions[i].time_once())
            rounds += 1
    return times


def _result(
    session: _Session, batch_size: int, times: list[float], warmup: int, fingerprint: dict
) -> LatencyResult:
    st = _stats(times)
    median = st["median_ms"]
    return LatencyResult(
        batch_size=batch_size,
        repeats=len(times),
        warmup=warmup,
        per_image_ms=median / batch_size,
        # A zero median is only possible with a coarse clock and an empty forward.
        images_per_s=1e3 * batch_size / median if median > 0 else float("inf"),
        device=str(session.device),
        threads=torch.get_num_threads(),
        channels_last=session.channels_last,
        dtype=str(session.dtype).removeprefix("torch."),
        fingerprint=fingerprint,
        **st,
    )


def _run(
    models: Mapping[str, nn.Module],
    input_shape: tuple[int, ...],
    batch_sizes: Sequence[int],
    device: torch.device | str | None,
    warmup: int,
    repeats: int,
    min_time_s: float,
    threads: int | None,
    channels_last: bool,
    dtype: torch.dtype,
) -> list[tuple[str, LatencyResult, list[float]]]:
    _check_args(batch_sizes, warmup, repeats, min_time_s)
    if not models:
        raise ValueError("no models given")
    out: list[tuple[str, LatencyResult, list[float]]] = []
    sessions: list[_Session] = []
    with _num_threads(threads):
        try:
            for model in models.values():
                sessions.append(_Session(model, input_shape, device, channels_last, dtype))
            fingerprints = [device_fingerprint(s.device) for s in sessions]
            with torch.inference_mode():
                for bs in batch_sizes:
                    bs = int(bs)
                    for s in sessions:
                        s.prepare(bs)
                    all_times = _interleaved(sessions, warmup, repeats, min_time_s)
                    for name, s, fp, times in zip(
                        models, sessions, fingerprints, all_times, strict=True
                    ):
                        out.append((name, _result(s, bs, times, warmup, fp), times))
        finally:
            # Reverse order: if the same module object was given twice, the first session holds
            # the caller's original flags and must be applied last.
            for s in reversed(sessions):
                s.restore()
    return out


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


def measure_latency(
    model: nn.Module,
    input_shape: tuple[int, ...],
    *,
    batch_sizes: Sequence[int] = (1, 64),
    device: torch.device | str | None = None,
    warmup: int = 10,
    repeats: int = 30,
    min_time_s: float = 0.0,
    threads: int | None = None,
    channels_last: bool = False,
    dtype: torch.dtype = torch.float32,
) -> list[LatencyResult]:
    """Time the forward pass of ``model`` on random input, once per batch size.

    Args:
        model: The network. It is not modified (see the module docstring for how conversions are
            handled); its train/eval flags are restored afterwards.
        input_shape: Shape of one input sample without the batch dimension, e.g. ``(3, 32, 32)``.
        batch_sizes: Batch sizes to time, each giving one result.
        device: Device to run on; ``None`` means the device of the model's first parameter or
            buffer (CPU for a model without any).
        warmup: Untimed runs before timing, per batch size.
        repeats: Minimum number of timed runs per batch size.
        min_time_s: Keep timing beyond ``repeats`` until this much time has been measured, which
            gives fast models more samples for the same wall-clock budget.
        threads: If given, ``torch.set_num_threads(threads)`` for the duration of the call; the
            previous value is restored afterwards.
        channels_last: Run with weights and input in channels-last layout (4-D or 5-D input).
            The model is converted on a deep copy.
        dtype: Floating-point dtype of the weights and input; a different dtype than the model's
            is applied on a deep copy.

    Returns:
        One :class:`LatencyResult` per batch size, in the order of ``batch_sizes``.

    Raises:
        ValueError: On non-positive batch sizes/repeats/threads, negative warm-up or time, or
            ``channels_last`` with an input that is not 4-D or 5-D.
    """
    rows = _run(
        {"model": model}, input_shape, batch_sizes, device, warmup, repeats, min_time_s, threads,
        channels_last, dtype,
    )  # fmt: skip
    return [result for _, result, _ in rows]


def compare_latency(
    models: Mapping[str, nn.Module],
    input_shape: tuple[int, ...],
    *,
    reference: str | None = None,
    **kw: Any,
) -> list[dict]:
    """Time several models with interleaved runs and report each relative to a reference.

    Timing model A completely and then model B lets drift in machine load (another process
    starting, thermal throttling) bias the comparison. Here the timed runs alternate
    (A B, B A, A B, ...) so drift hits all models alike, and per-round ratios give a paired
    estimate of the speed-up that is more robust than a ratio of two medians.

    Args:
        models: Name -> network. Each is handled as in :func:`measure_latency` and not modified.
        input_shape: Shape of one input sample without the batch dimension.
        reference: Name of the model the ratios are relative to; default the first one.
        **kw: Keyword arguments of :func:`measure_latency` (``batch_sizes``, ``device``,
            ``warmup``, ``repeats``, ``min_time_s``, ``threads``, ``channels_last``, ``dtype``).

    Returns:
        One dict per (batch size, model), batch sizes outer, models in the given order. Each holds
        ``model``, the :class:`LatencyResult` fields, and

        * ``ratio_to_ref``: ``median_ms / reference median_ms``;
        * ``paired_ratio``: median over rounds of this model's time divided by the reference's
          time in the same round;
        * ``paired_ratio_iqr``: interquartile range of those per-round ratios.

    Raises:
        KeyError: If ``reference`` is not a key of ``models``.
        TypeError: On an unknown keyword argument.
    """
    allowed = {
        "batch_sizes", "device", "warmup", "repeats", "min_time_s", "threads", "channels_last",
        "dtype",
    }  # fmt: skip
    unknown = set(kw) - allowed
    if unknown:
        raise TypeError(f"compare_latency() got unexpected keyword arguments {sorted(unknown)}")
    ref = next(iter(models), None) if reference is None else reference
    if reference is not None and reference not in models:
        raise KeyError(f"reference {reference!r} is not one of {list(models)}")
    defaults = {
        "batch_sizes": (1, 64), "device": None, "warmup": 10, "repeats": 30, "min_time_s": 0.0,
        "threads": None, "channels_last": False, "dtype": torch.float32,
    }  # fmt: skip
    args = {**defaults, **kw}
    rows = _run(models, tuple(input_shape), **args)

    ref_by_batch = {r.batch_size: (r, t) for name, r, t in rows if name == ref}
    table: list[dict] = []
    for name, result, times in rows:
        ref_result, ref_times = ref_by_batch[result.batch_size]
        ratios = [a / b for a, b in zip(times, ref_times, strict=True) if b > 0]
        paired = _stats(ratios) if ratios else {"median_ms": float("nan"), "iqr_ms": float("nan")}
        table.append(
            {
                "model": name,
                **result.as_dict(),
                "ratio_to_ref": result.median_ms / ref_result.median_ms
                if ref_result.median_ms > 0
                else float("nan"),
                "paired_ratio": paired["median_ms"],
                "paired_ratio_iqr": paired["iqr_ms"],
            }
        )
    return table
