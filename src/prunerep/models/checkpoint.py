"""Model checkpoints as data: architecture spec + per-layer shapes + state dict.

A pruned network no longer fits its original class's default shapes (the classic "state_dict
size mismatch" of pruning libraries). We therefore store, next to the state dict:

- ``arch``: the registry spec the dense model was built from (``model.arch_spec``);
- ``modules``: for every module whose class is in an allow-list (convs, norms, linears and the
  classes the pruning engine registers, e.g. a constant-output module for removed branches), its
  qualified class name and constructor arguments.

Loading builds the dense model from ``arch`` and replaces every module whose recorded class or
arguments differ by ``cls(**args)``, then loads the state dict strictly. Everything in the file
is tensors, numbers, strings, lists and dicts, so ``torch.load(weights_only=True)`` works and no
code is unpickled.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunerep.io import atomic_torch_save, load_error_reason

FORMAT = "prunerep.model/1"

ArgsFn = Callable[[nn.Module], dict[str, Any]]
_CLASSES: dict[str, tuple[type[nn.Module], ArgsFn]] = {}


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def register_module_class(cls: type[nn.Module], args_fn: ArgsFn) -> type[nn.Module]:
    """Allow `cls` in checkpoints; `args_fn(module)` returns JSON-able constructor kwargs."""
    _CLASSES[_qualname(cls)] = (cls, args_fn)
    return cls


def _conv_args(m: nn.modules.conv._ConvNd) -> dict[str, Any]:
    return {"in_channels": m.in_channels, "out_channels": m.out_channels,
            "kernel_size": list(m.kernel_size), "stride": list(m.stride),
            "padding": m.padding if isinstance(m.padding, str) else list(m.padding),
            "dilation": list(m.dilation), "groups": m.groups, "bias": m.bias is not None,
            "padding_mode": m.padding_mode}


def _bn_args(m: nn.modules.batchnorm._BatchNorm) -> dict[str, Any]:
    return {"num_features": m.num_features, "eps": m.eps, "momentum": m.momentum,
            "affine": m.affine, "track_running_stats": m.track_running_stats}


for _cls in (nn.Conv1d, nn.Conv2d, nn.Conv3d):
    register_module_class(_cls, _conv_args)
for _cls in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d):
    register_module_class(_cls, _bn_args)
register_module_class(nn.Linear, lambda m: {"in_features": m.in_features, "out_features": m.out_features,
                                            "bias": m.bias is not None})
register_module_class(nn.Identity, lambda m: {})


def module_records(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Class and constructor args of every allow-listed module of `model`, by name."""
    records = {}
    for name, module in model.named_modules():
        key = _qualname(type(module))
        if name and key in _CLASSES:
            records[name] = {"type": key, "args": _CLASSES[key][1](module)}
    return records


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def rebuild(arch: dict[str, Any], modules: dict[str, dict[str, Any]]) -> nn.Module:
    """Dense model from `arch`, then every recorded module whose class/args differ replaced."""
    import prunerep.pruning.surgery  # noqa: F401  (registers the module classes surgery creates)
    from prunerep.models import build_model

    # The state dict supplies every weight: never download pretrained ones while rebuilding.
    kwargs = {k: (None if k in ("weights", "weights_backbone") else v) for k, v in arch.get("kwargs", {}).items()}
    model = build_model({**arch, "kwargs": kwargs})
    model.arch_spec = arch
    current = module_records(model)
    for name, record in modules.items():
        if current.get(name) == record:
            continue
        if record["type"] not in _CLASSES:
            raise ValueError(f"checkpoint: module {name!r} has class {record['type']!r}, which is not "
                             "registered; import the module that defines it (register_module_class).")
        cls = _CLASSES[record["type"]][0]
        _set_submodule(model, name, cls(**record["args"]))
    return model


def save_model(model: nn.Module, path: str | os.PathLike, meta: dict[str, Any] | None = None) -> Path:
    """Write `model` (architecture as data + state dict) atomically to `path`."""
    arch = getattr(model, "arch_spec", None)
    if arch is None:
        raise ValueError("save_model: the model has no `arch_spec`; build it with prunerep.models.build_model")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    # Meta goes through JSON so it holds only plain types (weights_only loading refuses others,
    # e.g. torch's TorchVersion string subclass).
    plain_meta = json.loads(json.dumps(meta or {}, default=str))
    return atomic_torch_save({"format": FORMAT, "arch": json.loads(json.dumps(arch)),
                              "modules": module_records(model), "state_dict": state, "meta": plain_meta}, path)


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu",
               expect_arch: dict[str, Any] | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Load a checkpoint written by `save_model` → (model in eval mode, meta).

    `expect_arch` guards against loading a checkpoint of another architecture: a mismatch
    raises one error naming the file and both architectures.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: checkpoint not found; run the stage that produces it (dvc repro).")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # corrupt file, pickle of arbitrary objects, ...
        raise ValueError(f"{path}: not a readable prunerep checkpoint ({load_error_reason(err)}). "
                         "Delete it and rerun the stage that writes it (`dvc repro`).") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path}: not a prunerep model checkpoint (format {FORMAT!r} expected).")
    if expect_arch is not None and ckpt["arch"] != expect_arch:
        raise ValueError(f"{path}: checkpoint is a {ckpt['arch']} but {expect_arch} was expected. "
                         "Rerun the pretrain stage for this architecture or fix the `arch` key in params.yaml.")
    model = rebuild(ckpt["arch"], ckpt["modules"])
    try:
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path}: weights do not fit the recorded architecture ({err}).") from err
    model.to(map_location)
    model.eval()
    return model, ckpt.get("meta", {})
