"""Physical channel removal ("surgery"): masks or gates in, a smaller network out.

Two entry points:

* :func:`prune_channels` removes the channels a boolean keep mask per group marks False.
* :func:`apply_gates` first folds the gate values of an attached :class:`~.gates.GateSet` into
  the weights, so the pruned network computes exactly what the gated one computed, then removes
  the channels whose gate is zero and detaches the gates.

Partially pruned groups go through torch-pruning's group pruning (``Group.prune``), which slices
every coupled layer consistently: producers' output channels, norms (weight, bias, running
stats; ``num_batches_tracked`` is kept), depthwise convs, readers' input channels (a linear
layer after a flatten loses ``H*W`` columns per channel), concatenations and option-A
``ChannelSelect`` shortcuts.

torch-pruning cannot prune a group to zero channels. We handle that case ourselves, and only
where the result is still a meaningful network: a group *inside a residual branch* (for example
the inner channels of a ResNet basic block, or of a MobileNetV2 inverted residual). Then:

* every conv that reads only dead channels receives an all-zero input, so it outputs its bias
  (or zeros) at every pixel; it becomes a :class:`ConstantConv` that returns exactly that,
  broadcast to the output size its kernel/stride/padding/dilation would give. The following BN
  turns it into the BN-bias constant added to the residual stream (GDP's "the BN bias term is
  kept as a constant");
* the dead producers and depthwise convs become zero-channel :class:`ConstantConv` s (they only
  propagate the spatial size, no arithmetic) and their norms become ``nn.Identity``;
* groups whose only readers died with them are removed too (e.g. the first 1x1 of a bottleneck
  whose 3x3 was removed).

Anything else that would remove every channel of a group (the stem, a plain chain as in VGG, a
group read by the classifier, a residual stream) raises a ``ValueError`` naming the group.

``ConstantConv`` is registered with torch-pruning (customized pruner) so a pruned network can be
traced and pruned again, and with the checkpoint module so ``save_model`` / ``load_model``
rebuild it. After surgery the :class:`~.groups.ChannelGroups` object is stale (call
:func:`~.groups.find_groups` again) and any optimizer must be rebuilt: the pruned layers hold
new parameter tensors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch_pruning as tp
from torch import nn
from torch_pruning import ops as tp_ops

from prunerep.pruning.groups import ChannelGroup, ChannelGroups, _forward, _is_residual_add

if TYPE_CHECKING:
    from prunerep.pruning.gates import GateSet

__all__ = [
    "ConstantConv",
    "ConstantConvPruner",
    "SurgeryPlan",
    "apply_gates",
    "effective_keep",
    "plan_surgery",
    "prune_channels",
]

_CONV = nn.modules.conv._ConvNd
_NORM = (
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.GroupNorm,
    nn.LayerNorm,
)


# -- the constant-output module ------------------------------------------------------------------


def _tuple(value: int | tuple[int, ...] | list[int], n: int) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * n
    return tuple(int(v) for v in value)


class ConstantConv(nn.Module):
    """Stands in for a convolution whose entire input was removed.

    A conv that sees an all-zero input outputs ``bias[c]`` at every position (zero padding keeps
    the input zero), so it is replaced by this module, which returns that constant broadcast to
    the conv's output size: ``(N, out_channels, *out_spatial)`` with ``out_spatial`` computed from
    the input's spatial size and the conv's kernel/stride/padding/dilation. It does no
    arithmetic, is not a conv for the cost counters, and reads only the input's shape.

    With ``out_channels == 0`` it replaces a dead producer: it outputs an empty tensor of the
    right spatial size so that a following constant conv still knows its output size.

    Args:
        out_channels: Output channels (0 for a removed producer).
        kernel_size: The replaced conv's kernel size.
        stride: Its stride.
        padding: Its padding (ints or ``"same"`` / ``"valid"``).
        dilation: Its dilation.

    Attributes:
        bias: The constant per channel, a trainable parameter (it plays the role of the conv's
            bias; zeros if the conv had none).
    """

    def __init__(
        self,
        out_channels: int,
        kernel_size: int | tuple[int, ...] | list[int],
        stride: int | tuple[int, ...] | list[int] = 1,
        padding: int | str | tuple[int, ...] | list[int] = 0,
        dilation: int | tuple[int, ...] | list[int] = 1,
    ) -> None:
        super().__init__()
        nd = 1 if isinstance(kernel_size, int) else len(kernel_size)
        self.out_channels = int(out_channels)
        self.kernel_size = _tuple(kernel_size, nd)
        self.stride = _tuple(stride, nd)
        self.padding: str | tuple[int, ...] = (
            padding if isinstance(padding, str) else _tuple(padding, nd)
        )
        self.dilation = _tuple(dilation, nd)
        # A parameter (not a buffer) so that the output has a grad_fn: torch-pruning finds
        # layers through the autograd graph and must see this one to prune it with its group.
        self.bias = nn.Parameter(torch.zeros(self.out_channels))

    @classmethod
    def from_conv(
        cls, conv: nn.modules.conv._ConvNd, out_channels: int | None = None
    ) -> ConstantConv:
        """The constant conv replacing ``conv``; keeps its bias if ``out_channels`` is None."""
        keep_bias = out_channels is None
        out = conv.out_channels if keep_bias else out_channels
        new = cls(out, conv.kernel_size, conv.stride, conv.padding, conv.dilation)
        ref = conv.weight
        new.bias = nn.Parameter(
            torch.zeros(out, device=ref.device, dtype=ref.dtype),
            requires_grad=conv.bias.requires_grad if conv.bias is not None else ref.requires_grad,
        )
        if keep_bias and conv.bias is not None:
            with torch.no_grad():
                new.bias.copy_(conv.bias)
        return new

    def output_size(self, in_spatial: tuple[int, ...]) -> tuple[int, ...]:
        """Output spatial size of the replaced conv for an input of spatial size ``in_spatial``."""
        if self.padding == "same":
            return tuple(in_spatial)
        padding = (0,) * len(in_spatial) if self.padding == "valid" else self.padding
        return tuple(
            (size + 2 * p - d * (k - 1) - 1) // s + 1
            for size, p, d, k, s in zip(
                in_spatial, padding, self.dilation, self.kernel_size, self.stride, strict=True
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Constant ``bias`` of shape ``(N, out_channels, *out_spatial)``; ``x`` gives shapes only."""
        nd = len(self.kernel_size)
        out_spatial = self.output_size(tuple(int(s) for s in x.shape[-nd:]))
        value = self.bias.to(x.dtype).reshape(1, -1, *([1] * nd))
        # contiguous: downstream code may add into this tensor in place.
        return value.expand(x.shape[0], self.out_channels, *out_spatial).contiguous()

    def extra_repr(self) -> str:
        return (
            f"{self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}, constant output"
        )


