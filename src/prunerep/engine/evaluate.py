"""Accuracy and loss of a model over a loader (all ranks' counts summed under torch.distributed)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from prunerep.engine.device import is_distributed


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable[tuple[torch.Tensor, torch.Tensor]], *,
             amp: bool = False) -> dict[str, float]:
    """Top-1 accuracy (%) and mean cross-entropy of `model` on `loader`, in eval mode.

    The model's training flag is restored afterwards. Inputs are expected on the model's device.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    totals = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, correct, count
    try:
        for x, y in loader:
            with torch.autocast(device.type, enabled=amp and device.type == "cuda"):
                logits = model(x)
            totals[0] += F.cross_entropy(logits.float(), y, reduction="sum")
            totals[1] += (logits.argmax(1) == y).sum()
            totals[2] += y.numel()
    finally:
        model.train(was_training)
    if is_distributed():
        torch.distributed.all_reduce(totals)
    loss_sum, correct, count = totals.tolist()
    if count == 0:
        raise ValueError("evaluate: the loader yielded no samples")
    return {"loss": loss_sum / count, "acc": 100.0 * correct / count, "n": int(count)}
