"""The public API (`prunerep.prune`, `python -m prunerep prune`): physically smaller networks whose
MACs the record states exactly, the same run as the pipeline's runner, and one clear error per
bad input.

Networks are tiny (a hand-computable CNN, a CIFAR ResNet-20 at 1x12x12, torchvision's ResNet-18
at 3x32x32 with 4 classes) and every training phase is a few steps.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from prunerep.api import PruneError, PruneRecord, native_budget, prune, run_on_loaders, spec_for
from prunerep.engine import OptimConfig, RuntimeConfig
from prunerep.methods import list_methods
from prunerep.pruning.cost import count_cost
from prunerep.pruning.gates import HardMask, attach_gates
from prunerep.pruning.groups import find_groups

CPU = RuntimeConfig(device="cpu", channels_last=False, progress=False)


def _data(n: int, shape: tuple[int, ...], classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g), torch.randint(0, classes, (n,), generator=g)


class TinyCNN(nn.Module):
    """conv(3->8) BN ReLU conv(8->8) BN ReLU avgpool linear(8->4), no conv biases.

    At a 1x3x4x4 input: MACs = 8*3*9*16 + 8*8*9*16 + 8*4 = 12,704; params = 216 + 16 + 576 + 16
    + 36 = 860. With both groups at width w: MACs(w) = 436 w + 144 w^2, params(w) = 9 w^2 + 35 w
    + 4 (convs 27w and 9w^2, BNs 4w, linear 4w + 4).
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean((2, 3)))


def _tiny() -> TinyCNN:
    torch.manual_seed(0)
    net = TinyCNN()
    with torch.no_grad():  # filter L1 norms in a known order: channel c has norm ~ (c + 1)
        for conv in (net.conv1, net.conv2):
            w = torch.sign(torch.randn_like(conv.weight)) * 0.01
            conv.weight.copy_(w * torch.arange(1, 9).view(8, 1, 1, 1))
        for bn in (net.bn1, net.bn2):    # non-trivial BN so that a wrong channel would show
            bn.running_mean.uniform_(-0.1, 0.1)
            bn.running_var.uniform_(0.5, 1.5)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
    return net


def _masked(dense: nn.Module, keep: dict[str, torch.Tensor], example: torch.Tensor) -> nn.Module:
    """The dense network with the removed channels zeroed at every reader's input: what surgery
    promises to compute."""
    net = copy.deepcopy(dense)
    groups = find_groups(net, example)
    attach_gates(net, [groups[gid] for gid in keep], lambda g: HardMask(keep[g.id]), placement="input")
    return net


def test_l1_on_a_tiny_cnn_matches_hand_counts_and_the_masked_network():
    dense = _tiny()
    train, val = _data(16, (3, 4, 4), 4, 0), _data(8, (3, 4, 4), 4, 1)
    pruned, record = prune(dense, "l1", 0.5, train=train, val=val, device="cpu", batch_size=8)
    assert isinstance(record, PruneRecord)
    # uniform widths: largest w with 436 w + 144 w^2 <= 0.5 * 12,704 = 6,352 is w = 5 (w = 6: 7,800)
    assert (record.dense_macs, record.dense_params) == (12_704, 860)
    assert record.widths == {"conv1": 5, "conv2": 5} and record.dense_widths == {"conv1": 8, "conv2": 8}
    assert (record.macs, record.params) == (436 * 5 + 144 * 25, 9 * 25 + 35 * 5 + 4) == (5_780, 404)
    assert record.macs == count_cost(pruned, (1, 3, 4, 4)).macs            # the project's counter
    assert record.layers["conv2"] == {"dense": [8, 8], "pruned": [5, 5]}
    assert record.layers["fc"] == {"dense": [8, 4], "pruned": [5, 4]}
    assert pruned.conv1.weight.shape == (5, 3, 3, 3) and dense.conv1.weight.shape == (8, 3, 3, 3)  # a copy
    # L1 keeps the 5 largest-norm filters, 3..7, and the pruned net computes the masked dense net
    assert torch.equal(pruned.conv1.weight, dense.conv1.weight[3:])
    keep = {gid: torch.arange(8) >= 3 for gid in ("conv1", "conv2")}
    x = torch.randn(6, 3, 4, 4)
    torch.testing.assert_close(pruned.eval()(x), _masked(dense, keep, x[:1]).eval()(x), rtol=1e-5, atol=1e-6)
    assert record.selection == "last (no fine-tuning)" and record.finetune is None
    assert record.test_acc is None and 0.0 <= record.val_acc <= 100.0
    json.loads(record.to_json())


