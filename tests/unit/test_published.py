"""Dense networks from published weights (`pretrain.published`, `prunerep.models.published`):
written from torch hub's cache without the internet, refused on another dataset or with a bad
name, pruned by a study's runs on a streamed ImageNet folder like a trained checkpoint.

torchvision's real files are not on this machine: each test writes a random network's state dict
under the file name torchvision looks for, in a temporary $TORCH_HOME, and forbids downloads. The
hash check of such a file (whose sha256 cannot match the hash in torchvision's name) is switched off
by the `hub` fixture and tested on its own.
"""

from __future__ import annotations

import hashlib
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision

import prunerep.data
import prunerep.models.published as published_module
from prunerep.config import ConfigError, check_params, read_params, resolve_section, stage_inputs
from prunerep.data import DataConfig
from prunerep.data.streaming import imagenet_splits
from prunerep.engine import OptimConfig, RuntimeConfig
from prunerep.methods import Budget
from prunerep.methods.base import build_hyper
from prunerep.models.checkpoint import load_model
from prunerep.models.published import PublishedEntry, check_hub_file, ensure_published
from prunerep.models.registry import build_model
from prunerep.pruning.cost import count_cost
from prunerep.runner import RunSpec
from prunerep.runner.execute import LatencySettings, StudyContext, execute
from prunerep.stages import pretrain
from prunerep.studies import greg
from tests.unit.test_data_streaming import write_imagenet

REPO = Path(__file__).resolve().parents[2]
RESNET18 = PublishedEntry(name="tv_resnet18", weights="IMAGENET1K_V1", dataset="imagenet")


