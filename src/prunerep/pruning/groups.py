"""Coupled channel groups: which channels of which layers must be pruned together.

A *channel group* is a set of channels that are one and the same quantity in several layers:
the output channels of every conv feeding a residual sum, the BN layers on them, the depthwise
convs that carry them, and the input channels of every layer that reads them. Removing channel
``c`` of a group removes it from all of these at once; that is the only way to remove a channel
and keep the network well-formed.

The grouping is built on torch-pruning's ``DependencyGraph`` (DepGraph, Fang et al., CVPR 2023),
the field's maintained implementation: it traces the autograd graph of one forward pass, so it
works for any ``nn.Module`` that runs on an example input, and it already knows how indices map
through concatenation, flatten, split and slicing. On top of it this module adds what the
pruning methods of this project need and DepGraph does not provide:

* a readable, stable id per group (the name of its first producer in ``named_modules`` order);
* the *role* of every member: producer, norm, reader (gate position), depthwise carrier,
  option-A ``ChannelSelect`` copy, constant left by a removed branch;
* where the group's channels sit in each reader's input (offset after a concatenation, repeat
  after a flatten), so gates and cost models can address them;
* whether the group is a residual stream, whether it reaches the model output (then it is never
  prunable), and which structures are not supported (grouped convs, partial coupling), each with
  a reason in :attr:`ChannelGroups.excluded`;
* which norms / depthwise convs carry the group's channels *together with other channels*,
  i.e. run on a concatenation (DenseNet's ``norm1`` over all earlier features): they are
  :attr:`ChannelGroup.shared` members addressed by an offset, never plain ``norms``, so that
  every member of ``norms`` / ``depthwise`` has exactly the group's width (a prefix at offset 0
  is not the group: that mistake put a 96-channel BN on a 64-channel gate).

Methods choose which groups to prune with a predicate, e.g. GReg prunes only the internal group
of each residual block (``groups.select(internal)``) while DSA/DAIS/GDP also prune the residual
streams (``groups.select(any_group)``).

Known torch-pruning pitfall handled here: in torch-pruning 1.6 a conv is "depthwise" iff
``groups == out_channels > 1``, so a single-output-channel conv (torch-pruning issue #179) is a
regular conv, but a grouped conv with ``groups == out_channels != in_channels`` would be misread
as depthwise. We classify convs ourselves (``groups == in == out`` is depthwise, ``groups == 1``
is regular) and exclude groups that touch any other grouped conv, with a reason.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch_pruning as tp
from torch import nn
from torch_pruning import ops as tp_ops

__all__ = [
    "ChannelGroup",
    "ChannelGroups",
    "any_group",
    "find_groups",
    "internal",
    "residual",
]

_CONV = nn.modules.conv._ConvNd
_NORM_TYPES = (tp_ops.OPTYPE.BN, tp_ops.OPTYPE.GN, tp_ops.OPTYPE.IN, tp_ops.OPTYPE.LN)
# Nodes that only re-index channels; their effect is already in torch-pruning's index mappings.
_MAPPING_TYPES = (
    tp_ops.OPTYPE.CONCAT,
    tp_ops.OPTYPE.SPLIT,
    tp_ops.OPTYPE.RESHAPE,
    tp_ops.OPTYPE.SLICE,
    tp_ops.OPTYPE.EXPAND,
    tp_ops.OPTYPE.UNBIND,
)


@dataclass(frozen=True)
class ChannelGroup:
    """One set of coupled channels.

    Channel ``c`` of the group is output channel ``c`` of every producer, channel ``c`` of every
    norm and depthwise conv, and input feature(s) ``offset + c*repeat ... offset + (c+1)*repeat-1``
    of every reader (see :attr:`reader_index`).

    Attributes:
        id: Name of the first producer in ``model.named_modules()`` order, e.g.
            ``"layer1.0.conv1"``.
        channels: Number of channels (current width).
        producers: Conv/linear modules whose output channels are this group.
        norms: Normalisation layers (BN, GN, ...) on these channels.
        readers: Regular (non-depthwise) conv/linear modules that read these channels as input;
            the positions of input gates.
        depthwise: Depthwise convs (``groups == in == out``) that carry the channels through.
        residual: The channels pass through an elementwise sum of two or more tensors (a
            residual stream).
        selects_in: ``ChannelSelect`` copies (option-A shortcuts) reading these channels. Never
            gate positions: they follow the group's keep mask (see :mod:`.gates`).
        selects_out: ``ChannelSelect`` copies writing these channels.
        constants: Constant-output modules (:class:`~prunerep.pruning.surgery.ConstantConv`) left
            by removed branches, writing these channels.
        others: Other modules torch-pruning prunes along (PReLU, unwrapped parameters, ...).
        reader_index: ``(module, offset, repeat)`` for every reader and ``selects_in`` entry.
            ``offset > 0`` after a concatenation, ``repeat > 1`` after a flatten of a spatial
            map into a linear layer.
        output_taps: Modules after which an *output* gate multiplies these channels: every norm,
            plus every producer / depthwise conv / constant whose output does not go straight
            into a norm of this group.
        shared: ``(module, offset)`` of every BN / InstanceNorm / depthwise conv that runs on a
            concatenation of this group with other channels: channel ``c`` of the group is its
            channel ``offset + c``. Surgery removes the group's slice from them; their cost is
            split between the groups they carry.
        output_slices: ``(module, offset)`` positions of output gates on a slice: every shared
            norm, plus every shared depthwise conv whose output does not go straight into a
            norm (or shared norm) of this group.
    """

    id: str
    channels: int
    producers: tuple[str, ...]
    norms: tuple[str, ...]
    readers: tuple[str, ...]
    depthwise: tuple[str, ...]
    residual: bool
    selects_in: tuple[str, ...] = ()
    selects_out: tuple[str, ...] = ()
    constants: tuple[str, ...] = ()
    others: tuple[str, ...] = ()
    reader_index: tuple[tuple[str, int, int], ...] = ()
    output_taps: tuple[str, ...] = ()
    shared: tuple[tuple[str, int], ...] = ()
    output_slices: tuple[tuple[str, int], ...] = ()

    def input_slot(self, reader: str) -> tuple[int, int]:
        """``(offset, repeat)`` of this group's channels in the input of ``reader``."""
        for name, offset, repeat in self.reader_index:
            if name == reader:
                return offset, repeat
        raise KeyError(f"{reader!r} does not read group {self.id!r}")

    @property
    def members(self) -> tuple[str, ...]:
        """Every module name of the group (each once, in role order)."""
        names = (
            self.producers
            + self.norms
            + self.depthwise
            + self.readers
            + self.selects_in
            + self.selects_out
            + self.constants
            + self.others
            + tuple(name for name, _ in self.shared)
        )
        return tuple(dict.fromkeys(names))