def test_the_api_runs_the_runners_steps_weight_for_weight():
    """Same spec, same batches: `run_on_loaders` (the API) and `run_pruning` (the pipeline) give
    the same network, so the comparison's runs prove what the API does."""
    from prunerep.data import Loader
    from prunerep.data.arrays import ArrayDataset, DataSplits
    from prunerep.models import get_model
    from prunerep.runner import run_pruning

    def ds(n: int, seed: int) -> ArrayDataset:
        g = torch.Generator().manual_seed(seed)
        return ArrayDataset(torch.randint(0, 256, (n, 1, 12, 12), generator=g, dtype=torch.uint8),
                            torch.arange(n) % 3, ("a", "b", "c"))

    splits = DataSplits(ds(64, 0), ds(16, 1), ds(16, 2), (0.5,), (0.25,), "fp", "synthetic")
    dense = get_model("resnet20", shortcut="A", num_classes=3, in_channels=1)
    short = {"epochs": 1, "lr": 0.01, "max_steps": 3}
    for method, hyper in (("l1", None), ("gdp", {"train": short, "lam_init": 0.5, "lam_max": 5.0,
                                                 "ramp_epochs": 0.1})):
        spec = spec_for(method, 0.5, hyper=hyper, finetune=short, batch_size=16, runtime=CPU)
        ref = run_pruning(spec, dense, splits)

        def loader(d: ArrayDataset, train: bool, bs: int, seed: int = spec.seed) -> Loader:
            return Loader(d, bs, mean=splits.mean, std=splits.std, shuffle=train, augment=train, drop_last=train,
                          device="cpu", channels_last=False, seed=seed)

        got = run_on_loaders(spec, copy.deepcopy(dense), torch.zeros(1, 1, 12, 12), loader(splits.train, True, 16),
                             loader(splits.val, False, 512), loader(splits.test, False, 512))
        assert (got.macs, got.params, got.widths) == (ref.macs, ref.params, ref.widths), method
        assert (got.val_acc, got.test_acc) == (ref.val_acc, ref.test_acc), method
        for (k, a), (k2, b) in zip(got.model.state_dict().items(), ref.model.state_dict().items(), strict=True):
            assert k == k2 and torch.equal(a.cpu(), b.cpu()), f"{method}: {k} differs"


@pytest.fixture(scope="module")
def tv_data():
    return _data(24, (3, 32, 32), 4, 0), _data(8, (3, 32, 32), 4, 1)


def _resnet18() -> nn.Module:
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=4)


@pytest.mark.parametrize("method", ["l1", "random"])
def test_one_shot_methods_physically_shrink_a_torchvision_resnet18(method, tv_data):
    (x, y), val = tv_data
    train = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True)   # a loader as a researcher has it
    dense = _resnet18()
    pruned, record = prune(dense, method, 0.5, train=train, val=val, test=val, finetune={"epochs": 1, "lr": 0.01},
                           max_steps=2, device="cpu", eval_batch_size=8)
    n_dense = sum(p.numel() for p in dense.parameters())
    assert sum(p.numel() for p in pruned.parameters()) < n_dense
    assert record.macs == count_cost(pruned, (1, 3, 32, 32)).macs <= 0.5 * record.dense_macs
    assert record.params == count_cost(pruned, (1, 3, 32, 32)).params < record.dense_params
    assert record.dense_macs == count_cost(dense, (1, 3, 32, 32)).macs
    assert record.finetune["max_steps"] == 2 and record.selection == "best_val"
    assert pruned(torch.randn(2, 3, 32, 32)).shape == (2, 4)
    assert any(r["pruned"][1] < r["dense"][1] for r in record.layers.values())