class ConstantConvPruner(tp.BasePruningFunc):
    """torch-pruning handler for :class:`ConstantConv`: prunes its output channels (the bias).

    Its input channels are not coupled to anything (it reads only the input's shape), so
    ``prune_in_channels`` is a no-op distinct from ``prune_out_channels``; torch-pruning then
    creates no dependency between the two sides.
    """

    TARGET_MODULES = ConstantConv

    def prune_out_channels(self, layer: ConstantConv, idxs: list[int]) -> ConstantConv:
        keep = sorted(set(range(layer.out_channels)) - set(int(i) for i in idxs))
        requires_grad = layer.bias.requires_grad
        layer.bias = self._prune_parameter_and_grad(layer.bias, keep, 0)
        layer.bias.requires_grad_(requires_grad)
        layer.out_channels = len(keep)
        return layer

    def prune_in_channels(self, layer: ConstantConv, idxs: list[int]) -> ConstantConv:
        return layer

    def get_out_channels(self, layer: ConstantConv) -> int:
        return layer.out_channels

    def get_in_channels(self, layer: ConstantConv) -> None:
        return None


def _register_checkpoint_class() -> None:
    try:
        from prunerep.models.checkpoint import register_module_class
    except ImportError:  # pragma: no cover - both modules are part of this project
        return
    register_module_class(
        ConstantConv,
        lambda m: {
            "out_channels": m.out_channels,
            "kernel_size": list(m.kernel_size),
            "stride": list(m.stride),
            "padding": m.padding if isinstance(m.padding, str) else list(m.padding),
            "dilation": list(m.dilation),
        },
    )


_register_checkpoint_class()


# -- planning -------------------------------------------------------------------------------------


