"""params.yaml validation: unknown keys, wrong types, profiles, the committed file itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from prunerep.config import (
    PROFILES,
    ConfigError,
    check_params,
    deep_merge,
    from_dict,
    merged_section,
    read_params,
    resolve_section,
    set_profile,
)
from prunerep.engine.config import OptimConfig

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Inner:
    lr: float = 0.1
    steps: int = 3


@dataclass(frozen=True)
class Outer:
    name: str
    inner: Inner = Inner()
    tags: list[str] = field(default_factory=list)
    mode: Literal["a", "b"] = "a"
    cap: int | None = None


def test_from_dict_builds_nested_and_converts_yaml_float_strings():
    cfg = from_dict(Outer, {"name": "x", "inner": {"lr": "5e-4"}, "tags": ["t"], "cap": None})
    assert cfg == Outer(name="x", inner=Inner(lr=5e-4, steps=3), tags=["t"])


@pytest.mark.parametrize(("data", "message"), [
    ({"name": "x", "innr": {}}, "innr: unknown key. Did you mean 'inner'?"),
    ({"name": "x", "inner": {"stpes": 1}}, "sec.inner.stpes: unknown key. Did you mean 'steps'?"),
    ({"name": "x", "inner": {"steps": "ten"}}, "sec.inner.steps: expected an integer, got 'ten'"),
    ({"name": "x", "inner": {"steps": 1.5}}, "sec.inner.steps: expected an integer"),
    ({"name": "x", "mode": "c"}, "sec.mode: 'c' is not one of ['a', 'b']"),
    ({"name": "x", "tags": "t"}, "sec.tags: expected a list"),
    ({}, "sec.name: required key is missing"),
])
def test_from_dict_errors_name_the_key(data, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]").replace("?", r"\?")):
        from_dict(Outer, data, "sec")


def test_dataclass_post_init_errors_become_config_errors():
    with pytest.raises(ConfigError, match=r"optim\.epochs must be > 0"):
        from_dict(OptimConfig, {"epochs": 0}, "optim")


def test_profiles_deep_merge_over_shared_keys():
    params = {"profile": "smoke", "s": {"a": {"x": 1, "y": 2}, "profiles": {"smoke": {"a": {"y": 3}}}}}
    assert merged_section(params, "s", "smoke") == {"a": {"x": 1, "y": 3}}
    assert merged_section(params, "s", "paper") == {"a": {"x": 1, "y": 2}}
    assert deep_merge({"a": [1]}, {"a": [2]}) == {"a": [2]}


def test_unknown_profile_name_in_a_section_is_rejected():
    with pytest.raises(ConfigError, match="s.profiles.defualt: unknown profile. Did you mean 'default'"):
        merged_section({"s": {"profiles": {"defualt": {}}}}, "s", "default")


def test_committed_params_yaml_is_valid_for_every_profile():
    params = read_params(ROOT / "params.yaml")
    resolved = check_params(params)
    assert {"data", "pretrain", "baseline"} <= set(resolved)
    for profile in PROFILES:
        cfg = resolve_section("pretrain", params, profile=profile)
        assert cfg.models, profile


def test_typo_in_committed_params_is_caught_before_work(tmp_path):
    text = (ROOT / "params.yaml").read_text().replace("  val_size: 5000", "  val_sise: 5000")
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(ConfigError, match="data.val_sise: unknown key. Did you mean 'val_size'"):
        check_params(params_path=tmp_path / "params.yaml")


def test_unknown_top_level_section(tmp_path):
    text = (ROOT / "params.yaml").read_text() + "\npretrian: {}\n"
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(ConfigError, match="pretrian: unknown top-level section.*Did you mean 'pretrain'"):
        check_params(params_path=tmp_path / "params.yaml")


def test_set_profile_rewrites_only_the_switch(tmp_path):
    path = tmp_path / "params.yaml"
    original = (ROOT / "params.yaml").read_text()
    path.write_text(original)
    set_profile("smoke", path)
    new = path.read_text()
    assert read_params(path)["profile"] == "smoke"
    assert new.replace("profile: smoke", "profile: default", 1) == original
    with pytest.raises(ConfigError):
        set_profile("fast", path)


def test_missing_params_file_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match="params.yaml: file not found"):
        read_params(tmp_path / "params.yaml")


def test_duplicate_keys_are_refused_with_both_lines(tmp_path):
    # PyYAML keeps the last duplicate silently; DVC then refuses params.yaml far from the typo.
    text = (ROOT / "params.yaml").read_text().replace("  val_size: 5000", "  val_size: 5000\n  val_size: 100", 1)
    assert text != (ROOT / "params.yaml").read_text()
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(ConfigError, match=r"duplicate key 'val_size' at line (\d+) \(first at line \d+\)"):
        check_params(params_path=tmp_path / "params.yaml")
