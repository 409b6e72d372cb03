"""In-memory Loader: shapes, normalisation, determinism, crop and flip."""

from __future__ import annotations

import pytest
import torch

from prunerep.data import ArrayDataset, DataSplits, Loader, loaders
from prunerep.data.loader import crop_flip

N, C, H, W = 10, 3, 6, 5  # non-square on purpose


def make_dataset(n: int = N, channels: int = C) -> ArrayDataset:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(1, 256, (n, channels, H, W), generator=gen, dtype=torch.uint8)
    # Sample id in the first pixel, read back by tests that do not augment.
    images[:, 0, 0, 0] = torch.arange(n, dtype=torch.uint8)
    labels = torch.arange(n) % 3
    return ArrayDataset(images, labels, ("a", "b", "c"))


MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def unnormalise(x: torch.Tensor, mean=MEAN, std=STD) -> torch.Tensor:
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    return x * s + m


def collect(loader) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*loader, strict=True)
    return torch.cat(xs), torch.cat(ys)


def test_shapes_dtypes_and_length() -> None:
    ds = make_dataset()
    loader = Loader(ds, 4, mean=MEAN, std=STD, shuffle=True, augment=True)
    batches = list(loader)
    assert len(loader) == len(batches) == 3
    assert [b[0].shape[0] for b in batches] == [4, 4, 2]
    x, y = batches[0]
    assert x.dtype == torch.float32 and x.shape == (4, C, H, W)
    assert y.dtype == torch.int64 and y.shape == (4,)
    dropped = Loader(ds, 4, mean=MEAN, std=STD, shuffle=True, augment=False, drop_last=True)
    assert len(dropped) == 2 and len(list(dropped)) == 2


def test_normalisation_is_exact_without_augmentation() -> None:
    ds = make_dataset()
    x, y = collect(Loader(ds, 3, mean=MEAN, std=STD, shuffle=False, augment=False))
    assert torch.equal(y, ds.labels)
    assert torch.allclose(unnormalise(x), ds.images.float() / 255, atol=1e-6)


def test_shuffle_is_a_permutation_and_labels_follow_images() -> None:
    ds = make_dataset()
    x, y = collect(Loader(ds, 4, mean=MEAN, std=STD, shuffle=True, augment=False, seed=5))
    ids = (unnormalise(x)[:, 0, 0, 0] * 255).round().long()
    assert sorted(ids.tolist()) == list(range(N))
    assert ids.tolist() != list(range(N))
    assert torch.equal(y, ds.labels[ids])


def test_epochs_are_deterministic_and_resumable() -> None:
    ds = make_dataset()

    def make() -> Loader:
        return Loader(ds, 4, mean=MEAN, std=STD, shuffle=True, augment=True, seed=7)

    a, b = make(), make()
    epochs_a = [collect(a) for _ in range(3)]  # iter() advances the epoch: 0, 1, 2
    b.set_epoch(2)  # resume directly at epoch 2
    resumed = collect(b)
    assert torch.equal(resumed[0], epochs_a[2][0]) and torch.equal(resumed[1], epochs_a[2][1])
    assert not torch.equal(epochs_a[0][0], epochs_a[1][0])
    b.set_epoch(0)
    assert torch.equal(collect(b)[0], epochs_a[0][0])
    other_seed = Loader(ds, 4, mean=MEAN, std=STD, shuffle=True, augment=True, seed=8)
    assert not torch.equal(collect(other_seed)[0], epochs_a[0][0])


def test_shuffle_order_differs_between_epochs() -> None:
    ds = make_dataset(n=50)
    loader = Loader(ds, 50, mean=MEAN, std=STD, shuffle=True, augment=False)
    loader.set_epoch(0)
    e0 = collect(loader)[0]
    loader.set_epoch(1)
    e1 = collect(loader)[0]
    assert not torch.equal(e0, e1)


def manual_crop_flip(img: torch.Tensor, dy: int, dx: int, flip: bool, pad: int) -> torch.Tensor:
    """Per-image reference: pad with zeros, crop the HxW window at (dy, dx), maybe mirror."""
    c, h, w = img.shape
    padded = torch.zeros(c, h + 2 * pad, w + 2 * pad, dtype=img.dtype)
    padded[:, pad : pad + h, pad : pad + w] = img
    out = padded[:, dy : dy + h, dx : dx + w]
    return out.flip(-1) if flip else out


