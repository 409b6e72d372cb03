"""Baselines every paper compares against, on the shared method interface.

- ``l1``: one-shot L1-norm filter pruning (Li et al., "Pruning Filters for Efficient ConvNets",
  ICLR 2017, arXiv:1608.08710): rank each group's channels by the L1 norm of their filters, remove
  the lowest, fine-tune.
- ``random``: the same widths with randomly chosen channels (the "random pruning" control).
- ``slimming``: network slimming (Liu et al., "Learning Efficient Convolutional Networks through
  Network Slimming", ICCV 2017, arXiv:1708.06519): sparse training with an L1 penalty on BN
  scales (subgradient s·sign(γ) added after backward), then a global threshold on |γ| across
  the prunable groups, then fine-tuning.

Widths: a `Budget` with `ratios` fixes the fraction removed per group; one with `macs_keep`
makes ``l1``/``random`` prune every prunable group by the same fraction (found by bisection) and
``slimming`` threshold |γ| globally until the MACs budget is met (optionally with a per-group
floor, ``min_keep``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from prunerep.config import from_dict
from prunerep.engine import OptimConfig, TrainState
from prunerep.methods.base import MethodContext, PruningMethod, register_method
from prunerep.methods.budget import (
    global_widths_for_macs,
    top_k_masks,
    uniform_widths_for_macs,
    widths_from_ratio,
)
from prunerep.methods.importance import bn_scale, filter_l1, random_scores
from prunerep.pruning.groups import ChannelGroup
from prunerep.pruning.surgery import prune_channels

Scope = Literal["all", "internal"]


def in_scope(group: ChannelGroup, scope: Scope) -> bool:
    """`internal`: only channels inside residual branches (GReg's and Li et al.'s ResNet setting);
    `all`: also the residual streams (coupled across the adds)."""
    return scope == "all" or not group.residual


def one_shot_widths(ctx: MethodContext, scores: dict[str, torch.Tensor], rule: str,
                    min_keep: float = 0.0) -> dict[str, int]:
    """Kept width per prunable group: from the budget's ratios, or the same fraction everywhere
    (`uniform`) / a global score threshold (`global`) meeting its MACs budget."""
    if ctx.budget.ratios is not None:
        return widths_from_ratio(ctx.prunable, {g.id: ctx.budget.ratios.get(g.id, 0.0) for g in ctx.prunable})
    target = ctx.budget.macs_keep * ctx.cost_model.dense_macs()
    if rule == "uniform":
        return uniform_widths_for_macs(ctx.cost_model, ctx.prunable, target)[0]
    return global_widths_for_macs(ctx.cost_model, ctx.prunable, scores, target, min_keep=min_keep)


@dataclass(frozen=True)
class OneShotHyper:
    """``l1`` / ``random``: which groups, and the seed of the random control."""

    scope: Scope = "all"
    seed: int = 0


@dataclass(frozen=True)
class SlimmingHyper:
    """``slimming``: the sparse-training phase and the global threshold's floor."""

    scope: Scope = "all"
    seed: int = 0
    sparsity: float = 1e-4                   # s of the paper (CIFAR VGG/ResNet)
    sparse_train: OptimConfig = field(default_factory=OptimConfig)
    min_keep: float = 0.0                    # per-group floor of the global threshold (paper: none)


class OneShot(PruningMethod):
    """Score every prunable group's channels once, keep the top ones at the budget's widths."""

    rule = "uniform"
    min_keep = 0.0  # per-group floor of the global rule (fraction of the group's channels)

    def __init__(self, scope: Scope = "all", seed: int = 0) -> None:
        self.scope = scope
        self.seed = seed
        self.kept_widths: dict[str, int] = {}
        self.kept: dict[str, list[int]] = {}     # pruned group -> channels kept (for studies that compare selections)

    def prunable(self, group: ChannelGroup) -> bool:
        return in_scope(group, self.scope)

    def scores(self, model: nn.Module, ctx: MethodContext) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def finalize(self, model: nn.Module, ctx: MethodContext) -> nn.Module:
        scores = self.scores(model, ctx)
        widths = one_shot_widths(ctx, scores, self.rule, self.min_keep)
        self.kept_widths = widths
        masks = top_k_masks(scores, widths)
        self.kept = {gid: sorted(m.nonzero().flatten().tolist()) for gid, m in masks.items() if not bool(m.all())}
        return prune_channels(model, ctx.groups, masks)

    def summary(self) -> dict[str, Any]:
        return {"widths": self.kept_widths, "kept": self.kept}


@register_method("l1", hyper=OneShotHyper)
class L1Norm(OneShot):
    paper = "Li et al., ICLR 2017, arXiv:1608.08710"

    def scores(self, model: nn.Module, ctx: MethodContext) -> dict[str, torch.Tensor]:
        return filter_l1(model, ctx.prunable)


@register_method("random", hyper=OneShotHyper)
class RandomPruning(OneShot):
    paper = "random channels at the same widths (control)"

    def scores(self, model: nn.Module, ctx: MethodContext) -> dict[str, torch.Tensor]:
        return random_scores(ctx.prunable, torch.Generator().manual_seed(self.seed))


@register_method("slimming", hyper=SlimmingHyper)
class Slimming(OneShot):
    paper = "Liu et al., ICCV 2017, arXiv:1708.06519"
    rule = "global"

    def __init__(self, scope: Scope = "all", seed: int = 0, sparsity: float = 1e-4,
                 sparse_train: dict | OptimConfig | None = None, min_keep: float = 0.0) -> None:
        super().__init__(scope, seed)
        self.sparsity = sparsity  # s in the paper: 1e-4 for CIFAR VGG/ResNet
        # The paper's global threshold has no floor; after a short sparse phase it can leave a
        # layer with one channel, so runs on a small budget may set a floor (documented there).
        if not 0.0 <= min_keep < 1.0:
            raise ValueError(f"slimming: min_keep must be in [0, 1), got {min_keep}")
        self.min_keep = min_keep
        self.sparse_train = (sparse_train if isinstance(sparse_train, OptimConfig)
                             else from_dict(OptimConfig, sparse_train or {}, "slimming.sparse_train"))
        self._norms: list[nn.Module] = []

    def prepare(self, model: nn.Module, ctx: MethodContext) -> nn.Module:
        super().prepare(model, ctx)
        modules = dict(model.named_modules())
        self._norms = [modules[n] for g in ctx.prunable for n in g.norms]
        return model

    def phases(self) -> list[tuple[str, OptimConfig]]:
        return [("sparse_train", self.sparse_train)]

    def after_backward(self, model: nn.Module, state: TrainState) -> None:
        # Subgradient of s * sum |gamma| (Eq. 1 of the paper), added to the task gradient.
        for bn in self._norms:
            if bn.weight.grad is not None:
                bn.weight.grad.add_(torch.sign(bn.weight.detach()), alpha=self.sparsity)

    def scores(self, model: nn.Module, ctx: MethodContext) -> dict[str, torch.Tensor]:
        return bn_scale(model, ctx.prunable)
