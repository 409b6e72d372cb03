"""W-Gates' study end to end on a tiny network with a fake measure function (nothing is timed):
dataset -> LPNet and the two alternatives on held-out rows -> plan -> runs -> final measurement
-> tables and claim evidence; plus the params section in every profile and the paper's ImageNet
settings on tiny synthetic inputs."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from prunerep.config import from_dict, read_params, resolve_section
from prunerep.data.arrays import ArrayDataset, DataSplits
from prunerep.engine import OptimConfig, RuntimeConfig
from prunerep.models import get_model
from prunerep.models.checkpoint import save_model
from prunerep.reporting.ledger import write_claims
from prunerep.runner import RunRecord, run_pruning
from prunerep.studies import wgates

SHAPE = (1, 1, 8, 8)
FP = {"device_type": "cpu", "device_name": "fake CPU", "cpu_count": 2, "usable_cpus": 2, "torch": "x"}


def fake_ms(model: torch.nn.Module, input_shape, batch_size: int) -> float:
    from prunerep.pruning.cost import count_cost

    macs = count_cost(model, (1, *input_shape)).macs
    return 0.05 + 1e-5 * macs * batch_size ** 0.9


def fake_measure(models, input_shape, batch_size, warmup, repeats):
    return {n: {"median_ms": fake_ms(m, input_shape, batch_size), "iqr_ms": 0.0} for n, m in models.items()}


def _dense() -> torch.nn.Module:
    torch.manual_seed(0)
    return get_model("resnet20", shortcut="A", num_classes=3, in_channels=1).eval()


def _cfg(**kw) -> wgates.WGatesConfig:
    base = {
        "models": ["resnet20"], "targets": [0.7], "seeds": [0, 1, 2], "batch_size": 16,
        "runtime": {"device": "cpu", "channels_last": False, "progress": False},
        "search": {"epochs": 1, "lr": 0.01, "max_steps": 3}, "finetune": {"epochs": 1, "lr": 0.01, "max_steps": 2},
        "method": {"lam_init": 5.0, "lam_max": 50.0},
        "dataset": {"models": ["resnet20"], "sampler": {"configs": 40, "uniform": 8},
                    "measure": {"batch_sizes": [1, 4], "repeats": [2, 1], "warmup": 0, "chunk": 8, "recheck": 4,
                                "layer_levels": 3, "layer_repeats": [1, 1], "threads": 1}},
        "predictor": {"lpnet": {"hidden": 16, "iterations": 150, "eval_every": 25}, "seeds": [0, 1, 2]},
        "final": {"repeats": [2, 1], "warmup": 0, "chunk": 5},
    }
    base.update(kw)
    return from_dict(wgates.WGatesConfig, base, "wgates")


def test_params_section_resolves_in_every_profile():
    params = read_params("params.yaml")
    for profile in ("smoke", "default", "paper"):
        cfg = resolve_section("wgates", params, profile=profile)
        assert cfg.latency_batch in cfg.dataset.measure.batch_sizes
        assert len(cfg.seeds) >= (2 if profile == "smoke" else 3)
        if profile != "smoke":
            assert cfg.dataset.sampler.configs >= 1000 and set(cfg.dataset.models) >= {"resnet20", "resnet56"}
    paper = resolve_section("wgates", params, profile="paper")
    assert {e.model for e in paper.large_scale} == {"tv_resnet34", "tv_resnet50", "tv_mobilenet_v2"}


def test_the_wgates_stage_declares_what_it_reads_and_no_stage_always_runs():
    """CI runs `dvc repro` twice and fails if the second reruns a stage: no stage may be
    always_changed. The latency datasets are a per-device cache, not an output the stage depends
    on; the checkpoints of every model and other studies' records (given_from) it reads are deps."""
    import yaml

    stages = yaml.safe_load(Path("dvc.yaml").read_text())["stages"]
    assert not [name for name, st in stages.items() if st.get("always_changed")]
    deps = stages["wgates"]["deps"]
    assert not [d for d in deps if "latency_dataset" in d]
    assert {"notebooks/wgates.ipynb", "artifacts/data/dataset.pt", "src/prunerep/methods/wgates.py",
            "src/prunerep/studies/wgates.py", "references/claims/wgates.yaml"} <= set(deps)
    read = set()
    params = read_params("params.yaml")
    for profile in ("smoke", "default", "paper"):
        cfg = resolve_section("wgates", params, profile=profile)
        read |= {f"artifacts/pretrain/{m}/model.pt" for m in [*cfg.models, *cfg.dataset.models]}
        read |= {f"results/{slug}/runs.jsonl" for slug in cfg.dataset.given_from}
    read.add("results/inputs/wgates.json")   # what the stage reads of params.yaml, resolved
    declared = {d for d in deps if d.startswith(("artifacts/pretrain/", "results/"))}
    assert declared == read


