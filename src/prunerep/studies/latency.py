"""What the studies that run W-Gates in its latency mode share: the per-device latency dataset,
LPNet fitted on it, and an interleaved measurement of final networks against their dense network.

Two studies need these: the wgates study (the paper's claims) and the compare study (W-Gates in
latency mode driven to the measured latency of L1-norm pruning, issue #19). They moved here from
``studies/wgates.py`` unchanged, so that the compare stage does not depend on a paper's study
module (``tests/unit/test_stage_deps.py``). They are not in :mod:`prunerep.pruning` (where the
dataset and the predictors themselves live) because everything under ``pruning/`` is part of
every run's identity (``provenance.RUN_CODE``): code added there would change the identity of
every finished run of every stage and rerun them all.

* :func:`ensure_datasets`: per model, sampled width configurations measured on this device,
  serially, one file per device under ``artifacts/latency_dataset/`` (a cache keyed by the device
  fingerprint, the measurement settings and the network, not a DVC output: what it holds depends
  on the machine). The first study that needs a file on a device measures it, the others reuse it.
* :func:`fit_predictors`: LPNet per held-out split (files under ``artifacts/wgates/lpnet/``,
  reused when fitted on the same rows with the same settings) and the two simple alternatives.
* :func:`measure_interleaved`: final networks timed in interleaved rounds with their dense
  network (ratio per round, median), the measurement the latency claims are judged on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from prunerep import paths
from prunerep.pruning.latency_dataset import (
    LatencyDataset,
    MeasureFn,
    MeasureSettings,
    SamplerConfig,
    ensure_dataset,
    harness_measure,
)
from prunerep.pruning.latency_model import (
    AffineFit,
    LPNetConfig,
    fit_lpnet,
    load_lpnet,
    mape,
    save_lpnet,
    spearman,
    split_rows,
    within,
)
from prunerep.runner import RunRecord

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DATASET_DIR", "LPNET_DIR", "DatasetConfig", "PredictorConfig", "PredictorFit", "ensure_datasets",
           "fit_predictors", "given_widths", "measure_interleaved", "provenance_table"]

DATASET_DIR = paths.ARTIFACTS / "latency_dataset"   # a cache, one file per device and settings (not a DVC output)
# LPNet files, reused by content (the rows and settings they were fitted on). The path is part of
# the W-Gates runs' hyper-parameters, hence of their identity: it stays where the wgates study
# first wrote it, for every study.
LPNET_DIR = paths.ARTIFACTS / "wgates" / "lpnet"


# ---------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class DatasetConfig:
    """The latency dataset of every model (measured on first use on a device, then reused)."""

    models: list[str] = field(default_factory=lambda: ["resnet20"])   # pretrain.models keys measured
    sampler: SamplerConfig = SamplerConfig()
    measure: MeasureSettings = MeasureSettings()
    # Studies whose final networks are measured too and scored apart (opt in): reads
    # results/<slug>/runs.jsonl, so each must be a dependency of the wgates stage in dvc.yaml.
    given_from: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PredictorConfig:
    """LPNet and the held-out protocol of claim 1."""

    lpnet: LPNetConfig = LPNetConfig()
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])   # split seeds (the runs use the first)
    test_share: float = 0.2          # held out: never used to fit or choose
    val_share: float = 0.1           # chooses LPNet's stopping iteration
    tolerance: float = 0.10          # "within ±10%"

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ValueError("seeds: give at least one split seed")
        if self.test_share < 0.2:
            raise ValueError(f"test_share must be >= 0.2 (the held-out share), got {self.test_share}")



# ---------------------------------------------------------------------------------------------
# the latency dataset


def given_widths(dataset: DatasetConfig, model_key: str, results: Path = paths.RESULTS) -> list[dict[str, int]]:
    """Final widths of other studies' runs on ``model_key`` (``dataset.given_from``), where recorded.

    Networks with a removed group (width 0) are left out: the sampled configurations keep every
    group, so LPNet would extrapolate there.
    """
    from prunerep.runner import read_records

    out: list[dict[str, int]] = []
    for slug in dataset.given_from:
        path = results / slug / "runs.jsonl"
        if not path.exists():
            continue
        for r in read_records(path):
            if r.model == model_key and r.widths and min(r.widths.values()) >= 1:
                out.append(dict(r.widths))
    return out


@contextlib.contextmanager
def _output_to(log: Path | None) -> Iterator[None]:
    """Progress lines appended to ``log`` meanwhile (a measurement of many minutes prints one line
    per chunk: the log file, not the notebook, is the place for them)."""
    if log is None:
        yield
        return
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", buffering=1) as f, contextlib.redirect_stdout(f):
        print(f"=== latency datasets: {time.strftime('%Y-%m-%d %H:%M:%S')}")
        yield


def ensure_datasets(dataset: DatasetConfig, example_shape: Sequence[int], load_dense: Callable[[str], nn.Module], *,
                    directory: Path = DATASET_DIR, measure_fn: MeasureFn | None = None,
                    fingerprint: Mapping[str, Any] | None = None, allow_build: bool = True,
                    results: Path = paths.RESULTS, progress: bool = True, log: Path | None = None
                    ) -> dict[str, LatencyDataset]:
    """The dataset of every model of ``dataset.models`` on this device: reused, or measured now.

    Measured serially, before any run (call it with nothing else running); reused for the same
    device fingerprint and settings; a corrupt or foreign file is refused
    (:func:`~prunerep.pruning.latency_dataset.ensure_dataset`). ``allow_build=False``: never
    measure (raise instead). Other methods' networks: only those of ``dataset.given_from``
    (measured and appended if the file lacks them); given rows of earlier requests the file
    still holds are left out, so what is reported depends on this configuration only.
    """
    out = {}
    with _output_to(log):
        for key in dataset.models:
            dense = load_dense(key).cpu().eval()
            given = given_widths(dataset, key, results)
            ds, _ = ensure_dataset(directory, key, dense, torch.zeros(tuple(example_shape)),
                                   sampler=dataset.sampler, settings=dataset.measure, measure_fn=measure_fn,
                                   fingerprint=fingerprint, given=given, allow_build=allow_build, progress=progress)
            _progress_line(f"[latency dataset] {key}: {ds.path}, digest {ds.digest} ({ds.describe()})", progress)
            out[key] = ds.restrict_given(given)
    return out


def _progress_line(msg: str, on: bool) -> None:
    if on:
        print(msg, flush=True)



# ---------------------------------------------------------------------------------------------
# LPNet and the two simple alternatives


@dataclass
class PredictorFit:
    """Everything claim 1 reports for one model's dataset."""

    model: str
    metrics: pd.DataFrame            # seed, batch, predictor, rows (held_out | given), mape, spearman, within, n
    scatter: pd.DataFrame            # first seed's held-out rows: batch, measured, predictor, predicted
    lpnet_path: str                  # the LPNet of the first split seed (the runs' predictor)
    lpnet_digest: str
    info: list[dict[str, Any]]
    dataset_path: str = ""           # the dataset file every predictor was fitted on ...
    dataset_digest: str = ""         # ... its content digest (as stored in the file and checked on load)
    dataset_key: str = ""            # ... its key (device fingerprint, measurement settings, network)
    fingerprint: dict[str, Any] = field(default_factory=dict)   # the device it was measured on
    threads: int | None = None       # torch threads while timing


