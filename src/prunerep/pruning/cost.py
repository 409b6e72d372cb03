"""Exact MAC and parameter counting: the project's single FLOPs convention.

**MACs** are the multiply-accumulates of convolution and linear layers, per input sample. This is
the convention behind the "FLOPs" commonly quoted for these architectures in the channel-pruning
literature (e.g. 125.49M for the CIFAR ResNet-56 of He et al., CVPR 2016, and 4.09G for the
ImageNet ResNet-50) and the one this project uses when comparing against GDP (Guo et al., ICCV
2021), W-Gates (Li et al., 2020), functionality-oriented pruning (Qin et al., BMVC 2019), DSA
(Ning et al., ECCV 2020), DAIS (Guan et al., 2020) and GReg (Wang et al., ICLR 2021). BN,
activations, pooling, additions and biases are not counted. ``torch.utils.flop_counter.
FlopCounterMode`` counts 2 FLOPs per MAC for the same ops, which the tests use as a cross-check.

**Params** are the weights and biases of conv and linear layers plus the affine parameters of
normalisation layers (BatchNorm, GroupNorm, InstanceNorm, LayerNorm), the latter also reported
separately as ``bn_params``. Only modules that run in the forward pass are counted, each once even
if it runs several times.

:class:`~prunerep.models.layers.ChannelSelect` (the option-A ResNet shortcut) is excluded from
both: it copies channels, it does no arithmetic, and the published counts exclude it.

Per-layer formulas (``kernel`` and ``out_spatial`` are tuples, ``prod(()) == 1``):

* conv:            ``macs = out_channels * in_channels / groups * prod(kernel) * prod(out_spatial)``
* linear:          ``macs = out_features * in_features * prod(out_spatial)``, where ``out_spatial``
  holds the output's leading dims between batch and features (``()`` for the usual ``(N, F)``
  input, ``(T,)`` for ``(N, T, F)``), so the conv formula holds for linear layers too.
* transposed conv (kind ``"conv_transpose"``): every *input* pixel is multiplied by the whole
  kernel, so ``macs = in_channels * out_channels / groups * prod(kernel) * prod(in_spatial)``;
  ``out_spatial`` still records the output size. (None of the registered models has one.)

Weights used functionally (``F.conv2d(x, self.w)``, ``nn.MultiheadAttention``'s projections, matmuls)
are invisible to module hooks; compare against ``FlopCounterMode`` if a model might contain them.

Tip: counting costs nothing on the meta device:
``count_cost(model.to("meta"), (1, 3, 224, 224))`` (shapes only, no arithmetic).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from prunerep.models.layers import ChannelSelect

__all__ = [
    "MACS_UNIT",
    "Cost",
    "LayerCost",
    "conv_macs",
    "conv_transpose_macs",
    "count_cost",
    "linear_macs",
    "trace_layers",
]

MACS_UNIT = "MAC (multiply-accumulate) of conv+linear"
PARAMS_UNIT = "weights+biases of conv+linear + affine params of normalisation layers"

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_NORM = (
    nn.modules.batchnorm._BatchNorm,  # BatchNorm1d/2d/3d, SyncBatchNorm (and lazy variants)
    nn.modules.instancenorm._InstanceNorm,
    nn.GroupNorm,
    nn.LayerNorm,
)


@dataclass(frozen=True)
class LayerCost:
    """One conv or linear layer as executed on the example input (one entry per call).

    Attributes:
        name: Qualified module name (``model.named_modules()``); ``""`` for the root.
        kind: ``"conv"``, ``"linear"`` or ``"conv_transpose"``.
        in_channels: Input channels (``in_features`` for linear).
        out_channels: Output channels (``out_features`` for linear).
        groups: Convolution groups (1 for linear).
        kernel: Kernel size, ``()`` for linear.
        out_spatial: Output spatial size; for linear the output dims between batch and features,
            ``()`` for a plain ``(N, F)`` input.
        macs: Multiply-accumulates per sample.
        params: Weight + bias elements of the module.
    """

    name: str
    kind: str
    in_channels: int
    out_channels: int
    groups: int
    kernel: tuple[int, ...]
    out_spatial: tuple[int, ...]
    macs: int
    params: int


@dataclass(frozen=True)
class Cost:
    """Model cost for one input sample.

    Attributes:
        macs: Sum of ``layers[i].macs``.
        params: Conv/linear weights and biases plus normalisation affine params, each module once.
        bn_params: The normalisation part of ``params``.
        layers: Per-call conv/linear costs in execution order.
    """

    macs: int
    params: int
    bn_params: int
    layers: tuple[LayerCost, ...]

    def as_dict(self) -> dict[str, Any]:
        """JSON-able dict (tuples become lists), units included."""
        return {
            "macs": self.macs,
            "params": self.params,
            "bn_params": self.bn_params,
            "macs_unit": MACS_UNIT,
            "params_unit": PARAMS_UNIT,
            "layers": [
                {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(layer).items()}
                for layer in self.layers
            ],
        }

    def __str__(self) -> str:
        return (
            f"{self.macs / 1e6:.2f}M MACs, {self.params / 1e6:.2f}M params "
            f"({self.bn_params} norm params, {len(self.layers)} conv/linear calls)"
        )


# -- closed forms -------------------------------------------------------------------------------


def _as_tuple(value: int | Sequence[int], ndim: int) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * ndim
    return tuple(int(v) for v in value)


def conv_macs(
    in_channels: int,
    out_channels: int,
    kernel: int | Sequence[int],
    out_spatial: Sequence[int],
    groups: int = 1,
) -> int:
    """MACs of a convolution for one sample.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel: Kernel size per spatial dim (an int means the same size in every dim).
        out_spatial: Output spatial size.
        groups: Convolution groups (``in_channels`` for depthwise).

    Returns:
        ``out_channels * in_channels / groups * prod(kernel) * prod(out_spatial)``.
    """
    if in_channels % groups or out_channels % groups:
        raise ValueError(f"channels {in_channels}->{out_channels} not divisible by groups={groups}")
    k = _as_tuple(kernel, len(out_spatial))
    return out_channels * (in_channels // groups) * math.prod(k) * math.prod(out_spatial)


def conv_transpose_macs(
    in_channels: int,
    out_channels: int,
    kernel: int | Sequence[int],
    in_spatial: Sequence[int],
    groups: int = 1,
) -> int:
    """MACs of a transposed convolution for one sample (each input pixel times the kernel).

    Returns:
        ``in_channels * out_channels / groups * prod(kernel) * prod(in_spatial)``.
    """
    if in_channels % groups or out_channels % groups:
        raise ValueError(f"channels {in_channels}->{out_channels} not divisible by groups={groups}")
    k = _as_tuple(kernel, len(in_spatial))
    return in_channels * (out_channels // groups) * math.prod(k) * math.prod(in_spatial)


def linear_macs(in_features: int, out_features: int) -> int:
    """MACs of a linear layer for one sample (one feature vector): ``in * out``."""
    return in_features * out_features


# -- tracing ------------------------------------------------------------------------------------


def _numel(*tensors: torch.Tensor | None) -> int:
    return sum(t.numel() for t in tensors if t is not None)


def _first_tensor(obj: Any) -> torch.Tensor | None:
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, list | tuple):
        for item in obj:
            found = _first_tensor(item)
            if found is not None:
                return found
    return None


def _layer_cost(name: str, m: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> LayerCost:
    params = _numel(m.weight, m.bias)
    if isinstance(m, nn.Linear):
        # Dims between batch and features multiply the work (e.g. tokens); a 1-D input has none.
        extra = tuple(out.shape[1:-1]) if out.dim() >= 2 else ()
        macs = linear_macs(m.in_features, m.out_features) * math.prod(extra)
        return LayerCost(name, "linear", m.in_features, m.out_features, 1, (), extra, macs, params)
    nd = len(m.kernel_size)
    kernel = tuple(int(k) for k in m.kernel_size)
    # The last `nd` dims are spatial for batched and unbatched inputs alike.
    out_spatial = tuple(int(s) for s in out.shape[-nd:])
    if isinstance(m, _CONV_T):
        in_spatial = tuple(int(s) for s in inp.shape[-nd:])
        macs = conv_transpose_macs(m.in_channels, m.out_channels, kernel, in_spatial, m.groups)
        kind = "conv_transpose"
    else:
        macs = conv_macs(m.in_channels, m.out_channels, kernel, out_spatial, m.groups)
        kind = "conv"
    return LayerCost(
        name, kind, m.in_channels, m.out_channels, m.groups, kernel, out_spatial, macs, params
    )


def _trace(
    model: nn.Module, example_input: torch.Tensor | Sequence[Any]
) -> tuple[list[LayerCost], list[nn.Module]]:
    """Run one eval-mode forward; return layer costs and the norm modules that ran."""
    layers: list[LayerCost] = []
    norms: dict[int, nn.Module] = {}
    handles = []

    def layer_hook(name: str):
        def hook(m: nn.Module, args: tuple[Any, ...], out: Any) -> None:
            inp, out_t = _first_tensor(args), _first_tensor(out)
            if inp is None or out_t is None:
                raise TypeError(f"layer {name!r} did not take and return tensors")
            layers.append(_layer_cost(name, m, inp, out_t))

        return hook

    def norm_hook(m: nn.Module, args: tuple[Any, ...], out: Any) -> None:
        norms[id(m)] = m

    # Remember every module's flag: models may deliberately keep some submodules in eval mode
    # (frozen BN), so restoring only the root's flag would be wrong.
    modes = [(m, m.training) for m in model.modules()]
    try:
        for name, m in model.named_modules():
            if isinstance(m, ChannelSelect):
                continue  # a copy, not arithmetic: excluded by convention
            if isinstance(m, _CONV + _CONV_T + (nn.Linear,)):
                handles.append(m.register_forward_hook(layer_hook(name)))
            elif isinstance(m, _NORM):
                handles.append(m.register_forward_hook(norm_hook))
        model.eval()
        with torch.no_grad():
            if isinstance(example_input, torch.Tensor):
                model(example_input)
            else:
                model(*example_input)
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes:
            m.training = mode
    return layers, list(norms.values())


def trace_layers(model: nn.Module, example_input: torch.Tensor) -> list[LayerCost]:
    """Per-call costs of every conv/linear layer (ChannelSelect excluded) on ``example_input``.

    Runs one forward with hooks, in eval mode and under ``no_grad``; the model is not copied,
    every module's training flag is restored and the hooks are removed even if the forward fails.
    Costs are per sample whatever the batch size of ``example_input``.

    Args:
        model: The network.
        example_input: Input tensor (on the model's device); a tuple is unpacked as positional
            arguments.

    Returns:
        One :class:`LayerCost` per conv/linear call, in execution order.
    """
    return _trace(model, example_input)[0]


def _default_input(model: nn.Module, input_shape: Sequence[int]) -> torch.Tensor:
    tensors = [*model.parameters(), *model.buffers()]
    ref = next((t for t in tensors if t.is_floating_point()), None)
    device = ref.device if ref is not None else torch.device("cpu")
    dtype = ref.dtype if ref is not None else torch.get_default_dtype()
    return torch.zeros(tuple(input_shape), device=device, dtype=dtype)


def count_cost(
    model: nn.Module,
    input_shape: tuple[int, ...] = (1, 3, 32, 32),
    *,
    example_input: torch.Tensor | None = None,
) -> Cost:
    """MACs and parameters of ``model`` for one input sample.

    Args:
        model: The network (any device, including ``meta``; the model is not modified).
        input_shape: Shape of the zero input built on the model's device and dtype, batch dim
            included; ignored when ``example_input`` is given.
        example_input: Explicit input.

    Returns:
        The :class:`Cost`. ``params`` counts each executed conv/linear/normalisation module once.
    """
    x = example_input if example_input is not None else _default_input(model, input_shape)
    layers, norms = _trace(model, x)
    seen: set[str] = set()
    layer_params = 0
    for layer in layers:  # a module called twice appears twice in `layers`; count it once
        if layer.name not in seen:
            seen.add(layer.name)
            layer_params += layer.params
    bn_params = sum(_numel(getattr(m, "weight", None), getattr(m, "bias", None)) for m in norms)
    return Cost(
        macs=sum(layer.macs for layer in layers),
        params=layer_params + bn_params,
        bn_params=bn_params,
        layers=tuple(layers),
    )
