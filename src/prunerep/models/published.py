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
weights: downloaded into torch hub's cache (``$TORCH_HOME/hub/checkpoints``) or read from there,
checked against the hash in the file name either way. A machine without internet takes a copy of that file
(see `missing_weights_message`); ``python -m prunerep.stages published <key>`` fetches ahead.

Why no DVC stage: `pretrain@<key>` stages come from one ``foreach`` over ``pretrain.models``,
the same in every profile, so an ImageNet entry there would be a stage (and a download) in the
CPU profiles too. The weights' name pins their bytes (torchvision's URLs carry the hash), and a
run's identity includes the digest of ``model.pt``, so nothing is reused across other weights.
"""

from __future__ import annotations

import hashlib
import http.client
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

__all__ = ["PublishedEntry", "check_hub_file", "ensure_published", "hub_file", "missing_weights_message",
           "published_weights", "torchvision_fn"]


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


# Registry models that wrap a torchvision builder under another name (its weights fit them)
WRAPPED_TORCHVISION = {"deeplabv3_resnet50": "deeplabv3_resnet50"}   # logits-tensor DeepLabV3 (segmentation.py)


def torchvision_fn(name: str) -> str:
    """The torchvision builder behind registry name `name` (whose weights enum fits it).

    Raises:
        ValueError: `name` is not registered, or not a torchvision model.
    """
    from prunerep.models.registry import TORCHVISION_PREFIX, list_models

    if name.startswith(TORCHVISION_PREFIX):
        return name[len(TORCHVISION_PREFIX):]
    if name in WRAPPED_TORCHVISION:
        return WRAPPED_TORCHVISION[name]
    if name.startswith("tv_") and name in list_models():
        return name[len("tv_"):]
    choices = sorted(n for n in list_models() if n.startswith("tv_") or n in WRAPPED_TORCHVISION)
    raise ValueError(f"name: {name!r} is not a registered torchvision model; published weights exist for "
                     f"{choices} and any 'torchvision:<fn_name>'")


def published_weights(entry: PublishedEntry) -> Any:
    """The torchvision weights enum member `entry` names (a ``ValueError`` names the choices)."""
    import torchvision

    fn = torchvision_fn(entry.name)
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
    cache = hub_file(weights)
    return (f"pretrain.published.{key}: could not get {type(weights).__name__}.{weights.name} ({reason}). "
            f"On a machine without internet, copy {weights.url} to {cache} (torch hub's cache; "
            "$TORCH_HOME moves it) and rerun; or run `python -m prunerep.stages published "
            f"{key}` where the internet is reachable.")


def _identity(entry: PublishedEntry, weights: Any) -> dict[str, Any]:
    """What a written checkpoint must match to be reused: the model, the resolved weights (an
    alias such as DEFAULT is the member it names), their dataset and the builder's kwargs."""
    return {"name": entry.name, "weights": f"{type(weights).__name__}.{weights.name}",
            "dataset": entry.dataset, "kwargs": dict(entry.kwargs)}


def _written_identity(path: Path) -> dict[str, Any] | None:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return ckpt.get("meta", {}).get("entry")
    except Exception:  # unreadable or foreign: rewritten
        return None


def hub_file(weights: Any) -> Path:
    """Where torch hub keeps (or will download) the file of `weights`."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def check_hub_file(path: Path) -> None:
    """Refuse a cached weights file whose sha256 does not start with the hash in its name.

    torch hub checks that hash only while downloading; a file copied into the cache by hand (the
    offline route `missing_weights_message` gives) or truncated later would otherwise be loaded
    as it is, or fail with an unpickling error that does not name the file."""
    match = torch.hub.HASH_REGEX.search(path.name)
    if match is None or not path.is_file():
        return
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if not digest.hexdigest().startswith(match.group(1)):
        raise RuntimeError(f"{path}: its sha256 starts with {digest.hexdigest()[:len(match.group(1))]}, not with "
                           f"{match.group(1)} as its name says: a truncated or different file. Delete it and rerun "
                           "(torch hub downloads it again), or copy torchvision's file there again.")


def ensure_published(key: str, entry: PublishedEntry, path: str | Path) -> Path:
    """Write ``path`` (a prunerep checkpoint) from `entry`'s weights unless it already holds them.

    Several processes may call this at once (the ranks of a torchrun launch, two studies): one
    writes, under a lock beside ``path``, and the others find the file written.

    The checkpoint's architecture spec has no weights (``weights=None``): loading it, or building
    the network from it again for training from scratch, never reads or downloads torchvision's
    file; the weights are in the checkpoint's state dict and named in its ``meta``.

    Returns:
        ``path``.

    Raises:
        ValueError: unknown model or weights name.
        RuntimeError: the weights file could not be downloaded or read (names where to put it).
    """
    from prunerep.io import file_lock
    from prunerep.models.checkpoint import save_model
    from prunerep.models.registry import build_model

    path = Path(path)
    weights = published_weights(entry)
    identity = _identity(entry, weights)
    if path.exists() and _written_identity(path) == identity:
        return path
    with file_lock(path):
        if path.exists() and _written_identity(path) == identity:   # written while this one waited
            return path
        try:
            check_hub_file(hub_file(weights))
            model = build_model({"name": entry.name, "kwargs": {**entry.kwargs, "weights": weights.name}})
        except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, http.client.HTTPException) as err:
            # URLError is an OSError, IncompleteRead an HTTPException; a truncated file a RuntimeError
            raise RuntimeError(missing_weights_message(key, weights, f"{type(err).__name__}: {err}")) from err
        kwargs = {**model.arch_spec["kwargs"], "weights": None}
        if "aux_loss" in kwargs:   # torchvision turns the aux head on with weights: rebuild it as built
            kwargs["aux_loss"] = getattr(model, "aux_classifier", None) is not None
        model.arch_spec = {**model.arch_spec, "kwargs": kwargs}
        meta = {"source": "torchvision", "weights": identity["weights"], "url": weights.url,
                "dataset": entry.dataset, "key": key, "entry": identity,
                "reported": {k: v for k, v in weights.meta.items() if k in ("_metrics", "num_params", "recipe")}}
        return save_model(model, path, meta=meta)