# -- predicates for ChannelGroups.select ------------------------------------------------------


def any_group(group: ChannelGroup) -> bool:
    """Every prunable group (residual streams included): DSA, DAIS, GDP, W-Gates."""
    return True


def internal(group: ChannelGroup) -> bool:
    """Groups that are not a residual stream, e.g. the inner conv of a residual block (GReg)."""
    return not group.residual


def residual(group: ChannelGroup) -> bool:
    """Residual streams only."""
    return group.residual


# -- the result of find_groups -----------------------------------------------------------------


@dataclass
class _LayerIO:
    """Which groups a conv/linear module reads and writes (for cost models)."""

    reads: list[tuple[str, int]] = field(default_factory=list)  # (group id, repeat)
    writes: str | None = None
    depthwise_of: str | None = None
    # A depthwise conv over a concatenation: the groups whose slices it carries.
    depthwise_slices: list[str] = field(default_factory=list)


class ChannelGroups:
    """The prunable channel groups of a model, plus the dependency graph used for surgery.

    Iterating yields :class:`ChannelGroup` objects in model order; ``groups["layer1.0.conv1"]``
    looks one up by id. Groups that are never prunable (the classifier output, anything in
    ``ignore``, unsupported structures) are listed with a reason in :attr:`excluded`.

    The object describes the model *as it was traced*. Surgery changes the model, so after
    :func:`~prunerep.pruning.surgery.prune_channels` this object is marked stale and refuses
    to be used again: call :func:`find_groups` on the pruned model.
    """

    def __init__(
        self,
        model: nn.Module,
        graph: tp.DependencyGraph,
        example_input: Any,
        groups: dict[str, ChannelGroup],
        excluded: dict[str, str],
        layer_io: dict[str, _LayerIO],
        names: dict[nn.Module, str],
    ) -> None:
        self.model = model
        self.graph = graph
        self.example_input = example_input
        self._groups = groups
        self.excluded = excluded
        self._layer_io = layer_io
        self._names = names
        self.stale = False

    def __iter__(self) -> Iterator[ChannelGroup]:
        return iter(self._groups.values())

    def __len__(self) -> int:
        return len(self._groups)

    def __contains__(self, group_id: object) -> bool:
        return group_id in self._groups

    def __getitem__(self, group_id: str) -> ChannelGroup:
        try:
            return self._groups[group_id]
        except KeyError:
            raise KeyError(self._unknown(group_id)) from None

    def __repr__(self) -> str:
        return f"ChannelGroups({len(self)} prunable, {len(self.excluded)} excluded)"

    def ids(self) -> list[str]:
        """Group ids in model order."""
        return list(self._groups)

    def select(self, predicate: Callable[[ChannelGroup], bool]) -> list[ChannelGroup]:
        """Groups for which ``predicate(group)`` is true, e.g. :func:`internal`."""
        return [g for g in self._groups.values() if predicate(g)]

    def widths(self) -> dict[str, int]:
        """Current channel count of every prunable group."""
        return {g.id: g.channels for g in self._groups.values()}

    def group_of(self, module_name: str) -> ChannelGroup | None:
        """The group whose channels ``module_name`` *outputs* (producer, norm, depthwise...)."""
        io = self._layer_io.get(module_name)
        gid = None
        if io is not None:
            gid = io.writes or io.depthwise_of
        if gid is None:
            for g in self._groups.values():
                if (
                    module_name in g.norms
                    or module_name in g.selects_out
                    or module_name in g.constants
                ):
                    gid = g.id
                    break
        return self._groups.get(gid) if gid is not None else None

    def check_fresh(self) -> None:
        """Raise if the model was changed by surgery since these groups were found."""
        if self.stale:
            raise RuntimeError(
                "these ChannelGroups describe the model before surgery; call find_groups() on "
                "the pruned model to get its current groups"
            )

    def _unknown(self, group_id: object) -> str:
        msg = f"unknown channel group {group_id!r}."
        if group_id in self.excluded:
            msg = f"channel group {group_id!r} is not prunable: {self.excluded[group_id]}."
        return f"{msg} Prunable groups: {', '.join(self._groups) or '(none)'}"