@dataclass
class SurgeryPlan:
    """What surgery will do, validated before anything is changed.

    Attributes:
        keep: Keep mask per group (bool, CPU), after removing groups that died with others.
        partial: Groups pruned by torch-pruning (some but not all channels removed).
        dead: Groups removed entirely (inner groups of removed residual branches).
        constant_readers: Convs that read only dead channels and become constant.
    """

    keep: dict[str, torch.Tensor]
    partial: list[str] = field(default_factory=list)
    dead: list[str] = field(default_factory=list)
    constant_readers: list[str] = field(default_factory=list)

    def widths(self) -> dict[str, int]:
        """Channel count of every group after surgery."""
        return {gid: int(mask.sum()) for gid, mask in self.keep.items()}


def _as_mask(gid: str, mask: Any, channels: int) -> torch.Tensor:
    mask = torch.as_tensor(mask).detach().to("cpu")
    if mask.dim() != 1 or mask.numel() != channels:
        raise ValueError(
            f"keep mask for channel group {gid!r} has shape {tuple(mask.shape)}; the group has "
            f"{channels} channels, so a 1-D mask of {channels} entries is expected"
        )
    if mask.dtype != torch.bool:
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError(
                f"keep mask for channel group {gid!r} must be boolean (or 0/1), got values "
                f"{sorted(set(mask.tolist()))[:5]}"
            )
        mask = mask != 0
    return mask


def _producer_of(groups: ChannelGroups) -> dict[str, str]:
    out = {}
    for g in groups:
        for p in g.producers:
            out[p] = g.id
    return out


def _const_source_ok(node: tp.Node) -> bool:
    """True if a constant output of ``node`` only reaches residual sums with a live operand.

    Following the outputs of ``node`` through BN and single-input elementwise ops (ReLU, ...),
    every path must end in a sum whose other operand does not depend on ``node``: then the
    constant is added to a signal that still depends on the network input.
    """
    downstream: set[tp.Node] = set()
    stack = [node]
    while stack:
        n = stack.pop()
        for o in n.outputs:
            if o not in downstream:
                downstream.add(o)
                stack.append(o)
    stack, seen, reached = [node], set(), False
    while stack:
        n = stack.pop()
        for o in n.outputs:
            if o in seen:
                continue
            seen.add(o)
            if _is_residual_add(o):
                others = [i for i in o.inputs if i is not n]
                if not any(i is not node and i not in downstream for i in others):
                    return False
                reached = True
            elif o.type == tp_ops.OPTYPE.BN or (
                o.type == tp_ops.OPTYPE.ELEMENTWISE and len(o.inputs) == 1
            ):
                stack.append(o)
            else:
                return False
    return reached


def plan_surgery(groups: ChannelGroups, keep: Mapping[str, Any]) -> SurgeryPlan:
    """Validate keep masks and work out the surgery, without touching the model.

    Args:
        groups: Groups of the model (from :func:`~.groups.find_groups`).
        keep: Keep mask (bool or 0/1, one entry per channel) by group id; groups not listed are
            kept whole.

    Returns:
        The plan.

    Raises:
        KeyError: Unknown group id.
        ValueError: Wrong mask length, or every channel removed from a group that cannot be
            removed entirely (the message names the group and why).
    """
    groups.check_fresh()
    masks: dict[str, torch.Tensor] = {}
    for gid, mask in keep.items():
        group = groups[gid]  # KeyError naming the group and listing the valid ids
        masks[gid] = _as_mask(gid, mask, group.channels)
    for g in groups:
        masks.setdefault(g.id, torch.ones(g.channels, dtype=torch.bool))

    producer_of = _producer_of(groups)
    requested = {gid for gid, m in masks.items() if not bool(m.any())}
    dead = set(requested)
    # Groups whose every reader is a producer of a dead group die with it.
    changed = True
    while changed:
        changed = False
        for g in groups:
            if g.id in dead or g.residual or g.selects_in or g.selects_out or g.constants:
                continue
            if g.readers and all(producer_of.get(r) in dead for r in g.readers):
                dead.add(g.id)
                changed = True

    model, graph = groups.model, groups.graph
    constant_readers: list[str] = []
    for gid in sorted(dead, key=groups.ids().index):
        g = groups[gid]
        why = _why_not_removable(groups, g, dead, producer_of, model, graph, constant_readers)
        if why:
            raise ValueError(
                f"cannot remove every channel of channel group {gid!r}: {why}. Keep at least one "
                "channel of it (only groups inside a residual branch can be removed entirely)."
            )
    for gid in dead:
        masks[gid] = torch.zeros(groups[gid].channels, dtype=torch.bool)
    order = groups.ids()
    partial = [gid for gid in order if gid not in dead and not bool(masks[gid].all())]
    return SurgeryPlan(
        keep=masks,
        partial=partial,
        dead=[gid for gid in order if gid in dead],
        constant_readers=list(dict.fromkeys(constant_readers)),
    )


