"""MobileNetV2 for 32x32 inputs (Sandler et al., "MobileNetV2: Inverted Residuals and Linear
Bottlenecks", CVPR 2018).

Blocks are exactly the paper's (and torchvision's): inverted residual = 1x1 expansion (ratio ``t``,
omitted when ``t == 1``) + BN + ReLU6, 3x3 depthwise + BN + ReLU6, 1x1 linear projection + BN, with a
residual connection iff ``stride == 1`` and the channel count is unchanged. Channel widths are
scaled by ``width_mult`` and rounded to multiples of 8 as in the paper's reference code.

CIFAR adaptation (the common one, e.g. in the widely used ``pytorch-cifar`` collection): the stem
conv has stride 1 instead of 2 and the second block group (24 channels) stride 1 instead of 2, so
a 32x32 input reaches the last stage at 4x4 instead of 1x1. Unlike that collection we do *not* add
1x1 projection shortcuts to blocks that change the channel count (the paper has none), and the
classifier is a single linear layer after global average pooling (``dropout`` defaults to 0).
Block settings ``(t, c, n, s)``: (1,16,1,1) (6,24,2,1) (6,32,3,2) (6,64,4,2) (6,96,3,1) (6,160,3,2)
(6,320,1,1); last conv 1x1 to 1280 channels.

Module names: ``features.0`` (stem, ``ConvBNAct``: ``conv``/``bn``/``act``), ``features.1`` ..
``features.17`` (blocks with children ``expand``, ``dw``, ``project``), ``features.18`` (last 1x1
conv), ``avgpool``, ``dropout``, ``classifier``. Activations are not in place.
Initialisation: Kaiming normal fan_out for convs, BN 1/0, N(0, 0.01) for the classifier.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from prunerep.models.layers import ConvBNAct, init_conv_bn_
from prunerep.models.registry import register_model

__all__ = ["CIFAR_SETTINGS", "CifarMobileNetV2", "InvertedResidual"]

# (expand ratio t, output channels c, repeats n, stride of the first repeat s)
CIFAR_SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),  # stride 2 in the ImageNet network
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)

_ReLU6 = partial(nn.ReLU6, inplace=False)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to a multiple of ``divisor`` without going below 90% of it (paper code)."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


class InvertedResidual(nn.Module):
    """Expansion -> depthwise -> linear projection, residual when shapes allow.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        stride: Depthwise conv stride (1 or 2).
        expand_ratio: Hidden width multiplier ``t``; ``t == 1`` drops the expansion conv.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = round(in_channels * expand_ratio)
        self.use_residual = stride == 1 and in_channels == out_channels
        self.expand: nn.Module = (
            ConvBNAct(in_channels, hidden, 1, act=_ReLU6) if expand_ratio != 1 else nn.Identity()
        )
        self.dw = ConvBNAct(hidden, hidden, 3, stride=stride, groups=hidden, act=_ReLU6)
        self.project = ConvBNAct(hidden, out_channels, 1, act=None)  # linear bottleneck

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.dw(self.expand(x)))
        return x + out if self.use_residual else out


class CifarMobileNetV2(nn.Module):
    """MobileNetV2, CIFAR variant (see the module docstring).

    Args:
        num_classes: Classifier outputs.
        in_channels: Input image channels.
        width_mult: Channel width multiplier.
        dropout: Dropout probability before the classifier.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        width_mult: float = 1.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"width_mult must be > 0, got {width_mult}")
        channels = make_divisible(32 * width_mult)
        last_channels = make_divisible(1280 * max(1.0, width_mult))
        layers: list[nn.Module] = [ConvBNAct(in_channels, channels, 3, stride=1, act=_ReLU6)]
        for t, c, n, s in CIFAR_SETTINGS:
            out = make_divisible(c * width_mult)
            for i in range(n):
                layers.append(InvertedResidual(channels, out, s if i == 0 else 1, t))
                channels = out
        layers.append(ConvBNAct(channels, last_channels, 1, act=_ReLU6))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(last_channels, num_classes)
        init_conv_bn_(self, linear="normal")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(self.dropout(x))


@register_model("mobilenetv2")
def mobilenetv2(
    *, num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0, dropout: float = 0.0
) -> CifarMobileNetV2:
    """MobileNetV2, CIFAR variant (stride-1 stem and stride-1 second block group)."""
    return CifarMobileNetV2(num_classes, in_channels, width_mult, dropout)
