"""Model zoo: CIFAR ResNets, VGG and MobileNetV2, torchvision models, and the registry.

Build models from JSON-able specs::

    from prunerep.models import build_model, get_model, list_models

    model = get_model("resnet56", shortcut="A")
    model.arch_spec  # {"name": "resnet56", "kwargs": {"num_classes": 10, "in_channels": 3, ...}}
    same = build_model(model.arch_spec)

Importing this package registers the built-in models (see :mod:`prunerep.models.registry`).
"""

# Imported for their registration side effect (and re-exported for direct use).
from prunerep.models import cifar_resnet, imagenet, mobilenetv2, segmentation, vgg
from prunerep.models.cifar_resnet import CifarResNet
from prunerep.models.layers import ChannelSelect, ConvBNAct
from prunerep.models.mobilenetv2 import CifarMobileNetV2
from prunerep.models.registry import (
    TORCHVISION_PREFIX,
    build_model,
    get_model,
    list_models,
    register_model,
    unregister_model,
)
from prunerep.models.vgg import CifarVGG

__all__ = [
    "TORCHVISION_PREFIX",
    "ChannelSelect",
    "CifarMobileNetV2",
    "CifarResNet",
    "CifarVGG",
    "ConvBNAct",
    "build_model",
    "cifar_resnet",
    "get_model",
    "imagenet",
    "list_models",
    "mobilenetv2",
    "register_model",
    "segmentation",
    "unregister_model",
    "vgg",
]