def _why_not_removable(
    groups: ChannelGroups,
    g: ChannelGroup,
    dead: set[str],
    producer_of: dict[str, str],
    model: nn.Module,
    graph: tp.DependencyGraph,
    constant_readers: list[str],
) -> str | None:
    if g.residual:
        return "it is a residual stream (the sum would lose all its channels)"
    if g.selects_in or g.selects_out:
        return "it is copied by a ChannelSelect shortcut"
    if g.constants or g.others:
        return f"it contains modules that cannot be removed ({', '.join(g.constants + g.others)})"
    if g.shared:
        # A norm / depthwise conv over a concatenation keeps the other inputs' channels, so it
        # cannot be replaced by a constant or an identity.
        return f"{g.shared[0][0]!r} carries it concatenated with other channels (concatenation)"
    for name in g.producers + g.depthwise:
        m = model.get_submodule(name)
        if not isinstance(m, _CONV) or m.transposed:
            return f"its producer {name!r} is a {type(m).__name__}, not a convolution"
    for name in g.readers:
        if producer_of.get(name) in dead:
            continue  # removed as a producer of another dead group
        m = model.get_submodule(name)
        if not isinstance(m, _CONV) or m.transposed:
            return f"it is read by {type(m).__name__} {name!r} (e.g. the classifier)"
        width_read = sum(
            other.channels
            for other in groups
            if other.id in dead and any(r == name for r, _, _ in other.reader_index)
        )
        if width_read != m.in_channels:
            return f"its reader {name!r} also reads live channels (concatenation)"
        if not _const_source_ok(graph.module2node[m]):
            return (
                f"its reader {name!r} would output a constant that does not feed a residual sum "
                "with another live input (the network would not depend on its input any more)"
            )
        constant_readers.append(name)
    return None


