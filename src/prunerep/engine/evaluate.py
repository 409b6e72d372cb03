"""Accuracy and loss of a model over a loader (summed over the ranks when the loader is sharded)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from prunerep.engine.device import is_distributed

#: Targets cross-entropy ignores (its default ignore_index): not counted as samples either.
IGNORE_INDEX = -100


def _sum_over_shards(counts: torch.Tensor, loader: Any) -> None:
    """Sum `counts` over the ranks in place when each rank saw only its shard of the split
    (``loader.shard``); an unsharded loader gave every rank the whole split."""
    if is_distributed() and getattr(loader, "shard", None) is not None:
        torch.distributed.all_reduce(counts)


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable[tuple[torch.Tensor, torch.Tensor]], *,
             amp: bool = False) -> dict[str, float]:
    """Top-1 accuracy (%) and mean cross-entropy of `model` on `loader`, in eval mode.

    The model's training flag is restored afterwards. Inputs are expected on the model's device.
    Under torch.distributed the counts are summed over the ranks only if the loader is sharded
    (``loader.shard``); an unsharded loader gives every rank the whole split, and its own counts.
    Targets equal to -100 (cross-entropy's ignore index: VOC's unlabelled pixels) are not counted.
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
            valid = y != IGNORE_INDEX
            totals[1] += ((logits.argmax(1) == y) & valid).sum()
            totals[2] += valid.sum()
    finally:
        model.train(was_training)
    _sum_over_shards(totals, loader)
    loss_sum, correct, count = totals.tolist()
    if count == 0:
        raise ValueError("evaluate: the loader yielded no samples")
    return {"loss": loss_sum / count, "acc": 100.0 * correct / count, "n": int(count)}


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """int64 [K, K] pixel counts, rows = true class, columns = predicted class.

    Pixels whose target is outside ``[0, num_classes)`` (the ignore index -100 of cross-entropy,
    or VOC's 255 if unmapped) are not counted.
    """
    valid = (target >= 0) & (target < num_classes)
    index = target[valid] * num_classes + pred[valid]
    return torch.bincount(index, minlength=num_classes * num_classes).view(num_classes, num_classes)


def miou_from_confusion(conf: torch.Tensor) -> dict[str, Any]:
    """Mean IoU (%), pixel accuracy (%) and per-class IoU of a confusion matrix.

    IoU of class k = TP / (TP + FP + FN). The mean is over the classes present in the ground
    truth or the predictions; a class absent from both has no IoU (``None`` in ``iou``) and does
    not count (on VOC's val set all 21 classes are present, so this is the usual 21-class mean).
    """
    conf = conf.double()
    tp = conf.diag()
    union = conf.sum(0) + conf.sum(1) - tp
    present = union > 0
    iou = torch.where(present, tp / union.clamp_min(1), torch.zeros_like(tp))
    total = conf.sum()
    if total == 0:
        raise ValueError("segmentation_miou: no labelled pixel to score")
    return {
        "miou": 100.0 * float(iou[present].mean()),
        "pixel_acc": 100.0 * float(tp.sum() / total),
        "iou": [100.0 * float(v) if p else None for v, p in zip(iou, present, strict=True)],
        "n": int(total),
    }


@torch.no_grad()
def segmentation_miou(model: nn.Module, loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
                      num_classes: int, *, amp: bool = False) -> dict[str, Any]:
    """Mean intersection-over-union (%) of a segmentation model on `loader`, in eval mode.

    The loader yields images ``[N, C, H, W]`` and int64 targets ``[N, H, W]`` with ignored
    pixels at -100 (`prunerep.data.voc`); the model returns logits ``[N, K, H, W]`` (or
    torchvision's ``{"out": logits}``). One confusion matrix is accumulated over all pixels of
    the split (summed over the ranks when the loader is sharded), then scored by `miou_from_confusion`:
    ``{"miou", "pixel_acc", "iou" (per class), "n" (scored pixels)}``.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    conf = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
    try:
        for x, y in loader:
            with torch.autocast(device.type, enabled=amp and device.type == "cuda"):
                out = model(x)
            logits = out["out"] if isinstance(out, dict) else out
            conf += confusion_matrix(logits.argmax(1), y.to(device), num_classes)
    finally:
        model.train(was_training)
    _sum_over_shards(conf, loader)
    return miou_from_confusion(conf.cpu())