# -- building -----------------------------------------------------------------------------------


def _channel_select_type() -> type | None:
    try:
        from prunerep.models.layers import ChannelSelect
    except ImportError:  # pragma: no cover - the models package is part of this project
        return None
    return ChannelSelect


def _is_depthwise(m: nn.Module) -> bool:
    return isinstance(m, _CONV) and m.groups > 1 and m.groups == m.in_channels == m.out_channels


def _is_grouped(m: nn.Module) -> bool:
    return isinstance(m, _CONV) and m.groups > 1 and not _is_depthwise(m)


def _channel_count(m: nn.Module) -> int | None:
    """Channels of ``m`` along the pruned dim, for the roles that can carry a concatenation."""
    if isinstance(m, _CONV):
        return m.out_channels
    if isinstance(m, nn.Linear):
        return m.out_features
    if isinstance(m, nn.modules.batchnorm._BatchNorm | nn.modules.instancenorm._InstanceNorm):
        return m.num_features
    if isinstance(m, nn.GroupNorm):
        return m.num_channels
    return getattr(m, "out_channels", None)  # ConstantConv, ChannelSelect, ...


# Norms that act on every channel independently, so a slice of them is a norm of that slice.
_PER_CHANNEL_NORMS = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)


def _is_residual_add(node: tp.Node) -> bool:
    if node.type != tp_ops.OPTYPE.ELEMENTWISE:
        return False
    name = str(getattr(node.module, "_grad_fn", "")).lower()
    return (name.startswith("add") or name.startswith("sub")) and len(node.inputs) >= 2


def _model_device(model: nn.Module) -> torch.device | None:
    for t in [*model.parameters(), *model.buffers()]:
        return t.device
    return None


def _prepare_input(model: nn.Module, example_input: Any) -> Any:
    """Detached copy on the model's device; a float tensor input requires grad.

    torch-pruning discovers layers through the autograd graph, so every layer output needs a
    ``grad_fn``; making the input require grad guarantees that even for frozen models.
    """
    device = _model_device(model)

    def prep(x: Any) -> Any:
        if isinstance(x, torch.Tensor):
            x = x.detach().to(device) if device is not None else x.detach()
            if x.is_floating_point():
                x = x.clone().requires_grad_(True)
            return x
        if isinstance(x, list | tuple):
            return type(x)(prep(v) for v in x)
        if isinstance(x, dict):
            return {k: prep(v) for k, v in x.items()}
        return x

    return prep(example_input)


