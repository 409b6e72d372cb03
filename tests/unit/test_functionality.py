"""Functionality-oriented pruning (methods/functionality.py) and FPGM's criterion (methods/fpgm.py).

The issue's four tests (activation maximisation raises its target; identical filters share a
cluster; the kept count is the requested ratio; an exact duplicate removed with its outgoing
weights folded into its twin changes no output), plus the descriptors and the clustering
checked against direct computations.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from prunerep.methods import Budget, get_method
from prunerep.methods.base import MethodContext
from prunerep.methods.fpgm import fpgm_scores
from prunerep.methods.functionality import (
    ActivationMaxHyper,
    FunctionalityHyper,
    activation_maximization,
    agglomerate,
    class_gradients,
    cosine_from_gram,
    descriptor_batch,
    gaussian_blur,
    kernel_kmeans,
    near_duplicate_pairs,
    representatives,
    response_grams,
    sample_indices,
    similarity_from_vectors,
)
from prunerep.pruning.groups import find_groups
from prunerep.pruning.soft_cost import SoftCostModel

SHAPE = (1, 3, 8, 8)


class Tiny(nn.Module):
    """conv-BN-ReLU x2, max-pool, conv-BN-ReLU, global pooling, linear: a VGG in miniature."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(2)
        self.conv3, self.bn3 = nn.Conv2d(8, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6)
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.pool(torch.relu(self.bn2(self.conv2(x))))
        x = torch.relu(self.bn3(self.conv3(x)))
        return self.fc(x.mean((2, 3)))


def tiny(seed: int = 0) -> Tiny:
    torch.manual_seed(seed)
    m = Tiny()
    for bn in (m.bn1, m.bn2, m.bn3):   # non-trivial statistics; positive shifts keep channels alive
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 1.5)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(0.3, 0.8)
    return m.eval()


def duplicate(m: Tiny, conv: str, bn: str, src: int, dst: int) -> None:
    """Make channel `dst` of a conv-BN pair an exact copy of channel `src`."""
    c, b = getattr(m, conv), getattr(m, bn)
    with torch.no_grad():
        c.weight[dst] = c.weight[src]
        for t in (b.weight, b.bias, b.running_mean, b.running_var):
            t[dst] = t[src]


def data(n: int = 32, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *SHAPE[1:], generator=g), torch.arange(n) % 3


