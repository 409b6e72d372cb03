"""Building blocks shared by the model zoo.

The central piece is :class:`ChannelSelect`, the parameter-free "option A" shortcut of the CIFAR
ResNets (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, Sec. 4.2): the
downsampling shortcut keeps every second pixel and zero-pads the missing channels. The usual
formulation, ``F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, p, p))``, is invisible to torch-pruning's
``DependencyGraph`` (a padding op is not a prunable layer, so the channel coupling between the
two stages is lost and physical channel removal breaks the shapes). ``ChannelSelect`` instead *is*
an ``nn.Conv2d`` (1x1, no bias) whose weight is a fixed 0/1 selection matrix. torch-pruning
therefore sees an ordinary conv, couples its input channels with the previous stage and its
output channels with the residual sum of the next stage, and removing a row or a column of a
selection matrix leaves a valid selection matrix: pruning is exact by construction.

Also here: :class:`ConvBNAct` (conv + BN + optional activation with readable child names) and
:func:`init_conv_bn_`, the weight initialisation shared by the CIFAR models.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from prunerep.models.checkpoint import register_module_class

__all__ = [
    "ChannelSelect",
    "ConvBNAct",
    "centered_padding_source",
    "init_conv_bn_",
]


def centered_padding_source(in_channels: int, out_channels: int) -> list[int]:
    """Source channel of every output channel for a centred zero-padding shortcut.

    Output channel ``j`` copies input channel ``j - before`` with ``before = (out - in) // 2``
    (``planes // 4`` for the usual doubling ``in = planes / 2``); the ``before`` leading and the
    remaining trailing output channels are zero (source ``-1``). This reproduces
    ``F.pad(x, (0, 0, 0, 0, planes // 4, planes // 4))`` of the option-A shortcut.

    Args:
        in_channels: Channels entering the shortcut.
        out_channels: Channels leaving it; must be ``>= in_channels``.

    Returns:
        ``out_channels`` source indices, ``-1`` meaning "zero channel".
    """
    if out_channels < in_channels:
        raise ValueError(
            f"centred padding needs out_channels >= in_channels, got {in_channels}->{out_channels}"
        )
    before = (out_channels - in_channels) // 2
    return [j - before if 0 <= j - before < in_channels else -1 for j in range(out_channels)]


class ChannelSelect(nn.Conv2d):
    """Parameter-free shortcut: spatial subsampling plus a fixed 0/1 channel selection.

    Structurally a 1x1 ``nn.Conv2d`` without bias (so torch-pruning can trace and prune it, see
    the module docstring) whose ``weight[j, i, 0, 0]`` is 1 iff output channel ``j`` copies input
    channel ``i``. Every row holds at most one 1; all-zero rows are zero-padded channels.

    Properties that the rest of the project relies on:

    * **Exact forward on every device and dtype.** The forward does not run a convolution: it
      reads the selection off the weight and gathers channels (``index_select`` on the strided
      input, times a 0/1 row mask). A real 1x1 conv is exact on CPU in fp32, but on Ampere+ GPUs
      cuDNN uses TF32 for fp32 convolutions by default, which would round the copied activations
      to 10 mantissa bits. The gather is also free (no arithmetic), which is why cost counters
      (:mod:`prunerep.pruning.cost`) and ``torch.utils.flop_counter`` see no MACs here.
    * **Never trained.** ``weight.requires_grad`` is False, also after torch-pruning replaces the
      parameter with a pruned copy (``__setattr__`` re-applies it) and after ``load_state_dict``
      (``assign=True`` included). The forward additionally uses ``weight.detach()``, so even a
      parameter someone re-enabled gets no gradient (and optimizers skip parameters without one).
    * **Not re-initialised.** ``reset_parameters`` only builds the default selection once; later
      calls (generic "re-initialise the pruned network" code) keep the current selection.
    * **Not a filter bank.** Code that treats every ``nn.Conv2d`` as learnable filters (importance
      scores, sparsity regularisers, gates, weight init) must skip it:
      ``isinstance(m, ChannelSelect)``. torch-pruning still needs it in the graph: keep it there.
    * **Validated on load.** ``load_state_dict`` refuses (``RuntimeError``, weight left untouched)
      a selection that is not 0/1 with at most one 1 per row.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        stride: Spatial subsampling factor (keeps pixels ``0, stride, 2*stride, ...``, exactly like
            a 1x1 conv with this stride and no padding, and like ``x[:, :, ::stride, ::stride]``).
        source: Optional source index per output channel (``-1`` = zero channel). Defaults to
            :func:`centered_padding_source`; required when ``out_channels < in_channels``.
        device: Factory kwarg forwarded to ``nn.Conv2d``.
        dtype: Factory kwarg forwarded to ``nn.Conv2d``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        *,
        source: Sequence[int] | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            kernel_size=1,
            stride=stride,
            padding=0,
            bias=False,
            device=device,
            dtype=dtype,
        )
        if source is not None:
            self.set_source(source)
        elif out_channels < in_channels:
            raise ValueError(
                f"ChannelSelect({in_channels}, {out_channels}) drops channels: pass `source`"
            )

    # -- structure -------------------------------------------------------------------------------

    def __setattr__(self, name: str, value: Any) -> None:
        # torch-pruning replaces ``layer.weight`` with ``nn.Parameter(index_select(...))``, which
        # defaults to requires_grad=True; the selection must stay frozen whatever code assigns it.
        if name == "weight" and isinstance(value, nn.Parameter):
            value.requires_grad_(False)
        super().__setattr__(name, value)

    def reset_parameters(self) -> None:
        """Build the default centred-padding selection the first time; afterwards a no-op.

        ``nn.Conv2d.__init__`` calls this once. The selection is structure, not a learned value,
        so later calls (e.g. re-initialising a pruned network for a from-scratch baseline) must
        keep the possibly pruned selection.
        """
        if getattr(self, "_selection_initialised", False):
            return
        if self.out_channels >= self.in_channels:
            self.set_source(centered_padding_source(self.in_channels, self.out_channels))
        else:  # no natural default; __init__ insists on an explicit `source`
            self.set_source([-1] * self.out_channels)
        self._selection_initialised = True

    def set_source(self, source: Sequence[int]) -> None:
        """Overwrite the selection in place.

        Args:
            source: For every output channel, the input channel it copies, or ``-1`` for zero.
        """
        source = [int(s) for s in source]
        if len(source) != self.out_channels:
            raise ValueError(f"need {self.out_channels} source indices, got {len(source)}")
        bad = [s for s in source if not -1 <= s < self.in_channels]
        if bad:
            raise ValueError(f"source indices must be in [-1, {self.in_channels}), got {bad}")
        rows = [j for j, s in enumerate(source) if s >= 0]
        cols = [source[j] for j in rows]
        with torch.no_grad():
            self.weight.zero_()
            if not self.weight.is_meta:  # a meta tensor has no values to set
                self.weight[rows, cols, 0, 0] = 1.0
        self.weight.requires_grad_(False)

    def source(self) -> list[int]:
        """Source input channel of every output channel (``-1`` for a zero channel)."""
        w = self.weight.detach().flatten(1)
        idx = w.argmax(dim=1).tolist()
        has_one = (w.sum(dim=1) > 0).tolist()
        return [i if keep else -1 for i, keep in zip(idx, has_one, strict=True)]

    def check_selection(self) -> None:
        """Raise ``ValueError`` unless the weight is a valid 0/1 selection matrix."""
        problem = _selection_problem(self.weight.detach())
        if problem is not None:
            raise ValueError(problem)

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        # Validate *before* copying, so that a bad checkpoint never leaves a corrupted selection
        # behind; ``load_state_dict`` raises a RuntimeError listing ``error_msgs`` at the end.
        incoming = state_dict.get(prefix + "weight")
        if isinstance(incoming, torch.Tensor) and incoming.shape == self.weight.shape:
            problem = _selection_problem(incoming.detach())
            if problem is not None:
                error_msgs.append(f"{prefix}weight: {problem}")
                return
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        self.weight.requires_grad_(False)  # covers assign=True with a trainable Parameter

    # -- forward ---------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Subsample spatially and copy / zero channels according to the selection matrix."""
        if self.stride != (1, 1):
            x = x[..., :: self.stride[0], :: self.stride[1]]
        w = self.weight.detach().flatten(1)
        # Row j -> the input channel it copies (argmax of a 0/1 row) and whether it copies at all;
        # multiplying by exactly 1.0 or 0.0 is exact in every floating dtype.
        index = w.argmax(dim=1)
        mask = w.sum(dim=1).to(x.dtype)
        shape = (-1, 1, 1) if x.dim() == 3 else (1, -1, 1, 1)  # unbatched (C, H, W) input too
        return x.index_select(-3, index) * mask.view(shape)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}, fixed 0/1 selection"


# A pruned ChannelSelect has other shapes than the dense one, so checkpoints record it with its
# selection (after pruning out < in is possible, which the default centred padding cannot express).
register_module_class(
    ChannelSelect,
    lambda m: {"in_channels": m.in_channels, "out_channels": m.out_channels,
               "stride": int(m.stride[0]), "source": m.source()},
)


def _selection_problem(w: torch.Tensor) -> str | None:
    """Why ``w`` is not a 0/1 selection matrix (``None`` if it is, or if it has no values)."""
    if w.is_meta:
        return None
    if w.dim() != 4 or tuple(w.shape[2:]) != (1, 1):
        return f"ChannelSelect weight must be out x in x 1 x 1, got {tuple(w.shape)}"
    w = w.flatten(1)
    if not bool(((w == 0) | (w == 1)).all()) or bool((w.sum(dim=1) > 1).any()):
        return (
            "ChannelSelect weight is not a 0/1 selection matrix with at most one 1 per row; "
            "it is a fixed copy pattern and must never be trained or re-initialised"
        )
    return None


class ConvBNAct(nn.Sequential):
    """``conv -> bn -> act`` with stable child names ``conv``, ``bn`` and (optionally) ``act``.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Square kernel size; padding is ``kernel_size // 2`` ("same" for odd kernels).
        stride: Convolution stride.
        groups: Convolution groups (``groups == in_channels`` gives a depthwise conv).
        act: Factory for the activation module, or ``None`` for a linear (no activation) output.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        act: Callable[[], nn.Module] | None = nn.ReLU,
    ) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            conv=nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=kernel_size // 2,
                groups=groups,
                bias=False,  # followed by BN, which has its own shift
            ),
            bn=nn.BatchNorm2d(out_channels),
        )
        if act is not None:
            layers["act"] = act()
        super().__init__(layers)


def init_conv_bn_(model: nn.Module, *, linear: str = "default") -> None:
    """Standard initialisation of the CIFAR models, in place.

    * Conv weights: Kaiming normal, ``mode="fan_out"``, ReLU gain (He et al., ICCV 2015), the
      torchvision / most CIFAR codebases' choice. Conv biases (if any) zero.
    * BatchNorm: weight 1, bias 0.
    * Linear: ``"default"`` keeps PyTorch's uniform(+-1/sqrt(fan_in)) init (torchvision ResNet);
      ``"normal"`` uses N(0, 0.01) weights and zero bias (torchvision VGG / MobileNetV2).
    * :class:`ChannelSelect` is skipped: its weight is structure, not a learned value.

    Args:
        model: Module to initialise.
        linear: ``"default"`` or ``"normal"``.
    """
    if linear not in ("default", "normal"):
        raise ValueError(f"linear must be 'default' or 'normal', got {linear!r}")
    for m in model.modules():
        if isinstance(m, ChannelSelect):
            continue
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.GroupNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and linear == "normal":
            nn.init.normal_(m.weight, 0.0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
