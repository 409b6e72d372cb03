"""Tests of the latency harness: correctness of the protocol, not timing targets."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from prunerep.pruning.latency import (
    LatencyResult,
    compare_latency,
    device_fingerprint,
    measure_latency,
)

SHAPE = (3, 8, 8)
FAST = {"warmup": 1, "repeats": 3}


def tiny_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    )


class Sleeper(nn.Module):
    """Forward takes a known time, so the harness's measurement can be checked against it."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.seconds)
        return x


class SharedLog(list):
    """A list that deep copies share, so calls made on the harness's converted copy are seen."""

    def __deepcopy__(self, memo: dict) -> SharedLog:
        return self


class Probe(nn.Module):
    """Records the conditions each forward call ran under."""

    def __init__(self, name: str = "", log: SharedLog | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)  # 3x3: a 1x1 kernel is both layouts at once
        self.name = name
        self.log = log if log is not None else SharedLog()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.log.append(
            {
                "name": self.name,
                "training": self.training,
                "inference": torch.is_inference_mode_enabled(),
                "channels_last": x.is_contiguous(memory_format=torch.channels_last)
                and not x.is_contiguous(),
                "weight_channels_last": self.conv.weight.is_contiguous(
                    memory_format=torch.channels_last
                )
                and not self.conv.weight.is_contiguous(),
                "dtype": x.dtype,
                "batch": x.shape[0],
            }
        )
        return self.conv(x)


def test_result_fields_are_sane() -> None:
    results = measure_latency(tiny_net(), SHAPE, batch_sizes=(1, 4), **FAST)
    assert [r.batch_size for r in results] == [1, 4]
    for r in results:
        assert isinstance(r, LatencyResult)
        assert r.median_ms > 0 and r.min_ms > 0
        assert r.min_ms <= r.median_ms <= max(r.mean_ms, r.median_ms)
        assert r.iqr_ms >= 0 and r.std_ms >= 0
        assert r.repeats == 3 and r.warmup == 1
        assert r.per_image_ms == pytest.approx(r.median_ms / r.batch_size)
        assert r.images_per_s == pytest.approx(1e3 * r.batch_size / r.median_ms)
        assert r.device == "cpu" and r.dtype == "float32" and r.channels_last is False
        assert r.threads == torch.get_num_threads()
        d = r.as_dict()
        assert d["median_ms"] == r.median_ms and isinstance(d["fingerprint"], dict)


def test_fingerprint_describes_machine() -> None:
    fp = device_fingerprint(torch.device("cpu"))
    for key in ("device_name", "cpu", "torch", "num_threads", "os", "python"):
        assert fp[key] not in (None, "")
    assert fp["torch"] == torch.__version__


def test_sleeping_model_measures_its_sleep() -> None:
    # Generous upper bound: other processes may share the cores; this checks units and that the
    # forward pass (and only it) is timed once per repeat.
    (r,) = measure_latency(Sleeper(0.005), SHAPE, batch_sizes=(1,), warmup=0, repeats=5)
    assert 4.5 <= r.median_ms <= 100.0
    assert r.min_ms >= 4.5


def test_min_time_adds_repeats() -> None:
    (r,) = measure_latency(
        Sleeper(0.002), SHAPE, batch_sizes=(1,), warmup=0, repeats=1, min_time_s=0.01
    )
    assert r.repeats >= 2  # 1 repeat of >= 2 ms cannot reach 10 ms


