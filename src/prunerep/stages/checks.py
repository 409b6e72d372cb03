"""Checks across the sections of params.yaml, run by `python -m prunerep.config check` and by
every stage before any work starts (`prunerep.config.check_params`).

- **Model keys.** Every ``pretrain.models`` key a section will prune (a paper's ``model`` /
  ``models`` keys, ``baseline.models``; each section lists them in ``pretrain_keys()``) must be
  an entry of ``pretrain.models``: the stage ``pretrain@<key>`` that makes its dense checkpoint
  exists only for those.
- **Devices.** Every ``device`` key (``runtime.device``, ``latency.device``, ...) must be
  ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``, in every profile; at the active profile the
  device must also exist on this machine.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

from prunerep.config import ConfigError, _suggest, register_check

DEVICE_TYPES = ("cpu", "cuda", "mps")
DEVICE_HINT = "use auto (CUDA when present, else CPU), cpu, cuda or cuda:N"


def device_problem(value: str, *, here: bool = True) -> str | None:
    """Why the `device:` value `value` cannot be used, or None when it can.

    Args:
        value: a ``device`` key of params.yaml.
        here: also check that this machine has the device (else the spelling only).
    """
    import torch

    if value == "auto":
        return None
    try:
        device = torch.device(value)
    except (RuntimeError, ValueError, TypeError):
        return f"{value!r} is not a device; {DEVICE_HINT}."
    if device.type not in DEVICE_TYPES:
        return f"{value!r} is not a device this project runs on; {DEVICE_HINT}."
    if not here:
        return None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return f"{value!r} requested but this machine has no CUDA device; use auto or cpu."
        if device.index is not None and device.index >= torch.cuda.device_count():
            return (f"{value!r} requested but this machine has {torch.cuda.device_count()} CUDA device(s); "
                    f"use cuda:0 to cuda:{torch.cuda.device_count() - 1}, or auto.")
    if device.type == "mps" and not torch.backends.mps.is_available():
        return f"{value!r} requested but MPS is not available on this machine; use auto or cpu."
    return None


def _device_keys(obj: Any, path: str) -> Iterator[tuple[str, str]]:
    """(key path, value) of every ``device`` string field in a resolved config, at any depth."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if f.name == "device" and isinstance(value, str):
                yield f"{path}.{f.name}", value
            else:
                yield from _device_keys(value, f"{path}.{f.name}")
    elif isinstance(obj, list | tuple):
        for i, value in enumerate(obj):
            yield from _device_keys(value, f"{path}[{i}]")
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            yield from _device_keys(value, f"{path}.{key}")


def _at(profile: str, active: bool) -> str:
    return "" if active else f" (profile {profile})"


@register_check
def check_devices(resolved: Mapping[str, Any], profile: str, active: bool) -> None:
    """Every ``device`` key is a device name; at the active profile, one this machine has."""
    for name, cfg in resolved.items():
        for path, value in _device_keys(cfg, name):
            problem = device_problem(value, here=active)
            if problem:
                raise ConfigError(f"{path}{_at(profile, active)}: {problem}")


@register_check
def check_model_keys(resolved: Mapping[str, Any], profile: str, active: bool) -> None:
    """Every model key a section prunes is an entry of ``pretrain.models`` or ``pretrain.published``."""
    pretrain = resolved.get("pretrain")
    if pretrain is None:
        return
    entries = sorted(pretrain.dense_names())
    for name, cfg in resolved.items():
        keys = getattr(cfg, "pretrain_keys", None)
        if keys is None:
            continue
        for path, key in keys().items():
            if key not in entries:
                raise ConfigError(
                    f"{name}.{path}{_at(profile, active)}: {key!r} is not an entry of pretrain.models or "
                    f"pretrain.published.{_suggest(key, entries)} Use one of {entries}, or add `{key}: {{name: "
                    f"<registered model>}}` to pretrain.models (its dense checkpoint is made by `dvc repro "
                    f"pretrain@{key}`).")
