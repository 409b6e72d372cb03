"""The hook interface through which methods take part in the one training loop.

Every hook is a no-op by default; a pruning method overrides only what its paper needs. The
loop calls hooks in list order and never asks which method a hook belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass
class TrainState:
    """What hooks can read (and `logs`, what they can write) during a run."""

    epoch: int = 0                  # 0-based epoch being run
    step: int = 0                   # optimiser steps taken so far in this run
    steps_per_epoch: int = 0
    total_steps: int = 0
    lr: float = 0.0
    phase: str = "weights"          # "weights" during the weight step, "arch" during the arch step
    loss: torch.Tensor | None = None  # task loss of the current batch (graph attached in extra_loss)
    logs: dict[str, float] = field(default_factory=dict)  # scalars a hook wants in the history
    stop: bool = False              # a hook may end the run early (e.g. GReg's stop condition)

    @property
    def epoch_progress(self) -> float:
        """Fractional epochs done, e.g. 2.5 half-way through the third epoch."""
        return self.step / max(self.steps_per_epoch, 1)


class TrainHooks:
    """Base class of everything the loop calls into. Override what you need."""

    def param_groups(self, model: nn.Module, weight_decay: float) -> list[dict[str, Any]] | None:
        """Optimiser parameter groups for the weights, or None for one group with weight decay."""
        return None

    def arch_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        """Parameters stepped on held-out batches (bi-level methods); excluded from the weights."""
        return []

    def on_train_start(self, model: nn.Module, state: TrainState) -> None:
        """Once, before the first step (also after a resume)."""

    def on_epoch_start(self, model: nn.Module, state: TrainState) -> None:
        """Before each epoch."""

    def extra_loss(self, model: nn.Module, state: TrainState) -> torch.Tensor | None:
        """A term added to the task loss (regulariser, budget penalty); `state.phase` says which step."""
        return None

    def after_backward(self, model: nn.Module, state: TrainState) -> None:
        """After loss.backward(), before optimizer.step(): gradient edits (e.g. GReg's penalty)."""

    def after_step(self, model: nn.Module, state: TrainState) -> None:
        """After each weight optimiser step (e.g. proximal steps, schedules per iteration)."""

    def on_epoch_end(self, model: nn.Module, state: TrainState) -> None:
        """After each epoch, before validation is logged (e.g. temperature annealing)."""

    def state_dict(self) -> dict[str, Any]:
        """Hook state saved in the training checkpoint so a killed run resumes exactly."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""
