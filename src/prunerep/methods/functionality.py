"""Functionality-oriented filter pruning (reconstruction): keep one filter per repeated function.

Qin, Yu, Liu, Chen. "Demystifying Neural Network Filter Pruning", NIPS 2018 workshop,
arXiv:1811.02639 (the abstract this project replicates); its longer companion
"Functionality-Oriented Convolutional Filter Pruning", arXiv:1810.07322; sister paper CAPTOR
(ASP-DAC 2019, DOI 10.1145/3287624.3287643), which adds a class-gradient descriptor. No official
code exists and the full texts could not be read here (``../shared/papers/functionality.md``):
the abstracts say only that each filter's *functionality* is interpreted by visualising it, that
L1 ranking keeps filters of repeated functionality and removes some critical ones, and that a
network pruned by functionality needs no retraining. Everything below is our reconstruction;
every open choice is a named field of :class:`FunctionalityHyper`.

Per prunable channel group (a layer's filters; a residual stream's coupled filters):

1. **Descriptor** of each channel (``descriptor``), computed on a seeded batch of ``images``
   images drawn from ``ctx.val_loader`` (the validation split, held out of the training split;
   never the test split), with the network in eval mode:

   * ``response`` (default; the cheap one): the channel's feature map *as its readers see it*
     (the input of the group's first reader: after BN, ReLU and pooling), over the whole batch.
     Only its Gram matrix ``G = A A^T`` (``A``: channels x (images * positions)) is kept, which is
     all the cosine similarity and the least-squares folding below need;
   * ``activation_max``: the channel's activation-maximisation pattern
     (:func:`activation_maximization`: gradient ascent on the input from noise, with L2 decay,
     Gaussian blur and jitter; the usual regularisers of Yosinski et al. 2015), flattened;
   * ``class_gradient`` (ours, after CAPTOR's "class activation preference", whose definition
     was not read; a third-party project takes the gradient w.r.t. the filter's weights):
     ``gamma[c, y]`` = mean over the batch's images of class ``y`` of the mean absolute gradient
     of the softmax probability of ``y`` w.r.t. channel ``c``'s feature map (:func:`class_gradients`).

2. **Similarity** of every pair (``similarity``): cosine (``G_ij / sqrt(G_ii G_jj)``), or the
   Pearson correlation. A channel whose descriptor is all zero (a dead filter) is identical to
   every other dead one (similarity 1) and unlike the rest (0).

3. **Clustering** per group (``cluster``): agglomerative (``linkage``: complete, average or single,
   on the similarity directly: Lance-Williams updates) or kernel k-means on the similarity
   matrix (k-means++ initialisation seeded by ``seed``). Complete linkage is the default (chosen
   a priori, on a toy case, not after seeing any accuracy): every
   pair inside a cluster is at least as similar as the level at which the cluster formed, so a
   cluster is a set of mutually repeated functions; average and single linkage let moderately
   similar filters chain into one large cluster that then keeps a single filter. The number of clusters is the group's
   kept width from the budget (``Budget.ratios``: ``C - ceil(r C)``; ``Budget.macs_keep``: the
   same fraction in every prunable group, found by bisection, as for L1), or, with
   ``threshold`` set, agglomerative merging stops when no two clusters are more similar than
   the threshold (the budget is then not used).

4. **One representative per cluster** (``representative``): the medoid (largest summed
   similarity to its cluster), or the member with the largest filter L1 norm. The rest are
   removed by the shared surgery (:func:`~prunerep.pruning.surgery.prune_channels`).

5. **Optional folding** (``fold``, ours): before removal, each removed channel ``j``'s outgoing
   weights (its input columns in every reader) are added to its representative ``i``'s, scaled
   by the least-squares factor ``s = G_ij / G_ii`` (so that ``s a_i`` approximates ``a_j``).
   For an exact duplicate (``a_j = a_i``) the network's output is unchanged. Only groups with
   a single reader and no option-A copy can be folded (the scale is fitted where that one reader
   sees the channels; a residual stream's readers see it after different operations, and a copy
   has no weights): ``fold`` on any other group is refused.

No retraining: the runner's ``finetune: null``; a brief retraining is the study's option.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from prunerep.methods.base import MethodContext, PruningMethod, register_method
from prunerep.methods.baselines import Scope, in_scope
from prunerep.methods.budget import uniform_widths_for_macs, widths_from_ratio
from prunerep.methods.importance import filter_l1
from prunerep.pruning.groups import ChannelGroup
from prunerep.pruning.surgery import prune_channels

__all__ = [
    "ActivationMaxHyper",
    "FunctionalityHyper",
    "FunctionalityPruning",
    "activation_maximization",
    "agglomerate",
    "am_module",
    "channel_responses",
    "check_foldable",
    "class_gradients",
    "correlation_from_gram",
    "cosine_from_gram",
    "descriptor_batch",
    "fold_into",
    "gaussian_blur",
    "group_similarities",
    "kernel_kmeans",
    "near_duplicate_pairs",
    "representatives",
    "response_grams",
    "sample_indices",
    "similarity_from_vectors",
]

Descriptor = Literal["response", "activation_max", "class_gradient"]


@dataclass(frozen=True)
class ActivationMaxHyper:
    """Gradient ascent on the input (activation maximisation), with the usual regularisers.

    Starting values: a third-party implementation (see the digest) used 1,000 steps, a step of
    0.14 and a Gaussian blur of sigma 0.4 between steps; we take its blur and a shorter,
    normalised ascent (CPU budget), and add Yosinski et al.'s L2 decay and jitter.
    """

    steps: int = 64            # ascent steps
    lr: float = 0.1            # step size, on the gradient normalised by its mean |g| per image
    l2: float = 1e-3           # L2 decay: x *= (1 - l2) after every step
    blur_sigma: float = 0.4    # Gaussian blur (pixels) ...
    blur_every: int = 4        # ... every this many steps (0: never)
    jitter: int = 1            # random shift of up to this many pixels before each step
    init_std: float = 0.1      # std of the starting noise, in normalised input units
    batch: int = 64            # filters optimised together (one image each)

    def __post_init__(self) -> None:
        if self.steps < 0 or self.lr <= 0 or not 0 <= self.l2 < 1 or self.batch < 1:
            raise ValueError("activation maximisation: need steps >= 0, lr > 0, 0 <= l2 < 1, batch >= 1")
        if self.blur_sigma < 0 or self.blur_every < 0 or self.jitter < 0 or self.init_std <= 0:
            raise ValueError("activation maximisation: need blur_sigma, blur_every, jitter >= 0 and init_std > 0")


@dataclass(frozen=True)
class FunctionalityHyper:
    """The open choices of the reconstruction (module docstring), each with our default."""

    descriptor: Descriptor = "response"
    scope: Scope = "all"                      # which groups may be pruned (see baselines.in_scope)
    seed: int = 0                             # seed of the descriptor batch, k-means and AM's noise
    images: int = 256                         # size of the descriptor batch (validation split)
    similarity: Literal["cosine", "correlation"] = "cosine"
    cluster: Literal["agglomerative", "kmeans"] = "agglomerative"
    linkage: Literal["average", "complete", "single"] = "complete"
    threshold: float | None = None            # set: clusters = agglomerative cut at this similarity
    representative: Literal["medoid", "l1"] = "medoid"
    fold: bool = False                        # fold removed channels' outgoing weights into their twin (ours)
    kmeans_iters: int = 50
    am: ActivationMaxHyper = field(default_factory=ActivationMaxHyper)

    def __post_init__(self) -> None:
        if self.images < 2:
            raise ValueError(f"functionality: images must be >= 2, got {self.images}")
        if self.threshold is not None and (self.cluster != "agglomerative" or not -1.0 <= self.threshold <= 1.0):
            raise ValueError("functionality: a similarity threshold needs cluster: agglomerative and a value in [-1, 1]")
        if self.kmeans_iters < 1:
            raise ValueError("functionality: kmeans_iters must be >= 1")


# -- data ----------------------------------------------------------------------------------------


def sample_indices(n: int, size: int, seed: int) -> torch.Tensor:
    """``min(size, n)`` distinct indices in ``[0, n)``, a pure function of ``(n, size, seed)``, sorted."""
    gen = torch.Generator().manual_seed(int(seed))
    return torch.randperm(n, generator=gen)[: min(size, n)].sort().values


def descriptor_batch(batches: Iterable[tuple[torch.Tensor, torch.Tensor]], size: int,
                     seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A seeded sample of `size` images (and labels) out of all `batches` (e.g. a validation loader).

    Returns ``(images, labels, indices)``, indices into the concatenation of the batches.
    """
    xs, ys = [], []
    for x, y in batches:
        xs.append(x)
        ys.append(y)
    if not xs:
        raise ValueError("functionality: the descriptor batch needs images, got an empty loader")
    x, y = torch.cat(xs), torch.cat(ys)
    idx = sample_indices(len(x), size, seed)
    return x[idx.to(x.device)], y[idx.to(y.device)], idx


