"""The per-device latency dataset: sampling, networks at given widths, caching by device, refusal
of corrupt or foreign files, the per-layer lookup table. Nothing is timed: every test injects a
fake measure function whose "latency" is a known function of the network's MACs."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from prunerep.methods.budget import widths_from_ratio
from prunerep.models import get_model
from prunerep.models.checkpoint import module_records
from prunerep.pruning.cost import count_cost
from prunerep.pruning.groups import find_groups
from prunerep.pruning.latency_dataset import (
    LatencyDatasetError,
    MeasureSettings,
    NetworkBuilder,
    SamplerConfig,
    build_dataset,
    ensure_dataset,
    load_dataset,
    sample_configs,
    save_dataset,
    uniform_widths,
)
from prunerep.pruning.surgery import prune_channels

SHAPE = (1, 1, 8, 8)
FP_A = {"device_type": "cpu", "device_name": "fake CPU A", "cpu_count": 2, "usable_cpus": 2, "torch": "x"}
FP_B = {**FP_A, "device_name": "fake CPU B"}
SAMPLER = SamplerConfig(configs=10, uniform=3, seed=0)
SETTINGS = MeasureSettings(batch_sizes=[1, 4], repeats=[2, 1], warmup=0, chunk=4, recheck=3, threads=1,
                           layer_levels=3, layer_repeats=[1, 1])


def fake_latency(model: torch.nn.Module, input_shape: tuple[int, ...], batch_size: int) -> float:
    """A known, strictly increasing function of the MACs (plus a fixed overhead)."""
    macs = count_cost(model, (1, *input_shape)).macs
    return 0.05 + 1e-5 * macs * batch_size ** 0.9


class FakeMeasure:
    """Deterministic stand-in for the harness; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, models, input_shape, batch_size, warmup, repeats):
        self.calls += 1
        return {name: {"median_ms": fake_latency(m, input_shape, batch_size), "iqr_ms": 0.0, "min_ms": 0.0,
                       "repeats": float(repeats)} for name, m in models.items()}


def _net(shortcut: str = "A") -> torch.nn.Module:
    torch.manual_seed(0)
    return get_model("resnet20", shortcut=shortcut, num_classes=3, in_channels=1).eval()


# ---------------------------------------------------------------- sampling


def test_sampled_configurations_are_unique_within_bounds_and_of_every_kind():
    channels = [16, 16, 32, 32, 64, 64]
    variable = [True, True, True, False, True, True]
    cfgs = sample_configs(channels, variable, SamplerConfig(configs=30, uniform=5, stage_share=0.3, seed=1),
                          given=[[8, 8, 16, 32, 32, 32]])
    assert cfgs[0].source == "dense" and list(cfgs[0].widths) == channels
    assert len({c.widths for c in cfgs}) == len(cfgs)
    kinds = [c.source for c in cfgs]
    assert kinds.count("uniform") == 5 and kinds.count("given") == 1
    assert kinds.count("stage") == round(0.3 * 25) and kinds.count("layer") == 25 - round(0.3 * 25)
    for c in cfgs:
        assert all(1 <= w <= d for w, d in zip(c.widths, channels, strict=True))
        assert c.widths[3] == 32      # not a variable group: stays dense
    stage = next(c for c in cfgs if c.source == "stage")
    # groups of one dense width (one "stage") share one kept fraction
    assert stage.widths[0] == stage.widths[1] and stage.widths[4] == stage.widths[5]


def test_uniform_widths_follow_the_uniform_baselines_rule():
    groups = find_groups(_net(), torch.zeros(SHAPE)).select(lambda g: True)
    for r in (0.0, 0.3, 0.5, 0.7, 0.95):
        assert uniform_widths([g.channels for g in groups], r) == list(widths_from_ratio(groups, r).values())


# ---------------------------------------------------------------- networks at given widths


