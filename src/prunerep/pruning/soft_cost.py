"""Differentiable MACs and parameters as functions of per-group (soft) channel counts.

Same convention as :mod:`prunerep.pruning.cost` (MACs of conv + linear layers, option-A
``ChannelSelect`` excluded; params = conv/linear weights and biases + norm affine parameters),
and built from its :func:`~prunerep.pruning.cost.trace_layers`, so at integer widths the value
equals ``count_cost`` of the physically pruned network.

Every traced layer contributes ``coef * IN * OUT``, where

* ``OUT`` is the width ``w_g`` of the group the layer produces, or its fixed output size (e.g. the
  classifier's classes);
* ``IN = fixed_in + sum_g repeat_g * w_g`` over the groups it reads (``repeat_g = H*W`` after a
  flatten into a linear layer; ``fixed_in`` covers image channels and non-prunable groups);
* ``coef = macs / (in_channels * out_channels)`` of the dense layer (kernel size x output pixels,
  divided by the conv groups);

and a depthwise conv contributes ``macs / channels * w_g`` (linear in its group's width). Hence
the total is a bilinear form

    MACs(w) = w^T A w + b^T w + c,

with ``w`` the widths in :attr:`SoftCostModel.group_ids` order: the structure of DSA's
``F(alpha) = alpha^T A alpha + B^T alpha`` and of GDP/DAIS's FLOPs budgets. :meth:`bilinear`
returns ``(A, b, c)``.

Parameters follow the same form, except a layer's bias, which counts ``OUT`` only while
``IN > 0``: a conv whose whole input was removed becomes a constant (see
:class:`~.surgery.ConstantConv`), which ``count_cost`` does not count. The step has zero gradient
almost everywhere.

Widths of groups that die with others during surgery (see :func:`~.surgery.effective_keep`)
must be passed as 0 to match the pruned network exactly; :func:`group_widths` reads them off the
pruned network, so they are.

Norms and depthwise convs over a concatenation (:attr:`~.groups.ChannelGroup.shared`, e.g.
DenseNet) are split per channel between the groups they carry; channels of non-prunable inputs
stay in the constant. :func:`verify_soft_cost` checks the equality on a pruned network and
raises :class:`SoftCostMismatch` if a model is not covered, so a wrong budget never goes
unnoticed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from prunerep.pruning.cost import count_cost
from prunerep.pruning.groups import ChannelGroups

__all__ = ["SoftCostMismatch", "SoftCostModel", "group_widths", "verify_soft_cost"]

_NORM = (
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.GroupNorm,
    nn.LayerNorm,
)


@dataclass(frozen=True)
class _Bias:
    """Bias term of one layer: ``count * OUT * [IN > 0]``."""

    count_per_out: float
    fixed_in: float
    reads: tuple[tuple[int, float], ...]  # (group index, repeat)
    out: int | None  # group index, or None for a fixed output
    fixed_out: float


def _numel(*tensors: torch.Tensor | None) -> int:
    return sum(t.numel() for t in tensors if t is not None)


class SoftCostModel:
    """MACs / params of a model as a differentiable function of its groups' widths.

    Build with :meth:`from_model`; evaluate with :meth:`macs` / :meth:`params`, which take a
    mapping ``group id -> width`` (tensors or numbers; missing groups stay at their dense width)
    and return a float64 scalar tensor on the widths' device, differentiable w.r.t. the widths.

    Attributes:
        group_ids: Order of the groups in the bilinear form.
        dense_widths: Width of every group in the traced model.
    """

    def __init__(
        self,
        group_ids: list[str],
        dense_widths: list[int],
        macs_form: tuple[torch.Tensor, torch.Tensor, float],
        params_form: tuple[torch.Tensor, torch.Tensor, float],
        biases: list[_Bias],
    ) -> None:
        self.group_ids = list(group_ids)
        self.dense_widths = dict(zip(group_ids, dense_widths, strict=True))
        self._index = {gid: i for i, gid in enumerate(group_ids)}
        self._macs = macs_form
        self._params = params_form
        self._biases = biases
        self._dense = torch.tensor(dense_widths, dtype=torch.float64)

    @classmethod
    def from_model(
        cls, model: nn.Module, example_input: Any, groups: ChannelGroups
    ) -> SoftCostModel:
        """Trace ``model`` once and build its cost model over ``groups``.

        Args:
            model: The network (the one ``groups`` were found on).
            example_input: Input for one forward pass; costs are per sample, so the spatial size
                matters (e.g. ``torch.zeros(1, 3, 32, 32)``).
            groups: Its channel groups; the prunable ones become the variables.

        Returns:
            The cost model.
        """
        groups.check_fresh()
        if groups.model is not model:
            raise ValueError("`groups` were found on a different model")
        cost = count_cost(model, example_input=_to_device(model, example_input))
        ids = groups.ids()
        index = {gid: i for i, gid in enumerate(ids)}
        n = len(ids)
        f64 = torch.float64
        a_m, b_m, c_m = torch.zeros(n, n, dtype=f64), torch.zeros(n, dtype=f64), 0.0
        a_p, b_p, c_p = torch.zeros(n, n, dtype=f64), torch.zeros(n, dtype=f64), 0.0
        biases: list[_Bias] = []
        seen: set[str] = set()

        for layer in cost.layers:
            io = groups._layer_io.get(layer.name)
            module = model.get_submodule(layer.name)
            first_call = layer.name not in seen
            seen.add(layer.name)
            weight = module.weight
            bias_n = _numel(module.bias)
            carried = []
            if io is not None and io.depthwise_of is not None:
                carried = [io.depthwise_of]
            elif io is not None and io.depthwise_slices:
                carried = io.depthwise_slices  # a depthwise conv over a concatenation
            if carried:
                # Linear in the carried width: every channel costs the same; channels of
                # non-prunable inputs of the concatenation are a constant.
                per_mac = layer.macs / layer.out_channels
                per_param = (weight.numel() + bias_n) / layer.out_channels
                fixed = layer.out_channels - sum(groups[gid].channels for gid in carried)
                c_m += per_mac * fixed
                for gid in carried:
                    b_m[index[gid]] += per_mac
                if first_call:
                    c_p += per_param * fixed
                    for gid in carried:
                        b_p[index[gid]] += per_param
                continue
            reads = [(index[gid], float(r)) for gid, r in (io.reads if io else [])]
            fixed_in = float(layer.in_channels - sum(r * groups[ids[g]].channels for g, r in reads))
            out = index[io.writes] if io is not None and io.writes is not None else None
            fixed_out = float(layer.out_channels)
            for coef, form in (
                (layer.macs / (layer.in_channels * layer.out_channels), "m"),
                (weight.numel() / (layer.in_channels * layer.out_channels), "p"),
            ):
                if form == "p" and not first_call:
                    continue
                a, b = (a_m, b_m) if form == "m" else (a_p, b_p)
                const = 0.0
                if out is None:  # OUT fixed: IN * OUT is linear in the read widths
                    const += coef * fixed_in * fixed_out
                    for g, r in reads:
                        b[g] += coef * r * fixed_out
                else:
                    b[out] += coef * fixed_in
                    for g, r in reads:
                        a[g, out] += coef * r
                if form == "m":
                    c_m += const
                else:
                    c_p += const
            if first_call and bias_n:
                biases.append(
                    _Bias(bias_n / layer.out_channels, fixed_in, tuple(reads), out, fixed_out)
                )

        # Norm affine parameters: those on prunable groups scale with the width, the rest are
        # fixed. A norm over a concatenation (``shared``) carries a slice of each of several
        # groups, plus possibly channels of non-prunable inputs, which stay in the constant.
        grouped_norm_params = 0.0
        for g in groups:
            shared_norms = [n for n, _ in g.shared if isinstance(model.get_submodule(n), _NORM)]
            for name in [*g.norms, *shared_norms]:
                m = model.get_submodule(name)
                k = _numel(getattr(m, "weight", None), getattr(m, "bias", None))
                # shared norms are BN / InstanceNorm (see groups.py): per-channel affine params
                per_channel = k / (g.channels if name in g.norms else m.num_features)
                grouped_norm_params += per_channel * g.channels
                b_p[index[g.id]] += per_channel
        c_p += cost.bn_params - grouped_norm_params

        return cls(ids, [groups[g].channels for g in ids], (a_m, b_m, c_m), (a_p, b_p, c_p), biases)

    # -- evaluation ---------------------------------------------------------------------------

    def width_vector(self, widths: Mapping[str, Any]) -> torch.Tensor:
        """Widths as a float64 vector in :attr:`group_ids` order (dense width where missing)."""
        unknown = set(widths) - set(self._index)
        if unknown:
            raise KeyError(f"unknown channel group(s) {sorted(unknown)}; known: {self.group_ids}")
        device = next(
            (w.device for w in widths.values() if isinstance(w, torch.Tensor)), torch.device("cpu")
        )
        parts = []
        for i, gid in enumerate(self.group_ids):
            w = widths.get(gid)
            if w is None:
                parts.append(self._dense[i].to(device))
            else:
                parts.append(torch.as_tensor(w, device=device).to(torch.float64).reshape(()))
        return torch.stack(parts) if parts else torch.zeros(0, dtype=torch.float64, device=device)

    @staticmethod
    def _eval(form: tuple[torch.Tensor, torch.Tensor, float], w: torch.Tensor) -> torch.Tensor:
        a, b, c = form
        a, b = a.to(w.device), b.to(w.device)
        return w @ a @ w + b @ w + c

    def macs(self, widths: Mapping[str, Any]) -> torch.Tensor:
        """MACs per sample at the given widths (float64 scalar, differentiable)."""
        return self._eval(self._macs, self.width_vector(widths))

    def params(self, widths: Mapping[str, Any]) -> torch.Tensor:
        """Parameters at the given widths (float64 scalar, differentiable except bias steps)."""
        w = self.width_vector(widths)
        total = self._eval(self._params, w)
        for bias in self._biases:
            width_in = bias.fixed_in + sum(
                (r * w[g] for g, r in bias.reads), torch.zeros((), dtype=w.dtype, device=w.device)
            )
            width_out = w[bias.out] if bias.out is not None else bias.fixed_out
            total = total + bias.count_per_out * width_out * (width_in > 0).to(w.dtype)
        return total

    def dense_macs(self) -> int:
        """MACs of the traced (unpruned) model."""
        return round(float(self.macs({})))

    def dense_params(self) -> int:
        """Parameters of the traced (unpruned) model."""
        return round(float(self.params({})))

    def bilinear(self) -> tuple[torch.Tensor, torch.Tensor, float]:
        """``(A, b, c)`` with ``macs(w) = w @ A @ w + b @ w + c`` (float64, CPU)."""
        a, b, c = self._macs
        return a.clone(), b.clone(), c

    def __repr__(self) -> str:
        return f"SoftCostModel({len(self.group_ids)} groups, dense {self.dense_macs() / 1e6:.2f}M MACs)"


def _to_device(model: nn.Module, x: Any) -> Any:
    device = next((t.device for t in [*model.parameters(), *model.buffers()]), None)
    if device is None:
        return x
    if isinstance(x, torch.Tensor):
        return x.to(device)
    if isinstance(x, tuple | list):
        return type(x)(_to_device(model, v) for v in x)
    return x


# -- checking a pruned network ---------------------------------------------------------------------


class SoftCostMismatch(ValueError):
    """The soft cost at the pruned network's widths differs from its exact count."""