def test_given_networks_come_only_from_the_studies_named(tmp_path):
    from prunerep.runner import write_records

    def rec(model: str, widths: dict[str, int]) -> RunRecord:
        return RunRecord(slug="gdp", label="x", method="l1", model=model, seed=0, budget={}, dense_macs=1,
                         dense_params=1, macs=1, params=1, widths=widths, val_acc=0.0, test_acc=0.0,
                         val_acc_before_finetune=0.0, test_acc_before_finetune=0.0, selection="last",
                         phase_time_s={})

    (tmp_path / "gdp").mkdir()
    write_records([rec("resnet20", {"a": 3, "b": 2}), rec("resnet56", {"a": 1}), rec("resnet20", {"a": 0, "b": 2})],
                  tmp_path / "gdp" / "runs.jsonl")
    assert wgates.given_widths(_cfg(), "resnet20", tmp_path) == []            # default: nothing read
    on = _cfg(dataset={**dataclasses.asdict(_cfg().dataset), "given_from": ["gdp", "dsa"]})
    assert wgates.given_widths(on, "resnet20", tmp_path) == [{"a": 3, "b": 2}]   # a removed group is left out


def test_the_command_line_measures_with_the_notebooks_section_and_context(monkeypatch):
    seen = {}

    class FakeContext:
        def __init__(self, **kw):
            seen["context"] = kw

        example_shape = (1, 3, 32, 32)

        def load_dense(self, key):
            raise AssertionError("not called by the fake ensure_datasets")

    def fake_ensure(cfg, shape, load_dense, **kw):
        seen.update(cfg=cfg, shape=shape, kw=kw)
        return {}

    monkeypatch.setattr(wgates, "StudyContext", FakeContext)
    monkeypatch.setattr(wgates, "ensure_datasets", fake_ensure)
    assert wgates.main(["--profile", "smoke"]) == 0
    params = read_params("params.yaml")
    assert seen["cfg"] == resolve_section("wgates", params, profile="smoke") and seen["shape"] == (1, 3, 32, 32)
    assert seen["context"]["subset"] == seen["cfg"].subset and seen["context"]["profile"] == "smoke"
    assert seen["context"]["expected_arch"]["resnet20"] == "resnet20"
    from prunerep.studies.__main__ import COMMANDS

    assert COMMANDS["latency_dataset"] is wgates.main


def test_a_held_out_share_below_a_fifth_is_refused():
    with pytest.raises(ValueError, match="test_share"):
        _cfg(predictor={"test_share": 0.1})


def _splits() -> DataSplits:
    def ds(n: int, seed: int) -> ArrayDataset:
        g = torch.Generator().manual_seed(seed)
        return ArrayDataset(torch.randint(0, 256, (n, 1, 8, 8), generator=g, dtype=torch.uint8), torch.arange(n) % 3,
                            ("a", "b", "c"))

    return DataSplits(ds(48, 0), ds(16, 1), ds(16, 2), (0.5,), (0.25,), "fp", "synthetic")


class _Study:
    """What measure_final needs of a StudyContext."""

    input_shape = SHAPE[1:]

    def load_dense(self, key):
        return _dense()


def _record(spec, res, path) -> RunRecord:
    save_model(res.model, path)
    return RunRecord(slug="wgates", label=spec.label, method=spec.method, model=spec.model, seed=spec.seed,
                     budget={"describe": spec.budget.describe(), "macs_keep": spec.budget.macs_keep,
                             "latency_keep": spec.budget.latency_keep},
                     dense_macs=res.dense_macs, dense_params=res.dense_params, macs=res.macs, params=res.params,
                     widths=res.widths, val_acc=res.val_acc, test_acc=res.test_acc,
                     val_acc_before_finetune=res.val_acc_before_finetune,
                     test_acc_before_finetune=res.test_acc_before_finetune, selection=res.selection,
                     phase_time_s=res.phase_time_s, tags=dict(spec.tags), summary=res.method_summary,
                     model_path=str(path))


