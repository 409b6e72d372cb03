"""In-memory batch loader: batched normalisation and CIFAR augmentation on the target device.

No torch DataLoader and no worker processes: the whole uint8 dataset sits on the device once,
and each batch is one gather, one crop-and-flip gather and one fused normalisation. On 2 CPU
cores this is far faster than per-image PIL transforms, and on CUDA nothing crosses the bus
except the per-epoch index permutation.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence

import torch

from prunerep.data.arrays import ArrayDataset, DataSplits

Batch = tuple[torch.Tensor, torch.Tensor]


def epoch_generator(seed: int, epoch: int, purpose: str = "loader") -> torch.Generator:
    """A CPU generator keyed by (purpose, seed, epoch) only: the same batches on CPU and CUDA, on
    every rank, and a resumed run re-creates any epoch without replaying the ones before it.
    Every loader of the project (in memory, streamed, the API's) draws its epochs from it."""
    key = hashlib.sha256(f"{purpose}:{seed}:{epoch}".encode()).digest()[:8]
    return torch.Generator().manual_seed(int.from_bytes(key, "little") & ((1 << 63) - 1))


def global_batch_starts(n: int, batch_size: int, shard: tuple[int, int] | None) -> range:
    """Where one rank's batches start in an epoch's order of `n` samples, the last incomplete
    global batch dropped: rank r of N takes rows ``[r*B, (r+1)*B)`` of every global batch of
    ``N*B``, so the ranks together see the batches one process sees (``shard=None``: one rank)."""
    rank, world = shard or (0, 1)
    step = batch_size * world
    return range(rank * batch_size, (n // step) * step, step)


def crop_flip(
    images: torch.Tensor, shifts: torch.Tensor, flips: torch.Tensor, pad: int
) -> torch.Tensor:
    """Random-crop-with-zero-padding and horizontal flip of a batch, as one gather.

    Output pixel ``(i, j)`` of image ``b`` is pixel ``(i + dy - pad, j' + dx - pad)`` of the input
    (zero outside it), with ``(dy, dx) = shifts[b]`` and ``j' = W - 1 - j`` if ``flips[b]`` else
    ``j``; i.e. pad by `pad` zeros, crop the HxW window at ``(dy, dx)``, then maybe mirror it.

    Args:
        images: [B, C, H, W], any dtype (uint8 here: 4x less memory traffic than float).
        shifts: int64 [B, 2], window offsets (dy, dx) in ``[0, 2 * pad]``.
        flips: bool [B], mirror left-right.
        pad: zero padding on each side.

    Returns:
        The augmented batch, same shape, dtype and device as `images`.
    """
    b, c, h, w = images.shape
    device = images.device
    hp, wp = h + 2 * pad, w + 2 * pad
    if pad > 0:
        padded = images.new_zeros(b, c, hp, wp)
        padded[:, :, pad : pad + h, pad : pad + w] = images
    else:
        padded = images.contiguous()
    # Output pixel (i, j) reads flat position (dy + i) * wp + dx + j' of its padded plane: a
    # per-image offset plus one of two fixed [H*W] patterns (plain or mirrored). One gather
    # along the flattened plane, with the index shared by all channels (expand, no copy), was
    # the fastest of the batched variants tried on CPU (about 2x a 4-D advanced index).
    i = torch.arange(h, device=device).view(h, 1) * wp
    j = torch.arange(w, device=device).view(1, w)
    plain = (i + j).view(1, h * w)
    mirrored = (i + (w - 1 - j)).view(1, h * w)
    shifts = shifts.to(device)
    offset = (shifts[:, 0] * wp + shifts[:, 1]).view(b, 1)
    index = torch.where(flips.to(device).view(b, 1), mirrored, plain) + offset
    out = padded.view(b, c, hp * wp).gather(2, index.view(b, 1, h * w).expand(b, c, h * w))
    return out.view(b, c, h, w)


class Loader:
    """Batches of normalised float32 images and int64 labels from an in-memory dataset.

    The uint8 images are moved to `device` once, at construction. Each call of ``iter()`` runs
    one epoch: the shuffle order and the augmentation of epoch ``e`` are a pure function of
    ``(seed, e)``. The epoch counter starts at 0 and advances by one at every ``iter()``; call
    `set_epoch` to pin it (e.g. when resuming at epoch ``e``).

    Args:
        dataset: images uint8 [N, C, H, W] and labels.
        batch_size: images per batch.
        mean: per-channel mean in [0, 1] units (length C).
        std: per-channel std in [0, 1] units (length C).
        shuffle: new random order every epoch.
        augment: random crop with zero padding `pad`, plus random horizontal flip if `flip`.
        drop_last: drop the last incomplete batch.
        device: where batches (and the dataset) live.
        channels_last: return images in channels-last memory format.
        seed: seed of order and augmentation.
        pad: zero padding of the random crop (0: no crop).
        flip: random horizontal flip when augmenting.
        shard: ``(rank, world_size)`` of a distributed run: the epoch's order and augmentation
            are drawn for the global batch of ``batch_size * world_size`` images, identically on
            every rank, and rank r yields rows ``[r * batch_size, (r + 1) * batch_size)`` of each
            global batch; N ranks thus see together exactly the batches one process sees with
            ``N * batch_size``. Needs ``drop_last`` (every rank takes the same number of steps).
    """

    def __init__(
        self,
        dataset: ArrayDataset,
        batch_size: int,
        *,
        mean: Sequence[float] | torch.Tensor,
        std: Sequence[float] | torch.Tensor,
        shuffle: bool,
        augment: bool,
        drop_last: bool = False,
        device: torch.device | str = "cpu",
        channels_last: bool = False,
        seed: int = 0,
        pad: int = 4,
        flip: bool = True,
        shard: tuple[int, int] | None = None,
    ) -> None:
        if shard is not None:
            rank, world = (int(v) for v in shard)
            if not 0 <= rank < world:
                raise ValueError(f"shard: rank {rank} is not in [0, {world})")
            if world > 1 and not drop_last:
                raise ValueError("shard: a sharded loader needs drop_last=True (every rank must take the "
                                 "same number of steps)")
            shard = (rank, world)
        self.shard = shard if shard is not None and shard[1] > 1 else None
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if pad < 0:
            raise ValueError(f"pad must be >= 0, got {pad}")
        self.device = torch.device(device)
        self.dataset = dataset.to(self.device)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.augment = augment
        self.drop_last = drop_last
        self.channels_last = channels_last
        self.seed = int(seed)
        self.pad = int(pad)
        self.flip = flip
        self.epoch = 0
        channels = dataset.images.shape[1]
        mean_t = torch.as_tensor(mean, dtype=torch.float64).flatten()
        std_t = torch.as_tensor(std, dtype=torch.float64).flatten()
        if mean_t.numel() != channels or std_t.numel() != channels:
            raise ValueError(
                f"mean and std need {channels} values (one per channel), got "
                f"{mean_t.numel()} and {std_t.numel()}"
            )
        if (std_t <= 0).any():
            raise ValueError(f"std must be positive, got {std_t.tolist()}")
        # (x / 255 - mean) / std == x * scale - shift: two in-place ops per batch.
        self._scale = (1.0 / (255.0 * std_t)).float().view(1, channels, 1, 1).to(self.device)
        self._shift = (mean_t / std_t).float().view(1, channels, 1, 1).to(self.device)

    def __len__(self) -> int:
        n = len(self.dataset)
        if self.shard is not None:
            return n // (self.batch_size * self.shard[1])
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Make the next ``iter()`` produce epoch `epoch` (order and augmentation)."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[Batch]:
        epoch = self.epoch
        self.epoch += 1
        return self._epoch(epoch)

    def infinite(self) -> Iterator[Batch]:
        """Batches forever, epoch after epoch (for methods that draw held-out batches
        continuously). Shares the epoch counter with ``iter()``: use a separate Loader for a
        continuous stream and for evaluation passes."""
        if len(self) == 0:
            raise ValueError("infinite() over a loader with no batches")
        while True:
            yield from self

    def _starts(self, n: int) -> range:
        """Where this process's batches start in the epoch's order."""
        if self.shard is None:
            return range(0, min(len(self) * self.batch_size, n), self.batch_size)
        return global_batch_starts(n, self.batch_size, self.shard)

    def _epoch(self, epoch: int) -> Iterator[Batch]:
        n = len(self.dataset)
        gen = epoch_generator(self.seed, epoch)
        order = torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)
        augment = self.augment and (self.pad > 0 or self.flip)
        if augment:
            shifts = torch.randint(0, 2 * self.pad + 1, (n, 2), generator=gen)
            flips = torch.rand(n, generator=gen) < 0.5
            if not self.flip:
                flips.zero_()
            shifts, flips = shifts.to(self.device), flips.to(self.device)
        order = order.to(self.device)
        images, labels = self.dataset.images, self.dataset.labels
        for start in self._starts(n):
            idx = order[start : start + self.batch_size]
            x = images[idx]
            if augment:
                x = crop_flip(
                    x, shifts[start : start + len(idx)], flips[start : start + len(idx)], self.pad
                )
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            # float32 (the default dtype; float64 in the exact tests) keeps the memory format; then
            # fused scale/shift in place.
            x = x.to(torch.get_default_dtype()).mul_(self._scale).sub_(self._shift)
            yield x, labels[idx]


def loaders(
    splits: DataSplits,
    batch_size: int,
    *,
    device: torch.device | str = "cpu",
    channels_last: bool = False,
    seed: int = 0,
    eval_batch_size: int | None = None,
    drop_last: bool = False,
    pad: int = 4,
    flip: bool = True,
) -> tuple[Loader, Loader, Loader]:
    """Train (shuffled, augmented), validation and test (neither) loaders for `splits`.

    Args:
        splits: from `load_splits`; its train mean/std normalise all three.
        batch_size: training batch size.
        device: where the data and batches live.
        channels_last: channels-last batches.
        seed: seed of the training order and augmentation.
        eval_batch_size: batch size of validation/test (default: `batch_size`).
        drop_last: drop the last incomplete training batch.
        pad: zero padding of the training random crop.
        flip: random horizontal flips in training.

    Returns:
        (train, val, test) loaders.
    """
    common = {
        "mean": splits.mean,
        "std": splits.std,
        "device": device,
        "channels_last": channels_last,
    }
    eval_bs = eval_batch_size or batch_size
    train = Loader(
        splits.train, batch_size, shuffle=True, augment=True, drop_last=drop_last, seed=seed,
        pad=pad, flip=flip, **common,
    )  # fmt: skip
    val = Loader(splits.val, eval_bs, shuffle=False, augment=False, seed=seed, **common)
    test = Loader(splits.test, eval_bs, shuffle=False, augment=False, seed=seed, **common)
    return train, val, test
