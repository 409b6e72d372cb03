"""Independent runs side by side: a process pool with an even split of the CPU threads."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import torch


def _exit_when_orphaned(parent: int, every_s: float) -> None:
    while True:
        time.sleep(every_s)
        if os.getppid() != parent:      # re-parented: whoever started us was killed
            os._exit(1)


def _init_worker(threads: int, parent: int | None = None, every_s: float = 1.0) -> None:
    torch.set_num_threads(threads)
    if parent is not None:
        # A SIGKILLed notebook stage cannot shut its pool down: without this watchdog its workers
        # kept training (GBs resident) with nobody left to read their results.
        threading.Thread(target=_exit_when_orphaned, args=(parent, every_s), daemon=True,
                         name="exit-when-orphaned").start()


def map_jobs(fn: Callable[[dict[str, Any]], Any], jobs: list[dict[str, Any]], *, workers: int = 1,
             lazy: bool = False) -> Any:
    """`[fn(job) for job in jobs]`, in order, on `workers` processes (1: in this process).

    With `lazy=True` an iterator yields each result as soon as it (and every one before it) is
    done, so the caller can report progress; otherwise a list.

    Each worker gets ``cpu_count // workers`` intra-op threads (at least one); on CUDA machines
    use workers=1 per GPU. `fn` must be importable (defined in a module, not a notebook) since
    workers are spawned. Each job may carry ``threads``; it is filled in here.
    """
    workers = max(1, min(workers, len(jobs)))
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, cpus // workers)
    jobs = [dict(job, threads=job.get("threads") or (threads if workers > 1 else None)) for job in jobs]
    results = _results(fn, jobs, workers, threads)
    return results if lazy else list(results)


def _results(fn: Callable[[dict[str, Any]], Any], jobs: list[dict[str, Any]], workers: int,
             threads: int) -> Iterator[Any]:
    if workers == 1:
        for job in jobs:
            yield fn(job)
        return
    ctx = multiprocessing.get_context("spawn")  # fork + torch threads can deadlock
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(threads, os.getpid())) as pool:
        yield from pool.map(fn, jobs)