def _no_downloads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    asked: list[str] = []

    def refuse(url, *args, **kwargs):
        asked.append(url)
        raise urllib.error.URLError("no internet in this test")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    return asked


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, torch.Tensor]]:
    """A torch hub cache holding 'published' ResNet-18 and MobileNetV2 files (random weights)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(published_module, "check_hub_file", lambda path: None)   # random bytes: no hash match
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    folder.mkdir(parents=True)
    states = {}
    for fn in ("resnet18", "mobilenet_v2"):
        torch.manual_seed(len(fn))
        state = getattr(torchvision.models, fn)().state_dict()
        url = torchvision.models.get_model_weights(fn).IMAGENET1K_V1.url
        torch.save(state, folder / Path(url).name)
        states[fn] = state
    return states


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_checkpoint_holds_the_published_weights_and_its_bytes_are_stable(hub, tmp_path, monkeypatch):
    asked = _no_downloads(monkeypatch)
    path = ensure_published("resnet18", RESNET18, tmp_path / "a" / "model.pt")
    model, meta = load_model(path)
    assert asked == []
    assert all(torch.equal(model.state_dict()[k], v) for k, v in hub["resnet18"].items())
    assert meta["weights"] == "ResNet18_Weights.IMAGENET1K_V1" and meta["dataset"] == "imagenet"
    assert model.arch_spec["name"] == "tv_resnet18"
    stamp = path.stat().st_mtime_ns
    assert ensure_published("resnet18", RESNET18, path) == path and path.stat().st_mtime_ns == stamp   # kept
    other = ensure_published("resnet18", RESNET18, tmp_path / "b" / "model.pt")
    assert _sha(other) == _sha(path)          # a run's identity hashes these bytes: they must not vary
    # an alias of the same member is the same weights: kept
    entry = PublishedEntry(name="tv_resnet18", weights="DEFAULT", dataset="imagenet")   # an alias of V1
    assert ensure_published("resnet18", entry, path) == path and path.stat().st_mtime_ns == stamp
    # the architecture spec names no weights: rebuilding it (a load, a scratch init) reads no file
    assert model.arch_spec["kwargs"]["weights"] is None and meta["entry"]["weights"] == meta["weights"]
    hub_files = list((Path(torch.hub.get_dir()) / "checkpoints").iterdir())
    for f in hub_files:
        f.unlink()
    assert load_model(path)[0].state_dict()["fc.weight"].equal(hub["resnet18"]["fc.weight"])
    build_model(model.arch_spec)
    assert asked == []


def test_a_checkpoint_of_another_entry_is_replaced(hub, tmp_path, monkeypatch):
    _no_downloads(monkeypatch)
    path = ensure_published("resnet18", RESNET18, tmp_path / "model.pt")
    other = PublishedEntry(name="tv_resnet18", weights="IMAGENET1K_V1", dataset="imagenet", kwargs={"zero_init_residual": True})
    ensure_published("resnet18", other, path)
    assert load_model(path)[1]["entry"]["kwargs"] == {"zero_init_residual": True}
    ensure_published("resnet18", RESNET18, path)
    assert load_model(path)[1]["entry"]["kwargs"] == {}


def test_a_cached_file_is_checked_against_the_hash_in_its_name(tmp_path, monkeypatch):
    data = b"published weights"
    good = tmp_path / f"net-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    good.write_bytes(data)
    check_hub_file(good)
    good.write_bytes(data[:-1])                     # truncated
    with pytest.raises(RuntimeError, match=f"{good}: its sha256 starts with .* not with"):
        check_hub_file(good)
    # through ensure_published: a file copied into the cache that is not torchvision's
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    _no_downloads(monkeypatch)
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    folder.mkdir(parents=True)
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    torch.save(torchvision.models.resnet18().state_dict(), folder / Path(url).name)
    with pytest.raises(RuntimeError, match="pretrain.published.resnet18: could not get .*not with f37072fd"):
        ensure_published("resnet18", RESNET18, tmp_path / "model.pt")
    assert not (tmp_path / "model.pt").exists()


def test_without_the_file_and_the_internet_the_error_names_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_home"))
    asked = _no_downloads(monkeypatch)
    with pytest.raises(RuntimeError) as err:
        ensure_published("resnet50", PublishedEntry("tv_resnet50", "IMAGENET1K_V1", "imagenet"),
                         tmp_path / "model.pt")
    message = str(err.value)
    assert asked == ["https://download.pytorch.org/models/resnet50-0676ba61.pth"]
    assert "pretrain.published.resnet50" in message
    assert str(tmp_path / "empty_home" / "hub" / "checkpoints" / "resnet50-0676ba61.pth") in message
    assert "python -m prunerep.stages published resnet50" in message
    assert not (tmp_path / "model.pt").exists()


def _params_with(published: dict, models: dict | None = None) -> dict:
    params = read_params(REPO / "params.yaml")
    params["pretrain"] = {**params["pretrain"], "published": published}
    if models is not None:
        params["pretrain"]["models"] = models
    return params


@pytest.mark.parametrize(("entry", "message"), [
    ({"name": "tv_resnet18", "weights": "IMAGENET9K"}, "pretrain.published.x.weights: 'IMAGENET9K' is not a member of ResNet18_Weights"),
    ({"name": "resnet20", "weights": "IMAGENET1K_V1"}, "pretrain.published.x.name: 'resnet20' is not a registered torchvision model"),
    ({"name": "tv_resnet101", "weights": "IMAGENET1K_V1"}, "'tv_resnet101' is not a registered torchvision model; "
                                                           "published weights exist for .*'torchvision:<fn_name>'"),
    ({"name": "tv_resnet18", "weights": "IMAGENET1K_V1", "kwargs": {"weights": "X"}}, "give the weights as the entry's `weights` key"),
])
def test_a_bad_entry_is_one_clear_error(entry, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("`", ".")):
        resolve_section("pretrain", _params_with({"x": {"dataset": "imagenet", **entry}}), profile="default")


def test_a_key_both_trained_and_published_is_refused():
    params = _params_with({"resnet20": {"name": "tv_resnet18", "weights": "IMAGENET1K_V1", "dataset": "imagenet"}})
    with pytest.raises(ConfigError, match="published.resnet20: 'resnet20' is also an entry of models"):
        resolve_section("pretrain", params, profile="default")


def test_sections_may_prune_a_published_key_and_the_stage_inputs_name_it():
    params = _params_with({"resnet18": {"name": "tv_resnet18", "weights": "IMAGENET1K_V1", "dataset": "imagenet"}})
    params["greg"] = {**params["greg"], "model": "resnet18"}
    check_params(params)                                           # a published key is a dense model key
    params["greg"]["model"] = "resnet81"
    with pytest.raises(ConfigError, match="'resnet81' is not an entry of pretrain.models or pretrain.published"):
        check_params(params)
    assert "pretrain.published" not in stage_inputs(params, "greg")     # on CIFAR-10 it cannot be read
    params["data"] = {**params["data"], "dataset": "imagenet"}
    assert stage_inputs(params, "greg")["pretrain.published"]["resnet18"]["weights"] == "IMAGENET1K_V1"
    plain = read_params(REPO / "params.yaml")       # the paper profile's entries are not the default's inputs
    assert "pretrain.published" not in stage_inputs(plain, "greg")
    assert "published" not in stage_inputs({**plain, "profile": "paper"}, "pretrain", model="resnet56")["pretrain"]
    # the paper profile's CIFAR stages do not read its ImageNet entries: not their inputs
    assert "pretrain.published" not in stage_inputs({**plain, "profile": "paper"}, "greg")
    imagenet = {**plain, "profile": "paper", "data": {**plain["data"], "dataset": "imagenet"}}
    assert set(stage_inputs(imagenet, "greg")["pretrain.published"]) == {"resnet34", "resnet50", "mobilenet_v2"}


@pytest.fixture
def imagenet_study(hub, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _no_downloads(monkeypatch)
    root = write_imagenet(tmp_path / "imagenet")
    monkeypatch.setattr(prunerep.data, "load_data",
                        lambda *a, **k: imagenet_splits(root, val_size=3, crop=32, resize=36, num_workers=0))
    return StudyContext(slug="published", profile="paper", data=DataConfig(dataset="imagenet", source=str(root)),
                        latency=LatencySettings(enabled=False), expected_arch={"resnet18": "tv_resnet18"},
                        published={"resnet18": RESNET18})


def test_a_study_prunes_published_weights_on_a_streamed_imagenet_folder(imagenet_study):
    spec = RunSpec(method="l1", budget=Budget(macs_keep=0.6), hyper=build_hyper("l1", None),
                   finetune=OptimConfig(epochs=1, batch_size=4, lr=0.01, max_steps=2), batch_size=4,
                   runtime=RuntimeConfig(device="cpu", channels_last=False, progress=False),
                   label="l1@0.6", model="resnet18")
    (record,) = execute([spec], imagenet_study)
    assert _sha(Path(record.provenance["dense_checkpoint"])).startswith(record.provenance["dense_digest"])
    assert record.provenance["dense_checkpoint"].endswith("artifacts/pretrain/resnet18/model.pt")
    pruned = load_model(record.model_path)[0]
    dense = imagenet_study.load_dense("resnet18")
    assert count_cost(pruned, (1, 3, 32, 32)).macs < 0.65 * count_cost(dense, (1, 3, 32, 32)).macs
    assert 0 <= record.test_acc <= 100


def test_greg_runs_an_imagenet_row_on_published_weights(imagenet_study):
    params = read_params(REPO / "params.yaml")
    setting = resolve_section("greg", params, profile="paper").table2["resnet50_imagenet_2.31x"]
    assert setting.model == "resnet50" and "resnet50" in resolve_section("pretrain", params, profile="paper").published
    # the notebook's rule: a setting runs where its dataset is the pipeline's and its dense model
    # exists (`study.dense_path(key).exists()`, which writes a published key's checkpoint)
    assert imagenet_study.dense_path("resnet18").exists()
    dense = imagenet_study.load_dense("resnet18")
    params["greg"] = {**params["greg"], "model": "resnet18", "table1": {**params["greg"]["table1"], "ratios": []},
                      "figure1": {**params["greg"].get("figure1", {}), "enabled": False}, "workers": 1,
                      "table2": {"tiny_imagenet": {
                          "model": "resnet18", "dataset": "imagenet", "stage_pr": [0, 0.5, 0.5, 0.5, 0.5, 0],
                          "methods": ["l1", "greg1"], "batch_size": 4, "seeds": [0],
                          "reg": {"update_reg_interval": 1, "reg_granularity_prune": 0.5, "stabilize_reg_interval": 1},
                          "finetune": {"epochs": 1, "max_steps": 2, "lr": 0.01}}},
                      "runtime": {"device": "cpu", "channels_last": False, "progress": False}}
    cfg = resolve_section("greg", params, profile="paper")
    runs, skipped = greg.plan_runs(cfg, {"resnet18": dense}, "imagenet", (1, 3, 32, 32))
    assert skipped == [] and [r.tags["table"] for r in runs] == ["table2", "table2"]   # no CIFAR table here
    records = {r.method: r for r in execute(runs, imagenet_study)}
    assert set(records) == {"greg", "l1"}
    # GReg-1 and L1 remove the same filters' share: the same widths, fewer MACs than the dense net
    assert records["greg"].widths == records["l1"].widths
    assert records["greg"].macs < count_cost(dense, (1, 3, 32, 32)).macs
    summary = records["greg"].summary
    assert summary["completed"] and summary["iterations"] >= 2          # the penalty grew to its ceiling
    assert {v["finish_reason"] for v in summary["layers"].values()} == {"ceiling"}


def test_published_weights_are_refused_on_another_dataset(hub, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ctx = StudyContext(slug="x", profile="paper", data=DataConfig(dataset="cifar10"),
                       published={"resnet18": RESNET18})
    with pytest.raises(ValueError, match="pretrain.published.resnet18: weights trained on 'imagenet'.*'cifar10'"):
        ctx.dense_path("resnet18")


def test_the_cli_writes_a_published_checkpoint_ahead(hub, tmp_path, monkeypatch, capsys):
    _no_downloads(monkeypatch)
    monkeypatch.chdir(tmp_path)
    params = tmp_path / "params.yaml"
    params.write_text((REPO / "params.yaml").read_text())
    assert pretrain.publish_main(["mobilenet_v2", "--params", str(params), "--profile", "paper"]) == 0
    model, meta = load_model(tmp_path / "artifacts/pretrain/mobilenet_v2/model.pt")
    assert meta["weights"] == "MobileNet_V2_Weights.IMAGENET1K_V1"
    assert all(torch.equal(model.state_dict()[k], v) for k, v in hub["mobilenet_v2"].items())
    assert pretrain.publish_main(["resnet50", "--params", str(params)]) == 2      # default profile: none
    assert "no entry 'resnet50' at this profile" in capsys.readouterr().err


def test_a_torchvision_deeplab_entry_is_written_and_loads_back(tmp_path, monkeypatch):
    """torchvision turns DeepLabV3's aux head on with weights: the checkpoint's spec records it, so
    loading rebuilds the same network (aux head included) without reading the hub file."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(published_module, "check_hub_file", lambda path: None)
    asked = _no_downloads(monkeypatch)
    weights = torchvision.models.segmentation.DeepLabV3_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    folder.mkdir(parents=True)
    tv = torchvision.models.segmentation.deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=21,
                                                            aux_loss=True)
    torch.save(tv.state_dict(), folder / Path(weights.url).name)
    entry = PublishedEntry(name="tv_deeplabv3_resnet50", weights="COCO_WITH_VOC_LABELS_V1", dataset="voc2012")
    path = ensure_published("deeplab", entry, tmp_path / "model.pt")
    (folder / Path(weights.url).name).unlink()
    model, _ = load_model(path)
    assert model.arch_spec["kwargs"]["aux_loss"] is True and model.arch_spec["kwargs"]["weights"] is None
    assert torch.equal(model.state_dict()["aux_classifier.4.weight"], tv.state_dict()["aux_classifier.4.weight"])
    assert asked == []