def test_the_study_from_dataset_to_claims(tmp_path):
    cfg = _cfg()
    datasets = wgates.ensure_datasets(cfg, SHAPE, lambda key: _dense(), directory=tmp_path / "ds",
                                      measure_fn=fake_measure, fingerprint=FP, results=tmp_path, progress=False)
    ds = datasets["resnet20"]
    assert len(ds) == 41
    # another device's fingerprint keys another file: nothing to reuse, and measuring is refused here
    with pytest.raises(ValueError, match="measuring was not allowed"):
        wgates.ensure_datasets(cfg, SHAPE, lambda key: _dense(), directory=tmp_path / "ds", measure_fn=fake_measure,
                               fingerprint={**FP, "device_name": "other"}, allow_build=False, results=tmp_path)

    fit = wgates.fit_predictors(cfg, ds, "resnet20", directory=tmp_path / "lp")
    # the results name the file (by its stored digest) and the device the predictors were fitted on
    stored = json.loads(ds.path.read_text())
    assert fit.dataset_digest == stored["digest"] and fit.dataset_key == stored["key"] and fit.fingerprint == FP
    prov = wgates.provenance_table({"resnet20": fit}).set_index("field")["value"]
    assert prov["dataset digest (sha256 of its content)"] == stored["digest"] and prov["device key"] == ds.key
    assert prov["device: device_name"] == "fake CPU" and prov["dataset file"] == ds.path.name
    assert prov["LPNet digest (sha256 of the file)"] == fit.lpnet_digest
    m = fit.metrics
    assert set(m["predictor"]) == {"lpnet", "macs", "lookup"} and set(m["seed"]) == {0, 1, 2}
    n_held = m["n"].iloc[0]
    assert n_held >= 0.2 * (len(ds) - 0) - 1
    # the fake latency is affine in the MACs: the MACs predictor is exact on held-out rows
    assert m[m["predictor"] == "macs"]["mape"].max() < 1e-9
    # a refit on the same rows reuses the LPNet file (same digest: the runs' identities are stable)
    again = wgates.fit_predictors(cfg, ds, "resnet20", directory=tmp_path / "lp")
    assert again.lpnet_digest == fit.lpnet_digest

    specs, targets = wgates.plan(cfg, datasets, {"resnet20": fit})
    assert targets[0]["macs_keep"] is not None and targets[0]["uniform network's measured latency ratio"] <= 0.7
    assert len(specs) == 4 * 3
    arms = {s.tags["arm"]: s for s in specs if s.seed == 0}
    assert arms["wgates"].budget.latency_keep == 0.7
    assert arms["wgates_flops"].budget.macs_keep == arms["l1"].budget.macs_keep == arms["random"].budget.macs_keep
    # equal total training: the baselines fine-tune for the search + fine-tuning steps
    assert arms["l1"].finetune.max_steps == 5 and arms["wgates"].finetune.max_steps == 2

    records = []
    for i, spec in enumerate(specs):
        spec = dataclasses.replace(spec, runtime=RuntimeConfig(device="cpu", channels_last=False, progress=False))
        res = run_pruning(spec, _dense(), _splits())
        records.append(_record(spec, res, tmp_path / f"m{i}.pt"))
    final = wgates.measure_final(records, _Study(), cfg, measure_fn=fake_measure)
    assert len(final) == len(records)
    row = final.iloc[0]
    net = get_model("resnet20", shortcut="A", num_classes=3, in_channels=1)
    assert row["dense_ms_b1"] == pytest.approx(fake_ms(net, SHAPE[1:], 1))
    assert row["ratio_b1"] == pytest.approx(row["ms_b1"] / row["dense_ms_b1"])

    tt = wgates.target_table(records, final, datasets, 1)
    assert len(tt) == 3 and (tt["LPNet's ratio (at freezing)"] <= 0.7 + 1e-9).all()
    comp = wgates.comparison_table(records, final, 1)
    assert set(comp["claim"]) == {"wgates.vs_uniform_latency", "wgates.vs_l1_latency", "wgates.latency_vs_flops"}
    assert (comp["n"] == 3).all()
    assert len(wgates.accuracy_table(records, final, 1)) == 4
    widths = wgates.widths_frame(records, datasets)
    assert set(widths["arm"]) == {"wgates", "wgates_flops", "l1"} and (widths["keep"] <= 1).all()

    ev = wgates.evidence(cfg, {"resnet20": fit}, final, records, datasets, "tiny budget")
    claims = write_claims("wgates", ev, tmp_path)
    judged = set(claims[claims["n"] > 0]["claim"])
    assert judged == {"wgates.lpnet_spearman", "wgates.lpnet_within10", "wgates.lpnet_vs_macs",
                      "wgates.lpnet_vs_lookup", "wgates.latency_target_met", "wgates.vs_uniform_latency",
                      "wgates.vs_l1_latency", "wgates.latency_vs_flops"}
    # the MACs predictor is exact here, so LPNet cannot beat it: the ledger must not say it does
    full = claims.merge(pd.read_csv(tmp_path / "claims.csv")[["claim", "our test", "mean"]])
    vs_macs = full[full["claim"] == "wgates.lpnet_vs_macs"]
    assert (vs_macs["mean"] > 0).all() and "supported" not in set(vs_macs["verdict"])
    # the ImageNet rows are listed, not run
    assert set(claims[claims["claim"] == "wgates.resnet50_top1"]["verdict"]) == {"not run at this budget"}
    metrics = wgates.headline_metrics("test", {"resnet20": fit}, records, final, claims, 1)
    assert "resnet20/t0.7/wgates/test_acc_mean" in metrics
    assert metrics["resnet20/latency_dataset/digest"] == stored["digest"]
    assert metrics["resnet20/latency_dataset/device"] == "fake CPU"
    assert all(math.isfinite(v) for k, v in metrics.items() if k.endswith("_mean"))
    wgates.scatter_figure(fit, 1)
    wgates.widths_figure(widths, "resnet20", 0.7)
    assert len(wgates.gain_rows(comp)) == 3
    table = wgates.predictor_table({"resnet20": fit})
    assert set(table["predictor"]) == set(wgates.PREDICTORS.values())
    info = wgates.dataset_table(datasets, 1).iloc[0]
    assert info["networks"] == 41 and info["uniform"] == 8
    assert "40 sampled networks" in wgates.describe_budget(cfg, 48, "test")
    assert wgates.large_scale_table(cfg).empty


