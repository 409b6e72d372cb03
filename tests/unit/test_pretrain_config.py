"""Per-model overrides of the pretrain recipe (`pretrain.models.<key>.optim`)."""

from __future__ import annotations

import pytest

from prunerep.config import ConfigError, from_dict
from prunerep.stages.pretrain import PretrainConfig


def _cfg(models: dict) -> PretrainConfig:
    return from_dict(PretrainConfig, {"models": models, "optim": {"epochs": 3, "lr": 0.2, "schedule": "onecycle"}},
                     path="pretrain")


def test_model_override_is_merged_over_the_shared_recipe():
    cfg = _cfg({"a": {"name": "resnet20"}, "b": {"name": "vgg16_bn", "optim": {"epochs": 1.5, "lr": 0.1}}})
    assert cfg.optim_for("a") == cfg.optim
    b = cfg.optim_for("b")
    assert (b.epochs, b.lr, b.schedule) == (1.5, 0.1, "onecycle")  # untouched keys are inherited


def test_bad_override_names_the_model_key():
    with pytest.raises(ConfigError, match=r"pretrain\.models\.b\.optim\.epoch: unknown key"):
        _cfg({"b": {"name": "vgg16_bn", "optim": {"epoch": 2}}})
    with pytest.raises(ConfigError, match=r"pretrain\.models\.b\.optim"):
        _cfg({"b": {"name": "vgg16_bn", "optim": {"epochs": -1}}})