# -- where a group's channels are read ------------------------------------------------------------


def _first_reader(group: ChannelGroup) -> tuple[str, int, int]:
    """(reader, offset, repeat) of the group's first regular reader: where its function is seen."""
    if not group.readers:
        raise ValueError(f"group {group.id!r} has no regular reader: its channels' function is not observable")
    reader = group.readers[0]
    offset, repeat = group.input_slot(reader)
    return reader, offset, repeat


def _slot(x: torch.Tensor, offset: int, repeat: int, channels: int) -> torch.Tensor:
    """``[N, C, M]``: the group's channels in a reader's input (conv ``[N, Cin, H, W]``; linear ``[N, F]``)."""
    if x.dim() == 2:
        return x[:, offset: offset + channels * repeat].reshape(x.shape[0], channels, repeat)
    return x[:, offset: offset + channels].reshape(x.shape[0], channels, -1)


class _Capture:
    """Forward pre-hooks that keep the input of given modules (one forward)."""

    def __init__(self, model: nn.Module, names: Iterable[str]) -> None:
        self.inputs: dict[str, torch.Tensor] = {}
        modules = dict(model.named_modules())
        self._handles = [modules[n].register_forward_pre_hook(self._hook(n)) for n in dict.fromkeys(names)]

    def _hook(self, name: str):
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            self.inputs[name] = args[0]
        return hook

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