def test_crop_flip_matches_per_image_reference() -> None:
    ds = make_dataset()
    pad = 2
    gen = torch.Generator().manual_seed(1)
    shifts = torch.randint(0, 2 * pad + 1, (N, 2), generator=gen)
    shifts[0] = torch.tensor([0, 2 * pad])  # extreme corners too
    shifts[1] = torch.tensor([2 * pad, 0])
    flips = torch.rand(N, generator=gen) < 0.5
    flips[:2] = torch.tensor([True, False])
    out = crop_flip(ds.images, shifts, flips, pad)
    for i in range(N):
        expected = manual_crop_flip(
            ds.images[i], int(shifts[i, 0]), int(shifts[i, 1]), bool(flips[i]), pad
        )
        assert torch.equal(out[i], expected), i


def test_loader_crop_is_a_padded_shift_of_the_original() -> None:
    ds = make_dataset()
    pad = 2
    loader = Loader(ds, N, mean=MEAN, std=STD, shuffle=False, augment=True, pad=pad, seed=3)
    x, _ = collect(loader)
    pixels = (unnormalise(x) * 255).round().to(torch.uint8)
    for i in range(N):
        assert any(
            torch.equal(pixels[i], manual_crop_flip(ds.images[i], dy, dx, f, pad))
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            for f in (False, True)
        ), i


def test_flip_only() -> None:
    ds = make_dataset(n=40)
    loader = Loader(ds, 40, mean=MEAN, std=STD, shuffle=False, augment=True, pad=0, flip=True)
    pixels = (unnormalise(collect(loader)[0]) * 255).round().to(torch.uint8)
    same = [torch.equal(pixels[i], ds.images[i]) for i in range(40)]
    mirrored = [torch.equal(pixels[i], ds.images[i].flip(-1)) for i in range(40)]
    assert all(s or m for s, m in zip(same, mirrored, strict=True))
    assert any(same) and any(mirrored)
    no_aug = Loader(ds, 40, mean=MEAN, std=STD, shuffle=False, augment=True, pad=0, flip=False)
    assert torch.allclose(unnormalise(collect(no_aug)[0]), ds.images.float() / 255, atol=1e-6)


def test_channels_last_grayscale_and_stat_checks() -> None:
    ds = make_dataset(channels=1)
    loader = Loader(ds, 4, mean=(0.5,), std=(0.5,), shuffle=True, augment=True, channels_last=True)
    x, _ = next(iter(loader))
    assert x.shape == (4, 1, H, W)
    assert x.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="one per channel"):
        Loader(ds, 4, mean=MEAN, std=STD, shuffle=False, augment=False)


def test_infinite_crosses_epochs() -> None:
    ds = make_dataset()
    loader = Loader(ds, 4, mean=MEAN, std=STD, shuffle=True, augment=False, seed=2)
    stream = loader.infinite()
    drawn = torch.cat([next(stream)[1] for _ in range(7)])  # 2+ epochs of 3 batches
    assert drawn.numel() == 10 + 10 + 4
    assert loader.epoch == 3
    reference = Loader(ds, 4, mean=MEAN, std=STD, shuffle=True, augment=False, seed=2)
    reference.set_epoch(1)
    assert torch.equal(drawn[10:20], collect(reference)[1])


def test_loaders_helper() -> None:
    ds = make_dataset()
    splits = DataSplits(train=ds, val=ds.subset(torch.arange(4)), test=ds.subset(torch.arange(6)),
                        mean=MEAN, std=STD, fingerprint="f", source="s")  # fmt: skip
    train, val, test = loaders(
        splits, 4, device="cpu", channels_last=False, seed=0, eval_batch_size=3
    )
    assert train.shuffle and train.augment and train.batch_size == 4
    assert not val.shuffle and not val.augment and val.batch_size == 3
    assert not test.shuffle and not test.augment and len(test) == 2


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_batches_match_cpu() -> None:
    ds = make_dataset()
    cpu = Loader(ds, 4, mean=MEAN, std=STD, shuffle=True, augment=True, seed=4)
    gpu = Loader(ds, 4, mean=MEAN, std=STD, shuffle=True, augment=True, seed=4, device="cuda")
    assert gpu.dataset.images.is_cuda
    for (xc, yc), (xg, yg) in zip(cpu, gpu, strict=True):
        assert xg.is_cuda and yg.is_cuda
        assert torch.allclose(xc, xg.cpu(), atol=1e-6) and torch.equal(yc, yg.cpu())
