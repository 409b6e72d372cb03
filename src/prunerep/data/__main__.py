"""Command line: ``python -m prunerep.data {fetch,prepare,info,synthetic}``.

    fetch    [--params params.yaml]                    raw files of data.source -> data/<dataset>/
    prepare  --out FILE [--params params.yaml] [--raw PATH]
                                                       decode once -> uint8 tensor cache (torch.save)
    info     FILE                                      summary of a cache file
    synthetic --out DIR [--channels 1 --size 28 --classes 7 --train-per-class 50
              --test-per-class 20 --seed 0]           write a learnable image folder of that
                                                       shape (DIR/train/<class>/*.png, DIR/test/...)

Relative paths inside params.yaml (data.source) are relative to the folder of params.yaml, the
repository root. Errors in the data (missing, corrupt, wrong checksum) exit with status 2 and one
message saying what to fix.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Any

from prunerep.config import ConfigError
from prunerep.data import STREAMED_DATASETS
from prunerep.data.config import DataConfig, DataError

log = logging.getLogger("prunerep.data")
DEFAULT_PARAMS = Path("params.yaml")


def _read_data_config(params_path: str | Path | None) -> DataConfig:
    """The `data` section of a params file as a DataConfig, read and checked as every stage
    reads params.yaml (`prunerep.config`: duplicate keys, unknown keys, wrong types and invalid
    YAML are one `ConfigError` naming the file and the key).

    `None` means ``params.yaml`` in the cwd, with the DataConfig defaults if that file does not
    exist; an explicitly named file must exist. Only the `data` section is validated: the other
    sections are checked by the stages that use them (`python -m prunerep.config check`).
    """
    from prunerep.config import active_profile, from_dict, merged_section, read_params

    path = Path(params_path or DEFAULT_PARAMS)
    if not path.is_file():
        if params_path is not None:
            raise DataError(f"--params {path}: no such file; give the path of params.yaml")
        log.info("%s not found; using the default data config", path)
        return DataConfig()
    params = read_params(path)  # ConfigError naming the file: invalid YAML, duplicate keys
    try:
        if params.get("data") is None:
            return DataConfig()
        return from_dict(DataConfig, merged_section(params, "data", active_profile(params)), "data")
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err


def _cmd_fetch(args: argparse.Namespace) -> dict[str, Any]:
    from prunerep.data.sources import fetch_raw

    config = _read_data_config(args.params)
    root = Path(args.params or DEFAULT_PARAMS).resolve().parent
    if config.name in STREAMED_DATASETS:   # read where it is: nothing to copy
        return {"dataset": config.name, "source": config.source, "raw": None,
                "note": "streamed from data.source by the loaders; nothing fetched"}
    path = fetch_raw(config, root=root)
    return {"dataset": config.name, "source": config.source, "raw": str(path)}


def _cmd_prepare(args: argparse.Namespace) -> dict[str, Any]:
    from prunerep.data.sources import prepare_cache

    config = _read_data_config(args.params)
    root = Path(args.params or DEFAULT_PARAMS).resolve().parent
    if config.name in STREAMED_DATASETS:
        return _index_streamed(config, Path(args.out))
    summary = prepare_cache(config, args.out, root=root, raw=args.raw)
    summary["out"] = str(args.out)
    summary.pop("classes", None)
    return summary


def _index_streamed(config: DataConfig, out: Path) -> dict[str, Any]:
    """A streamed dataset (ImageNet, VOC) is never decoded: the `data` stage checks its folder's
    layout and writes what the stage's output stands for, its file lists' fingerprint and split
    sizes, so the later stages rerun when the folder's files change."""
    from prunerep.data import load_data
    from prunerep.io import atomic_torch_save

    splits = load_data(config)
    summary = {"dataset": config.name, "source": config.source, "streamed": True,
               "fingerprint": splits.fingerprint,
               "sizes": {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)},
               "num_classes": splits.num_classes}
    atomic_torch_save(summary, out)
    return {**summary, "out": str(out)}


def _cmd_info(args: argparse.Namespace) -> dict[str, Any]:
    from prunerep.data.arrays import load_cache

    payload = load_cache(args.cache)
    return {
        "dataset": payload.get("dataset"),
        "train": list(payload["train_images"].shape),
        "test": list(payload["test_images"].shape),
        "classes": payload["classes"],
        "fingerprint": payload.get("fingerprint"),
        "source": payload.get("source"),
    }


def _cmd_synthetic(args: argparse.Namespace) -> dict[str, Any]:
    from prunerep.data.synthetic import SyntheticSpec, write_synthetic

    spec = SyntheticSpec(channels=args.channels, size=args.size, classes=args.classes,
                         train_per_class=args.train_per_class,
                         test_per_class=args.test_per_class, seed=args.seed)
    return write_synthetic(args.out, spec)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m prunerep.data",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_fetch = sub.add_parser("fetch", help="materialise data.source into data/<dataset>/")
    p_fetch.add_argument(
        "--params", help="params file (default: ./params.yaml; defaults if absent)"
    )
    p_fetch.set_defaults(run=_cmd_fetch)
    p_prep = sub.add_parser("prepare", help="decode the raw files once into a tensor cache")
    p_prep.add_argument(
        "--out", required=True, type=Path, help="cache file, e.g. artifacts/data/cifar10.pt"
    )
    p_prep.add_argument("--params", help="params file (default: ./params.yaml; defaults if absent)")
    p_prep.add_argument(
        "--raw", type=Path, help="decode this file/folder instead of data/<dataset>/..."
    )
    p_prep.set_defaults(run=_cmd_prepare)
    p_info = sub.add_parser("info", help="summarise a cache file")
    p_info.add_argument("cache", type=Path)
    p_info.set_defaults(run=_cmd_info)
    p_syn = sub.add_parser(
        "synthetic", help="write a small learnable image folder of any shape (data.source for tests)"
    )
    p_syn.add_argument("--out", required=True, type=Path, help="folder to create (must be new or empty)")
    from prunerep.data.synthetic import SyntheticSpec

    for spec_field in dataclasses.fields(SyntheticSpec):
        p_syn.add_argument(f"--{spec_field.name.replace('_', '-')}", type=int,
                           default=spec_field.default, help=f"default {spec_field.default}")
    p_syn.set_defaults(run=_cmd_synthetic)
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        result = args.run(args)
    except (DataError, ConfigError) as err:  # the message names the file or key and the fix
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # e.g. --out in a folder that cannot be written
        print(f"error: {err.filename or ''}: {err.strerror or err}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
