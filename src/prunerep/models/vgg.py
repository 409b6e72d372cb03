"""CIFAR VGG-16/19 with batch normalisation.

The variant of the CIFAR pruning literature: Li et al., "Pruning Filters for Efficient ConvNets",
ICLR 2017; Liu et al., "Learning Efficient Convolutional Networks through Network Slimming", ICCV
2017; GReg (Wang et al., ICLR 2021). Architecture (Simonyan & Zisserman, ICLR 2015, configurations
D and E): 3x3 conv (no bias, BN follows) + BN + ReLU stacks with 2x2 max pooling after each group,
then global average pooling and a **single** ``Linear(512, num_classes)`` classifier.

Choices, documented because published numbers depend on them:

* One linear classifier (Li et al. / slimming). Some codebases (e.g. HRank's) use
  ``512 -> 512 -> num_classes`` with BN1d; that adds 262,144 MACs and ~0.27M params. Their often
  quoted "313.73M FLOPs" additionally counts one addition per conv output element; the MAC
  convention of :mod:`prunerep.pruning.cost` gives 313,201,664 MACs for VGG-16 (Li et al. report
  3.13e8).
* Conv layers have no bias (a bias before BN is redundant); params are 14,724,042 for VGG-16 incl.
  BN. With biases (torchvision-style) it would be 14,728,266.
* Max pooling uses ``ceil_mode=True``: identical to floor mode for the 32 -> 16 -> 8 -> 4 -> 2 -> 1
  pyramid of CIFAR, but it also accepts inputs such as 28x28 (28 -> 14 -> 7 -> 4 -> 2 -> 1) where
  the floor mode pyramid would reach zero size.

Module names: ``features.<i>`` (torchvision-style flat indices: conv, BN, ReLU, ..., MaxPool),
``avgpool``, ``classifier``. ReLUs are not in place (hooks on BN outputs stay valid).
Initialisation: Kaiming normal fan_out for convs, BN 1/0, N(0, 0.01) for the classifier.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from prunerep.models.layers import init_conv_bn_
from prunerep.models.registry import register_model

__all__ = ["CFGS", "CifarVGG"]


def _parse_cfg(text: str) -> list[int | str]:
    return [v if v == "M" else int(v) for v in text.split()]


# "M" = 2x2 max pooling; integers = output channels of a 3x3 conv-BN-ReLU.
CFGS: dict[str, list[int | str]] = {
    name: _parse_cfg(text)
    for name, text in {
        "vgg11": "64 M 128 M 256 256 M 512 512 M 512 512 M",
        "vgg13": "64 64 M 128 128 M 256 256 M 512 512 M 512 512 M",
        "vgg16": "64 64 M 128 128 M 256 256 256 M 512 512 512 M 512 512 512 M",
        "vgg19": "64 64 M 128 128 M 256 256 256 256 M 512 512 512 512 M 512 512 512 512 M",
    }.items()
}


class CifarVGG(nn.Module):
    """VGG with BN for small images.

    Args:
        cfg: Layer configuration: channel counts and ``"M"`` for max pooling.
        num_classes: Classifier outputs.
        in_channels: Input image channels.
    """

    def __init__(
        self, cfg: Sequence[int | str], num_classes: int = 10, in_channels: int = 3
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        n_convs = 0
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            elif isinstance(v, int) and not isinstance(v, bool) and v > 0:
                layers += [
                    nn.Conv2d(channels, v, 3, padding=1, bias=False),
                    nn.BatchNorm2d(v),
                    nn.ReLU(),
                ]
                channels = v
                n_convs += 1
            else:
                raise ValueError(f"cfg entries must be positive ints or 'M', got {v!r}")
        if n_convs == 0:
            raise ValueError("cfg must contain at least one conv layer")
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)  # identity on 32x32 inputs; any size otherwise
        self.classifier = nn.Linear(channels, num_classes)
        init_conv_bn_(self, linear="normal")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


@register_model("vgg16_bn")
def vgg16_bn(
    *, num_classes: int = 10, in_channels: int = 3, cfg: list[int | str] | None = None
) -> CifarVGG:
    """CIFAR VGG-16-BN; ``cfg`` overrides the layer configuration (e.g. a slimmed one)."""
    return CifarVGG(CFGS["vgg16"] if cfg is None else cfg, num_classes, in_channels)


@register_model("vgg19_bn")
def vgg19_bn(
    *, num_classes: int = 10, in_channels: int = 3, cfg: list[int | str] | None = None
) -> CifarVGG:
    """CIFAR VGG-19-BN; ``cfg`` overrides the layer configuration (e.g. a slimmed one)."""
    return CifarVGG(CFGS["vgg19"] if cfg is None else cfg, num_classes, in_channels)