def test_gdp_on_a_torchvision_resnet18_prunes_exactly_what_its_gates_computed(tv_data):
    train, val = tv_data
    dense = _resnet18()
    hyper = {"lam_init": 50.0, "lam_max": 1e4, "ramp_epochs": 0.5}
    pruned, record = prune(dense, "gdp", 0.7, train=train, val=val, hyper=hyper, epochs=1, max_steps=3,
                           batch_size=8, device="cpu")
    assert record.hyper["train"]["max_steps"] == 3 and record.hyper["train"]["epochs"] == 1.0
    assert record.macs == count_cost(pruned, (1, 3, 32, 32)).macs <= 0.7 * record.dense_macs * 1.01
    assert record.summary["exactness"]["max_abs_diff"] <= 1e-4   # surgery = the gated network
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in dense.parameters())


def test_greg_is_driven_to_the_macs_target_by_a_uniform_ratio():
    dense = _tiny()
    example = torch.zeros(1, 3, 4, 4)
    budget = native_budget("greg", 0.5, dense, example)
    assert budget.macs_keep is None and set(budget.ratios) == {"conv1", "conv2"}   # no residual groups here
    assert native_budget("l1", 0.5).macs_keep == 0.5
    spec = spec_for("greg", 0.5, model=dense, example_input=example)
    assert spec.tags["target"] == 0.5 and spec.budget == budget
    with pytest.raises(PruneError, match="model= and example_input="):
        native_budget("greg", 0.5)


def test_spec_for_sets_the_seed_and_the_phase_lengths_without_naming_the_method():
    spec = spec_for("random", 0.5, seed=7)
    assert spec.hyper.seed == 7 and spec.seed == 7
    assert spec_for("random", 0.5, seed=7, hyper={"seed": 3}).hyper.seed == 3
    spec = spec_for("slimming", 0.3, epochs=2.5, phase_max_steps=40, max_steps=10, batch_size=32,
                    finetune=1.5)
    assert (spec.hyper.sparse_train.epochs, spec.hyper.sparse_train.max_steps) == (2.5, 10)
    assert spec.hyper.sparse_train.batch_size == 32
    assert spec.finetune == OptimConfig(epochs=1.5, lr=0.01, max_steps=10, batch_size=32)
    assert spec_for("dsa", 0.5, epochs=3).hyper.search.epochs == 3


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"method": "gpd"}, r"method='gpd': unknown method; registered methods: .*gdp.*l1"),
    ({"macs": 1.5}, r"macs=1.5: .*\(0, 1\]"),
    ({"macs": 0}, r"macs=0: "),
    ({"macs": True}, r"macs=True: "),
    ({"hyper": {"lam_maxx": 1.0}, "method": "gdp"}, r"hyper: .*lam_maxx.*Did you mean 'lam_max'"),
    ({"finetune": {"epochz": 1}}, r"finetune.epochz: unknown key"),
    ({"val": None}, r"val: give held-out validation data"),
    ({"train": [torch.zeros(3)]}, r"train: a list of 1 items"),
    ({"select": "best_test"}, r"select='best_test'"),
    ({"example_input": torch.zeros(2, 3, 4, 4)}, r"example_input: give one sample"),
    ({"device": "cuda:7"}, r"device='cuda:7'"),
])
def test_bad_input_gets_one_clear_error(kwargs, match):
    if kwargs.get("device") and torch.cuda.is_available():
        pytest.skip("CUDA present")
    args = {"model": _tiny(), "method": "l1", "macs": 0.5, "train": _data(8, (3, 4, 4), 4, 0),
            "val": _data(4, (3, 4, 4), 4, 1), "device": "cpu", **kwargs}
    with pytest.raises(PruneError, match=match):
        prune(args.pop("model"), args.pop("method"), args.pop("macs"), **args)


def test_a_model_the_engine_cannot_group_or_trace_is_refused():
    data = _data(8, (3, 4, 4), 4, 0)
    classifier_only = nn.Sequential(nn.Flatten(), nn.Linear(48, 4))
    with pytest.raises(PruneError, match=r"no channel group that 'l1' can prune"):
        prune(classifier_only, "l1", 0.5, train=data, val=data, device="cpu")
    with pytest.raises(PruneError, match=r"cannot trace TinyCNN"):   # 1-channel samples for a 3-channel stem
        prune(_tiny(), "l1", 0.5, train=data, val=data, example_input=(1, 1, 4, 4), device="cpu")
    with pytest.raises(PruneError, match=r"model: expected a torch.nn.Module"):
        prune("resnet18", "l1", 0.5, train=data, val=data)