def group_widths(pruned_model: nn.Module, dense_groups: ChannelGroups) -> dict[str, int]:
    """Width of every dense group in ``pruned_model``, by group id.

    The width of a group is the output size of its first producer that still exists (surgery
    keeps module names); a removed group (its producers are zero-channel
    :class:`~.surgery.ConstantConv` s, or gone) has width 0. Groups that died with others during
    surgery therefore come out as 0, as :meth:`SoftCostModel.macs` needs.

    Args:
        pruned_model: The network after surgery.
        dense_groups: The groups found on it *before* surgery (stale is fine: only names and
            roles are read).

    Returns:
        ``{group id: width}`` for every group of ``dense_groups``.
    """
    modules = dict(pruned_model.named_modules())
    widths: dict[str, int] = {}
    for g in dense_groups:
        width = 0
        for name in g.producers:
            m = modules.get(name)
            size = getattr(m, "out_channels", getattr(m, "out_features", None))
            if size is not None:
                width = int(size)
                break
        widths[g.id] = width
    return widths


def verify_soft_cost(
    cost_model: SoftCostModel,
    dense_groups: ChannelGroups,
    pruned_model: nn.Module,
    example_input: torch.Tensor,
    *,
    rtol: float = 1e-9,
) -> None:
    """Check that ``cost_model`` at the pruned widths equals the exact count of ``pruned_model``.

    Args:
        cost_model: Built on the dense model with ``dense_groups``.
        dense_groups: Groups of the dense model (before surgery).
        pruned_model: The network after surgery.
        example_input: An input of the size the cost model was built for (only its shape is
            used; costs are per sample).
        rtol: Relative tolerance (float64 sums of integer-valued terms are exact far below it).

    Raises:
        SoftCostMismatch: MACs or params differ by more than ``rtol``; the message gives both
            values of both.
        ValueError: ``cost_model`` has groups that ``dense_groups`` does not (different models).
    """
    widths = group_widths(pruned_model, dense_groups)
    missing = [gid for gid in cost_model.group_ids if gid not in widths]
    if missing:
        raise ValueError(
            f"the cost model has channel groups {missing[:5]} that `dense_groups` does not: they "
            "describe different models"
        )
    w = {gid: widths[gid] for gid in cost_model.group_ids}
    with torch.no_grad():
        soft_macs = float(cost_model.macs(w))
        soft_params = float(cost_model.params(w))
    exact = count_cost(pruned_model, tuple(example_input.shape))
    bad = [
        (what, soft, true)
        for what, soft, true in (
            ("MACs", soft_macs, exact.macs),
            ("params", soft_params, exact.params),
        )
        if abs(soft - true) > rtol * max(abs(true), 1.0)
    ]
    if bad:
        arch = getattr(pruned_model, "arch_spec", {}) or {}
        name = arch.get("name", type(pruned_model).__name__)
        values = "; ".join(
            f"{what}: soft {soft:,.1f} vs exact {true:,}"
            for what, soft, true in (
                ("MACs", soft_macs, exact.macs),
                ("params", soft_params, exact.params),
            )
        )
        raise SoftCostMismatch(
            f"the differentiable cost of {name} differs from the exact count of the pruned "
            f"network ({values}; rtol={rtol:g}). Budgets computed with it are wrong: report this "
            "model: the engine's cost model does not cover it."
        )