class _EvalMode:
    """Eval mode (BN running statistics are used and never updated) for the block, then restored."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def __enter__(self) -> nn.Module:
        self._modes = [(m, m.training) for m in self.model.modules()]
        self.model.eval()
        return self.model

    def __exit__(self, *exc: Any) -> None:
        for m, mode in self._modes:
            m.training = mode


def _logits(out: Any) -> torch.Tensor:
    return out["out"] if isinstance(out, Mapping) else out


# -- descriptors ---------------------------------------------------------------------------------


def response_grams(model: nn.Module, groups: Sequence[ChannelGroup], images: torch.Tensor,
                   chunk: int = 64) -> dict[str, dict[str, torch.Tensor]]:
    """Per group: the Gram matrix of its channels' responses as their first reader sees them.

    Returns ``{gid: {"gram": [C, C] float64, "sum": [C] float64, "count": positions}}`` where
    ``gram[i, j] = sum over images and positions of a_i * a_j`` (eval mode, no gradient).
    """
    slots = {g.id: _first_reader(g) for g in groups}
    out = {g.id: {"gram": torch.zeros(g.channels, g.channels, dtype=torch.float64),
                  "sum": torch.zeros(g.channels, dtype=torch.float64), "count": 0} for g in groups}
    cap = _Capture(model, [s[0] for s in slots.values()])
    try:
        with _EvalMode(model), torch.no_grad():
            for start in range(0, len(images), chunk):
                cap.inputs.clear()
                model(images[start: start + chunk])
                for g in groups:
                    reader, offset, repeat = slots[g.id]
                    a = _slot(cap.inputs[reader], offset, repeat, g.channels).double().cpu()
                    a = a.transpose(0, 1).reshape(g.channels, -1)    # [C, N*M]
                    out[g.id]["gram"] += a @ a.t()
                    out[g.id]["sum"] += a.sum(1)
                    out[g.id]["count"] += a.shape[1]
    finally:
        cap.remove()
    return out


def channel_responses(model: nn.Module, group: ChannelGroup, images: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """``[C, N*M]``: every channel's response (as its first reader sees it) over the images, explicit
    (for comparisons across networks, e.g. a filter before and after retraining)."""
    reader, offset, repeat = _first_reader(group)
    parts = []
    cap = _Capture(model, [reader])
    try:
        with _EvalMode(model), torch.no_grad():
            for start in range(0, len(images), chunk):
                model(images[start: start + chunk])
                a = _slot(cap.inputs[reader], offset, repeat, group.channels).double().cpu()
                parts.append(a.transpose(0, 1).reshape(group.channels, -1))
    finally:
        cap.remove()
    return torch.cat(parts, dim=1)


def class_gradients(model: nn.Module, groups: Sequence[ChannelGroup], images: torch.Tensor,
                    labels: torch.Tensor, num_classes: int, chunk: int = 64) -> dict[str, torch.Tensor]:
    """A class preference after CAPTOR (ours: w.r.t. feature maps): ``gamma[c, y]`` = mean over images of class y of
    ``mean_positions |d p_y(x) / d a_c(x)|``, ``a_c`` the channel at its first reader's input.

    In eval mode every image's output depends on that image only, so one backward of
    ``sum_n p_{y_n}(x_n)`` gives every image's own gradient. Classes absent from the batch get
    zeros. Returns ``{gid: [C, num_classes] float64}``.
    """
    slots = {g.id: _first_reader(g) for g in groups}
    readers = list(dict.fromkeys(s[0] for s in slots.values()))
    total = {g.id: torch.zeros(g.channels, num_classes, dtype=torch.float64) for g in groups}
    counts = torch.zeros(num_classes, dtype=torch.float64)
    cap = _Capture(model, readers)
    try:
        with _EvalMode(model):
            for start in range(0, len(images), chunk):
                cap.inputs.clear()
                x = images[start: start + chunk].detach().clone().requires_grad_(True)
                y = labels[start: start + chunk].to(x.device)
                probs = torch.softmax(_logits(model(x)).float(), dim=1)
                objective = probs.gather(1, y.view(-1, 1)).sum()
                grads = dict(zip(readers, torch.autograd.grad(objective, [cap.inputs[r] for r in readers]),
                                 strict=True))
                onehot = F.one_hot(y.cpu(), num_classes).double()          # [N, K]
                counts += onehot.sum(0)
                for g in groups:
                    reader, offset, repeat = slots[g.id]
                    mag = _slot(grads[reader], offset, repeat, g.channels).abs().mean(2).double().cpu()  # [N, C]
                    total[g.id] += mag.t() @ onehot
    finally:
        cap.remove()
    return {gid: t / counts.clamp_min(1.0) for gid, t in total.items()}


class _Stop(Exception):
    def __init__(self, output: torch.Tensor) -> None:
        self.output = output


def _truncated(model: nn.Module, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`module`'s output for input `x`, without running the network past it."""
    def hook(mod: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> None:
        raise _Stop(output)

    handle = module.register_forward_hook(hook)
    try:
        model(x)
    except _Stop as stop:
        return stop.output
    finally:
        handle.remove()
    raise RuntimeError("activation maximisation: the target module was not reached by the forward pass")


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``[N, C, H, W]`` (kernel radius ceil(3 sigma), reflect padding)."""
    if sigma <= 0:
        return x
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    pad_h, pad_w = min(radius, x.shape[2] - 1), min(radius, x.shape[3] - 1)
    out = x
    if pad_w > 0:
        kw = k[radius - pad_w: radius + pad_w + 1]
        out = F.conv2d(F.pad(out, (pad_w, pad_w, 0, 0), mode="reflect"), kw.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    if pad_h > 0:
        kh = k[radius - pad_h: radius + pad_h + 1]
        out = F.conv2d(F.pad(out, (0, 0, pad_h, pad_h), mode="reflect"), kh.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    return out


def am_module(group: ChannelGroup) -> str:
    """The module whose output channel activation maximisation drives up: the group's first norm
    (pre-ReLU; a unit after ReLU can have zero gradient everywhere on noise), else its first producer."""
    return group.norms[0] if group.norms else group.producers[0]


def _target(model: nn.Module, module: nn.Module, x: torch.Tensor, channels: torch.Tensor) -> torch.Tensor:
    """Mean activation of channel ``channels[b]`` of `module`'s output on image ``b``: ``[B]``."""
    out = _truncated(model, module, x)
    picked = out[torch.arange(len(channels), device=out.device), channels.to(out.device)]
    return picked.reshape(len(channels), -1).mean(1)


def activation_maximization(model: nn.Module, module: str, channels: Sequence[int], input_shape: Sequence[int],
                            hp: ActivationMaxHyper = ActivationMaxHyper(), seed: int = 0,
                            bounds: tuple[torch.Tensor, torch.Tensor] | None = None,
                            return_objective: bool = False) -> Any:
    """Activation-maximisation patterns: one input image per channel of `module`'s output.

    From Gaussian noise (``init_std``, seeded), ``steps`` of normalised gradient ascent on the
    channel's mean activation (``x += lr * g / mean|g|``), each after a random shift of up to
    ``jitter`` pixels, followed by L2 decay, every ``blur_every`` steps a Gaussian blur, and a clamp
    to `bounds` (per-channel lower/upper limits of the normalised data, if given). Eval mode; the
    network's weights are not changed and get no gradient.

    Args:
        model: the network.
        module: name of the module whose output channels are maximised (see :func:`am_module`).
        channels: which output channels.
        input_shape: ``(C, H, W)`` of one input.
        hp: ascent settings.
        seed: seed of the starting noise and the jitter.
        bounds: ``(lo, hi)`` per input channel, or None.
        return_objective: also return the target activation before and after, ``[k]`` each.

    Returns:
        ``[len(channels), C, H, W]`` patterns (on the model's device), or
        ``(patterns, before, after)`` with `return_objective`.
    """
    target = dict(model.named_modules())[module]
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(int(seed))
    chans = torch.as_tensor(list(channels), dtype=torch.long)
    lo = hi = None
    if bounds is not None:
        lo = torch.as_tensor(bounds[0], dtype=torch.float32, device=device).view(1, -1, 1, 1)
        hi = torch.as_tensor(bounds[1], dtype=torch.float32, device=device).view(1, -1, 1, 1)
    flags = [(p, p.requires_grad) for p in model.parameters()]
    patterns, before, after = [], [], []
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        with _EvalMode(model):
            for start in range(0, len(chans), hp.batch):
                ch = chans[start: start + hp.batch]
                x = (torch.randn((len(ch), *input_shape), generator=gen) * hp.init_std).to(device)
                if lo is not None:
                    x = torch.maximum(torch.minimum(x, hi), lo)
                if return_objective:
                    with torch.no_grad():
                        before.append(_target(model, target, x, ch).cpu())
                for step in range(hp.steps):
                    x.requires_grad_(True)
                    if hp.jitter:
                        dy, dx = (int(v) for v in torch.randint(-hp.jitter, hp.jitter + 1, (2,), generator=gen))
                        xs = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
                    else:
                        xs = x
                    g = torch.autograd.grad(_target(model, target, xs, ch).sum(), x)[0]
                    with torch.no_grad():
                        scale = g.abs().flatten(1).mean(1).clamp_min(1e-12).view(-1, 1, 1, 1)
                        x = (x + hp.lr * g / scale) * (1 - hp.l2)
                        if hp.blur_every and hp.blur_sigma > 0 and (step + 1) % hp.blur_every == 0:
                            x = gaussian_blur(x, hp.blur_sigma)
                        if lo is not None:
                            x = torch.maximum(torch.minimum(x, hi), lo)
                x = x.detach()
                patterns.append(x)
                if return_objective:
                    with torch.no_grad():
                        after.append(_target(model, target, x, ch).cpu())
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
    out = torch.cat(patterns) if patterns else torch.zeros(0, *input_shape)
    if return_objective:
        return out, torch.cat(before), torch.cat(after)
    return out


# -- similarity and clustering -------------------------------------------------------------------


def cosine_from_gram(gram: torch.Tensor) -> torch.Tensor:
    """Cosine similarity from a Gram matrix; zero vectors: 1 with each other, 0 with the rest."""
    g = gram.double()
    d = g.diagonal().clamp_min(0).sqrt()
    zero = d <= 1e-12 * max(float(d.max()) if d.numel() else 0.0, 1e-300)
    denom = torch.outer(d, d)
    s = torch.where(denom > 0, g / denom.clamp_min(1e-300), torch.zeros_like(g))
    s = s.clamp(-1.0, 1.0)
    s[zero] = 0.0
    s[:, zero] = 0.0
    s[zero.unsqueeze(1) & zero.unsqueeze(0)] = 1.0
    s.fill_diagonal_(1.0)
    return s


def correlation_from_gram(gram: torch.Tensor, total: torch.Tensor, count: int) -> torch.Tensor:
    """Pearson correlation of the responses from their Gram matrix, sums and number of values."""
    mean = total.double() / max(count, 1)
    cov = gram.double() - count * torch.outer(mean, mean)
    return cosine_from_gram(cov)


def similarity_from_vectors(desc: torch.Tensor, kind: str = "cosine") -> torch.Tensor:
    """``[C, C]`` similarity of descriptor rows ``[C, D]`` (cosine, or correlation = centred cosine)."""
    v = desc.double().flatten(1)
    if kind == "correlation":
        v = v - v.mean(1, keepdim=True)
    elif kind != "cosine":
        raise ValueError(f"similarity must be 'cosine' or 'correlation', got {kind!r}")
    return cosine_from_gram(v @ v.t())


def agglomerate(sim: torch.Tensor, *, k: int | None = None, threshold: float | None = None,
                linkage: str = "average") -> torch.Tensor:
    """Agglomerative clustering on a similarity matrix; cluster labels ``[C]`` (0, 1, ... in order
    of each cluster's smallest member).

    Repeatedly merges the two most similar clusters (Lance-Williams: ``average`` = mean pairwise
    similarity weighted by size, ``complete`` = minimum, ``single`` = maximum; ties: the lowest
    indices) until `k` clusters remain, or, with `threshold`, until no pair of clusters is at
    least that similar (then also never below `k` if both are given).
    """
    n = sim.shape[0]
    if sim.shape != (n, n) or not bool(torch.isfinite(sim).all()):
        raise ValueError("agglomerate: need a finite square similarity matrix")
    if k is None and threshold is None:
        raise ValueError("agglomerate: give k, threshold or both")
    if k is not None and not 1 <= k <= n:
        raise ValueError(f"agglomerate: k must be in [1, {n}], got {k}")
    if linkage not in ("average", "complete", "single"):
        raise ValueError(f"agglomerate: unknown linkage {linkage!r}")
    s = sim.double().clone()
    s.fill_diagonal_(-math.inf)
    size = torch.ones(n, dtype=torch.float64)
    owner = torch.arange(n)
    clusters, floor = n, (k if k is not None else 1)
    while clusters > floor:
        flat = int(torch.argmax(s))
        i, j = divmod(flat, n)
        i, j = min(i, j), max(i, j)
        if threshold is not None and float(s[i, j]) < threshold:
            break
        if linkage == "average":
            row = (size[i] * s[i] + size[j] * s[j]) / (size[i] + size[j])
        elif linkage == "complete":
            row = torch.minimum(s[i], s[j])
        else:
            row = torch.maximum(s[i], s[j])
        s[i, :] = row
        s[:, i] = row
        s[i, i] = -math.inf
        s[j, :] = -math.inf
        s[:, j] = -math.inf
        size[i] += size[j]
        owner[owner == j] = i
        clusters -= 1
    return _relabel(owner)


def _relabel(owner: torch.Tensor) -> torch.Tensor:
    """Consecutive labels in order of first appearance."""
    mapping: dict[int, int] = {}
    return torch.tensor([mapping.setdefault(int(o), len(mapping)) for o in owner.tolist()], dtype=torch.long)


def kernel_kmeans(kernel: torch.Tensor, k: int, seed: int = 0, iters: int = 50) -> torch.Tensor:
    """k-means in the feature space of a PSD kernel (e.g. a cosine-similarity matrix); exactly `k`
    non-empty clusters. k-means++ initialisation, seeded; labels as in :func:`agglomerate`."""
    kern = kernel.double()
    n = kern.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"kernel_kmeans: k must be in [1, {n}], got {k}")
    diag = kern.diagonal()
    d2 = (diag[:, None] + diag[None, :] - 2 * kern).clamp_min(0)      # squared feature distances
    gen = torch.Generator().manual_seed(int(seed))
    centers = [int(torch.randint(n, (1,), generator=gen))]
    nearest = d2[:, centers[0]].clone()
    for _ in range(1, k):
        weights = nearest.clone()
        weights[centers] = 0
        if float(weights.sum()) <= 0:   # all remaining points coincide with a centre: pick any other
            weights = torch.ones(n, dtype=torch.float64)
            weights[centers] = 0
        c = int(torch.multinomial(weights.float(), 1, generator=gen))
        centers.append(c)
        nearest = torch.minimum(nearest, d2[:, c])
    labels = d2[:, centers].argmin(1)
    for _ in range(iters):
        member = F.one_hot(labels, k).double()                        # [n, k]
        sizes = member.sum(0)
        km = kern @ member / sizes.clamp_min(1)                       # mean similarity to each cluster
        within = (member * km).sum(0) / sizes.clamp_min(1)            # mean pairwise within a cluster
        dist = diag[:, None] - 2 * km + within[None, :]
        dist[:, sizes == 0] = math.inf
        new = _fill_empty(dist.argmin(1), dist, k)
        if torch.equal(new, labels):
            break
        labels = new
    return _relabel(_fill_empty(labels, None, k))