@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_fast_builder_gives_the_shapes_and_copies_of_surgery(shortcut):
    dense = _net(shortcut)
    builder = NetworkBuilder(dense, torch.zeros(SHAPE))
    assert builder.fast
    g = torch.Generator().manual_seed(3)
    for _ in range(3):
        widths = [int(torch.randint(1, c + 1, (1,), generator=g)) for c in builder.channels]
        fast = builder.build(widths)
        copy_ = get_model("resnet20", shortcut=shortcut, num_classes=3, in_channels=1)
        copy_.load_state_dict(dense.state_dict())
        groups = find_groups(copy_, torch.zeros(SHAPE))
        keep = {gid: torch.arange(c) < w for gid, c, w in zip(builder.ids, builder.channels, widths, strict=True)}
        slow = prune_channels(copy_, groups, keep).eval()
        # same modules, same shapes, the same option-A channel copies (first channels kept) ...
        assert module_records(fast) == module_records(slow)
        # ... and the same weights: surgery keeps the first channels, the builder slices them
        x = torch.randn(2, *SHAPE[1:])
        torch.testing.assert_close(fast(x), slow(x))
        assert count_cost(fast, SHAPE).macs == round(float(builder.cost_model.macs(dict(zip(builder.ids, widths, strict=True)))))


def test_builder_falls_back_to_surgery_for_zero_widths():
    dense = _net()
    builder = NetworkBuilder(dense, torch.zeros(SHAPE))
    widths = dict(zip(builder.ids, builder.channels, strict=True))
    inner = next(g.id for g in builder.groups if not g.residual)
    widths[inner] = 0
    net = builder.build(widths)            # checks its MACs against the cost model itself
    assert net(torch.zeros(2, *SHAPE[1:])).shape == (2, 3)


# ---------------------------------------------------------------- building, caching, refusing


def test_dataset_rows_hold_the_measurements_of_their_own_networks(tmp_path):
    dense = _net()
    data = build_dataset(dense, torch.zeros(SHAPE), sampler=SAMPLER, settings=SETTINGS, measure_fn=FakeMeasure(),
                         fingerprint=FP_A, progress=False)
    builder = NetworkBuilder(dense, torch.zeros(SHAPE))
    assert len(data["rows"]) == 11 and data["rows"][0]["source"] == "dense"
    for row in data["rows"][:4]:
        net = builder.build(row["widths"])
        for bs in (1, 4):
            assert row["latency"][str(bs)]["median_ms"] == pytest.approx(fake_latency(net, SHAPE[1:], bs))
        assert row["macs"] == count_cost(net, SHAPE).macs
    assert data["rows"][0]["latency"]["1"]["ratio_to_dense"] == pytest.approx(1.0)
    path = save_dataset(data, tmp_path / "d.json")
    ds = load_dataset(path)
    assert ds.noise(1)["repeat_p90"] == 0.0 and ds.noise(1)["rechecked"] == 3   # a deterministic "device"
    assert ds.dense_ms(4) == pytest.approx(fake_latency(dense, SHAPE[1:], 4))
    curve = ds.uniform_curve(1)
    assert curve[0][0] == 1.0 and all(a[1] >= b[1] for a, b in itertools.pairwise(curve))  # monotone in MACs here


