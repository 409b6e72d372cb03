"""Device choice, seeding, threads and torch.distributed set-up: one place for each."""

from __future__ import annotations

import os
import random

import numpy as np
import torch
import torch.distributed as dist


def pick_device(preference: str = "auto") -> torch.device:
    """`auto` → CUDA when present (the local rank's GPU under torch.distributed), else CPU.

    Any explicit torch device string (``cpu``, ``cuda``, ``cuda:1``, ``mps``) is honoured, with a
    clear error when it is not available here.
    """
    if preference == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
        return torch.device("cpu")
    device = torch.device(preference)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {preference!r} requested but CUDA is not available; use `auto` or `cpu`.")
    return device


def seed_everything(seed: int, *, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch (all devices). The one seeding helper of the project."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)


def set_threads(threads: int | None) -> None:
    """Intra-op threads for CPU work (None keeps torch's default)."""
    if threads:
        torch.set_num_threads(threads)


def init_distributed() -> bool:
    """Join a torch.distributed job when launched by torchrun (WORLD_SIZE > 1); idempotent."""
    if dist.is_available() and not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":   # collectives of Python objects use the current device
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
        dist.init_process_group(backend=backend)
    return is_distributed()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """Only rank 0 writes files and prints summaries."""
    return rank() == 0
