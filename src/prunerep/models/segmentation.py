"""Segmentation networks whose forward returns the logits tensor (not torchvision's dict).

torchvision's segmentation models return ``{"out": logits, "aux": ...}``; the shared training
loop and evaluation expect a tensor. `SegmentationLogits` wraps any of them; registered name:

* ``deeplabv3_resnet50``: DeepLabV3-ResNet50 (Chen et al., "Rethinking Atrous Convolution for
  Semantic Image Segmentation", 2017; torchvision's output stride 8) returning ``[N, K, H, W]``
  logits at the input's resolution. Its ``backbone`` and ``classifier`` are torchvision's modules
  under the same names, so a torchvision DeepLabV3 state dict loads into it once its
  ``aux_classifier.*`` entries are dropped (``weights=...`` does that). No auxiliary head: a tensor
  model has no second output for an auxiliary loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from prunerep.models.imagenet import tv_deeplabv3_resnet50
from prunerep.models.registry import register_model

__all__ = ["SegmentationLogits", "SegmentationNet", "deeplabv3_resnet50"]


class SegmentationLogits(nn.Module):
    """``model(x)["out"]``: any torchvision segmentation model (dict output) as a logits model.

    The shared loop's cross-entropy then works per pixel (targets ``[N, H, W]``; VOC's boundary
    label 255 mapped to -100, cross-entropy's ignore index, as `prunerep.data.voc` does).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["out"]


class SegmentationNet(nn.Module):
    """``classifier(backbone(x)["out"])`` upsampled bilinearly to the input size, as torchvision's
    ``_SimpleSegmentationModel`` computes its ``"out"``.

    Args:
        backbone: returns a dict with the key ``"out"`` (torchvision's ``IntermediateLayerGetter``).
        classifier: the head, features -> logits.
    """

    def __init__(self, backbone: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        logits = self.classifier(self.backbone(x)["out"])
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


@register_model("deeplabv3_resnet50")
def deeplabv3_resnet50(
    *,
    num_classes: int = 21,
    in_channels: int = 3,
    weights: str | None = None,
    weights_backbone: str | None = None,
) -> nn.Module:
    """DeepLabV3-ResNet50 returning the logits tensor (random init unless weights are named)."""
    tv = tv_deeplabv3_resnet50(num_classes=num_classes, in_channels=in_channels, weights=weights,
                               weights_backbone=weights_backbone)
    return SegmentationNet(tv.backbone, tv.classifier)