def effective_keep(groups: ChannelGroups, keep: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Keep masks of all groups as surgery will apply them (groups dying with others included).

    Use it to know the widths of the pruned network, e.g. for
    :meth:`~.soft_cost.SoftCostModel.macs` at hard widths.
    """
    return plan_surgery(groups, keep).keep


# -- execution ------------------------------------------------------------------------------------


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def _execute(model: nn.Module, groups: ChannelGroups, plan: SurgeryPlan) -> nn.Module:
    graph = groups.graph
    requires_grad = {name: p.requires_grad for name, p in model.named_parameters()}
    groups.stale = True  # from here on the model no longer matches the traced groups

    for gid in plan.partial:
        idxs = (~plan.keep[gid]).nonzero().flatten().tolist()
        root = model.get_submodule(gid)
        pruner = graph.get_pruner_of_module(root)
        graph.get_pruning_group(root, pruner.prune_out_channels, idxs).prune()
    # torch-pruning rebuilds parameters with requires_grad=True; frozen ones stay frozen (before
    # the replacements below, which copy the flag of the conv they replace).
    for name, p in model.named_parameters():
        if name in requires_grad:
            p.requires_grad_(requires_grad[name])

    for gid in plan.dead:
        g = groups[gid]
        for name in g.producers + g.depthwise:
            _set_module(model, name, ConstantConv.from_conv(model.get_submodule(name), 0))
        for name in g.norms:
            _set_module(model, name, nn.Identity())
    for name in plan.constant_readers:
        _set_module(model, name, ConstantConv.from_conv(model.get_submodule(name)))

    _check_runs(model, groups)
    return model


def _check_runs(model: nn.Module, groups: ChannelGroups) -> None:
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            _forward(model, groups.example_input)
    except Exception as err:  # pragma: no cover - a bug in surgery, never expected
        raise RuntimeError(
            f"surgery produced a network that does not run ({type(err).__name__}: {err}); "
            "please report this with the model"
        ) from err
    finally:
        for m, mode in modes:
            m.training = mode


def prune_channels(model: nn.Module, groups: ChannelGroups, keep: Mapping[str, Any]) -> nn.Module:
    """Physically remove the channels whose keep mask is False, in place.

    Args:
        model: The model ``groups`` was found on.
        groups: Its channel groups (fresh: not used for surgery before).
        keep: Keep mask by group id (bool or 0/1, one entry per channel); groups not listed are
            kept whole. An all-False mask removes a residual branch's inner group entirely.

    Returns:
        ``model`` itself, pruned (``model.arch_spec`` and module names unchanged). ``groups`` is
        stale afterwards; rebuild optimizers (pruned layers hold new parameter tensors).

    Raises:
        KeyError: Unknown group id.
        ValueError: Bad mask or an unremovable group emptied; nothing is changed then.
    """
    if groups.model is not model:
        raise ValueError("`groups` were found on a different model; call find_groups(model, ...)")
    plan = plan_surgery(groups, keep)
    return _execute(model, groups, plan)


def apply_gates(
    model: nn.Module, gates: GateSet, groups: ChannelGroups, *, strict: bool = True
) -> nn.Module:
    """Fold gate values into the weights, remove zero-gated channels and detach the gates.

    The gate values are taken in eval mode (deterministic). Channels where
    ``gate.hard_mask()`` is False are removed; the others keep their value folded into the
    weights, so the pruned network computes what the gated network computed in eval mode:

    * input placement: reader ``W[:, c] *= g_c`` (linear: the columns of channel ``c``);
    * output placement: the norm's ``weight`` and ``bias`` (or the producer's / depthwise conv's
      output channel and bias) times ``g_c``.

    ``ChannelSelect`` copies follow the keep mask and are never scaled.

    Args:
        model: The gated model.
        gates: Its :class:`~.gates.GateSet` (from :func:`~.gates.attach_gates`).
        groups: The groups the gates were attached to.
        strict: Refuse (``ValueError``) a gate whose dropped channels have non-zero values, i.e.
            when dropping them would change the output (e.g. a sigmoid gate thresholded at 0.5).
            Pass ``False`` to binarise on purpose.

    Returns:
        ``model``, pruned in place and without gates.

    Raises:
        ValueError: Unknown group, non-zero values on dropped channels (strict), output gates
            whose zeros do not reach the readers as zeros (an activation with ``f(0) != 0``
            after the gate), a non-affine norm that would need a non-unit value folded in, or
            anything :func:`prune_channels` refuses. The model is unchanged then.
    """
    from prunerep.pruning.gates import gate_state

    if groups.model is not model:
        raise ValueError("`groups` were found on a different model; call find_groups(model, ...)")
    groups.check_fresh()
    values, keep = gate_state(gates)
    for gid in values:
        g = groups[gid]
        if values[gid].numel() != g.channels:
            raise ValueError(
                f"gate of channel group {gid!r} has {values[gid].numel()} values, the group "
                f"has {g.channels} channels"
            )
        dropped = values[gid][~keep[gid]]
        if strict and bool((dropped != 0).any()):
            raise ValueError(
                f"gate of channel group {gid!r} drops {int((dropped != 0).sum())} channel(s) "
                "whose gate value is not zero, so removing them would change the network's "
                "output. Binarise the gates first (e.g. replace them by HardMask) or pass "
                "strict=False to accept the change."
            )
    plan = plan_surgery(groups, keep)
    if gates.placement == "output":
        _check_output_zeros(model, groups, plan)
        _check_affine(model, groups, values, keep)
    gates.remove()
    with torch.no_grad():
        _fold(model, groups, values, keep, gates.placement)
    return _execute(model, groups, plan)


def _check_affine(
    model: nn.Module,
    groups: ChannelGroups,
    values: dict[str, torch.Tensor],
    keep: dict[str, torch.Tensor],
) -> None:
    for gid, v in values.items():
        kept = v[keep[gid]]
        if bool((kept == 1).all()):
            continue
        g = groups[gid]
        for name in [*g.output_taps, *(n for n, _ in g.output_slices)]:
            m = model.get_submodule(name)
            if isinstance(m, _NORM) and getattr(m, "weight", None) is None:
                raise ValueError(
                    f"cannot fold the gate of channel group {gid!r} into {name!r}: the norm has "
                    "no affine weight/bias"
                )


def _check_output_zeros(model: nn.Module, groups: ChannelGroups, plan: SurgeryPlan) -> None:
    """Output gates: the readers of removed channels must see exact zeros there.

    An output gate sits between a norm and its activation; ReLU-like activations map 0 to 0, but
    e.g. a sigmoid would map it to 0.5, which the readers would still use. Checked with one
    eval-mode forward on the example input.
    """
    worst: dict[tuple[str, str], float] = {}
    hooks = []

    def make_hook(gid: str, reader: str, idx: torch.Tensor):
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            x = args[0]
            val = (
                float(x.detach().index_select(1, idx.to(x.device)).abs().max())
                if idx.numel()
                else 0.0
            )
            worst[(gid, reader)] = max(worst.get((gid, reader), 0.0), val)

        return hook

    producer_of = _producer_of(groups)
    for gid, mask in plan.keep.items():
        if bool(mask.all()):
            continue
        g = groups[gid]
        dead = (~mask).nonzero().flatten()
        for reader, offset, repeat in g.reader_index:
            if producer_of.get(reader) in plan.dead:
                continue  # removed with its own (dead) output: what it reads no longer matters
            idx = (offset + dead[:, None] * repeat + torch.arange(repeat)[None, :]).flatten()
            m = model.get_submodule(reader)
            hooks.append(m.register_forward_pre_hook(make_hook(gid, reader, idx)))
    if not hooks:
        return
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            _forward(model, groups.example_input)
    finally:
        for h in hooks:
            h.remove()
        for m, mode in modes:
            m.training = mode
    bad = {k: v for k, v in worst.items() if v != 0.0}
    if bad:
        (gid, reader), val = next(iter(bad.items()))
        raise ValueError(
            f"output gate of channel group {gid!r} is zero on channels that {reader!r} still "
            f"reads as non-zero (max |x| = {val:.3g}); an activation after the gate maps 0 to a "
            "non-zero value, so removing the channels would change the output. Use input "
            "placement for this model."
        )


def _fold(
    model: nn.Module,
    groups: ChannelGroups,
    values: dict[str, torch.Tensor],
    keep: dict[str, torch.Tensor],
    placement: str,
) -> None:
    for gid, v in values.items():
        g = groups[gid]
        v = torch.where(keep[gid], v, torch.zeros_like(v))
        if bool((v == 1).all()):
            continue
        if placement == "input":
            for reader, offset, repeat in g.reader_index:
                if reader not in g.readers:
                    continue  # ChannelSelect copies follow the keep mask, never a value
                m = model.get_submodule(reader)
                w = m.weight
                dim = 0 if getattr(m, "transposed", False) else 1
                scale = torch.ones(w.shape[dim], dtype=w.dtype, device=w.device)
                idx = torch.arange(offset, offset + g.channels * repeat, device=w.device)
                scale[idx] = v.to(w.device, w.dtype).repeat_interleave(repeat)
                shape = [1] * w.dim()
                shape[dim] = -1
                w.mul_(scale.view(shape))
        else:
            taps = [(name, None) for name in g.output_taps] + list(g.output_slices)
            for name, offset in taps:
                m = model.get_submodule(name)
                if isinstance(m, ConstantConv):
                    m.bias.mul_(v.to(m.bias))
                    continue
                w = getattr(m, "weight", None)
                b = getattr(m, "bias", None)
                dim = 1 if getattr(m, "transposed", False) else 0
                if w is None and b is None:
                    continue  # a non-affine norm: zeros only, and those channels are removed
                scale = v
                if offset is not None:  # a slice of a norm / depthwise conv over a concatenation
                    n = w.shape[dim] if w is not None else b.shape[0]
                    scale = torch.ones(n, dtype=v.dtype, device=v.device)
                    scale[offset : offset + v.numel()] = v
                if w is not None:
                    shape = [1] * w.dim()
                    shape[dim] = -1
                    w.mul_(scale.to(w).view(shape))
                if b is not None:
                    b.mul_(scale.to(b))