def _fill_empty(labels: torch.Tensor, dist: torch.Tensor | None, k: int) -> torch.Tensor:
    """Give every empty cluster the point farthest from its own centre (from a cluster of >= 2)."""
    labels = labels.clone()
    for c in range(k):
        counts = torch.bincount(labels, minlength=k)
        if counts[c] > 0:
            continue
        movable = (counts[labels] > 1).nonzero().flatten()
        if dist is not None:
            own = dist[movable, labels[movable]]
            pick = int(movable[int(torch.argmax(own))])
        else:
            pick = int(movable[-1])
        labels[pick] = c
    return labels


def representatives(labels: torch.Tensor, sim: torch.Tensor, rule: str = "medoid",
                    score: torch.Tensor | None = None) -> torch.Tensor:
    """Index of the representative of every cluster (in label order).

    ``medoid``: the member with the largest summed similarity to its cluster; ``l1``: the member
    with the largest `score` (e.g. filter L1 norm). Ties: the lowest index.
    """
    reps = []
    for c in range(int(labels.max()) + 1):
        members = (labels == c).nonzero().flatten()
        if rule == "medoid":
            value = sim[members][:, members].sum(1)
        elif rule == "l1":
            if score is None:
                raise ValueError("representatives: rule 'l1' needs the filters' scores")
            value = score[members].double()
        else:
            raise ValueError(f"representatives: unknown rule {rule!r}")
        reps.append(int(members[int(torch.argmax(value))]))
    return torch.tensor(reps, dtype=torch.long)