class _Batches:
    def __init__(self, size: int, classes: int, n: int = 2, batch: int = 4) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, batch, 3, size, size, generator=g)
        self.y = torch.randint(0, classes, (n, batch), generator=g)

    def __iter__(self):
        return iter(zip(self.x, self.y, strict=True))

    def __len__(self) -> int:
        return len(self.x)

    def set_epoch(self, epoch: int) -> None:
        pass


CASES = [pytest.param(name, marks=pytest.mark.slow, id=name) for name in
         ("tv_resnet34", "tv_resnet50", "tv_mobilenet_v2")]


@pytest.mark.parametrize("name", CASES)
def test_paper_imagenet_settings_run_on_tiny_synthetic_inputs(name, tmp_path):
    from prunerep.engine import fit

    params = read_params("params.yaml")
    entry = next(e for e in resolve_section("wgates", params, profile="paper").large_scale if e.model == name)
    entry = dataclasses.replace(entry, num_classes=5, sampler=dataclasses.replace(entry.sampler, configs=24, uniform=4),
                                method=dataclasses.replace(entry.method, train=OptimConfig(epochs=1, lr=0.01,
                                                                                           max_steps=2)))
    size = 32
    torch.manual_seed(0)
    model = get_model(name, num_classes=5).eval()
    cfg = _cfg(dataset={"models": ["net"], "sampler": dataclasses.asdict(entry.sampler),
                        "measure": {"batch_sizes": [1, 2], "repeats": [1, 1], "warmup": 0, "chunk": 8, "recheck": 2,
                                    "layer_levels": 0, "layer_repeats": [1, 1]}},
               models=["net"], predictor={"lpnet": {"hidden": 8, "iterations": 40, "eval_every": 20}, "seeds": [0]})
    ds = wgates.ensure_datasets(cfg, (1, 3, size, size), lambda key: model, directory=tmp_path, measure_fn=fake_measure,
                                fingerprint=FP, results=tmp_path, progress=False)["net"]
    pred = wgates.fit_predictors(cfg, ds, "net", directory=tmp_path)
    net, method, ctx = wgates.build_large_scale(entry, lpnet_path=pred.lpnet_path, lpnet_digest=pred.lpnet_digest,
                                                input_size=size, model=model)
    for _phase, optim in method.phases():
        fit(net, _Batches(size, 5), optim=optim, runtime=RuntimeConfig(device="cpu", channels_last=False,
                                                                        progress=False), hooks=[method])
    net = method.finalize(net, ctx)
    s = method.summary()
    assert s["mode"] == "latency" and s["final_ratio"] <= entry.latency_keep + 1e-9
    assert s["exactness"]["max_rel_diff"] <= 1e-4 and s["exactness"]["argmax_agree"] == 1.0
    for gid, w in s["widths"].items():
        assert w % 8 == 0 or w == s["channels"][gid]      # rounded to multiples of 8 (the paper profile's choice)