def test_batches_that_are_not_pairs_and_bilevel_methods_without_held_out_data():
    x, y = _data(8, (3, 4, 4), 4, 0)

    class Dicts(torch.utils.data.Dataset):
        def __len__(self):
            return 8

        def __getitem__(self, i):
            return {"image": x[i], "label": y[i]}

    with pytest.raises(PruneError, match=r"train: every batch must be an \(inputs, targets\) pair.*dict"):
        prune(_tiny(), "l1", 0.5, train=DataLoader(Dicts(), batch_size=4), val=(x, y), finetune=1, device="cpu")

    class Stream:   # an iterable with a length that cannot be split here
        def __iter__(self):
            return iter([(x, y)])

        def __len__(self):
            return 1

    with pytest.raises(PruneError, match=r"'dsa' is bi-level.*arch="):
        prune(_tiny(), "dsa", 0.5, train=Stream(), val=(x, y), device="cpu")


def test_cli_prunes_a_registry_model_from_a_tensor_file(tmp_path, capsys):
    from prunerep.__main__ import main
    from prunerep.models.checkpoint import load_model

    data = tmp_path / "data.pt"
    torch.save({"train": _data(16, (1, 12, 12), 3, 0), "val": _data(8, (1, 12, 12), 3, 1)}, data)
    out, rec = tmp_path / "pruned.pt", tmp_path / "record.json"
    code = main(["prune", "--model", "resnet20", "--model-kwargs", '{"num_classes": 3, "in_channels": 1}',
                 "--data", str(data), "--method", "l1", "--macs", "0.5", "--finetune", "1", "--max-steps", "1",
                 "--batch-size", "8", "--device", "cpu", "--out", str(out), "--record", str(rec)])
    assert code == 0
    record = json.loads(rec.read_text())
    model, meta = load_model(out)
    assert record["macs"] == count_cost(model, (1, 1, 12, 12)).macs <= 0.5 * record["dense_macs"]
    assert meta["record"]["method"] == "l1"
    assert main(["prune", "--model", "resnet20", "--data", str(data), "--method", "nope", "--macs", "0.5"]) == 2
    assert "unknown method" in capsys.readouterr().err
    assert main(["prune", "--model", "resnet20", "--data", str(tmp_path / "missing.pt"), "--macs", "0.5"]) == 2
    assert "file not found" in capsys.readouterr().err
    assert main(["methods"]) == 0
    assert set(list_methods()) <= set(capsys.readouterr().out.split())


def test_a_bilevel_method_holds_out_part_of_the_training_data_itself():
    from prunerep.api import _split_for_arch

    x, y = _data(40, (3, 4, 4), 4, 0)
    weights, held_out = _split_for_arch((x, y), 0.25, 8, 0, "dsa")
    assert (len(weights.dataset), len(held_out.dataset)) == (30, 10)        # the runner's held_out_size
    assert not set(weights.dataset.indices) & set(held_out.dataset.indices)
    loader = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True)
    w2, h2 = _split_for_arch(loader, 0.25, 128, 0, "dsa")                    # the loader's own batch size
    assert (len(w2.dataset), len(h2.dataset), w2.batch_sampler.batch_size) == (30, 10, 8)
    pruned, record = prune(_tiny(), "dsa", 0.5, train=(x, y), val=_data(8, (3, 4, 4), 4, 1), batch_size=8,
                           arch_fraction=0.25, hyper={"arch_optim": {"optimizer": "sgd", "lr": 0.05}}, max_steps=2,
                           device="cpu")
    assert record.macs == count_cost(pruned, (1, 3, 4, 4)).macs <= 0.5 * record.dense_macs * 1.01
    assert record.phase_time_s["search"] > 0


def test_prune_is_the_package_level_api():
    import prunerep

    assert prunerep.prune is prune
