"""What a run on several processes adds to the one training loop: averaged gradients, BatchNorm
statistics over the global batch, and a check that every rank still holds the same network.

The design (docs/distributed.md): every rank runs the whole method on identical weights, sees its
slice of each global batch, and after every backward the gradients are averaged over the ranks in
one flattened all-reduce. Every decision a method takes from the weights (GReg's penalties and
stop, GDP's prox steps and kills, W-Gates' freeze, DSA's and DAIS's architecture steps, the budget
projections) is then computed from identical numbers by the same code on every rank, so nothing
method-specific has to be broadcast. BatchNorm normalises with the statistics of the global batch,
so N ranks with batches of B compute what one process computes with batches of N*B.

Why not `DistributedDataParallel`: its reducer assumes that every gradient comes from the
wrapped forward and that the set of parameters receiving one never changes; methods here add
loss terms on parameters outside the forward (GReg's penalty, GDP's and DSA's budget terms) and
stop training gates midway (W-Gates' freeze), which break those assumptions. One all-reduce after
backward gives up DDP's overlap of communication with the backward pass, not correctness.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch import nn

from prunerep.engine.device import is_distributed, rank, world_size

__all__ = ["average_gradients", "check_same_across_ranks", "global_batchnorm", "mean_over_ranks", "per_rank_batch",
           "shard"]


def shard() -> tuple[int, int] | None:
    """``(rank, world size)`` of this process in a distributed run, else None (one process)."""
    return (rank(), world_size()) if is_distributed() else None


def per_rank_batch(batch_size: int, what: str = "batch_size") -> int:
    """This rank's share of a global batch of `batch_size` (all of it in one process).

    Batch sizes in configs are global: N ranks each take ``batch_size / N`` images of every
    batch, so a run computes the same thing (up to float rounding) on any number of ranks, and a
    run finished on 8 GPUs is the same run as on one process (same identity, same steps)."""
    world = world_size()
    if batch_size % world:
        raise ValueError(f"{what}: {batch_size} images per (global) batch cannot be split evenly over {world} ranks; "
                         f"give a multiple of {world}")
    return batch_size // world


def average_gradients(params: list[nn.Parameter]) -> None:
    """Replace each gradient by its mean over the ranks (one all-reduce over all of them).

    Every rank must pass the same parameters in the same order with the same gradients present
    (identical networks and methods guarantee it); a parameter without a gradient is skipped.
    """
    if not is_distributed():
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size()
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset:offset + n].view_as(g))
        offset += n


class _AllSum(torch.autograd.Function):
    """Sum over the ranks; its gradient is the sum of the ranks' gradients (each rank's loss
    depends on every rank's input through the sum)."""

    @staticmethod
    def forward(ctx: object, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def mean_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of `tensor` over the ranks (itself in one process). For a method that transforms
    a gradient non-linearly before the loop averages it (e.g. DSA's running-RMS preconditioner
    in a tensor hook): transforming the mean, not each rank's part, is what one process computes
    with the global batch, and keeps the method's state identical on every rank."""
    if not is_distributed():
        return tensor
    out = tensor.detach().clone()
    dist.all_reduce(out)
    return out / world_size()


def _all_sum(tensor: torch.Tensor) -> torch.Tensor:
    return _AllSum.apply(tensor)


#: ids of the BatchNorm modules `global_batchnorm` is active on (a deepcopy of a patched module
#: keeps the bound forward but not its id, and so normalises like a plain BatchNorm).
_GLOBAL_BN: set[int] = set()


def _global_batchnorm_forward(self: nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
    """BatchNorm in training mode with the mean and variance of the batch over all ranks.

    Each rank computes its own mean and sum of squared deviations in two passes, in float32
    (also under fp16/bf16 autocast: the statistics would overflow or lose their digits); one
    all-reduce per layer (and one in the backward) combines them in float64, where the between-
    rank term ``sum n_r * mean_r**2 - N * mean**2`` keeps its precision. On CPUs with gloo each
    collective costs milliseconds: one per layer, not two. Running statistics are updated with
    the global count (unbiased variance), as torch does; the output has the input's dtype."""
    if not self.training or not is_distributed() or id(self) not in _GLOBAL_BN:
        return nn.modules.batchnorm._BatchNorm.forward(self, x)
    dims = [0, *range(2, x.dim())]
    shape = [1, -1] + [1] * (x.dim() - 2)
    # float32 under fp16/bf16 autocast (float64 stays float64)
    xf = x.to(torch.promote_types(x.dtype, torch.float32))
    local_count = xf.numel() // xf.shape[1]
    local_mean = xf.mean(dim=dims)
    local_m2 = ((xf - local_mean.view(shape)) ** 2).sum(dim=dims)
    channels = xf.shape[1]
    n = float(local_count)
    total = _all_sum(torch.cat([local_mean.double() * n, local_m2.double() + n * local_mean.double() ** 2,
                                torch.tensor([n], dtype=torch.float64, device=x.device)]))
    count = total[-1]
    mean64 = total[:channels] / count
    var64 = ((total[channels:2 * channels] - count * mean64 * mean64) / count).clamp_min(0)
    mean, var = mean64.to(xf.dtype), var64.to(xf.dtype)
    if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
        with torch.no_grad():
            if self.num_batches_tracked is not None:
                self.num_batches_tracked.add_(1)
            factor = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                      else self.momentum)
            n_all = float(count)
            self.running_mean.mul_(1 - factor).add_(mean.detach().to(self.running_mean.dtype), alpha=factor)
            unbiased = var.detach() * (n_all / max(n_all - 1, 1))
            self.running_var.mul_(1 - factor).add_(unbiased.to(self.running_var.dtype), alpha=factor)
    out = (xf - mean.view(shape)) * torch.rsqrt(var + self.eps).view(shape)
    if self.affine:
        out = out * self.weight.to(xf.dtype).view(shape) + self.bias.to(xf.dtype).view(shape)
    return out.to(x.dtype)


@contextlib.contextmanager
def global_batchnorm(model: nn.Module) -> Iterator[None]:
    """Within the block, every BatchNorm of `model` normalises with the global batch's statistics
    (a no-op in one process). The modules keep their class and state dict: surgery, cost counting
    and checkpoints see plain BatchNorms."""
    if not is_distributed():
        yield
        return
    patched = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
               and "forward" not in vars(m)]
    for m in patched:
        m.forward = _global_batchnorm_forward.__get__(m)   # instance attribute: removed below
        _GLOBAL_BN.add(id(m))
    try:
        yield
    finally:
        for m in patched:
            _GLOBAL_BN.discard(id(m))
            del m.forward


def state_digest(model: nn.Module) -> str:
    """sha256 of the model's state dict (names, shapes, bytes)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def check_same_across_ranks(model: nn.Module, where: str) -> None:
    """Raise on every rank if the ranks' networks differ (weights, buffers, widths): a method that
    took a decision from rank-local numbers would otherwise go on training diverged copies."""
    if not is_distributed():
        return
    digests: list[str | None] = [None] * world_size()
    dist.all_gather_object(digests, state_digest(model))
    if len(set(digests)) > 1:
        raise RuntimeError(f"{where}: the ranks' networks differ (state digests {sorted(set(digests))}); a method "
                           "decision or random draw depended on the rank. Every rank must compute the same "
                           "update from the same weights (docs/distributed.md)")
