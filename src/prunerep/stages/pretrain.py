"""Stage `pretrain@<model>`: the dense checkpoint every method prunes (the fairness guarantee).

    python -m prunerep.stages pretrain resnet56 [--params params.yaml]

Reads the `data` and `pretrain` sections of params.yaml (active profile), trains the model with
the shared engine on the training split, picks the weights on the validation split, reports the
test split once, and writes:

- ``artifacts/pretrain/<model>/model.pt``  (architecture as data + state dict + meta)
- ``results/pretrain/<model>/metrics.json`` (headline scalars), ``run.json`` (the full record:
  architecture, budget, data, provenance) and ``history.json``

A killed run resumes from ``artifacts/checkpoints/pretrain/<model>/`` (not a DVC output, so DVC
never deletes it before rerunning the stage).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from prunerep.config import (
    ConfigError,
    _suggest,
    check_params,
    deep_merge,
    from_dict,
    read_params,
    register_section,
    to_dict,
)
from prunerep.data import DataError, SubsetConfig, load_data
from prunerep.engine import OptimConfig, RuntimeConfig, evaluate, fit, pick_device, seed_everything
from prunerep.engine.device import init_distributed, is_main_process, set_threads
from prunerep.engine.distributed import per_rank_batch, shard
from prunerep.io import write_json
from prunerep.models.published import PublishedEntry, ensure_published, published_weights
from prunerep.provenance import provenance, run_key


@dataclass(frozen=True)
class ModelEntry:
    """A registry model and its constructor kwargs (architecture as data)."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    # Per-model overrides of `pretrain.optim` (e.g. fewer epochs for the slower VGG-16 on a CPU).
    optim: dict[str, Any] = field(default_factory=dict)


@register_section("pretrain")
@dataclass(frozen=True)
class PretrainConfig:
    models: dict[str, ModelEntry]                 # DVC `foreach` key -> model (same key everywhere)
    # Dense models taken from published weights instead of trained (no stage; prunerep.models.published)
    published: dict[str, PublishedEntry] = field(default_factory=dict)
    seed: int = 0
    subset: SubsetConfig = SubsetConfig()
    optim: OptimConfig = OptimConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    select: Literal["last", "best_val"] = "best_val"
    eval_batch_size: int = 512

    def __post_init__(self) -> None:
        from prunerep.models import list_models
        from prunerep.models.registry import TORCHVISION_PREFIX

        if not self.models:
            raise ValueError("models: give at least one dense model, e.g. {resnet56: {name: resnet56}}")
        registered = list_models()
        for key, entry in self.models.items():
            if not entry.name.startswith(TORCHVISION_PREFIX) and entry.name not in registered:
                raise ValueError(f"models.{key}.name: {entry.name!r} is not a registered model.{_suggest(entry.name, registered)} "
                                 f"Registered: {registered}, or any torchvision builder as '{TORCHVISION_PREFIX}<fn_name>'.")
        for key, pub in self.published.items():
            if key in self.models:
                raise ValueError(f"published.{key}: {key!r} is also an entry of models; a dense model is either "
                                 "trained here (models) or taken from published weights (published), not both")
            try:
                published_weights(pub)
            except ValueError as err:
                raise ValueError(f"published.{key}.{err}") from None
        if self.eval_batch_size < 1:
            raise ValueError(f"eval_batch_size must be >= 1, got {self.eval_batch_size}")
        for key in self.models:  # validate every per-model override before any work starts
            self.optim_for(key)

    def dense_names(self) -> dict[str, str]:
        """Every dense model key (trained or published) -> its registry name."""
        return {**{k: e.name for k, e in self.models.items()}, **{k: e.name for k, e in self.published.items()}}

    def optim_for(self, key: str) -> OptimConfig:
        """`optim` with the model's own overrides (``pretrain.models.<key>.optim``) merged over it."""
        overrides = self.models[key].optim
        if not overrides:
            return self.optim
        return from_dict(OptimConfig, deep_merge(to_dict(self.optim), overrides),
                         path=f"pretrain.models.{key}.optim")


def arch_spec(entry: ModelEntry, num_classes: int, in_channels: int) -> dict[str, Any]:
    return {"name": entry.name, "kwargs": {**entry.kwargs, "num_classes": num_classes,
                                           "in_channels": in_channels}}