def _rows_digest(ds: LatencyDataset, idx: Sequence[int]) -> str:
    return hashlib.sha256(json.dumps([ds.rows[i] for i in idx], sort_keys=True).encode()).hexdigest()


def _lpnet(ds: LatencyDataset, model_key: str, cfg: PredictorConfig, seed: int, train: list[int], val: list[int],
           x: torch.Tensor, y: torch.Tensor, directory: Path) -> tuple[Any, str, str, dict[str, Any]]:
    """Fit LPNet on ``train`` (choose on ``val``), or reuse the file fitted on the same rows."""
    lp_cfg = dataclasses.replace(cfg.lpnet, seed=cfg.lpnet.seed + seed)
    meta = {"group_ids": ds.group_ids, "channels": ds.channels, "arch": ds.data["structure"]["arch"],
            "dataset_key": ds.key, "train": _rows_digest(ds, train), "val": _rows_digest(ds, val),
            "config": dataclasses.asdict(lp_cfg), "batch_sizes": ds.batch_sizes}
    path = Path(directory) / f"{model_key}-{ds.key}-s{seed}.pt"
    if path.exists():
        try:
            net, old = load_lpnet(path)
            if old.get("fit") and {k: old.get(k) for k in meta} == json.loads(json.dumps(meta)):
                from prunerep.pruning.latency_model import file_sha256

                return net, str(path), file_sha256(path), old["fit"]
        except (ValueError, RuntimeError, KeyError):
            pass   # refit below
    net, info = fit_lpnet(x[train], y[train], x[val], y[val], ds.batch_sizes, lp_cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the file's digest is recorded, not compared: LPNet depends on its train / val rows only
    digest = save_lpnet(net, path, {**meta, "fit": info, "dataset_digest": ds.digest})
    return net, str(path), digest, info


def fit_predictors(predictor: PredictorConfig, ds: LatencyDataset, model_key: str, *,
                   directory: Path = LPNET_DIR) -> PredictorFit:
    """Per split seed of ``predictor.seeds``: LPNet (fitted, or reused from ``directory`` when a
    file fitted on the same rows with the same settings is there) and the two alternatives (MACs
    and per-layer lookup, two coefficients each) scored on the held-out rows; the LPNet of the
    first split seed is the one runs use (``lpnet_path``, ``lpnet_digest``)."""
    import pandas as pd

    p = predictor
    sampled = [i for i, s in enumerate(ds.sources()) if s != "given"]
    given = [i for i, s in enumerate(ds.sources()) if s == "given"]
    dense_row = ds.sources().index("dense")
    x = ds.fractions().float()
    y = torch.stack([ds.latency(b) for b in ds.batch_sizes], dim=1)
    macs = ds.macs()
    table = ds.layer_table()
    lookup = (torch.tensor([[table.predict(r["widths"], b) for b in ds.batch_sizes] for r in ds.rows],
                           dtype=torch.float64) if table is not None else None)
    rows, scatter, info = [], [], []
    first: tuple[str, str] | None = None
    for seed in p.seeds:
        tr, va, te = split_rows(len(sampled), test=p.test_share, val=p.val_share, seed=seed,
                                keep_in_train=[sampled.index(dense_row)])
        train, val, test = ([sampled[i] for i in part] for part in (tr, va, te))
        net, path, digest, fit_info = _lpnet(ds, model_key, p, seed, train, val, x, y, directory)
        info.append({"seed": seed, **fit_info, "train": len(train), "val": len(val), "held_out": len(test)})
        if first is None:
            first = (path, digest)
        with torch.no_grad():
            lp = net(x).double()
        fit_rows = train + val      # the alternatives fit two numbers on every non-held-out row
        for j, b in enumerate(ds.batch_sizes):
            preds = {"lpnet": lp[:, j],
                     "macs": AffineFit.fit(macs[fit_rows], y[fit_rows, j])(macs)}
            if lookup is not None:
                preds["lookup"] = AffineFit.fit(lookup[fit_rows, j], y[fit_rows, j])(lookup[:, j])
            for name, pred in preds.items():
                for part, idx in (("held_out", test), ("given", given)):
                    if not idx:
                        continue
                    t, q = y[idx, j], pred[idx]
                    rows.append({"model": model_key, "seed": seed, "batch": b, "predictor": name, "rows": part,
                                 "n": len(idx), "mape": mape(q, t), "spearman": spearman(q, t),
                                 "within": within(q, t, p.tolerance)})
                if seed == p.seeds[0]:
                    scatter += [{"model": model_key, "batch": b, "predictor": name, "measured_ms": float(y[i, j]),
                                 "predicted_ms": float(pred[i]), "source": ds.rows[i]["source"]} for i in test]
    assert first is not None
    return PredictorFit(model_key, pd.DataFrame(rows), pd.DataFrame(scatter), first[0], first[1], info,
                        dataset_path=str(ds.path or ""), dataset_digest=ds.digest, dataset_key=ds.key,
                        fingerprint=dict(ds.data["fingerprint"]), threads=ds.data.get("threads"))


def provenance_table(fits: Mapping[str, PredictorFit]) -> pd.DataFrame:
    """Which measurements every predictor was fitted on: the dataset file (name, content digest,
    key) and the device fingerprint it was measured on, one row per (model, field)."""
    import pandas as pd

    rows = []
    for fit in fits.values():
        items = [("dataset file", Path(fit.dataset_path).name), ("dataset digest (sha256 of its content)",
                                                                fit.dataset_digest),
                 ("device key", fit.dataset_key), ("torch threads while timing", fit.threads),
                 *((f"device: {k}", v) for k, v in fit.fingerprint.items()),
                 ("LPNet of the runs", Path(fit.lpnet_path).name), ("LPNet digest (sha256 of the file)",
                                                                    fit.lpnet_digest)]
        rows += [{"model": fit.model, "field": k, "value": str(v)} for k, v in items]
    return pd.DataFrame(rows)




# ---------------------------------------------------------------------------------------------
# final networks, measured interleaved with their dense network


def measure_interleaved(records: Sequence[RunRecord], load_dense: Callable[[str], nn.Module],
                        input_shape: Sequence[int], batch_sizes: Sequence[int], repeats: Sequence[int], *,
                        warmup: int, chunk: int, measure_fn: MeasureFn,
                        describe: Callable[[RunRecord], Mapping[str, Any]] = lambda r: {}) -> pd.DataFrame:
    """Latency of every saved final network, interleaved with its dense network.

    Per model, the networks go in chunks of ``chunk``, each chunk timed with the dense network in
    interleaved rounds (``measure_fn``, e.g. :func:`~prunerep.pruning.latency_dataset.harness_measure`),
    ``repeats[i]`` rounds at ``batch_sizes[i]``. One row per run: ``label``, ``model``, ``seed``,
    the columns ``describe(record)`` gives, then per batch size ``ratio_b<B>`` (the median over
    rounds of its time over the dense network's time in the same round, or the ratio of medians
    if the measure function gives no paired ratio), ``ms_b<B>`` and ``dense_ms_b<B>``. Records
    without a saved network are left out.
    """
    import pandas as pd

    from prunerep.models.checkpoint import load_model

    rows = []
    by_model: dict[str, list[RunRecord]] = {}
    for r in records:
        if r.model_path:
            by_model.setdefault(r.model, []).append(r)
    for model, recs in by_model.items():
        dense = load_dense(model).cpu().eval()
        for k in range(0, len(recs), chunk):
            part = recs[k:k + chunk]
            nets: dict[str, nn.Module] = {"dense": dense}
            for i, r in enumerate(part):
                nets[f"r{i}"] = load_model(r.model_path)[0].cpu().eval()
            out: dict[int, dict[str, float]] = {i: {} for i in range(len(part))}
            for b, rep in zip(batch_sizes, repeats, strict=True):
                stats = measure_fn(nets, tuple(input_shape), int(b), warmup, int(rep))
                ref = stats["dense"]["median_ms"]
                for i in range(len(part)):
                    s = stats[f"r{i}"]
                    ratio = s.get("paired_ratio", math.nan)
                    out[i][f"ratio_b{b}"] = float(ratio) if math.isfinite(ratio) else s["median_ms"] / ref
                    out[i][f"ms_b{b}"] = float(s["median_ms"])
                    out[i][f"dense_ms_b{b}"] = float(ref)
            for i, r in enumerate(part):
                rows.append({"label": r.label, "model": r.model, "seed": r.seed, **describe(r), **out[i]})
    return pd.DataFrame(rows)


def default_measure(settings: MeasureSettings) -> MeasureFn:
    """The interleaved harness with the threads and device of ``settings`` (those the latency
    dataset was measured with, so a measured ratio and LPNet's predicted one mean the same)."""
    return harness_measure(settings.threads, settings.resolved_device())