def _forward(model: nn.Module, x: Any) -> Any:
    if isinstance(x, tuple):
        return model(*x)
    if isinstance(x, dict):
        return model(**x)
    return model(x)


@contextlib.contextmanager
def _suspended_gates(model: nn.Module) -> Iterator[None]:
    """Temporarily detach attached GateSets so they do not appear in the traced graph."""
    from prunerep.pruning.gates import GateSet

    gate_sets = [m for m in model.modules() if isinstance(m, GateSet)]
    for gs in gate_sets:
        gs._suspend()
    try:
        yield
    finally:
        for gs in gate_sets:
            gs._resume()


def build_graph(model: nn.Module, example_input: Any) -> tp.DependencyGraph:
    """torch-pruning ``DependencyGraph`` of ``model``, with this project's custom layers.

    The model's (and every submodule's) training flag is restored afterwards; torch-pruning
    switches the model to eval mode for tracing.
    """
    from prunerep.pruning.surgery import ConstantConv, ConstantConvPruner

    modes = [(m, m.training) for m in model.modules()]
    x = _prepare_input(model, example_input)
    # A ConstantConv ignores its input, so torch-pruning sees it only through its bias's
    # grad_fn; trace it even if that bias is frozen.
    frozen = [
        m.bias for m in model.modules() if isinstance(m, ConstantConv) and not m.bias.requires_grad
    ]
    for p in frozen:
        p.requires_grad_(True)
    try:
        with torch.enable_grad(), _suspended_gates(model), warnings.catch_warnings():
            # "Unwrapped parameters" warnings are about parameters outside conv/BN/linear, which
            # torch-pruning prunes along their last dim; we report them in ChannelGroup.others.
            warnings.simplefilter("ignore", UserWarning)
            graph = tp.DependencyGraph().build_dependency(
                model,
                example_inputs=x,
                forward_fn=_forward,
                customized_pruners={ConstantConv: ConstantConvPruner()},
                verbose=False,
            )
    except Exception as err:
        raise RuntimeError(
            f"could not trace {type(model).__name__} on the example input to find its channel "
            f"groups ({type(err).__name__}: {err}). The model must run a forward pass on the "
            "example input with autograd enabled."
        ) from err
    finally:
        for m, mode in modes:
            m.training = mode
        for p in frozen:
            p.requires_grad_(False)
    return graph


