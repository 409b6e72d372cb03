"""torchvision ImageNet / segmentation models behind the registry.

Registered names (torchvision builders; architectures as in their papers):

* ``tv_resnet18``, ``tv_resnet34``, ``tv_resnet50``: He et al., CVPR 2016.
* ``tv_mobilenet_v2``: Sandler et al., CVPR 2018.
* ``tv_vgg16_bn``: Simonyan & Zisserman, ICLR 2015 (with BN, 4096-4096 classifier).
* ``tv_deeplabv3_resnet50``: Chen et al., "Rethinking Atrous Convolution for Semantic Image
  Segmentation", 2017 (the forward returns ``{"out": logits}``, plus ``"aux"`` with ``aux_loss``).

All are built with ``weights=None`` (random init) unless ``weights`` names a torchvision weight
enum member as a string (``"IMAGENET1K_V1"``, ``"DEFAULT"``, ...); only then torchvision downloads
(or reads its cache). ``tv_deeplabv3_resnet50`` also defaults ``weights_backbone`` to ``None``
(torchvision's default would download ImageNet backbone weights). ``in_channels != 3`` replaces the
stem conv by a freshly initialised one (refused together with pretrained weights).

``"torchvision:<fn_name>"`` reaches any builder of ``torchvision.models.get_model`` with the spec's
kwargs (``weights_backbone`` defaults to ``None`` there too).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from prunerep.models.registry import register_model

__all__ = ["torchvision_builder"]


def _tv_build(fn_name: str, **kwargs: Any) -> nn.Module:
    # torchvision is imported lazily: importing prunerep.models should stay cheap.
    import torchvision

    return torchvision.models.get_model(fn_name, **kwargs)


def torchvision_builder(fn_name: str) -> Callable[..., nn.Module]:
    """Builder for the ``"torchvision:<fn_name>"`` escape hatch.

    Args:
        fn_name: A name of ``torchvision.models.list_models()`` (any module: classification,
            segmentation, detection, video, ...).

    Returns:
        A keyword-only builder calling ``torchvision.models.get_model(fn_name, **kwargs)``.

    Raises:
        ValueError: If torchvision has no such builder.
    """
    import torchvision

    try:
        fn = torchvision.models.get_model_builder(fn_name)
    except ValueError:
        raise ValueError(
            f"torchvision has no model builder {fn_name!r}; see torchvision.models.list_models()"
        ) from None
    accepts_backbone = "weights_backbone" in inspect.signature(fn).parameters

    def build(**kwargs: Any) -> nn.Module:
        if accepts_backbone:
            kwargs.setdefault("weights_backbone", None)  # never download implicitly
        return _tv_build(fn_name, **kwargs)

    build.__name__ = build.__qualname__ = f"torchvision_{fn_name}"
    return build


def _check_in_channels(in_channels: int, *weights: str | None) -> None:
    # Checked before building: torchvision would otherwise download the weights first.
    if in_channels != 3 and any(w is not None for w in weights):
        raise ValueError("in_channels != 3 cannot be combined with pretrained weights")


def _with_in_channels(model: nn.Module, in_channels: int) -> nn.Module:
    """Replace the first conv (the stem of every model here) for ``in_channels != 3``."""
    if in_channels == 3:
        return model
    stem_name, stem = next((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d))
    new = nn.Conv2d(
        in_channels,
        stem.out_channels,
        stem.kernel_size,
        stride=stem.stride,
        padding=stem.padding,
        dilation=stem.dilation,
        groups=1,
        bias=stem.bias is not None,
    )
    nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
    if new.bias is not None:
        nn.init.zeros_(new.bias)
    model.set_submodule(stem_name, new)
    return model


def _classifier(fn_name: str) -> Callable[..., nn.Module]:
    def build(
        *, num_classes: int = 1000, in_channels: int = 3, weights: str | None = None, **kwargs: Any
    ) -> nn.Module:
        _check_in_channels(in_channels, weights)
        model = _tv_build(fn_name, num_classes=num_classes, weights=weights, **kwargs)
        return _with_in_channels(model, in_channels)

    build.__name__ = build.__qualname__ = f"tv_{fn_name}"
    build.__doc__ = f"torchvision ``{fn_name}`` (random init unless ``weights`` is given)."
    return build


for _fn in ("resnet18", "resnet34", "resnet50", "mobilenet_v2", "vgg16_bn"):
    register_model(f"tv_{_fn}")(_classifier(_fn))


@register_model("tv_deeplabv3_resnet50")
def tv_deeplabv3_resnet50(
    *,
    num_classes: int = 21,
    in_channels: int = 3,
    weights: str | None = None,
    weights_backbone: str | None = None,
    aux_loss: bool | None = None,
    **kwargs: Any,
) -> nn.Module:
    """torchvision DeepLabV3-ResNet50 (random init, no backbone download unless asked)."""
    _check_in_channels(in_channels, weights, weights_backbone)
    model = _tv_build(
        "deeplabv3_resnet50",
        num_classes=num_classes,
        weights=weights,
        weights_backbone=weights_backbone,
        aux_loss=aux_loss,
        **kwargs,
    )
    return _with_in_channels(model, in_channels)