def context(model: nn.Module, method, budget: Budget, n: int = 32) -> MethodContext:
    example = torch.zeros(SHAPE)
    groups = find_groups(model, example)
    prunable = list(groups.select(method.prunable))
    ctx = MethodContext(groups=groups, prunable=prunable, example_input=example, budget=budget,
                        cost_model=SoftCostModel.from_model(model, example, groups))
    x, y = data(n)
    ctx.val_loader = [(x[: n // 2], y[: n // 2]), (x[n // 2:], y[n // 2:])]
    return ctx


def prune(model: nn.Module, budget: Budget, **hyper) -> tuple[nn.Module, object]:
    method = get_method("functionality", FunctionalityHyper(**hyper))
    model.train()   # as the runner hands it over; finalize must use eval mode itself
    ctx = context(model, method, budget)
    method.prepare(model, ctx)
    return method.finalize(model, ctx).eval(), method


# -- the tests ---------------------------------------------------------------------------


def test_activation_maximisation_increases_the_target_activation():
    m = tiny()
    weights = {k: v.clone() for k, v in m.state_dict().items()}
    hp = ActivationMaxHyper(steps=12, lr=0.1, blur_every=4, jitter=1, batch=3)
    pats, before, after = activation_maximization(m, "bn2", [0, 3, 5, 7], SHAPE[1:], hp, seed=0,
                                                  return_objective=True)
    assert pats.shape == (4, *SHAPE[1:])
    assert bool((after > before + 0.1).all()), (before, after)
    # the network is not changed, keeps its gradient flags, and the ascent is reproducible
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in weights.items())
    assert all(p.requires_grad for p in m.parameters())
    assert torch.equal(pats, activation_maximization(m, "bn2", [0, 3, 5, 7], SHAPE[1:], hp, seed=0))


def test_identical_filters_land_in_one_cluster():
    g = torch.Generator().manual_seed(0)
    vecs = torch.randn(8, 20, generator=g)
    vecs[5] = 3.0 * vecs[2]       # same direction: cosine 1
    vecs[7] = vecs[1]
    sim = similarity_from_vectors(vecs)
    for linkage in ("average", "complete", "single"):
        lab = agglomerate(sim, k=6, linkage=linkage)
        assert lab[5] == lab[2] and lab[7] == lab[1] and len(set(lab.tolist())) == 6
    for seed in range(5):
        lab = kernel_kmeans(sim, 6, seed=seed)
        assert lab[5] == lab[2] and lab[7] == lab[1] and len(set(lab.tolist())) == 6
    # end to end: a duplicated filter of a trained-like net shares its twin's cluster, one is kept
    m = tiny()
    duplicate(m, "conv2", "bn2", src=1, dst=3)
    gid = "conv2"
    pruned, method = prune(m, Budget(ratios={gid: 0.125}))
    info = method.summary()["groups"][gid]
    assert info["labels"][1] == info["labels"][3]
    assert sum(c in info["kept"] for c in (1, 3)) == 1
    assert pruned.conv2.out_channels == 7


# Kept widths by hand: C - ceil(r C) of conv1/conv2 (C = 8) and conv3 (C = 6), at least one kept.
# 0.1: 8 - 1, 6 - 1; 0.25: 8 - 2, 6 - 2 (1.5 -> 2); 0.5: 8 - 4, 6 - 3; 0.7: 8 - 6 (5.6), 6 - 5 (4.2);
# 0.9: 8 - 8 and 6 - 6 would empty the layer, so one is kept.
HAND_WIDTHS = {0.1: (7, 5), 0.25: (6, 4), 0.5: (4, 3), 0.7: (2, 1), 0.9: (1, 1)}


@pytest.mark.parametrize("cluster", ["agglomerative", "kmeans"])
@pytest.mark.parametrize("ratio", sorted(HAND_WIDTHS))
def test_kept_count_equals_the_requested_ratio(cluster, ratio):
    m = tiny()
    ratios = {"conv1": ratio, "conv2": ratio, "conv3": ratio}
    pruned, method = prune(m, Budget(ratios=ratios), cluster=cluster)
    eight, six = HAND_WIDTHS[ratio]
    want = {"conv1": eight, "conv2": eight, "conv3": six}
    assert {"conv1": pruned.conv1.out_channels, "conv2": pruned.conv2.out_channels,
            "conv3": pruned.conv3.out_channels} == want
    s = method.summary()
    assert s["widths"] == want
    assert {k: len(v) for k, v in s["kept"].items()} == want
    assert pruned(torch.zeros(2, *SHAPE[1:])).shape == (2, 3)


def test_a_macs_budget_prunes_every_group_by_the_same_fraction_like_l1():
    pruned, _ = prune(tiny(), Budget(macs_keep=0.5))
    l1 = get_method("l1")
    ref = tiny()
    ctx = context(ref, l1, Budget(macs_keep=0.5))
    ref = l1.finalize(ref, ctx)
    assert [pruned.conv1.out_channels, pruned.conv2.out_channels, pruned.conv3.out_channels] == \
           [ref.conv1.out_channels, ref.conv2.out_channels, ref.conv3.out_channels]


def test_removing_an_exact_duplicate_and_folding_it_into_its_twin_changes_no_output():
    x = torch.randn(16, *SHAPE[1:], generator=torch.Generator().manual_seed(5))
    m = tiny()
    duplicate(m, "conv2", "bn2", src=1, dst=3)     # read by a conv (after max-pooling)
    duplicate(m, "conv3", "bn3", src=0, dst=4)     # read by the linear classifier (after pooling)
    with torch.no_grad():
        dense = m(x)
    budget = Budget(ratios={"conv2": 0.125, "conv3": 1 / 6})
    folded, method = prune(m, budget, fold=True)
    with torch.no_grad():
        assert torch.allclose(folded(x), dense, atol=1e-5, rtol=0)
    assert folded.conv2.out_channels == 7 and folded.conv3.out_channels == 5
    scales = method.summary()["groups"]
    assert scales["conv2"]["fold_scales"] == [1.0] and scales["conv3"]["fold_scales"] == [1.0]
    # the same removal without folding does change the output (the test can fail)
    m2 = tiny()
    duplicate(m2, "conv2", "bn2", src=1, dst=3)
    duplicate(m2, "conv3", "bn3", src=0, dst=4)
    plain, _ = prune(m2, budget, fold=False)
    with torch.no_grad():
        assert (plain(x) - dense).abs().max() > 1e-3


def test_threshold_mode_merges_only_pairs_at_least_that_similar():
    m = tiny()
    duplicate(m, "conv2", "bn2", src=1, dst=3)
    duplicate(m, "conv2", "bn2", src=2, dst=6)
    pruned, method = prune(m, Budget(ratios={"conv2": 0.5}), threshold=0.999999)
    info = method.summary()["groups"]
    assert pruned.conv2.out_channels == 6          # only the two exact pairs merge
    assert info["conv2"]["labels"][1] == info["conv2"]["labels"][3]
    assert info["conv2"]["labels"][2] == info["conv2"]["labels"][6]


# -- descriptors against direct computations ----------------------------------------------------------


def _reader_input(m: Tiny, x: torch.Tensor, name: str) -> torch.Tensor:
    keep = {}
    h = getattr(m, name).register_forward_pre_hook(lambda mod, args: keep.setdefault("x", args[0]))
    with torch.no_grad():
        m(x)
    h.remove()
    return keep["x"]


def test_response_gram_is_the_gram_of_what_the_reader_sees():
    m = tiny()
    x, _ = data(10)
    groups = find_groups(m, torch.zeros(SHAPE))
    grams = response_grams(m, [groups["conv2"], groups["conv3"]], x, chunk=4)
    a = _reader_input(m, x, "conv3").double().transpose(0, 1).reshape(8, -1)   # conv2's channels, pooled
    assert torch.allclose(grams["conv2"]["gram"], a @ a.t(), rtol=1e-10)
    assert grams["conv2"]["count"] == a.shape[1]
    f = _reader_input(m, x, "fc").double().t()                                  # conv3's channels, averaged
    assert torch.allclose(grams["conv3"]["gram"], f @ f.t(), rtol=1e-10)


def test_class_gradients_equal_per_image_autograd():
    m = tiny()
    x, y = data(9)
    groups = find_groups(m, torch.zeros(SHAPE))
    got = class_gradients(m, [groups["conv2"]], x, y, 3, chunk=4)["conv2"]
    want = torch.zeros(8, 3, dtype=torch.float64)
    count = torch.zeros(3)
    for n in range(len(x)):
        store = {}

        def hook(mod, args, store=store):
            args[0].retain_grad()
            store["a"] = args[0]

        h = m.conv3.register_forward_pre_hook(hook)
        p = torch.softmax(m(x[n: n + 1]), 1)[0, y[n]]
        p.backward()
        h.remove()
        want[:, y[n]] += store["a"].grad[0].abs().flatten(1).mean(1).double()
        count[y[n]] += 1
        m.zero_grad()
    assert torch.allclose(got, want / count, rtol=1e-5, atol=1e-9)


def test_cosine_from_gram_handles_dead_channels():
    v = torch.tensor([[1.0, 0.0], [0.0, 0.0], [2.0, 0.0], [0.0, 0.0], [0.0, 3.0]], dtype=torch.float64)
    s = cosine_from_gram(v @ v.t())
    assert s[0, 2] == 1.0 and s[1, 3] == 1.0          # parallel; both dead
    assert s[0, 1] == 0.0 and s[0, 4] == 0.0
    assert torch.equal(s.diagonal(), torch.ones(5, dtype=torch.float64))


def test_average_linkage_merges_by_mean_pairwise_similarity():
    sim = torch.tensor([[1.0, 0.9, 0.2, 0.5],
                        [0.9, 1.0, 0.6, 0.1],
                        [0.2, 0.6, 1.0, 0.45],
                        [0.5, 0.1, 0.45, 1.0]])
    # first {0, 1} (0.9); then {0,1} vs 2: 0.4, vs 3: 0.3, 2 vs 3: 0.45 -> {2, 3}
    assert agglomerate(sim, k=2).tolist() == [0, 0, 1, 1]
    # single linkage: {0,1} vs 2 = 0.6 beats 2 vs 3 = 0.45
    assert agglomerate(sim, k=2, linkage="single").tolist() == [0, 0, 0, 1]
    assert agglomerate(sim, threshold=0.5).tolist() == [0, 0, 1, 2]


def test_medoid_and_l1_representatives():
    sim = torch.tensor([[1.0, 0.8, 0.9], [0.8, 1.0, 0.95], [0.9, 0.95, 1.0]], dtype=torch.float64)
    lab = torch.tensor([0, 0, 0])
    assert representatives(lab, sim).tolist() == [2]
    assert representatives(lab, sim, "l1", torch.tensor([5.0, 1.0, 2.0])).tolist() == [0]
    assert near_duplicate_pairs(sim, torch.tensor([True, True, True]), 0.9) == 2


def test_descriptor_batch_is_a_seeded_sample():
    x, y = data(20)
    batches = [(x[:8], y[:8]), (x[8:], y[8:])]
    a = descriptor_batch(batches, 6, seed=3)
    b = descriptor_batch(batches, 6, seed=3)
    assert torch.equal(a[0], b[0]) and torch.equal(a[2], sample_indices(20, 6, 3))
    assert torch.equal(a[0], x[a[2]]) and torch.equal(a[1], y[a[2]])
    assert not torch.equal(a[2], descriptor_batch(batches, 6, seed=4)[2])


def test_gaussian_blur_keeps_constants_and_mass():
    x = torch.full((2, 3, 6, 6), 0.7)
    assert torch.allclose(gaussian_blur(x, 0.8), x)
    spike = torch.zeros(1, 1, 9, 9)
    spike[0, 0, 4, 4] = 1.0
    out = gaussian_blur(spike, 1.0)
    assert math.isclose(float(out.sum()), 1.0, rel_tol=1e-6) and float(out.max()) < 1.0


# -- FPGM ------------------------------------------------------------------------------------------


def test_fpgm_scores_are_summed_euclidean_distances_and_prune_the_smallest():
    m = tiny()
    groups = find_groups(m, torch.zeros(SHAPE))
    w = m.conv2.weight.detach().flatten(1)
    want = torch.tensor([sum(float((w[i] - w[j]).norm()) for j in range(8)) for i in range(8)])
    got = fpgm_scores(m, [groups["conv2"]])["conv2"]
    assert torch.allclose(got, want, rtol=1e-5)
    method = get_method("fpgm")
    ctx = context(m, method, Budget(ratios={"conv2": 0.25}))
    pruned = method.finalize(m, ctx)
    assert pruned.conv2.out_channels == 6
    assert method.summary()["kept"]["conv2"] == sorted(torch.topk(want, 6).indices.tolist())


@pytest.mark.parametrize("name", ["l1", "random"])
def test_one_shot_baselines_record_the_channels_they_keep(name):
    m = tiny()
    w = m.conv2.weight.detach().abs().flatten(1).sum(1)       # L1 norms by hand
    method = get_method(name)
    ctx = context(m, method, Budget(ratios={"conv2": 0.25}))
    pruned = method.finalize(m, ctx)
    kept = method.summary()["kept"]
    assert set(kept) == {"conv2"} and len(kept["conv2"]) == 6
    assert torch.equal(pruned.conv2.weight, tiny().conv2.weight[kept["conv2"]])
    if name == "l1":
        assert kept["conv2"] == sorted(torch.topk(w, 6).indices.tolist())


def test_fold_is_refused_on_a_residual_stream_with_several_readers():
    from prunerep.methods.functionality import check_foldable, fold_into
    from prunerep.models import get_model

    torch.manual_seed(0)
    net = get_model("resnet20", shortcut="A", num_classes=3, in_channels=3).eval()
    groups = find_groups(net, torch.zeros(SHAPE))
    stream = next(g for g in groups if g.residual and len(g.readers) > 1)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(ValueError, match="fold needs a group with one reader"):
        fold_into(net, stream, {1: (0, 1.0)})
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())   # nothing was folded
    check_foldable(groups["layer1.0.conv1"])                                       # a block's inner conv: one reader
    method = get_method("functionality", FunctionalityHyper(fold=True, scope="all"))
    ctx = context(net, method, Budget(ratios={stream.id: 0.5}))
    with pytest.raises(ValueError, match=stream.id):
        method.finalize(net, ctx)


# Channels 4 and 5 are exact copies of 0 and 1; {0, 1, 4, 5} merge first (similarity >= 0.9).
# Then, by hand: {0,1,4,5} vs 2 has mean similarity (0.7 + 0.1 + 0.7 + 0.1) / 4 = 0.4 and minimum 0.1;
# vs 3: 0.3 both; 2 vs 3: 0.35. Average linkage merges 2 into the big cluster (0.4 > 0.35),
# complete linkage merges 2 with 3 (0.35 > 0.3 > 0.1).
LINKAGE_SIM = torch.tensor([[1.0, 0.9, 0.7, 0.3, 1.0, 0.9],
                            [0.9, 1.0, 0.1, 0.3, 0.9, 1.0],
                            [0.7, 0.1, 1.0, 0.35, 0.7, 0.1],
                            [0.3, 0.3, 0.35, 1.0, 0.3, 0.3],
                            [1.0, 0.9, 0.7, 0.3, 1.0, 0.9],
                            [0.9, 1.0, 0.1, 0.3, 0.9, 1.0]], dtype=torch.float64)


def test_complete_linkage_is_the_default_and_differs_from_average_by_hand(monkeypatch):
    assert agglomerate(LINKAGE_SIM, k=2, linkage="complete").tolist() == [0, 0, 1, 1, 0, 0]
    assert agglomerate(LINKAGE_SIM, k=2, linkage="average").tolist() == [0, 0, 0, 1, 0, 0]
    from prunerep.methods.functionality import FunctionalityPruning

    monkeypatch.setattr(FunctionalityPruning, "similarities",
                        lambda self, model, groups, *a: ({g.id: LINKAGE_SIM for g in groups}, {}))
    budget = Budget(ratios={"conv3": 0.6})            # 6 - ceil(3.6) = 2 clusters
    _, default = prune(tiny(), budget)
    _, average = prune(tiny(), budget, linkage="average")
    assert default.summary()["groups"]["conv3"]["labels"] == [0, 0, 1, 1, 0, 0]
    assert average.summary()["groups"]["conv3"]["labels"] == [0, 0, 0, 1, 0, 0]
