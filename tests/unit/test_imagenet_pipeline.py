"""The papers' ImageNet settings as one pipeline (docs/imagenet.params.yaml): the keys it sets make a
valid `paper` configuration whose studies prune only published torchvision weights (no CIFAR
pretraining upstream), plan the papers' ImageNet runs, and run them end to end on a tiny
streamed ImageNet folder (DAIS, GDP and W-Gates runs here; GReg's in test_published.py); the
printed flags are what DVC's own override parser applies."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from prunerep.config import (
    ConfigError,
    apply_overrides,
    check_params,
    overlay_overrides,
    override_flags,
    read_params,
    resolve_section,
)
from prunerep.engine import RuntimeConfig
from prunerep.models import get_model
from prunerep.runner.execute import execute
from prunerep.studies import dais, gdp, greg, wgates
from tests.unit.test_published import hub, imagenet_study  # noqa: F401  (fixtures)

REPO = Path(__file__).resolve().parents[2]
OVERLAY = REPO / "docs" / "imagenet.params.yaml"
SECTIONS = ("greg", "dais", "gdp", "wgates")


@pytest.fixture(scope="module")
def params() -> dict:
    flat = overlay_overrides(OVERLAY, ["data.source=/data/imagenet"])
    return apply_overrides(read_params(REPO / "params.yaml"), flat)


def test_the_overlay_is_a_valid_paper_pipeline_on_published_weights_only(params):
    resolved = check_params(params)
    assert params["profile"] == "paper" and resolved["data"].dataset == "imagenet"
    published = resolved["pretrain"].published
    imagenet = {k for k, entry in published.items() if entry.dataset == "imagenet"}
    for name in SECTIONS:
        keys = set(resolved[name].pretrain_keys().values())
        assert keys <= imagenet, (name, keys)        # nothing trained by a CIFAR pretrain stage
    assert {s.model for s in resolved["greg"].table2.values() if s.dataset == "imagenet"} <= imagenet


def test_the_printed_flags_set_the_same_keys(params):
    out = subprocess.run([sys.executable, "-m", "prunerep.config", "overrides", str(OVERLAY),
                          "--set", "data.source=/data/imagenet", "--params", str(REPO / "params.yaml")],
                         capture_output=True, text=True, check=True, cwd=REPO).stdout
    flags = [line.strip(" \\") for line in out.splitlines()]
    assert all(f.startswith("-S '++") or f.startswith("-S ++") for f in flags)
    assert "-S '++data.source=\"/data/imagenet\"'" in flags
    assert "-S '++dais.profiles.paper.compare.models=[\"resnet50\"]'" in flags
    assert len(flags) == len(overlay_overrides(OVERLAY, ["data.source=x"]))


def test_each_study_plans_the_papers_imagenet_runs(params):
    greg_cfg = resolve_section("greg", params)
    dense = {"resnet50": get_model("tv_resnet50")}
    runs, skipped = greg.plan_runs(greg_cfg, dense, "imagenet", (1, 3, 224, 224))
    assert {r.tags["setting"] for r in runs} == {"resnet50_imagenet_2.31x", "resnet50_imagenet_unstructured"}
    assert {r.model for r in runs} == {"resnet50"} and {s["dataset"] for s in skipped} == {"cifar10", "cifar100"}
    dais_runs = dais.plan(resolve_section("dais", params))
    assert {(r.model, r.budget.macs_keep) for r in dais_runs} == {("resnet50", 0.45)}
    assert {r.tags["variant"] for r in dais_runs} == {"dais", "l1"}
    gdp_runs = gdp.plan(resolve_section("gdp", params))
    assert {(r.model, r.budget.macs_keep) for r in gdp_runs} == {("resnet50", 0.45), ("mobilenet_v2", 0.7)}
    wgates_cfg = resolve_section("wgates", params)
    assert wgates_cfg.models == wgates_cfg.dataset.models == ["resnet34", "resnet50", "mobilenet_v2"]


def _tiny(spec, **finetune):
    runtime = RuntimeConfig(device="cpu", channels_last=False, progress=False)
    finetune = spec.finetune and dataclasses.replace(spec.finetune, batch_size=4, max_steps=2, **finetune)
    return dataclasses.replace(spec, model="resnet18", runtime=runtime, batch_size=4, finetune=finetune)


def test_dais_and_gdp_imagenet_runs_end_to_end_on_a_streamed_folder(params, imagenet_study):  # noqa: F811
    dais_spec = next(r for r in dais.plan(resolve_section("dais", params)) if r.tags["variant"] == "dais")
    dais_spec = dataclasses.replace(dais_spec, hyper=dataclasses.replace(
        dais_spec.hyper, search=dataclasses.replace(dais_spec.hyper.search, batch_size=4, max_steps=3)))
    gdp_spec = next(r for r in gdp.plan(resolve_section("gdp", params)) if r.tags["variant"] == "gdp")
    gdp_spec = dataclasses.replace(gdp_spec, hyper=dataclasses.replace(
        gdp_spec.hyper, train=dataclasses.replace(gdp_spec.hyper.train, batch_size=4, max_steps=3)))
    records = execute([_tiny(dais_spec), _tiny(gdp_spec)], imagenet_study)
    dense_macs = records[0].dense_macs
    for record in records:
        assert record.model == "resnet18" and record.dense_macs == dense_macs
        assert record.macs < dense_macs and 0 <= record.test_acc <= 100


def test_write_gives_exactly_the_configuration_the_flags_give(params, tmp_path):
    out = tmp_path / "imagenet.yaml"
    subprocess.run([sys.executable, "-m", "prunerep.config", "overrides", str(OVERLAY), "--set",
                    "data.source=/data/imagenet", "--params", str(REPO / "params.yaml"), "--write", str(out)],
                   capture_output=True, text=True, check=True, cwd=REPO)
    assert read_params(out) == params


def test_dvc_applies_the_printed_flags_as_we_do(params, tmp_path):
    """The flags go through DVC's own Hydra override parser (what `dvc exp run -S` calls) and give
    the same params.yaml as `apply_overrides`, key by key."""
    import shlex

    import yaml
    from dvc.utils.hydra import apply_overrides as dvc_apply_overrides

    flat = overlay_overrides(OVERLAY, ["data.source=/data/imagenet", "greg.profiles.paper.note=\"résumé: a, b\""])
    target = tmp_path / "params.yaml"
    target.write_text((REPO / "params.yaml").read_text())
    overrides = [shlex.split(flag)[1] for flag in override_flags(flat)]
    dvc_apply_overrides(str(target), overrides)
    ours = apply_overrides(read_params(REPO / "params.yaml"), flat)
    assert yaml.safe_load(target.read_text()) == ours
    assert ours["greg"]["profiles"]["paper"]["note"] == "résumé: a, b"


def test_a_key_holding_a_dot_cannot_be_a_flag(tmp_path):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("greg:\n  profiles:\n    paper:\n      table2:\n        resnet50_imagenet_2.31x: {seeds: [0]}\n")
    with pytest.raises(ConfigError, match=r"greg.profiles.paper.table2.resnet50_imagenet_2.31x: the key "
                                          r"'resnet50_imagenet_2.31x' holds a dot"):
        overlay_overrides(overlay)


def test_wgates_imagenet_row_runs_from_published_weights_on_a_streamed_folder(params, imagenet_study, tmp_path):  # noqa: F811
    """W-Gates' ImageNet path through the study's own functions: the latency dataset of the published
    network (fake timings: nothing is timed in tests), LPNet, the plan at the overlay's latency
    target, and one W-Gates (latency mode) run through the runner on the streamed folder."""
    from tests.unit.test_wgates_study import FP, _cfg, fake_measure

    paper = resolve_section("wgates", params)
    cfg = _cfg(models=["resnet18"], targets=list(paper.targets), seeds=[0], arms=["wgates", "l1"], batch_size=4,
               method=dataclasses.asdict(paper.method) | {"lam_init": 5.0, "lam_max": 50.0},
               dataset={"models": ["resnet18"], "sampler": {"configs": 24, "uniform": 6},
                        "measure": {"batch_sizes": [1, 2], "repeats": [1, 1], "warmup": 0, "chunk": 8, "recheck": 2,
                                    "layer_levels": 0, "layer_repeats": [1, 1], "threads": 1}},
               predictor={"lpnet": {"hidden": 16, "iterations": 400, "eval_every": 50}, "seeds": [0]})
    shape = imagenet_study.example_shape
    datasets = wgates.ensure_datasets(cfg, shape, imagenet_study.load_dense, directory=tmp_path / "ds",
                                      measure_fn=fake_measure, fingerprint=FP, results=tmp_path, progress=False)
    fit = wgates.fit_predictors(cfg, datasets["resnet18"], "resnet18", directory=tmp_path / "lp")
    specs, targets = wgates.plan(cfg, datasets, {"resnet18": fit})
    assert targets[0]["macs_keep"] is not None and {s.tags["arm"] for s in specs} == {"wgates", "l1"}
    spec = next(s for s in specs if s.tags["arm"] == "wgates")
    assert spec.hyper.round_to == paper.method.round_to == 8 and spec.budget.latency_keep == paper.targets[0]
    (record,) = execute([_tiny(spec)], imagenet_study)
    assert record.model == "resnet18" and record.macs < record.dense_macs
    summary = record.summary
    assert summary["mode"] == "latency" and summary["final_ratio"] <= spec.budget.latency_keep + 1e-9
    assert all(w % 8 == 0 or w == summary["channels"][g] for g, w in summary["widths"].items())


def test_an_empty_mapping_is_refused_as_a_flag():
    # DVC's `++key={}` merges (changes nothing) where apply_overrides empties the mapping
    with pytest.raises(ConfigError, match=r"greg.profiles.paper.reg: an empty mapping cannot be"):
        override_flags({"greg.profiles.paper.reg": {}})
