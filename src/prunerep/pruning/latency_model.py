"""Latency predictors fitted on a measured latency dataset, and how to score them.

* :class:`LPNet`: W-Gates' latency predict net (Li et al., arXiv:2007.02066; its size and
  training were not retrieved, so these are ours): a small MLP from the per-group widths, as
  fractions of the dense widths, to the log latency at every measured batch size. Log targets
  make the squared error a relative one, which is what "within ±10%" scores. It is
  differentiable in its input, so a pruning method can back-propagate a latency penalty into the
  widths (the method freezes it).
* Two predictors any user could build instead, fitted on the same training rows:
  :class:`AffineFit` of the MACs (``a * MACs + b``, which contains MACs-proportional) and of the
  per-layer lookup table (``a * sum of each layer's measured latency at its width + b``, see
  :class:`~prunerep.pruning.latency_dataset.LayerTable`), both by least squares on the relative
  error.
* :func:`split_rows`: train / validation / held-out test indices. The held-out part (>= 20%) is
  never used for fitting or for choosing anything (LPNet's stopping iteration is chosen on the
  validation part).
* Scores: :func:`mape`, :func:`spearman`, :func:`within`.

LPNet files hold the weights and the input/output encoding (``torch.load(weights_only=True)``);
:func:`save_lpnet` returns the file's sha256, which a method run records, so a run that used
another predictor never resumes or matches this one.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunerep.io import atomic_torch_save

__all__ = [
    "AffineFit",
    "LPNet",
    "LPNetConfig",
    "fit_lpnet",
    "load_lpnet",
    "mape",
    "save_lpnet",
    "spearman",
    "split_rows",
    "within",
]

LPNET_FORMAT = "prunerep.lpnet/1"


# ----------------------------------------------------------------------------- scores


def mape(pred: torch.Tensor, true: torch.Tensor) -> float:
    """Mean absolute percentage error, as a fraction: ``mean |pred / true - 1|``."""
    return float(((pred.double() / true.double()) - 1).abs().mean())


def within(pred: torch.Tensor, true: torch.Tensor, tol: float = 0.10) -> float:
    """Share of predictions within ``±tol`` (relative) of the truth."""
    return float((((pred.double() / true.double()) - 1).abs() <= tol + 1e-12).double().mean())


def _ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks 1..n, ties sharing their average rank."""
    x = x.double().flatten()
    order = torch.argsort(x, stable=True)
    ranks = torch.empty_like(x)
    ranks[order] = torch.arange(1, len(x) + 1, dtype=torch.float64)
    out = ranks.clone()
    for v in torch.unique(x):
        tie = x == v
        if int(tie.sum()) > 1:
            out[tie] = ranks[tie].mean()
    return out


def spearman(pred: torch.Tensor, true: torch.Tensor) -> float:
    """Spearman rank correlation (Pearson correlation of the ranks, ties averaged)."""
    a, b = _ranks(pred), _ranks(true)
    a, b = a - a.mean(), b - b.mean()
    denom = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    return float((a * b).sum()) / denom if denom > 0 else math.nan


# ----------------------------------------------------------------------------- splits


def split_rows(n: int, *, test: float = 0.2, val: float = 0.1, seed: int = 0,
               keep_in_train: Sequence[int] = ()) -> tuple[list[int], list[int], list[int]]:
    """Random train / validation / held-out test indices of ``n`` rows.

    Args:
        n: Number of rows.
        test: Held-out share (>= 0.2 as the issue asks; never used to fit or choose).
        val: Share for choosing LPNet's stopping iteration.
        seed: Seed of the permutation.
        keep_in_train: Rows that must be in the training part (e.g. the dense network, which
            anchors the relative latency a method computes).
    """
    if not 0.2 <= test < 1 or not 0 <= val < 1 or test + val >= 1:
        raise ValueError(f"need 0.2 <= test, 0 <= val and test + val < 1, got test={test}, val={val}")
    perm = [i for i in torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
            if i not in set(keep_in_train)]
    n_test, n_val = math.ceil(test * n), round(val * n)
    test_idx, val_idx = sorted(perm[:n_test]), sorted(perm[n_test:n_test + n_val])
    train_idx = sorted([*keep_in_train, *perm[n_test + n_val:]])
    return train_idx, val_idx, test_idx


# ----------------------------------------------------------------------------- baselines


@dataclass(frozen=True)
class AffineFit:
    """``a * x + b`` fitted by least squares on the relative error ``(a x + b) / y - 1``."""

    a: float
    b: float

    @classmethod
    def fit(cls, x: torch.Tensor, y: torch.Tensor) -> AffineFit:
        x, y = x.double().flatten(), y.double().flatten()
        # minimise sum ((a x + b - y) / y)^2: weighted least squares with weights 1 / y^2
        design = torch.stack([x / y, 1 / y], dim=1)
        sol = torch.linalg.lstsq(design, torch.ones_like(y).unsqueeze(1)).solution.flatten()
        return cls(float(sol[0]), float(sol[1]))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.a * x.double() + self.b


# ----------------------------------------------------------------------------- LPNet


@dataclass(frozen=True)
class LPNetConfig:
    """Size and training of LPNet (ours: the paper's were not retrieved)."""

    hidden: int = 128
    layers: int = 2                  # hidden layers
    lr: float = 3e-3                 # Adam, full batch
    weight_decay: float = 1e-5
    iterations: int = 3000
    eval_every: int = 50             # the kept weights: lowest validation error at these points
    seed: int = 0

    def __post_init__(self) -> None:
        if self.hidden < 1 or self.layers < 1 or self.iterations < 1 or self.eval_every < 1:
            raise ValueError("hidden, layers, iterations and eval_every must be >= 1")


