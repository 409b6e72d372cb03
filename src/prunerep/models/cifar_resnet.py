"""CIFAR ResNets (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, Sec. 4.2).

Depth ``6n + 2``: a 3x3 stem conv (16 channels) + BN + ReLU, three stages of ``n`` BasicBlocks with
16/32/64 channels (the first block of stages 2 and 3 has stride 2), global average pooling and a
linear classifier. Registered as ``resnet20/32/44/56/110`` (n = 3/5/7/9/18).

Shortcuts of the downsampling blocks (``shortcut`` kwarg):

* ``"A"`` (default): parameter-free, subsample by 2 and zero-pad the new channels (``planes // 4``
  on each side), as in the paper's CIFAR experiments and in the ResNet-56 most CIFAR pruning papers
  use (e.g. GReg: Wang et al., "Neural Pruning via Growing Regularization", ICLR 2021). Implemented
  by :class:`~prunerep.models.layers.ChannelSelect` so torch-pruning can trace the coupling.
* ``"B"``: 1x1 stride-2 conv + BN projection (the "dsconv" ResNet variant used by DSA: Ning et al.,
  "DSA: More Efficient Budgeted Pruning via Differentiable Sparsity Allocation", ECCV 2020).

Identity shortcuts are empty ``nn.Sequential`` modules in both variants. Module names are stable:
``conv1``, ``bn1``, ``relu``, ``layer{1,2,3}.{i}.{conv1,bn1,relu1,conv2,bn2,shortcut,relu2}``,
``avgpool``, ``fc``. Every activation is its own non-inplace ``nn.ReLU`` so that hooks on BN outputs
(activation-based pruning criteria) see pre-activation values, not values overwritten in place.

Initialisation (:func:`~prunerep.models.layers.init_conv_bn_`): Kaiming normal fan_out for convs,
BN weight 1 / bias 0, PyTorch's default for the linear layer.

Published sizes (MACs of conv + linear, params incl. BN): ResNet-20 40.55M / 0.27M, ResNet-56
125.49M / 0.85M, ResNet-110 252.89M / 1.73M for option A on 32x32 inputs.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from prunerep.models.layers import ChannelSelect, init_conv_bn_
from prunerep.models.registry import register_model

__all__ = ["BasicBlock", "CifarResNet"]

_SHORTCUTS = ("A", "B")


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual connection (post-activation, as in the paper).

    Args:
        in_planes: Input channels.
        planes: Output channels.
        stride: Stride of the first conv (and of the shortcut).
        shortcut: ``"A"`` (ChannelSelect) or ``"B"`` (1x1 conv + BN) when the shape changes.
    """

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, shortcut: str = "A") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.shortcut: nn.Module
        if stride == 1 and in_planes == planes:
            self.shortcut = nn.Sequential()  # identity, kept as a module for stable names
        elif shortcut == "A":
            self.shortcut = ChannelSelect(in_planes, planes, stride=stride)
        elif shortcut == "B":
            self.shortcut = nn.Sequential(
                OrderedDict(
                    conv=nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                    bn=nn.BatchNorm2d(planes),
                )
            )
        else:
            raise ValueError(f"shortcut must be one of {_SHORTCUTS}, got {shortcut!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """CIFAR ResNet of depth ``6 * num_blocks + 2``.

    Args:
        num_blocks: BasicBlocks per stage (``n``).
        num_classes: Classifier outputs.
        in_channels: Input image channels.
        shortcut: ``"A"`` or ``"B"``, see the module docstring.
    """

    def __init__(
        self, num_blocks: int, num_classes: int = 10, in_channels: int = 3, shortcut: str = "A"
    ) -> None:
        super().__init__()
        if shortcut not in _SHORTCUTS:
            raise ValueError(f"shortcut must be one of {_SHORTCUTS}, got {shortcut!r}")
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
        self.conv1 = nn.Conv2d(in_channels, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        in_planes = 16
        stages = []
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for i in range(num_blocks):
                blocks.append(BasicBlock(in_planes, planes, stride if i == 0 else 1, shortcut))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)  # any input size
        self.fc = nn.Linear(64, num_classes)
        init_conv_bn_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _make(depth: int, num_classes: int, in_channels: int, shortcut: str) -> CifarResNet:
    return CifarResNet((depth - 2) // 6, num_classes, in_channels, shortcut)


@register_model("resnet20")
def resnet20(*, num_classes: int = 10, in_channels: int = 3, shortcut: str = "A") -> CifarResNet:
    """CIFAR ResNet-20 (n = 3)."""
    return _make(20, num_classes, in_channels, shortcut)


@register_model("resnet32")
def resnet32(*, num_classes: int = 10, in_channels: int = 3, shortcut: str = "A") -> CifarResNet:
    """CIFAR ResNet-32 (n = 5)."""
    return _make(32, num_classes, in_channels, shortcut)


@register_model("resnet44")
def resnet44(*, num_classes: int = 10, in_channels: int = 3, shortcut: str = "A") -> CifarResNet:
    """CIFAR ResNet-44 (n = 7)."""
    return _make(44, num_classes, in_channels, shortcut)


@register_model("resnet56")
def resnet56(*, num_classes: int = 10, in_channels: int = 3, shortcut: str = "A") -> CifarResNet:
    """CIFAR ResNet-56 (n = 9)."""
    return _make(56, num_classes, in_channels, shortcut)


@register_model("resnet110")
def resnet110(*, num_classes: int = 10, in_channels: int = 3, shortcut: str = "A") -> CifarResNet:
    """CIFAR ResNet-110 (n = 18)."""
    return _make(110, num_classes, in_channels, shortcut)