def test_the_layer_table_sums_each_layers_measured_latency_at_its_width(tmp_path):
    dense = _net()
    data = build_dataset(dense, torch.zeros(SHAPE), sampler=SAMPLER, settings=SETTINGS, measure_fn=FakeMeasure(),
                         fingerprint=FP_A, progress=False)
    ds = load_dataset(save_dataset(data, tmp_path / "d.json"))
    table = ds.layer_table()
    # at dense widths every layer sits on a grid point: the sum of the layers' fake latencies alone
    from prunerep.pruning.cost import trace_layers

    expected = {}
    for layer in trace_layers(dense, torch.zeros(SHAPE)):
        m = dense.get_submodule(layer.name)
        expected[layer.name] = 0.05 + 1e-5 * layer.macs * 1 ** 0.9
        assert m is not None
    assert table.predict(ds.channels, 1) == pytest.approx(sum(expected.values()))
    # interpolation is monotone in the widths here (the fake latency grows with MACs)
    half = [max(1, c // 2) for c in ds.channels]
    assert table.predict(half, 1) < table.predict(ds.channels, 1)


def test_dataset_is_reused_for_the_same_fingerprint_and_rebuilt_for_another(tmp_path):
    dense, x = _net(), torch.zeros(SHAPE)
    measure = FakeMeasure()
    a1, built = ensure_dataset(tmp_path, "resnet20", dense, x, sampler=SAMPLER, settings=SETTINGS,
                               measure_fn=measure, fingerprint=FP_A, progress=False)
    assert built and measure.calls > 0
    calls = measure.calls
    a2, built = ensure_dataset(tmp_path, "resnet20", dense, x, sampler=SAMPLER, settings=SETTINGS,
                               measure_fn=measure, fingerprint=FP_A, progress=False)
    assert not built and measure.calls == calls and a2.path == a1.path and a2.data == a1.data
    b, built = ensure_dataset(tmp_path, "resnet20", dense, x, sampler=SAMPLER, settings=SETTINGS,
                              measure_fn=measure, fingerprint=FP_B, progress=False)
    assert built and measure.calls > calls and b.path != a1.path
    assert a1.path.exists() and b.data["fingerprint"]["device_name"] == "fake CPU B"
    # other threads are another device key too
    other = MeasureSettings(**{**SETTINGS.__dict__, "threads": 2})
    _, built = ensure_dataset(tmp_path, "resnet20", dense, x, sampler=SAMPLER, settings=other,
                              measure_fn=measure, fingerprint=FP_A, progress=False)
    assert built


def _built(tmp_path):
    ds, _ = ensure_dataset(tmp_path, "resnet20", _net(), torch.zeros(SHAPE), sampler=SAMPLER, settings=SETTINGS,
                           measure_fn=FakeMeasure(), fingerprint=FP_A, progress=False)
    return ds


def _ensure_again(tmp_path):
    return ensure_dataset(tmp_path, "resnet20", _net(), torch.zeros(SHAPE), sampler=SAMPLER, settings=SETTINGS,
                          measure_fn=FakeMeasure(), fingerprint=FP_A, progress=False)


def test_a_truncated_dataset_file_is_refused_as_corrupt(tmp_path):
    path = _built(tmp_path).path
    path.write_text(path.read_text()[:500])
    with pytest.raises(LatencyDatasetError, match="corrupt.*delete"):
        _ensure_again(tmp_path)


def test_an_edited_dataset_file_is_refused_by_its_digest(tmp_path):
    path = _built(tmp_path).path
    data = json.loads(path.read_text())
    data["rows"][1]["latency"]["1"]["median_ms"] *= 0.5     # valid JSON, wrong content
    path.write_text(json.dumps(data))
    with pytest.raises(LatencyDatasetError, match="does not match its digest"):
        _ensure_again(tmp_path)


def test_a_dataset_of_another_device_under_this_devices_name_is_refused(tmp_path):
    ds_a = _built(tmp_path)
    other = tmp_path / "other"
    ds_b, _ = ensure_dataset(other, "resnet20", _net(), torch.zeros(SHAPE), sampler=SAMPLER, settings=SETTINGS,
                             measure_fn=FakeMeasure(), fingerprint=FP_B, progress=False)
    ds_a.path.write_text(ds_b.path.read_text())          # B's measurements where A's belong
    with pytest.raises(LatencyDatasetError, match="foreign.*another device"):
        _ensure_again(tmp_path)


def test_a_dataset_of_another_network_is_refused(tmp_path):
    ds = _built(tmp_path)
    other_net = {**ds.data["structure"], "channels": [1] * len(ds.channels)}
    with pytest.raises(LatencyDatasetError, match="foreign.*another network"):
        load_dataset(ds.path, structure=other_net)


def test_a_file_of_another_format_is_refused(tmp_path):
    path = _built(tmp_path).path
    path.write_text(json.dumps({"format": "something else", "rows": []}))
    with pytest.raises(LatencyDatasetError, match="not a latency dataset of this project"):
        _ensure_again(tmp_path)


def test_given_configurations_are_appended_without_measuring_the_rest_again(tmp_path):
    ds = _built(tmp_path)
    given = [[max(1, c // 3) for c in ds.channels]]
    measure = FakeMeasure()

    def ensure(**kw):
        return ensure_dataset(tmp_path, "resnet20", _net(), torch.zeros(SHAPE), sampler=SAMPLER, settings=SETTINGS,
                              measure_fn=measure, fingerprint=FP_A, progress=False, given=given, **kw)

    with pytest.raises(LatencyDatasetError, match="measuring was not allowed"):
        ensure(allow_build=False)          # a reader never measures
    ds2, measured = ensure()
    assert measured and measure.calls == len(SETTINGS.batch_sizes)     # one chunk: the new network + dense
    assert len(ds2) == len(ds) + 1 and ds2.rows[:len(ds)] == ds.rows
    assert ds2.rows[-1]["source"] == "given" and ds2.rows[-1]["widths"] == given[0]
    _, measured = ensure(allow_build=False)
    assert not measured and measure.calls == len(SETTINGS.batch_sizes)


def test_given_rows_of_an_earlier_request_are_left_out_and_rechecks_follow_their_rows(tmp_path):
    import dataclasses

    channels = [g.channels for g in find_groups(_net(), torch.zeros(SHAPE))]
    g1, g2 = [max(1, c // 3) for c in channels], [max(1, c // 2) for c in channels]
    every = dataclasses.replace(SETTINGS, recheck=100)       # every row measured twice: given ones too
    ds, _ = ensure_dataset(tmp_path, "resnet20", _net(), torch.zeros(SHAPE), sampler=SAMPLER, settings=every,
                           measure_fn=FakeMeasure(), fingerprint=FP_A, progress=False, given=[g1, g2])
    assert ds.sources().count("given") == 2 and len(ds.data["recheck"]) == len(ds) - 1   # all but dense

    def rechecked(d):
        return sorted((tuple(d.rows[c["row"]]["widths"]), c["latency"]["1"]) for c in d.data["recheck"])

    only_g2 = ds.restrict_given([dict(zip(ds.group_ids, g2, strict=True))])     # a mapping, as records hold it
    assert len(only_g2) == len(ds) - 1 and [r["widths"] for r in only_g2.rows if r["source"] == "given"] == [g2]
    assert rechecked(only_g2) == [x for x in rechecked(ds) if x[0] != tuple(g1)]
    assert only_g2.digest == ds.digest and only_g2.path == ds.path          # still names the file
    assert only_g2.noise(1)["rechecked"] == len(ds) - 2
    none = ds.restrict_given([])
    assert "given" not in none.sources() and len(none) == len(ds) - 2
    assert ds.restrict_given([g1, g2]) is ds


def test_the_default_measure_function_reads_the_engines_harness(monkeypatch):
    import prunerep.pruning.latency as latency
    from prunerep.pruning.latency_dataset import harness_measure

    calls = {}

    def fake_compare(models, input_shape, **kw):
        calls.update(kw, input_shape=input_shape)
        return [{"model": name, "median_ms": 2.0 + i, "iqr_ms": 0.1, "min_ms": 1.9, "repeats": kw["repeats"],
                 "paired_ratio": (2.0 + i) / 2.0} for i, name in enumerate(models)]

    monkeypatch.setattr(latency, "compare_latency", fake_compare)
    out = harness_measure(threads=2, device="cpu")({"dense": _net(), "c1": _net()}, (1, 8, 8), 64, 3, 7)
    assert calls == {"batch_sizes": (64,), "warmup": 3, "repeats": 7, "threads": 2, "device": "cpu",
                     "input_shape": (1, 8, 8)}
    assert out["c1"] == {"median_ms": 3.0, "iqr_ms": 0.1, "min_ms": 1.9, "repeats": 7, "paired_ratio": 1.5}
