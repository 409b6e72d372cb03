"""The pruning engine: coupled channel groups, gates, exact physical removal, one FLOPs convention.

Typical flow::

    from prunerep.pruning import find_groups, attach_gates, SoftGate, apply_gates, any_group

    groups = find_groups(model, torch.randn(1, 3, 32, 32))          # coupled channels
    gates = attach_gates(model, groups.select(any_group),            # hooks; model.gates
                         lambda g: SoftGate(g.channels), placement="input")
    ...train (gates.expected_keep() + SoftCostModel for budget terms)...
    apply_gates(model, gates, groups)                                # fold, remove, detach

Modules: :mod:`.groups` (channel groups on torch-pruning's DependencyGraph), :mod:`.gates`
(gate variants and placement), :mod:`.surgery` (physical removal), :mod:`.cost` (exact MACs /
params), :mod:`.soft_cost` (differentiable MACs / params), :mod:`.export` (ONNX).
"""

from prunerep.pruning.cost import Cost, LayerCost, count_cost, trace_layers
from prunerep.pruning.export import check_onnx, export_onnx
from prunerep.pruning.gates import (
    ChannelGate,
    GateSet,
    HardMask,
    SmoothedL0,
    SoftGate,
    STEBinaryGate,
    StochasticMask,
    TemperedSigmoid,
    WeightDependentGate,
    attach_gates,
    clamp01,
)
from prunerep.pruning.groups import (
    ChannelGroup,
    ChannelGroups,
    any_group,
    find_groups,
    internal,
    residual,
)
from prunerep.pruning.soft_cost import (
    SoftCostMismatch,
    SoftCostModel,
    group_widths,
    verify_soft_cost,
)
from prunerep.pruning.surgery import (
    ConstantConv,
    apply_gates,
    effective_keep,
    plan_surgery,
    prune_channels,
)

__all__ = [
    "ChannelGate",
    "ChannelGroup",
    "ChannelGroups",
    "ConstantConv",
    "Cost",
    "GateSet",
    "HardMask",
    "LayerCost",
    "STEBinaryGate",
    "SmoothedL0",
    "SoftCostMismatch",
    "SoftCostModel",
    "SoftGate",
    "StochasticMask",
    "TemperedSigmoid",
    "WeightDependentGate",
    "any_group",
    "apply_gates",
    "attach_gates",
    "check_onnx",
    "clamp01",
    "count_cost",
    "effective_keep",
    "export_onnx",
    "find_groups",
    "group_widths",
    "internal",
    "plan_surgery",
    "prune_channels",
    "residual",
    "trace_layers",
    "verify_soft_cost",
]
