"""Dense checkpoints from published weights (torchvision's), used as they are: never trained here.

The ImageNet settings of the papers start from the standard pretrained networks (GReg, DAIS,
W-Gates and GDP prune torchvision's ResNet-34/50 and MobileNetV2 or networks trained the same
way); retraining them is weeks of GPU time and not what the papers compare. A
``pretrain.published`` entry names such weights::

    pretrain:
      profiles:
        paper:
          published:
            resnet50: {name: tv_resnet50, weights: IMAGENET1K_V1, dataset: imagenet}

and its key is used wherever a ``pretrain.models`` key is (a study's ``model``). The first study
that needs it writes ``artifacts/pretrain/<key>/model.pt`` (the same format as a trained
checkpoint, so runs, resumption and launches under torchrun read it unchanged) from torchvision's
weights: downloaded into torch hub's cache (``$TORCH_HOME/hub/checkpoints``, checked against the
hash in the file name) or read from there. A machine without internet takes a copy of that file
(see `missing_weights_message`); ``python -m prunerep.stages published <key>`` fetches ahead.

Why no DVC stage: `pretrain@<key>` stages come from one ``foreach`` over ``pretrain.models``,
the same in every profile, so an ImageNet entry there would be a stage (and a download) in the
CPU profiles too. The weights' name pins their bytes (torchvision's URLs carry the hash), and a
run's identity includes the digest of ``model.pt``, so nothing is reused across other weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

__all__ = ["PublishedEntry", "ensure_published", "missing_weights_message", "published_weights"]


@dataclass(frozen=True)
class PublishedEntry:
    """Published weights of a registry model (a ``pretrain.published`` entry)."""

    name: str                                      # registry name, e.g. tv_resnet50 (or torchvision:<fn>)
    weights: str                                   # torchvision weights member, e.g. IMAGENET1K_V1 or DEFAULT
    dataset: str                                   # data.dataset they were trained on, e.g. imagenet
    kwargs: dict[str, Any] = field(default_factory=dict)   # other builder kwargs (num_classes must match)

    def __post_init__(self) -> None:
        if not isinstance(self.weights, str) or not self.weights:
            raise ValueError(f"weights: name a torchvision weights member (e.g. 'IMAGENET1K_V1'), got {self.weights!r}")
        if "weights" in self.kwargs:
            raise ValueError("kwargs.weights: give the weights as the entry's `weights` key, not in kwargs")


def _torchvision_fn(name: str) -> str:
    from prunerep.models.registry import TORCHVISION_PREFIX

    if name.startswith(TORCHVISION_PREFIX):
        return name[len(TORCHVISION_PREFIX):]
    if name.startswith("tv_"):
        return name[len("tv_"):]
    raise ValueError(f"name: {name!r} is not a torchvision model; published weights exist for the "
                     "registry's tv_* models and 'torchvision:<fn_name>'")


def published_weights(entry: PublishedEntry) -> Any:
    """The torchvision weights enum member `entry` names (a ``ValueError`` names the choices)."""
    import torchvision

    fn = _torchvision_fn(entry.name)
    try:
        enum = torchvision.models.get_model_weights(fn)
    except (ValueError, KeyError):
        raise ValueError(f"name: torchvision publishes no weights for {fn!r}") from None
    try:
        return enum[entry.weights]
    except KeyError:
        choices = [m for m in enum.__members__]
        raise ValueError(f"weights: {entry.weights!r} is not a member of {enum.__name__}; "
                         f"choose one of {choices}") from None


def missing_weights_message(key: str, weights: Any, reason: str) -> str:
    """What to do when torchvision's file cannot be had (no internet, proxy, ...)."""
    cache = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    return (f"pretrain.published.{key}: could not get {type(weights).__name__}.{weights.name} ({reason}). "
            f"On a machine without internet, copy {weights.url} to {cache} (torch hub's cache; "
            "$TORCH_HOME moves it) and rerun; or run `python -m prunerep.stages published "
            f"{key}` where the internet is reachable.")


def _written_weights(path: Path) -> str | None:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return ckpt.get("meta", {}).get("weights")
    except Exception:  # unreadable or foreign: rewritten below
        return None


def ensure_published(key: str, entry: PublishedEntry, path: str | Path) -> Path:
    """Write ``path`` (a prunerep checkpoint) from `entry`'s weights unless it already holds them.

    Returns:
        ``path``.

    Raises:
        ValueError: unknown model or weights name.
        RuntimeError: the weights file could not be downloaded or read (names where to put it).
    """
    from prunerep.models.checkpoint import save_model
    from prunerep.models.registry import build_model

    path = Path(path)
    weights = published_weights(entry)
    label = f"{type(weights).__name__}.{weights.name}"
    if path.exists() and _written_weights(path) == label:
        return path
    try:
        model = build_model({"name": entry.name, "kwargs": {**entry.kwargs, "weights": weights.name}})
    except (OSError, RuntimeError, EOFError) as err:   # URLError is an OSError; a truncated file a RuntimeError
        raise RuntimeError(missing_weights_message(key, weights, f"{type(err).__name__}: {err}")) from err
    meta = {"source": "torchvision", "weights": label, "url": weights.url, "dataset": entry.dataset, "key": key,
            "reported": {k: v for k, v in weights.meta.items() if k in ("_metrics", "num_params", "recipe")}}
    return save_model(model, path, meta=meta)