def near_duplicate_pairs(sim: torch.Tensor, keep: torch.Tensor, threshold: float) -> int:
    """Pairs of kept channels whose similarity is at least `threshold`."""
    idx = keep.nonzero().flatten()
    sub = sim[idx][:, idx]
    upper = torch.triu(torch.ones_like(sub, dtype=torch.bool), diagonal=1)
    return int(((sub >= threshold) & upper).sum())


def group_similarities(model: nn.Module, groups: Sequence[ChannelGroup], images: torch.Tensor,
                       kind: str = "cosine") -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Response similarity ``[C, C]`` and Gram matrix per group (descriptor ``response``)."""
    grams = response_grams(model, groups, images)
    sims = {}
    for gid, r in grams.items():
        sims[gid] = (cosine_from_gram(r["gram"]) if kind == "cosine"
                     else correlation_from_gram(r["gram"], r["sum"], r["count"]))
    return sims, {gid: r["gram"] for gid, r in grams.items()}


# -- folding -------------------------------------------------------------------------------------


def check_foldable(group: ChannelGroup) -> None:
    """Raise unless the group has exactly one reader and no ``ChannelSelect`` copy.

    The fold's scale is fitted to the channels as the first reader sees them; another reader (a
    residual stream's next block, after its own BN/ReLU) would need its own scale, and an
    option-A copy carries the removed channel by index with no weights to fold into.
    """
    if len(group.readers) != 1 or group.selects_in or group.residual:
        raise ValueError(f"functionality: fold needs a group with one reader and no shortcut copy; group {group.id!r} "
                         f"has readers {list(group.readers)}, copies {list(group.selects_in)}"
                         f"{' (a residual stream)' if group.residual else ''}: set fold: false, or scope: internal")


def fold_into(model: nn.Module, group: ChannelGroup, moves: Mapping[int, tuple[int, float]]) -> int:
    """Add each removed channel's outgoing weights, times its scale, to its twin's, in the group's
    one reader (:func:`check_foldable`).

    `moves`: ``{removed channel j: (kept channel i, scale s)}``; reader weight columns of ``j``
    are added (times ``s``) to those of ``i``. Returns the number of readers changed.
    """
    check_foldable(group)
    changed = 0
    with torch.no_grad():
        for reader, offset, repeat in group.reader_index:
            m = model.get_submodule(reader)
            w = m.weight
            dim = 0 if getattr(m, "transposed", False) else 1
            for j, (i, s) in moves.items():
                src = w.narrow(dim, offset + j * repeat, repeat)
                dst = w.narrow(dim, offset + i * repeat, repeat)
                dst.add_(src, alpha=float(s))
            changed += 1
    return changed


# -- the method ----------------------------------------------------------------------------------


@register_method("functionality", hyper=FunctionalityHyper)
class FunctionalityPruning(PruningMethod):
    """Cluster each layer's filters by function and keep one per cluster (module docstring)."""

    paper = "Qin et al., NIPS 2018 workshop, arXiv:1811.02639 (companion arXiv:1810.07322; CAPTOR, ASP-DAC 2019)"

    def __init__(self, hp: FunctionalityHyper | None = None) -> None:
        self.hp = hp or FunctionalityHyper()
        self.groups_summary: dict[str, dict[str, Any]] = {}
        self.batch_indices: list[int] = []

    @classmethod
    def from_hyper(cls, hyper: FunctionalityHyper) -> FunctionalityPruning:
        return cls(hyper)

    def prunable(self, group: ChannelGroup) -> bool:
        return in_scope(group, self.hp.scope)

    def _widths(self, ctx: MethodContext) -> dict[str, int]:
        if ctx.budget.ratios is not None:
            return widths_from_ratio(ctx.prunable, {g.id: ctx.budget.ratios.get(g.id, 0.0) for g in ctx.prunable})
        target = ctx.budget.macs_keep * ctx.cost_model.dense_macs()
        return uniform_widths_for_macs(ctx.cost_model, ctx.prunable, target)[0]

    def similarities(self, model: nn.Module, groups: Sequence[ChannelGroup], images: torch.Tensor,
                     labels: torch.Tensor, num_classes: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Per group: the similarity of its channels under this method's descriptor, and the
        response Gram matrix (needed for folding; empty unless computed)."""
        hp = self.hp
        grams: dict[str, torch.Tensor] = {}
        if hp.descriptor == "response" or hp.fold:
            sims, grams = group_similarities(model, groups, images, hp.similarity)
            if hp.descriptor == "response":
                return sims, grams
        if hp.descriptor == "class_gradient":
            desc = class_gradients(model, groups, images, labels, num_classes)
            return {gid: similarity_from_vectors(d, hp.similarity) for gid, d in desc.items()}, grams
        if hp.descriptor == "activation_max":
            lo = images.amin(dim=(0, 2, 3)).cpu()
            hi = images.amax(dim=(0, 2, 3)).cpu()
            sims = {}
            for g in groups:
                pats = activation_maximization(model, am_module(g), range(g.channels), images.shape[1:], hp.am,
                                               seed=hp.seed, bounds=(lo, hi))
                sims[g.id] = similarity_from_vectors(pats.cpu(), hp.similarity)
            return sims, grams
        raise ValueError(f"functionality: unknown descriptor {hp.descriptor!r}")

    def finalize(self, model: nn.Module, ctx: MethodContext) -> nn.Module:
        hp = self.hp
        if ctx.val_loader is None:
            raise ValueError("functionality: needs ctx.val_loader (held-out images for the descriptors)")
        widths = self._widths(ctx) if hp.threshold is None else {g.id: 1 for g in ctx.prunable}
        groups = [g for g in ctx.prunable if hp.threshold is not None or widths[g.id] < g.channels]
        if hp.fold:
            for g in groups:       # before any descriptor is computed
                check_foldable(g)
        images, labels, idx = descriptor_batch(ctx.val_loader, hp.images, hp.seed)
        self.batch_indices = idx.tolist()
        device = ctx.example_input.device
        images = images.to(device)
        num_classes = int(_logits(_eval_forward(model, images[:1])).shape[1])
        sims, grams = self.similarities(model, groups, images, labels, num_classes)
        l1 = filter_l1(model, groups) if hp.representative == "l1" else {}
        masks: dict[str, torch.Tensor] = {}
        for g in groups:
            sim = sims[g.id]
            if hp.threshold is not None:
                lab = agglomerate(sim, threshold=hp.threshold, linkage=hp.linkage)
            elif hp.cluster == "agglomerative":
                lab = agglomerate(sim, k=widths[g.id], linkage=hp.linkage)
            else:
                lab = kernel_kmeans(sim, widths[g.id], seed=hp.seed, iters=hp.kmeans_iters)
            reps = representatives(lab, sim, hp.representative, l1.get(g.id))
            keep = torch.zeros(g.channels, dtype=torch.bool)
            keep[reps] = True
            info: dict[str, Any] = {"labels": lab.tolist(), "kept": sorted(reps.tolist()),
                                    "clusters": len(reps), "channels": g.channels}
            if hp.fold:
                gram = grams[g.id]
                moves = {}
                for j in (~keep).nonzero().flatten().tolist():
                    i = int(reps[int(lab[j])])
                    gii = float(gram[i, i])
                    moves[j] = (i, float(gram[i, j]) / gii if gii > 0 else 0.0)
                fold_into(model, g, moves)
                info["fold_scales"] = [round(s, 6) for _, s in moves.values()]
            masks[g.id] = keep
            self.groups_summary[g.id] = info
        return prune_channels(model, ctx.groups, masks) if masks else model

    def summary(self) -> dict[str, Any]:
        return {"descriptor": self.hp.descriptor, "groups": self.groups_summary,
                "widths": {gid: s["clusters"] for gid, s in self.groups_summary.items()},
                "kept": {gid: s["kept"] for gid, s in self.groups_summary.items()},
                "batch_indices": self.batch_indices}


def _eval_forward(model: nn.Module, x: torch.Tensor) -> Any:
    with _EvalMode(model), torch.no_grad():
        return model(x)
