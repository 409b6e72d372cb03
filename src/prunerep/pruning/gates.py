"""Per-channel gates and masks with one interface, attached to any model through hooks.

A gate holds one value per channel of a :class:`~.groups.ChannelGroup` and multiplies the
channels by it. Every variant implements the same small interface, so training code, cost
models and surgery never need to know which paper a gate comes from:

* ``forward(x)``: ``x`` times ``values()`` along dim 1 (``[N, C]`` and ``[N, C, ...]`` inputs);
* ``values()``: the ``[C]`` multipliers (differentiable where the variant allows);
* ``hard_mask()``: bool ``[C]``, which channels survive surgery;
* ``expected_keep()``: differentiable number of kept channels (for budget terms);
* ``regularizer()``: the gate's own penalty, 0 unless a subclass or method defines one.

Variants (the methods pick one, with their paper's mapping where relevant):

=======================  ==========================================================  ===========
class                    value                                                       used by
=======================  ==========================================================  ===========
:class:`SoftGate`        ``fn(theta)`` for a learnable ``theta`` and a given map      GDP, DAIS
                         into [0, 1] with exact zeros (clamp, smoothed L0, ...)
:class:`HardMask`        fixed 0/1 buffer                                            GReg, FOFP
:class:`STEBinaryGate`   ``1[score > 0]``, straight-through gradient                  baselines
:class:`StochasticMask`  Bernoulli(p) in training, straight-through to ``p``;          DSA
                         deterministic in eval
:class:`WeightDependentGate`  ``1[mlp(W_c) > 0]`` of a conv's filters, STE              W-Gates
=======================  ==========================================================  ===========

Placement (:func:`attach_gates`) uses forward hooks, so module names and state-dict keys of the
model stay as they are; the gates live in a :class:`GateSet` registered as a submodule of the
model (``model.gates`` by default), so ``model.parameters()`` includes the gate parameters,
``model.to(device)`` moves them and ``model.train()/eval()`` switches them.

* ``placement="input"`` (GDP): the gate multiplies the group's channels at the input of every
  reader (regular conv/linear). One gate serves all readers of a residual stream, like GDP's
  shared gate across the skip connection. No gate sits before a depthwise conv: a depthwise conv
  carries the group, and its readers are gated.
* ``placement="output"`` (DSA, DAIS, W-Gates, network slimming): the gate multiplies the output
  of every norm layer of the group (after BN, before the activation), and the output of every
  producer that is not followed by a norm. A norm over a concatenation (DenseNet) is gated on
  the group's slice of its output only.

Option-A ``ChannelSelect`` shortcuts copy channels and are never gate positions; they follow the
group's *keep pattern*: a copy of channel ``c`` is multiplied by ``1[g_c != 0]`` (0/1, no
gradient). This is what makes the gated network equal to the physically pruned one, where a
removed channel also disappears from the copy. With binary gates (HardMask, STE, stochastic,
W-Gates) it is simply the gate value.

All values of one gate are computed once per forward pass of the model and shared by all its
positions (a stochastic mask draws one sample per forward, not one per reader).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn

from prunerep.pruning.groups import ChannelGroup

__all__ = [
    "ChannelGate",
    "GateSet",
    "HardMask",
    "STEBinaryGate",
    "SmoothedL0",
    "SoftGate",
    "StochasticMask",
    "TemperedSigmoid",
    "WeightDependentGate",
    "attach_gates",
    "clamp01",
    "gate_state",
]


def _broadcast(values: torch.Tensor, x: torch.Tensor, where: str = "") -> torch.Tensor:
    """``values`` [C] shaped to multiply dim 1 of ``x`` ([N, C] or [N, C, ...]).

    ``where`` names the gate's group and position for the error message.
    """
    if x.dim() < 2 or x.shape[1] != values.numel():
        raise ValueError(
            f"gate of {values.numel()} channels{where} cannot multiply dim 1 of an input of shape "
            f"{tuple(x.shape)}; the groups no longer match the model (find_groups again after "
            "changing it) or this is an engine bug: please report it with the model"
        )
    return values.to(x.dtype).view(1, -1, *([1] * (x.dim() - 2)))


class ChannelGate(nn.Module):
    """Base class: multiplies channel dim 1 by :meth:`values`.

    Subclasses implement :meth:`values`; the defaults of the other methods derive from it.

    Args:
        channels: Number of channels.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"a gate needs at least one channel, got {channels}")
        self.channels = int(channels)

    def values(self) -> torch.Tensor:
        """Multipliers ``[C]`` (differentiable where the variant allows)."""
        raise NotImplementedError

    def hard_mask(self) -> torch.Tensor:
        """Bool ``[C]``: the channels that survive surgery (default: ``values() != 0``)."""
        with torch.no_grad():
            return self.values().detach() != 0

    def expected_keep(self) -> torch.Tensor:
        """Differentiable number of kept channels (default: ``values().sum()``)."""
        return self.values().sum()

    def regularizer(self) -> torch.Tensor:
        """The gate's own penalty term; zero by default."""
        return torch.zeros((), device=self._device())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` times :meth:`values` along dim 1."""
        return x * _broadcast(self.values(), x)

    def _device(self) -> torch.device:
        for t in [*self.parameters(), *self.buffers()]:
            return t.device
        return torch.device("cpu")

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


# -- maps into [0, 1] for SoftGate -------------------------------------------------------------


def clamp01(theta: torch.Tensor) -> torch.Tensor:
    """``clamp(theta, 0, 1)``: exact zeros for ``theta <= 0`` (network-slimming-like gates)."""
    return theta.clamp(0.0, 1.0)


class SmoothedL0(nn.Module):
    """``theta^2 / (theta^2 + eps)``: a smoothed L0 norm in [0, 1), zero iff ``theta == 0``.

    The usual smoothed-L0 surrogate (used to reconstruct GDP's gate); ``eps`` controls how fast
    the value saturates and is a buffer so schedules can change it and checkpoints keep it.

    Args:
        eps: Smoothing constant (> 0).
    """

    def __init__(self, eps: float = 1e-2) -> None:
        super().__init__()
        if eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.register_buffer("eps", torch.tensor(float(eps)))

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        t2 = theta * theta
        return t2 / (t2 + self.eps.to(theta))

    def extra_repr(self) -> str:
        return f"eps={float(self.eps):g}"


class TemperedSigmoid(nn.Module):
    """``sigmoid(theta / T)`` with an annealable temperature ``T`` (DAIS's indicator).

    It is never exactly 0: give the :class:`SoftGate` a ``threshold`` (0.5 for DAIS) and
    binarise (e.g. with :class:`HardMask`) before surgery.

    Args:
        temperature: Initial temperature (> 0); a buffer, so schedules can anneal it.
    """

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.register_buffer("temperature", torch.tensor(float(temperature)))

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(theta / self.temperature.to(theta))

    def extra_repr(self) -> str:
        return f"temperature={float(self.temperature):g}"


# -- gate variants -------------------------------------------------------------------------------


class SoftGate(ChannelGate):
    """A learnable parameter mapped into [0, 1] by a given function.

    Args:
        channels: Number of channels.
        fn: Map from the parameter ``theta`` to gate values in [0, 1], e.g. :func:`clamp01`,
            :class:`SmoothedL0`, :class:`TemperedSigmoid` or a paper-specific callable. An
            ``nn.Module`` map is registered as a submodule (its buffers are saved).
        init: Initial value of ``theta`` (a float, or a ``[C]`` tensor).
        threshold: ``hard_mask()`` keeps channels with ``value > threshold``. 0 (default) keeps
            exactly the non-zero gates, so surgery is exact.

    Attributes:
        theta: The learnable parameter ``[C]``.
    """

    def __init__(
        self,
        channels: int,
        fn: Callable[[torch.Tensor], torch.Tensor] = clamp01,
        init: float | torch.Tensor = 1.0,
        threshold: float = 0.0,
    ) -> None:
        super().__init__(channels)
        theta = torch.as_tensor(init, dtype=torch.get_default_dtype())
        self.theta = nn.Parameter(theta.expand(channels).clone())
        self.fn = fn
        self.threshold = float(threshold)

    def values(self) -> torch.Tensor:
        return self.fn(self.theta)

    def hard_mask(self) -> torch.Tensor:
        with torch.no_grad():
            return self.values().detach() > self.threshold

    def extra_repr(self) -> str:
        fn = self.fn if isinstance(self.fn, nn.Module) else getattr(self.fn, "__name__", self.fn)
        return f"channels={self.channels}, fn={fn}, threshold={self.threshold:g}"


class HardMask(ChannelGate):
    """A fixed 0/1 mask (a buffer: saved, moved, never trained).

    Args:
        mask: Bool or 0/1 tensor ``[C]``, or an int ``C`` for an all-ones mask.
    """

    def __init__(self, mask: torch.Tensor | int) -> None:
        if isinstance(mask, int):
            mask = torch.ones(mask, dtype=torch.bool)
        mask = torch.as_tensor(mask).detach()
        super().__init__(mask.numel())
        self.register_buffer("mask", torch.zeros(self.channels))
        self.set_(mask)

    def set_(self, mask: torch.Tensor) -> HardMask:
        """Overwrite the mask in place (bool or 0/1 values)."""
        mask = torch.as_tensor(mask).detach().flatten()
        if mask.numel() != self.channels:
            raise ValueError(f"mask has {mask.numel()} entries, the gate has {self.channels}")
        if mask.dtype != torch.bool and not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError("HardMask takes a bool or 0/1 mask")
        self.mask.copy_(mask.to(self.mask))
        return self

    def values(self) -> torch.Tensor:
        return self.mask

    def hard_mask(self) -> torch.Tensor:
        return self.mask != 0


class _StraightThrough(torch.autograd.Function):
    """Forward: the given hard value; backward: the gradient passes to the soft input as is."""

    @staticmethod
    def forward(ctx: Any, soft: torch.Tensor, hard: torch.Tensor) -> torch.Tensor:
        return hard.to(soft.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


def straight_through(soft: torch.Tensor, hard: torch.Tensor) -> torch.Tensor:
    """Value ``hard`` with the gradient of ``soft`` (exactly ``hard`` in the forward pass)."""
    return _StraightThrough.apply(soft, hard.detach())


class STEBinaryGate(ChannelGate):
    """``1[score > 0]`` with a straight-through (identity) gradient to ``score``.

    Args:
        channels: Number of channels.
        init: Initial score (> 0: open).

    Attributes:
        score: The learnable score ``[C]``.
    """

    def __init__(self, channels: int, init: float | torch.Tensor = 1.0) -> None:
        super().__init__(channels)
        score = torch.as_tensor(init, dtype=torch.get_default_dtype())
        self.score = nn.Parameter(score.expand(channels).clone())

    def values(self) -> torch.Tensor:
        return straight_through(self.score, self.score > 0)


class StochasticMask(ChannelGate):
    """Bernoulli mask with keep probabilities ``p`` (DSA-style).

    Training mode: ``values()`` draws ``m ~ Bernoulli(p)`` (one draw per model forward, shared
    by all positions of the gate) and returns ``m`` with a straight-through gradient to ``p``.

    Eval mode (and :meth:`hard_mask` always) is deterministic, by ``eval_rule``:

    * ``"threshold"`` (default): keep channels with ``p > 0.5``;
    * ``"topk"``: keep the ``k = round(sum(p))`` channels with the largest ``p`` (at least 1),
      i.e. the expected number of channels, most probable first (ties: lower index first).

    Args:
        channels: Number of channels.
        init: Initial keep probability in (0, 1) when ``prob_fn`` is not given.
        prob_fn: Optional callable returning ``p`` ``[C]`` (e.g. DSA's importance-sigmoid of a
            layer keep ratio); then the gate has no parameter of its own.
        eval_rule: ``"threshold"`` or ``"topk"``.

    Attributes:
        logit: The learnable logit of ``p`` (only without ``prob_fn``).
    """

    def __init__(
        self,
        channels: int,
        init: float = 0.9,
        prob_fn: Callable[[], torch.Tensor] | None = None,
        eval_rule: str = "threshold",
    ) -> None:
        super().__init__(channels)
        if eval_rule not in ("threshold", "topk"):
            raise ValueError(f"eval_rule must be 'threshold' or 'topk', got {eval_rule!r}")
        self.eval_rule = eval_rule
        self.prob_fn = prob_fn
        if prob_fn is None:
            if not 0.0 < init < 1.0:
                raise ValueError(f"init probability must be in (0, 1), got {init}")
            self.logit = nn.Parameter(torch.full((channels,), math.log(init / (1.0 - init))))

    def probs(self) -> torch.Tensor:
        """Keep probabilities ``p`` ``[C]``."""
        if self.prob_fn is not None:
            p = self.prob_fn()
            if p.shape != (self.channels,):
                raise ValueError(
                    f"prob_fn returned shape {tuple(p.shape)}, expected ({self.channels},)"
                )
            return p
        return torch.sigmoid(self.logit)

    def hard_mask(self) -> torch.Tensor:
        with torch.no_grad():
            p = self.probs().detach()
            if self.eval_rule == "threshold":
                return p > 0.5
            k = max(1, min(self.channels, int(torch.round(p.sum()).item())))
            # stable sort: equal probabilities keep the lower channel index
            order = torch.sort(p, descending=True, stable=True).indices[:k]
            mask = torch.zeros(self.channels, dtype=torch.bool, device=p.device)
            mask[order] = True
            return mask

    def values(self) -> torch.Tensor:
        p = self.probs()
        hard = torch.bernoulli(p.detach()) if self.training else self.hard_mask()
        return straight_through(p, hard)

    def expected_keep(self) -> torch.Tensor:
        return self.probs().sum()

    def extra_repr(self) -> str:
        return f"channels={self.channels}, eval_rule={self.eval_rule!r}"


class WeightDependentGate(ChannelGate):
    """Binary gate computed from a layer's filters by a small MLP (W-Gates).

    ``values()[c] = 1[mlp(W[c].flatten()) > 0]`` with a straight-through gradient to the MLP
    output, where ``W = weight_fn()`` is the *current* weight of a conv/linear layer (read through
    the callable at every call, never copied, so the gate follows training and ``.to(device)``).
    Gradients reach both the MLP and the layer's weights.

    Args:
        weight_fn: Returns the weight ``[C, ...]`` of the layer whose output channels are gated,
            e.g. ``lambda: model.layer1[0].conv1.weight``.
        hidden: Hidden width of the MLP.
        init_open: Initialise the output bias so that every gate starts open (score > 0).

    Attributes:
        mlp: ``Linear(D, hidden) -> ReLU -> Linear(hidden, 1)`` with ``D = W[c].numel()``.
    """

    def __init__(
        self, weight_fn: Callable[[], torch.Tensor], hidden: int = 16, init_open: bool = True
    ) -> None:
        w = weight_fn()
        super().__init__(w.shape[0])
        self.weight_fn = weight_fn
        in_dim = w[0].numel()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.mlp.to(device=w.device, dtype=w.dtype)
        if init_open:
            with torch.no_grad():
                self.mlp[2].weight.mul_(0.1)
                self.mlp[2].bias.fill_(1.0)

    def scores(self) -> torch.Tensor:
        """MLP score per channel ``[C]`` (gate open iff > 0)."""
        w = self.weight_fn()
        if w.shape[0] != self.channels:
            raise ValueError(
                f"weight_fn returned {w.shape[0]} filters, the gate has {self.channels}"
            )
        return self.mlp(w.flatten(1)).squeeze(1)

    def values(self) -> torch.Tensor:
        s = self.scores()
        return straight_through(s, s > 0)


# -- placement ------------------------------------------------------------------------------------


def _key(group_id: str) -> str:
    # ModuleDict keys may not contain "."; group ids are module names.
    return group_id.replace(".", "__")


class _InputHook:
    """Forward pre-hook of one reader: multiplies the slices of its input by gate values.

    A callable object (not a closure) so that ``copy.deepcopy(model)`` maps it onto the copied
    GateSet.
    """

    def __init__(
        self, gate_set: GateSet, slots: list[tuple[str, int, int, bool]], name: str = ""
    ) -> None:
        self.gate_set = gate_set
        self.slots = slots  # (group id, offset, repeat, binary copy)
        self.name = name  # the reader, for error messages

    def __call__(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        if self.gate_set._suspended or not args or not isinstance(args[0], torch.Tensor):
            return None
        x = args[0]
        if x.dim() < 2:
            raise ValueError(f"gated layer input must be [N, C, ...], got shape {tuple(x.shape)}")
        if len(self.slots) == 1:
            gid, offset, repeat, binary = self.slots[0]
            v = self.gate_set._value(gid, binary)
            if offset == 0 and repeat == 1 and v.numel() == x.shape[1]:
                return (x * _broadcast(v, x), *args[1:])
        scale = x.new_ones(x.shape[1])
        for gid, offset, repeat, binary in self.slots:
            v = self.gate_set._value(gid, binary).to(x.dtype).repeat_interleave(repeat)
            if offset + v.numel() > x.shape[1]:
                raise ValueError(
                    f"gate of channel group {gid!r} ({v.numel() // repeat} channels at offset "
                    f"{offset}) does not fit the input of {self.name!r} of shape "
                    f"{tuple(x.shape)}; find_groups again after changing the model"
                )
            idx = torch.arange(offset, offset + v.numel(), device=x.device)
            scale = scale.index_copy(0, idx, v)
        return (x * _broadcast(scale, x, f" at the input of {self.name!r}"), *args[1:])


class _OutputHook:
    """Forward hook of one tap: multiplies the module's output by the gate values.

    With ``offset`` set, the tap is a norm / depthwise conv over a concatenation
    (:attr:`~.groups.ChannelGroup.output_slices`): only channels ``offset ... offset + C - 1``
    are this group's and get multiplied.
    """

    def __init__(
        self,
        gate_set: GateSet,
        group_id: str,
        binary: bool,
        name: str = "",
        offset: int | None = None,
    ) -> None:
        self.gate_set = gate_set
        self.group_id = group_id
        self.binary = binary
        self.name = name
        self.offset = offset

    def __call__(self, module: nn.Module, args: tuple[Any, ...], out: Any) -> Any:
        if self.gate_set._suspended or not isinstance(out, torch.Tensor):
            return None
        v = self.gate_set._value(self.group_id, self.binary)
        where = f" (channel group {self.group_id!r}, output of {self.name!r})"
        if self.offset is not None:
            if out.dim() < 2 or self.offset + v.numel() > out.shape[1]:
                raise ValueError(
                    f"gate of {v.numel()} channels at offset {self.offset}{where} does not fit "
                    f"an output of shape {tuple(out.shape)}; find_groups again after changing "
                    "the model"
                )
            idx = torch.arange(self.offset, self.offset + v.numel(), device=out.device)
            v = out.new_ones(out.shape[1]).index_copy(0, idx, v.to(out.dtype))
        return out * _broadcast(v, out, where)


class _ForwardScope:
    """Root hooks bounding one model forward: gate values are computed once inside it."""

    def __init__(self, gate_set: GateSet, enter: bool) -> None:
        self.gate_set = gate_set
        self.enter = enter

    def __call__(self, module: nn.Module, args: tuple[Any, ...], *rest: Any) -> None:
        self.gate_set._cache = {}
        self.gate_set._in_forward = self.enter


_HOOK_TYPES = (_InputHook, _OutputHook, _ForwardScope)


class GateSet(nn.Module):
    """The gates of a model, by group id, and the hooks that apply them.

    Created by :func:`attach_gates`, registered as a submodule of the model (``model.gates`` by
    default), so the optimizer sees the gate parameters through ``model.parameters()`` (or use
    ``model.gates.parameters()`` for a separate parameter group), ``.to(device)`` moves them and
    the model's state dict holds them under ``gates.``. ``gates[group_id]`` returns one gate.

    Attributes:
        placement: ``"input"`` or ``"output"``.
        gates: ``nn.ModuleDict`` of the gates (keys are group ids with "." replaced by "__").
    """

    def __init__(self, placement: str) -> None:
        super().__init__()
        self.placement = placement
        self.gates = nn.ModuleDict()
        self._ids: dict[str, str] = {}  # ModuleDict key -> group id
        self._cache: dict[tuple[str, bool], torch.Tensor] = {}
        self._in_forward = False
        self._suspended = False
        object.__setattr__(self, "_owner", None)  # the gated model; not a submodule (no cycle)
        self._attr: str | None = None

    # mapping-like access by group id
    def __getitem__(self, group_id: str) -> ChannelGate:
        key = _key(group_id)
        if key not in self.gates:
            raise KeyError(
                f"no gate for channel group {group_id!r}; gated groups: {list(self._ids.values())}"
            )
        return self.gates[key]

    def __contains__(self, group_id: object) -> bool:
        return isinstance(group_id, str) and _key(group_id) in self.gates

    def __len__(self) -> int:
        return len(self.gates)

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids())

    def ids(self) -> list[str]:
        """Gated group ids."""
        return [self._ids[k] for k in self.gates]

    def items(self) -> Iterator[tuple[str, ChannelGate]]:
        """``(group id, gate)`` pairs."""
        for key, gate in self.gates.items():
            yield self._ids[key], gate

    def expected_keep(self) -> dict[str, torch.Tensor]:
        """Differentiable kept-channel count per group id (feed to a soft cost model)."""
        return {gid: gate.expected_keep() for gid, gate in self.items()}

    def hard_masks(self) -> dict[str, torch.Tensor]:
        """``hard_mask()`` per group id."""
        return {gid: gate.hard_mask() for gid, gate in self.items()}

    def regularizer(self) -> torch.Tensor:
        """Sum of the gates' own regularizers."""
        terms = [gate.regularizer() for gate in self.gates.values()]
        return torch.stack(terms).sum() if terms else torch.zeros(())

    def remove(self) -> None:
        """Remove the hooks and unregister this GateSet from the model (gates are kept here)."""
        owner = self._owner
        if owner is not None:
            for m in owner.modules():
                for hooks in (m._forward_pre_hooks, m._forward_hooks):
                    for hid in [
                        k
                        for k, h in hooks.items()
                        if isinstance(h, _HOOK_TYPES) and h.gate_set is self
                    ]:
                        del hooks[hid]
                        # forward hooks may also be listed as "always call"/"with kwargs"
                        for extra in (
                            "_forward_hooks_always_called",
                            "_forward_hooks_with_kwargs",
                            "_forward_pre_hooks_with_kwargs",
                        ):
                            getattr(m, extra, {}).pop(hid, None)
            if self._attr is not None and getattr(owner, self._attr, None) is self:
                delattr(owner, self._attr)
        object.__setattr__(self, "_owner", None)
        self._cache = {}

    # internals
    def _value(self, group_id: str, binary: bool) -> torch.Tensor:
        key = (group_id, binary)
        if self._in_forward and key in self._cache:
            return self._cache[key]
        if binary:
            v = self._value(group_id, False).detach()
            v = (v != 0).to(v.dtype)
        else:
            v = self[group_id].values()
        if self._in_forward:
            self._cache[key] = v
        return v

    def _suspend(self) -> None:
        self._suspended = True

    def _resume(self) -> None:
        self._suspended = False

    @contextlib.contextmanager
    def disabled(self) -> Iterator[None]:
        """Context manager: run the model without its gates (hooks become no-ops)."""
        old = self._suspended
        self._suspended = True
        try:
            yield
        finally:
            self._suspended = old


def attach_gates(
    model: nn.Module,
    groups: Iterable[ChannelGroup],
    make_gate: Callable[[ChannelGroup], ChannelGate],
    *,
    placement: str = "input",
    attr: str = "gates",
) -> GateSet:
    """Create one gate per group and hook it into ``model``.

    Args:
        model: The model the groups were found on.
        groups: Groups to gate, e.g. ``find_groups(model, x).select(internal)``.
        make_gate: Builds the gate of a group, e.g. ``lambda g: SoftGate(g.channels)``.
        placement: ``"input"`` (before every reader; GDP) or ``"output"`` (after every norm, or
            the producer without a norm; DSA, DAIS, W-Gates, slimming).
        attr: Attribute under which the :class:`GateSet` is registered on ``model``.

    Returns:
        The :class:`GateSet` (also ``getattr(model, attr)``), on the model's device.

    Raises:
        ValueError: Bad placement, a gate of the wrong size, or ``attr`` already taken.
    """
    if placement not in ("input", "output"):
        raise ValueError(f"placement must be 'input' or 'output', got {placement!r}")
    if hasattr(model, attr):
        raise ValueError(
            f"model already has an attribute {attr!r} (gates attached twice?); remove them first "
            "or pass attr=..."
        )
    groups = list(groups)
    gate_set = GateSet(placement)
    device = next((t.device for t in [*model.parameters(), *model.buffers()]), None)
    for g in groups:
        gate = make_gate(g)
        if not isinstance(gate, ChannelGate):
            raise TypeError(
                f"make_gate returned {type(gate).__name__} for group {g.id!r}, not a ChannelGate"
            )
        if gate.channels != g.channels:
            raise ValueError(
                f"gate for channel group {g.id!r} has {gate.channels} channels, the group has {g.channels}"
            )
        if _key(g.id) in gate_set.gates:
            raise ValueError(f"channel group {g.id!r} given twice")
        gate_set.gates[_key(g.id)] = gate
        gate_set._ids[_key(g.id)] = g.id
    if device is not None:
        gate_set.to(device)
    gate_set.train(model.training)  # new modules default to training mode; follow the model

    if placement == "input":
        slots: dict[str, list[tuple[str, int, int, bool]]] = {}
        for g in groups:
            copies = set(g.selects_in)
            for reader, offset, repeat in g.reader_index:
                slots.setdefault(reader, []).append((g.id, offset, repeat, reader in copies))
        for reader, reader_slots in slots.items():
            model.get_submodule(reader).register_forward_pre_hook(
                _InputHook(gate_set, reader_slots, reader)
            )
    else:
        for g in groups:
            for tap in g.output_taps:
                model.get_submodule(tap).register_forward_hook(
                    _OutputHook(gate_set, g.id, False, tap)
                )
            # Norms over a concatenation re-normalise the group's zeroed channels to non-zero
            # values: gate their slice too, so the gated network equals the pruned one.
            for tap, offset in g.output_slices:
                model.get_submodule(tap).register_forward_hook(
                    _OutputHook(gate_set, g.id, False, tap, offset)
                )
            for copy in g.selects_out:
                model.get_submodule(copy).register_forward_hook(
                    _OutputHook(gate_set, g.id, True, copy)
                )
    model.register_forward_pre_hook(_ForwardScope(gate_set, True))
    model.register_forward_hook(_ForwardScope(gate_set, False), always_call=True)
    object.__setattr__(gate_set, "_owner", model)
    gate_set._attr = attr
    setattr(model, attr, gate_set)
    return gate_set


def gate_state(gates: GateSet) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Eval-mode values and hard masks of every gate, detached (used by surgery).

    Returns:
        ``(values, keep)``: two dicts by group id of ``[C]`` tensors (float and bool).
    """
    values, keep = {}, {}
    for gid, gate in gates.items():
        modes = [(m, m.training) for m in gate.modules()]
        gate.eval()
        try:
            with torch.no_grad():
                values[gid] = gate.values().detach().clone()
                keep[gid] = gate.hard_mask().detach().clone().bool()
        finally:
            for m, mode in modes:
                m.training = mode
    return values, keep
