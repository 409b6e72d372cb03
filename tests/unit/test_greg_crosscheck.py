"""Cross-check of GReg's penalty update against torch-pruning 1.6.1's ``GrowingRegPruner``.

torch-pruning grows λ of every channel of every group by ``delta_reg * (max - imp) / (max - min)``
per ``update_reg()`` call, starting from ``reg``. With ``reg = 0`` and an importance that is 0 on
GReg-1's pruned filters and 1 on the kept ones, that is GReg-1's schedule: +δλ on the pruned set,
0 on the kept set. Both then add λ · w to the gradient of the producer conv's pruned filters, and
the two must agree. Where they differ (asserted below, explained in ``prunerep.methods.greg``):
torch-pruning also penalises the *input* columns of the layer that reads the group, and has no
stop conditions or GReg-2 picking; GReg (paper and code) touches only the filters themselves.
"""

from __future__ import annotations

import torch
import torch_pruning as tp
from torch import nn

from prunerep.engine import TrainState
from prunerep.methods import Budget, MethodContext, get_method
from prunerep.pruning.groups import find_groups


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean((2, 3)))


class KeptIndicator(tp.importance.Importance):
    """Importance 1 on kept channels and 0 on GReg-1's pruned filters of `target`; 1 elsewhere."""

    def __init__(self, target: nn.Module, pruned: torch.Tensor) -> None:
        self.target, self.pruned = target, pruned

    def __call__(self, group) -> torch.Tensor:
        root = group[0].dep.target.module
        n = len(group[0].idxs)
        if root is self.target:
            return (~self.pruned).float()
        return torch.ones(n)


def _zero_grads(model: nn.Module) -> None:
    for p in model.parameters():
        p.grad = torch.zeros_like(p)


def test_penalty_update_matches_torch_pruning_growing_reg_on_the_pruned_filters():
    torch.manual_seed(0)
    ours_net = TinyNet()
    tp_net = TinyNet()
    tp_net.load_state_dict(ours_net.state_dict())
    example = torch.randn(2, 3, 8, 8)

    delta = 1e-2
    groups = find_groups(ours_net, example)
    greg = get_method("greg", variant="greg1", reg=dict(update_reg_interval=1, reg_granularity_prune=delta,
                                                        reg_upper_limit=10.0, mag_ratio_limit=1e9))
    greg.prepare(ours_net, MethodContext(groups, list(groups.select(greg.prunable)), example,
                                         Budget(ratios={"conv1": 0.5}), None))
    pruned = greg.layers[0].pruned

    pruner = tp.pruner.GrowingRegPruner(tp_net, example, importance=KeptIndicator(tp_net.conv1, pruned),
                                        reg=0.0, delta_reg=delta, pruning_ratio=0.5, ignored_layers=[tp_net.fc])
    for step in range(5):
        # Ours updates λ at the start of iteration `step` (K_u = 1), then applies it; torch-pruning's
        # update_reg() between steps does the same update.
        pruner.update_reg()
        _zero_grads(ours_net)
        _zero_grads(tp_net)
        greg.after_backward(ours_net, TrainState(step=step))
        pruner.regularize(tp_net)

        lam = delta * (step + 1)
        ours_g, tp_g = ours_net.conv1.weight.grad, tp_net.conv1.weight.grad
        w = ours_net.conv1.weight.detach()
        # Same penalty on the producer's filters: λ · w on the pruned ones, nothing on the kept.
        # (torch-pruning's standardisation divides by (max - min + 1e-8): relative error ~1e-8.)
        torch.testing.assert_close(ours_g, tp_g, rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(ours_g[pruned], lam * w[pruned])
        assert torch.count_nonzero(ours_g[~pruned]) == 0

        # The documented difference: torch-pruning also pushes the reader's input columns (conv2's
        # weights that consume the pruned channels); GReg leaves conv2 alone.
        assert torch.count_nonzero(ours_net.conv2.weight.grad) == 0
        w2 = tp_net.conv2.weight.detach()
        torch.testing.assert_close(tp_net.conv2.weight.grad[:, pruned], lam * w2[:, pruned], rtol=1e-6, atol=1e-9)
        assert torch.count_nonzero(tp_net.conv2.weight.grad[:, ~pruned]) == 0
        # BN affine weights: GReg never penalises them (the code regularises conv/linear weights
        # only). torch-pruning means to (its BN branch), but `grad.data[idxs].add_` writes into an
        # advanced-indexing copy, so in 1.6.1 its BN penalty has no effect either.
        assert torch.count_nonzero(ours_net.bn1.weight.grad) == 0
        assert torch.count_nonzero(tp_net.bn1.weight.grad) == 0