class LPNet(nn.Module):
    """MLP from width fractions ``[.., G]`` to latency (ms) at every batch size ``[.., B]``.

    The network predicts standardised log latencies; :meth:`forward` undoes the
    standardisation and returns milliseconds; :meth:`log_ms` the natural log.

    Args:
        groups: Number of channel groups (input size).
        batch_sizes: Batch sizes of the outputs, in order.
        hidden: Hidden width; layers: number of hidden layers.
    """

    def __init__(self, groups: int, batch_sizes: Sequence[int], hidden: int = 128, layers: int = 2) -> None:
        super().__init__()
        self.batch_sizes = [int(b) for b in batch_sizes]
        dims = [groups, *([hidden] * layers)]
        mods: list[nn.Module] = []
        for a, b in itertools.pairwise(dims):
            # SiLU, not ReLU: the method differentiates LPNet w.r.t. the widths, and a smooth
            # net gives a gradient that changes smoothly with them.
            mods += [nn.Linear(a, b), nn.SiLU()]
        mods.append(nn.Linear(dims[-1], len(self.batch_sizes)))
        self.net = nn.Sequential(*mods)
        self.register_buffer("y_mean", torch.zeros(len(self.batch_sizes)))
        self.register_buffer("y_std", torch.ones(len(self.batch_sizes)))

    def log_ms(self, fractions: torch.Tensor) -> torch.Tensor:
        z = self.net(fractions.to(self.y_mean.dtype))
        return z * self.y_std + self.y_mean

    def forward(self, fractions: torch.Tensor) -> torch.Tensor:
        return self.log_ms(fractions).exp()

    def output(self, batch_size: int) -> int:
        """Index of ``batch_size`` among the outputs."""
        if batch_size not in self.batch_sizes:
            raise KeyError(f"LPNet predicts batch sizes {self.batch_sizes}, not {batch_size}")
        return self.batch_sizes.index(batch_size)


def fit_lpnet(x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor,
              batch_sizes: Sequence[int], cfg: LPNetConfig = LPNetConfig()) -> tuple[LPNet, dict[str, Any]]:
    """Train LPNet on ``(x_train, y_train)`` (fractions ``[N, G]``, latency ms ``[N, B]``).

    The weights kept are those with the lowest validation error (squared error of the log
    latency) among the checkpoints every ``eval_every`` iterations: the validation part chooses,
    the held-out test part is not seen here at all.

    Returns:
        ``(lpnet, info)``: the net in eval mode, and ``best_iteration``, ``val_loss``,
        ``train_loss``.
    """
    if y_train.dim() == 1:
        y_train, y_val = y_train.unsqueeze(1), y_val.unsqueeze(1)
    if (y_train <= 0).any() or (y_val <= 0).any():
        raise ValueError("latencies must be > 0")
    gen = torch.Generator().manual_seed(cfg.seed)
    with torch.random.fork_rng():
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
        net = LPNet(x_train.shape[1], batch_sizes, cfg.hidden, cfg.layers)
    xt, yt = x_train.float(), y_train.double().log()
    xv, yv = x_val.float(), y_val.double().log()
    mean, std = yt.mean(0), yt.std(0).clamp_min(1e-6) if len(yt) > 1 else torch.ones(yt.shape[1])
    net.y_mean.copy_(mean.float())
    net.y_std.copy_(std.float())
    zt = ((yt - mean) / std).float()
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    best = (math.inf, 0, {k: v.clone() for k, v in net.state_dict().items()})
    train_loss = math.nan
    for it in range(1, cfg.iterations + 1):
        opt.zero_grad(set_to_none=True)
        loss = ((net.net(xt) - zt) ** 2).mean()
        loss.backward()
        opt.step()
        if it % cfg.eval_every == 0 or it == cfg.iterations:
            with torch.no_grad():
                val = float(((net.log_ms(xv).double() - yv) ** 2).mean()) if len(xv) else float(loss)
            if val < best[0]:
                best = (val, it, {k: v.clone() for k, v in net.state_dict().items()})
                train_loss = float(loss.detach())
    net.load_state_dict(best[2])
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net, {"best_iteration": best[1], "val_loss": best[0], "train_loss": train_loss}


def save_lpnet(net: LPNet, path: str | Path, meta: Mapping[str, Any]) -> str:
    """Write LPNet (weights, encoding, ``meta``: group ids, dense widths, dataset key ...);
    return the file's sha256."""
    groups = net.net[0].in_features
    hidden = net.net[0].out_features
    layers = sum(isinstance(m, nn.Linear) for m in net.net) - 1
    atomic_torch_save({"format": LPNET_FORMAT, "groups": groups, "hidden": hidden, "layers": layers,
                       "batch_sizes": list(net.batch_sizes), "state_dict": net.state_dict(),
                       "meta": json.loads(json.dumps(dict(meta)))}, path)   # plain types only
    return file_sha256(path)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_lpnet(path: str | Path, digest: str | None = None) -> tuple[LPNet, dict[str, Any]]:
    """Load an LPNet file (frozen, eval mode) and its meta; with ``digest``, refuse another file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no LPNet file; the study fits it from the latency dataset first")
    if digest is not None and file_sha256(path) != digest:
        raise ValueError(f"{path}: this LPNet is not the one the run was planned with (sha256 differs); "
                         "re-plan the runs (the study refits and records the digest)")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != LPNET_FORMAT:
        raise ValueError(f"{path}: not an LPNet file of this project (format {LPNET_FORMAT!r} expected)")
    net = LPNet(ckpt["groups"], ckpt["batch_sizes"], ckpt["hidden"], ckpt["layers"])
    net.load_state_dict(ckpt["state_dict"])
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net, dict(ckpt["meta"])
