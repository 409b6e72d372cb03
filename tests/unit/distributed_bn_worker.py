"""Rank of a 2-process gloo job: global-batch BatchNorm on this rank's half vs plain BatchNorm on
the whole batch (computed on every rank). Rank 0 saves both to ``argv[0]``."""

from __future__ import annotations

import sys

import torch
from torch import nn


def main(argv: list[str]) -> int:
    import torch.distributed as dist

    from prunerep.engine.device import init_distributed, rank, world_size
    from prunerep.engine.distributed import global_batchnorm

    init_distributed()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 5, 6, 6, generator=g) * 3 + 1
    up = torch.randn(8, 5, 6, 6, generator=g)        # the gradient reaching the output

    def bn() -> nn.BatchNorm2d:
        torch.manual_seed(1)
        m = nn.BatchNorm2d(5)
        with torch.no_grad():
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-1, 1)
        return m

    ref = bn()
    x_ref = x.clone().requires_grad_()
    out_ref = ref(x_ref)
    (out_ref * up).sum().backward()

    mine = bn()
    half = slice(rank() * 4, (rank() + 1) * 4)
    x_mine = x[half].clone().requires_grad_()
    with global_batchnorm(mine):
        out = mine(x_mine)
    (out * up[half]).sum().backward()
    assert "forward" not in vars(mine)                # the patch is gone after the block
    # the loss is the sum over both halves: parameter gradients add up over the ranks
    for p in mine.parameters():
        dist.all_reduce(p.grad)
    parts = [torch.empty_like(out) for _ in range(world_size())]
    dist.all_gather(parts, out.detach())
    grads = [torch.empty_like(x_mine) for _ in range(world_size())]
    dist.all_gather(grads, x_mine.grad)
    if rank() == 0:
        torch.save({"output": torch.cat(parts), "ref_output": out_ref.detach(),
                    "input_grad": torch.cat(grads), "ref_input_grad": x_ref.grad,
                    "weight_grad": mine.weight.grad, "ref_weight_grad": ref.weight.grad,
                    "bias_grad": mine.bias.grad, "ref_bias_grad": ref.bias.grad,
                    "running_mean": mine.running_mean, "ref_running_mean": ref.running_mean,
                    "running_var": mine.running_var, "ref_running_var": ref.running_var}, argv[0])
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
