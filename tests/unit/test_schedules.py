"""Learning-rate schedules: endpoints, milestones, warm-up."""

import itertools
import math

import pytest

from prunerep.engine.schedules import lr_at


def test_cosine_endpoints_and_midpoint():
    kw = dict(base_lr=0.1, schedule="cosine", steps_per_epoch=10)
    assert lr_at(0, 100, **kw) == pytest.approx(0.1)
    assert lr_at(50, 100, **kw) == pytest.approx(0.05)
    assert lr_at(100, 100, **kw) == pytest.approx(0.0, abs=1e-12)


def test_multistep_drops_at_epoch_milestones():
    kw = dict(base_lr=0.1, schedule="multistep", steps_per_epoch=10, milestones=[100, 150], gamma=0.1)
    assert lr_at(999, 2000, **kw) == pytest.approx(0.1)
    assert lr_at(1000, 2000, **kw) == pytest.approx(0.01)
    assert lr_at(1500, 2000, **kw) == pytest.approx(0.001)


def test_onecycle_rises_linearly_then_decays_to_floor():
    kw = dict(base_lr=0.2, schedule="onecycle", steps_per_epoch=10, warmup_steps=10)
    assert lr_at(0, 100, **kw) == pytest.approx(0.02)
    assert lr_at(9, 100, **kw) == pytest.approx(0.2)
    assert lr_at(100, 100, **kw) == pytest.approx(0.0, abs=1e-12)
    values = [lr_at(s, 100, **kw) for s in range(10, 101)]
    assert all(a >= b for a, b in itertools.pairwise(values))


def test_warmup_on_top_of_constant_and_unknown_schedule():
    assert lr_at(4, 100, base_lr=1.0, schedule="constant", steps_per_epoch=10, warmup_steps=10) == pytest.approx(0.5)
    assert math.isclose(lr_at(50, 100, base_lr=1.0, schedule="constant", steps_per_epoch=10), 1.0)
    with pytest.raises(ValueError, match="unknown lr schedule 'cosin'"):
        lr_at(0, 10, base_lr=1.0, schedule="cosin", steps_per_epoch=1)