class _GroupBuilder:
    """Sorts the members of one torch-pruning group into the roles of a :class:`ChannelGroup`."""

    def __init__(self, root_name: str, channels: int, ignore: set[str]) -> None:
        self.id = root_name
        self.channels = channels
        self.ignore = ignore
        self.roles: dict[str, list[str]] = {
            k: []
            for k in (
                "producers",
                "norms",
                "readers",
                "depthwise",
                "selects_in",
                "selects_out",
                "constants",
                "others",
            )
        }
        self.reader_index: list[tuple[str, int, int]] = []
        self.residual = False
        self.problems: list[str] = []
        self.out_members: list[nn.Module] = []
        self.shared: list[tuple[str, int]] = []

    def _read(self, name: str, root_idxs: list[int], idxs: list[int]) -> None:
        slot = _reader_slot(root_idxs, idxs, self.channels)
        if slot is None:
            self.problems.append(f"{name!r} reads it through an unsupported index mapping")
        else:
            self.reader_index.append((name, *slot))

    def _write(self, role: str, name: str, mod: nn.Module, identity: bool) -> None:
        self.roles[role].append(name)
        self.out_members.append(mod)
        if not identity:
            self.problems.append(f"{name!r} carries it through an index mapping")

    def _carry(
        self, role: str, name: str, mod: nn.Module, root_idxs: list[int], idxs: list[int]
    ) -> None:
        """A norm / depthwise conv: the group's own (exact width) or a slice of a concatenation."""
        size = _channel_count(mod)
        slot = _reader_slot(root_idxs, idxs, self.channels)
        if slot == (0, 1) and size == self.channels:
            self._write(role, name, mod, True)
        elif (
            slot is not None
            and slot[1] == 1
            and size is not None
            and slot[0] + self.channels <= size
            and (role == "depthwise" or isinstance(mod, _PER_CHANNEL_NORMS))
        ):
            self.shared.append((name, slot[0]))
        else:
            self.problems.append(f"{name!r} carries it through an index mapping")

    def add(self, item: Any, graph: tp.DependencyGraph, names: dict[Any, str]) -> None:
        """Classify one ``(dependency, indices)`` item of the torch-pruning group."""
        from prunerep.pruning.surgery import ConstantConv

        idxs = list(item.idxs)
        root_idxs = list(item.root_idxs) if item.root_idxs is not None else idxs
        node = item.dep.target
        mod, name = node.module, names.get(node.module)
        is_out = graph.is_out_channel_pruning_fn(item.dep.handler)
        # The module must also have exactly the group's width: an offset-0 prefix of a wider
        # concatenation maps channel c to c as well, but is not this group.
        size = _channel_count(mod) if mod is not None else None
        identity = sorted(zip(root_idxs, idxs, strict=True)) == [
            (c, c) for c in range(self.channels)
        ] and size in (None, self.channels)
        select_t = _channel_select_type()

        if node.type == tp_ops.OPTYPE.OUTPUT:
            self.problems.append("its channels are a model output")
        elif node.type == tp_ops.OPTYPE.ELEMENTWISE:
            self.residual = self.residual or _is_residual_add(node)
        elif node.type in _MAPPING_TYPES:
            pass  # re-indexing only; already reflected in the indices
        elif name is None:  # pragma: no cover - every remaining node is a named module
            self.problems.append(f"an unnamed {type(mod).__name__} is coupled to it")
        else:
            if name in self.ignore and is_out:
                self.problems.append(f"its channels are output by ignored module {name!r}")
            if select_t is not None and isinstance(mod, select_t):
                if is_out:
                    self._write("selects_out", name, mod, identity)
                else:
                    self.roles["selects_in"].append(name)
                    self._read(name, root_idxs, idxs)
            elif isinstance(mod, ConstantConv):
                if is_out:
                    self._write("constants", name, mod, identity)
            elif _is_depthwise(mod):
                self._carry("depthwise", name, mod, root_idxs, idxs)
            elif _is_grouped(mod):
                self.problems.append(
                    f"grouped conv {name!r} (groups={mod.groups}) is coupled to it; only regular "
                    "and depthwise convs are supported"
                )
            elif isinstance(mod, _CONV | nn.Linear):
                if is_out:
                    self._write("producers", name, mod, identity)
                else:
                    self.roles["readers"].append(name)
                    self._read(name, root_idxs, idxs)
            elif node.type in _NORM_TYPES:
                self._carry("norms", name, mod, root_idxs, idxs)
            else:
                self.roles["others"].append(name)

    def build(
        self, model: nn.Module, graph: tp.DependencyGraph, order: dict[str, int]
    ) -> ChannelGroup:
        """The group, members in model order; ``self.problems`` says whether it is prunable."""

        def ordered(seq: list[str]) -> tuple[str, ...]:
            return tuple(sorted(dict.fromkeys(seq), key=lambda n: order.get(n, len(order))))

        roles = {k: ordered(v) for k, v in self.roles.items()}
        self.reader_index.sort(key=lambda r: order.get(r[0], len(order)))
        # Output taps: the norms, plus every producer whose output does not go straight into them.
        node_of = graph.module2node
        norm_nodes = {node_of[model.get_submodule(n)] for n in roles["norms"]}
        taps = list(roles["norms"])
        shared = sorted(dict(self.shared).items(), key=lambda r: order.get(r[0], len(order)))
        is_norm = {n: node_of[model.get_submodule(n)].type in _NORM_TYPES for n, _ in shared}
        norm_nodes |= {node_of[model.get_submodule(n)] for n, _ in shared if is_norm[n]}
        for n in roles["producers"] + roles["depthwise"] + roles["constants"]:
            outs = node_of[model.get_submodule(n)].outputs
            if not outs or not all(o in norm_nodes for o in outs):
                taps.append(n)
        slices = []
        for n, offset in shared:
            outs = node_of[model.get_submodule(n)].outputs
            if is_norm[n] or not outs or not all(o in norm_nodes for o in outs):
                slices.append((n, offset))
        if not roles["readers"] and not roles["selects_in"] and not self.problems:
            self.problems.append("no layer reads its channels (a model output)")
        return ChannelGroup(
            id=self.id,
            channels=self.channels,
            residual=self.residual,
            reader_index=tuple(self.reader_index),
            output_taps=ordered(taps),
            shared=tuple(shared),
            output_slices=tuple(slices),
            **roles,
        )


