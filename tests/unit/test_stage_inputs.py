"""`stage_inputs`: a stage's part of params.yaml, resolved, so that edits to a profile it does not
read leave its results up to date (dvc.yaml's stages depend on this file, not on params sections)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from prunerep.config import ConfigError, main, stage_inputs, write_stage_inputs

PARAMS: dict[str, Any] = {
    "profile": "default",
    "data": {"dataset": "cifar10", "val_size": 500, "profiles": {"smoke": {"val_size": 64}}},
    "pretrain": {"models": {"r20": {"name": "resnet20"}, "v16": {"name": "vgg16_bn"}},
                 "optim": {"lr": 0.1, "epochs": 200},
                 "profiles": {"smoke": {"optim": {"epochs": 1}},
                              "default": {"optim": {"epochs": 3}, "models": {"r20": {"optim": {"epochs": 4}}}},
                              "paper": {"optim": {"epochs": 200}}}},
    "gdp": {"seeds": [0, 1], "epochs": 2.5,
            "profiles": {"smoke": {"epochs": 1}, "default": {"epochs": 2}, "paper": {"epochs": 160}}},
}


def _edited(path: str, value: Any) -> dict[str, Any]:
    params = copy.deepcopy(PARAMS)
    *head, last = path.split(".")
    node = params
    for key in head:
        node = node[key]
    node[last] = value
    return params


def test_resolves_the_active_and_the_reference_profile() -> None:
    got = stage_inputs(PARAMS, "gdp")
    assert got["profile"] == "default"
    assert got["gdp"] == {"default": {"seeds": [0, 1], "epochs": 2}, "paper": {"seeds": [0, 1], "epochs": 160}}
    assert got["data"]["default"] == {"dataset": "cifar10", "val_size": 500}
    assert got["pretrain.models"] == {"r20": "resnet20", "v16": "vgg16_bn"}


@pytest.mark.parametrize("path, value, changes", [
    ("gdp.profiles.smoke.epochs", 7, False),          # a profile the stage does not run or compare with
    ("data.profiles.smoke.val_size", 32, False),
    ("pretrain.optim.lr", 0.05, False),                # pretraining's recipe: read through its checkpoint
    ("gdp.profiles.default.epochs", 3, True),          # the active profile
    ("gdp.profiles.paper.epochs", 200, True),          # the papers' recipes (the notebook's recipe table)
    ("gdp.seeds", [0], True),                          # a shared key
    ("data.val_size", 400, True),
    ("pretrain.models.r20.name", "resnet32", True),    # which network a checkpoint must be
    ("profile", "smoke", True),
])
def test_only_what_the_stage_reads_changes_it(path: str, value: Any, changes: bool) -> None:
    before = stage_inputs(PARAMS, "gdp")
    after = stage_inputs(_edited(path, value), "gdp")
    assert (after != before) is changes


def test_pretrain_reads_one_model_at_the_active_profile() -> None:
    got = stage_inputs(PARAMS, "pretrain", model="r20")
    assert got["pretrain"]["models"] == {"r20": {"name": "resnet20", "optim": {"epochs": 4}}}
    assert got["pretrain"]["optim"] == {"lr": 0.1, "epochs": 3}
    assert "profiles" not in got["pretrain"]
    same = stage_inputs(_edited("pretrain.models.v16.name", "vgg19_bn"), "pretrain", model="r20")
    assert same == got                                  # another model's entry
    assert stage_inputs(_edited("pretrain.profiles.paper.optim", {"epochs": 1}), "pretrain", model="r20") == got
    assert stage_inputs(_edited("pretrain.profiles.default.optim", {"epochs": 5}), "pretrain", model="r20") != got
    with pytest.raises(ConfigError, match=r"pretrain\.models\.r56: no such entry"):
        stage_inputs(PARAMS, "pretrain", model="r56")


def test_cli_writes_canonical_json_and_names_a_missing_section(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(PARAMS))
    out = tmp_path / "inputs" / "gdp.json"
    assert main(["inputs", "gdp", "--out", str(out), "--params", str(params)]) == 0
    assert json.loads(out.read_text()) == stage_inputs(PARAMS, "gdp")
    assert out.read_text() == json.dumps(stage_inputs(PARAMS, "gdp"), indent=1, sort_keys=True) + "\n"
    assert write_stage_inputs("gdp", out, params_path=params) is False   # same bytes: not rewritten
    params.write_text(yaml.safe_dump(_edited("gdp.profiles.smoke.epochs", 9)))
    assert write_stage_inputs("gdp", out, params_path=params) is False
    params.write_text(yaml.safe_dump(_edited("gdp.seeds", [3])))            # a shared key
    assert write_stage_inputs("gdp", out, params_path=params) is True
    capsys.readouterr()
    assert main(["inputs", "dsa", "--out", str(out), "--params", str(params)]) == 2
    assert "dsa: section missing from params.yaml" in capsys.readouterr().err