def run(key: str, params_path: str = "params.yaml", artifacts: Path = Path("artifacts"),
        results: Path = Path("results")) -> dict[str, Any]:
    from prunerep.data import loaders
    from prunerep.models import build_model
    from prunerep.models.checkpoint import save_model
    from prunerep.pruning.cost import count_cost

    params = read_params(params_path)
    resolved = check_params(params)            # every section valid before any work starts
    cfg: PretrainConfig = resolved["pretrain"]
    data_cfg = resolved["data"]
    profile = params.get("profile", "default")
    if key not in cfg.models:
        raise ConfigError(f"pretrain.models: no entry {key!r}.{_suggest(key, cfg.models)} Run one of "
                          f"{sorted(cfg.models)}, or add {key!r} to pretrain.models.")

    optim = cfg.optim_for(key)
    set_threads(cfg.runtime.threads)
    distributed = init_distributed()  # under torchrun: one process per GPU, data sharded by rank
    device = pick_device(cfg.runtime.device)
    seed_everything(cfg.seed)
    splits = load_data(data_cfg, cfg.subset)
    if optim.batch_size > len(splits.train):  # an epoch would be one short batch, or none
        where = f"pretrain.models.{key}.optim" if "batch_size" in cfg.models[key].optim else "pretrain.optim"
        raise ConfigError(f"{where}.batch_size: {optim.batch_size} is larger than the training split "
                          f"({len(splits.train)} images); lower it, or train on more images "
                          "(pretrain.subset.train, data.val_size).")
    spec = arch_spec(cfg.models[key], splits.num_classes, splits.in_channels)
    try:
        model = build_model(spec).to(device)
    except (ValueError, TypeError) as err:  # e.g. a kwarg the builder does not take
        raise ConfigError(f"pretrain.models.{key}: {err}") from err
    train_loader, val_loader, test_loader = loaders(
        splits, optim.batch_size, device=device, channels_last=cfg.runtime.channels_last,
        seed=cfg.seed, eval_batch_size=cfg.eval_batch_size)
    if distributed:   # each rank trains on its slice of every global batch (prunerep.engine.distributed)
        try:   # the configured batch is the global one, split over the ranks
            per_rank = per_rank_batch(optim.batch_size, "pretrain.optim.batch_size")
        except ValueError as err:
            raise ConfigError(str(err)) from None
        train_loader = splits.loader(splits.train, per_rank, train=True, device=device,
                                     channels_last=cfg.runtime.channels_last, seed=cfg.seed, shard=shard())

    identity = run_key(cfg, data_cfg, spec, splits.fingerprint)
    result = fit(model, train_loader, optim=optim, runtime=cfg.runtime, val_loader=val_loader,
                 checkpoint_dir=artifacts / "checkpoints" / "pretrain" / key, run_key=identity,
                 select=cfg.select, desc=f"pretrain {key}")
    test = evaluate(model, test_loader)
    cost = count_cost(model.cpu(), (1, splits.in_channels, *splits.image_size))
    budget = {"epochs": optim.epochs, "steps": result.steps, "batch_size": optim.batch_size,
              "train_images": len(splits.train), "wall_time_s": round(result.wall_time_s, 1),
              "device": str(device)}
    metrics = {
        "model": key, "arch": spec, "profile": profile, "budget": budget,
        "val_acc": result.val["acc"], "test_acc": test["acc"], "test_loss": test["loss"],
        "selected_epoch": result.selected_epoch, "selection": f"{cfg.select} (validation split)",
        "macs": cost.macs, "params": cost.params, "macs_unit": "MACs of conv+linear",
        "data": splits.describe(), "provenance": provenance(profile, seed=cfg.seed),
    }
    if not is_main_process():
        return metrics  # only rank 0 writes outputs
    out = results / "pretrain" / key
    write_json(result.history, out / "history.json")
    save_model(model, artifacts / "pretrain" / key / "model.pt", meta={**checkpoint_meta(metrics), "config": to_dict(cfg)})
    write_json(metrics, out / "run.json")
    # DVC metrics: headline scalars only (`dvc metrics show` / `diff` read one table); the full
    # record (architecture, budget, data, provenance) is run.json beside it.
    write_json({"profile": profile, "test_acc": test["acc"], "val_acc": result.val["acc"], "test_loss": test["loss"],
                "macs": cost.macs, "params": cost.params, "epochs": optim.epochs,
                "train_images": len(splits.train), "wall_time_s": budget["wall_time_s"]}, out / "metrics.json")
    print(f"[pretrain {key}] test acc {test['acc']:.2f}% (val {result.val['acc']:.2f}%), "
          f"{cost.macs / 1e6:.2f}M MACs, {cost.params / 1e6:.3f}M params, profile {profile}", flush=True)
    return metrics


#: What varies between two identical trainings: the wall time and the git revision (a commit that
#: touches nothing the training reads). They stay in run.json / metrics.json.
VOLATILE = {"budget": ("wall_time_s",), "provenance": ("git",)}


def checkpoint_meta(metrics: dict[str, Any]) -> dict[str, Any]:
    """`metrics` without its volatile entries: model.pt is what every later stage depends on, so an
    identical retraining must write identical bytes (or DVC reruns every downstream stage)."""
    return {k: ({kk: vv for kk, vv in v.items() if kk not in VOLATILE[k]} if k in VOLATILE else v)
            for k, v in metrics.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m prunerep.stages pretrain")
    parser.add_argument("model", help="key of pretrain.models in params.yaml")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    try:
        run(args.model, args.params)
    except ConfigError as err:
        print(f"error: {_in_file(str(err), args.params)}", file=sys.stderr)
        return 2
    except DataError as err:  # the dataset cache: missing, unreadable, too small for data.val_size
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def publish_main(argv: list[str] | None = None) -> int:
    """`python -m prunerep.stages published <key>`: write a published entry's checkpoint now (e.g. on
    a machine with internet, before the runs), as the first study needing it would."""
    from prunerep import paths
    from prunerep.config import active_profile, resolve_section

    parser = argparse.ArgumentParser(prog="python -m prunerep.stages published")
    parser.add_argument("key", help="key of pretrain.published in params.yaml")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--profile", default=None, help="default: the active profile of params.yaml")
    args = parser.parse_args(argv)
    try:
        params = read_params(args.params)
        cfg: PretrainConfig = resolve_section("pretrain", params, profile=args.profile or active_profile(params))
        if args.key not in cfg.published:
            raise ConfigError(f"pretrain.published: no entry {args.key!r} at this profile.{_suggest(args.key, cfg.published)} "
                              f"Entries: {sorted(cfg.published)}.")
        path = ensure_published(args.key, cfg.published[args.key], paths.dense_checkpoint(args.key))
    except ConfigError as err:
        print(f"error: {_in_file(str(err), args.params)}", file=sys.stderr)
        return 2
    except (RuntimeError, ValueError) as err:   # the weights could not be had; a name torchvision lacks
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"[published {args.key}] {path}")
    return 0


def _in_file(message: str, params: str) -> str:
    """A config error's message, naming the params file once."""
    return message if message.startswith(str(params)) else f"{params}: {message}"