def find_groups(
    model: nn.Module, example_input: Any, *, ignore: Iterable[str] = ()
) -> ChannelGroups:
    """Find the coupled channel groups of ``model``.

    Args:
        model: Any ``nn.Module`` that runs on ``example_input``. Attached gate sets are ignored.
        example_input: A tensor (or tuple of positional inputs) for one traced forward pass,
            e.g. ``torch.randn(1, 3, 32, 32)``. It is moved to the model's device.
        ignore: Module names (group ids are module names too) whose *output* channels must
            stay as they are: every group they produce, normalise or carry is excluded (listed
            in ``excluded`` with the reason). Layers that only read a group do not pin it.

    Returns:
        The prunable groups, plus the dependency graph for surgery.

    Raises:
        RuntimeError: If the model cannot be traced.
        ValueError: A name in ``ignore`` is not a module of the model.
    """
    ignore = set(ignore)
    module_names = {name for name, _ in model.named_modules()}
    missing = sorted(ignore - module_names)
    if missing:
        raise ValueError(f"find_groups(ignore=...): the model has no module named {missing}")
    graph = build_graph(model, example_input)
    names: dict[Any, str] = dict(graph._module2name)
    for param, pname in graph._param_to_name.items():
        names.setdefault(param, pname)
    order = {n: i for i, n in enumerate(names.values())}
    select_t = _channel_select_type()

    groups: dict[str, ChannelGroup] = {}
    excluded: dict[str, str] = {}
    layer_io: dict[str, _LayerIO] = {}
    visited: set[nn.Module] = set()
    # Roots in model order, so that a group's id is its first producer.
    roots = [
        m
        for _, m in model.named_modules()
        if isinstance(m, _CONV | nn.Linear)
        and m in graph.module2node
        and not _is_depthwise(m)
        and not (select_t is not None and isinstance(m, select_t))
    ]
    for root in roots:
        if root in visited:
            continue
        pruner = graph.get_pruner_of_module(root)
        channels = pruner.get_out_channels(root)
        tp_group = graph.get_pruning_group(root, pruner.prune_out_channels, list(range(channels)))
        builder = _GroupBuilder(names[root], channels, ignore)
        for item in tp_group.items:
            builder.add(item, graph, names)
        visited.update(builder.out_members)
        group = builder.build(model, graph, order)
        if builder.problems:
            excluded[group.id] = "; ".join(dict.fromkeys(builder.problems))
            continue
        groups[group.id] = group
        for name in group.producers:
            layer_io.setdefault(name, _LayerIO()).writes = group.id
        for name in group.depthwise:
            layer_io.setdefault(name, _LayerIO()).depthwise_of = group.id
        for name, _ in group.shared:
            if _is_depthwise(model.get_submodule(name)):
                layer_io.setdefault(name, _LayerIO()).depthwise_slices.append(group.id)
        for name, _, repeat in group.reader_index:
            if name in group.readers:
                layer_io.setdefault(name, _LayerIO()).reads.append((group.id, repeat))

    x = _detach(_prepare_input(model, example_input))
    return ChannelGroups(model, graph, x, groups, excluded, layer_io, names)


def _detach(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.detach()
    if isinstance(x, list | tuple):
        return type(x)(_detach(v) for v in x)
    if isinstance(x, dict):
        return {k: _detach(v) for k, v in x.items()}
    return x


def _reader_slot(root_idxs: list[int], idxs: list[int], channels: int) -> tuple[int, int] | None:
    """``(offset, repeat)`` such that channel c is read at ``offset + c*repeat + [0, repeat)``.

    Returns None for any other mapping (e.g. a channel shuffle), which we do not support.
    """
    if not idxs or len(idxs) % channels:
        return None
    repeat = len(idxs) // channels
    pairs = sorted(zip(root_idxs, idxs, strict=True))
    offset = pairs[0][1]
    expected = [(c, offset + c * repeat + k) for c in range(channels) for k in range(repeat)]
    return (offset, repeat) if pairs == expected else None