def test_threads_set_during_run_and_restored() -> None:
    before = torch.get_num_threads()
    wanted = 1 if before != 1 else 2
    seen: list[int] = []

    class ThreadProbe(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(torch.get_num_threads())
            return x

    try:
        (r,) = measure_latency(ThreadProbe(), SHAPE, batch_sizes=(1,), threads=wanted, **FAST)
        assert set(seen) == {wanted} and r.threads == wanted
        assert torch.get_num_threads() == before
    finally:
        torch.set_num_threads(before)


def test_threads_restored_after_error() -> None:
    before = torch.get_num_threads()

    class Boom(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("boom")

    try:
        with pytest.raises(RuntimeError, match="boom"):
            measure_latency(Boom(), SHAPE, batch_sizes=(1,), threads=1, **FAST)
        assert torch.get_num_threads() == before
    finally:
        torch.set_num_threads(before)


def test_eval_inference_mode_and_flags_restored() -> None:
    probe = Probe()
    model = nn.Sequential(nn.BatchNorm2d(3), probe)
    model.train()
    model[0].eval()  # mixed state (e.g. frozen BN) must survive, not be flattened to train()
    flags = [m.training for m in model.modules()]
    measure_latency(model, SHAPE, batch_sizes=(2,), **FAST)
    assert probe.log and all(not e["training"] and e["inference"] for e in probe.log)
    assert [m.training for m in model.modules()] == flags


@pytest.mark.parametrize(
    "options", [{}, {"channels_last": True}, {"dtype": torch.float64}], ids=["plain", "cl", "f64"]
)
def test_model_not_modified(options: dict) -> None:
    model = tiny_net()
    model.train()
    params = dict(model.named_parameters())
    state = {k: (v.clone(), v.stride(), v.dtype) for k, v in model.state_dict().items()}
    measure_latency(model, SHAPE, batch_sizes=(2,), **FAST, **options)
    assert model.training
    assert dict(model.named_parameters()) == params  # same Parameter objects
    for k, v in model.state_dict().items():
        ref, stride, dtype = state[k]
        assert v.dtype == dtype and v.stride() == stride
        assert torch.equal(v, ref), k  # eval mode: BN running stats untouched


def test_channels_last_runs_on_converted_copy() -> None:
    probe = Probe()
    (r,) = measure_latency(probe, SHAPE, batch_sizes=(2,), channels_last=True, **FAST)
    assert r.channels_last
    assert probe.log and all(e["channels_last"] and e["weight_channels_last"] for e in probe.log)
    assert probe.conv.weight.is_contiguous()


def test_channels_last_rejects_non_image_input() -> None:
    with pytest.raises(ValueError, match="rank 4 or 5"):
        measure_latency(nn.Linear(5, 2), (5,), batch_sizes=(1,), channels_last=True, **FAST)


def test_dtype_option() -> None:
    probe = Probe()
    (r,) = measure_latency(probe, SHAPE, batch_sizes=(1,), dtype=torch.float64, **FAST)
    assert r.dtype == "float64" and all(e["dtype"] == torch.float64 for e in probe.log)


@pytest.mark.parametrize(
    "kw", [{"repeats": 0}, {"warmup": -1}, {"batch_sizes": ()}, {"batch_sizes": (0,)},
           {"threads": 0}, {"min_time_s": -1.0}],
)  # fmt: skip
def test_invalid_arguments(kw: dict) -> None:
    args = {**FAST, "batch_sizes": (1,), **kw}
    with pytest.raises(ValueError):
        measure_latency(tiny_net(), SHAPE, **args)


def test_compare_interleaves_and_reports_ratios() -> None:
    log = SharedLog()
    models = {"a": Probe("a", log), "b": Probe("b", log)}
    rows = compare_latency(models, SHAPE, batch_sizes=(1, 2), warmup=1, repeats=4)
    assert [(r["model"], r["batch_size"]) for r in rows] == [
        ("a", 1), ("b", 1), ("a", 2), ("b", 2)
    ]  # fmt: skip
    # Per batch size: 2 warm-up calls, then 4 rounds alternating with a rotating start.
    names = [e["name"] for e in log if e["batch"] == 1]
    warmup, timed = names[:2], names[2:]
    assert warmup == ["a", "b"]
    assert timed == ["a", "b", "b", "a", "a", "b", "b", "a"]
    for r in rows:
        assert r["repeats"] == 4 and r["median_ms"] > 0
        assert r["paired_ratio"] > 0 and r["paired_ratio_iqr"] >= 0
        if r["model"] == "a":
            assert r["ratio_to_ref"] == 1.0 and r["paired_ratio"] == 1.0


def test_compare_detects_slower_model() -> None:
    rows = compare_latency(
        {"fast": Sleeper(0.002), "slow": Sleeper(0.008)}, SHAPE,
        batch_sizes=(1,), warmup=0, repeats=3,
    )  # fmt: skip
    slow = next(r for r in rows if r["model"] == "slow")
    assert slow["paired_ratio"] > 1.5 and slow["ratio_to_ref"] > 1.5


def test_compare_rejects_unknown_reference_and_kwargs() -> None:
    with pytest.raises(KeyError):
        compare_latency({"a": tiny_net()}, SHAPE, reference="zzz", **FAST)
    with pytest.raises(TypeError):
        compare_latency({"a": tiny_net()}, SHAPE, bogus=1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_path() -> None:
    model = tiny_net()  # stays on CPU: measuring on CUDA must work on a copy
    (r,) = measure_latency(model, SHAPE, batch_sizes=(2,), device="cuda", **FAST)
    assert r.device.startswith("cuda:") and r.median_ms > 0
    assert r.fingerprint["device_type"] == "cuda" and r.fingerprint["cuda"]
    assert next(model.parameters()).device.type == "cpu"
    on_gpu = tiny_net().cuda()
    (r2,) = measure_latency(on_gpu, SHAPE, batch_sizes=(2,), channels_last=True, **FAST)
    assert r2.device == r.device and r2.channels_last
