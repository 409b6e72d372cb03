"""Learning-rate schedules as pure functions of the step: resumable and testable."""

from __future__ import annotations

import math
from collections.abc import Sequence


def lr_at(step: int, total_steps: int, *, base_lr: float, schedule: str, steps_per_epoch: int,
          milestones: Sequence[float] = (), gamma: float = 0.1, warmup_steps: int = 0,
          final_lr_fraction: float = 0.0) -> float:
    """Learning rate for optimiser step `step` (0-based) of `total_steps`.

    Schedules: ``constant``; ``cosine`` (to `final_lr_fraction`·base); ``multistep`` (×`gamma` at
    each milestone, given in epochs, as in the GReg/ResNet recipes); ``onecycle`` (linear warm-up
    then linear decay to `final_lr_fraction`·base, the fast short-budget recipe). A linear warm-up of
    `warmup_steps` is applied on top of any schedule.
    """
    if total_steps <= 0:
        raise ValueError("total_steps must be positive")
    step = min(max(step, 0), total_steps)
    if schedule == "constant":
        lr = base_lr
    elif schedule == "cosine":
        t = step / total_steps
        lr = base_lr * (final_lr_fraction + (1 - final_lr_fraction) * 0.5 * (1 + math.cos(math.pi * t)))
    elif schedule == "multistep":
        epoch = step / steps_per_epoch
        lr = base_lr * gamma ** sum(epoch >= m for m in milestones)
    elif schedule == "onecycle":
        peak = max(warmup_steps, 1)
        if step < peak:
            return base_lr * (step + 1) / peak
        t = (step - peak) / max(total_steps - peak, 1)
        return base_lr * (1 - (1 - final_lr_fraction) * t)
    else:
        raise ValueError(f"unknown lr schedule {schedule!r}; use constant, cosine, multistep or onecycle")
    if warmup_steps and step < warmup_steps:
        lr *= (step + 1) / warmup_steps
    return lr
