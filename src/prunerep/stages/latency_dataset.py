"""Stage `latency_dataset`: measure (or reuse) the latency dataset of every model of
``wgates.dataset.models`` on this device.

    python -m prunerep.stages latency_dataset [--params params.yaml] [--profile NAME]

The files go to ``artifacts/latency_dataset/<model>-<device key>.json`` (see
:mod:`prunerep.pruning.latency_dataset`): the same device and settings reuse their file in
seconds, another device measures a new one beside it. Run it with nothing else on the machine:
what it measures is the latency every W-Gates run is pruned against.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from prunerep import paths
    from prunerep.config import active_profile, check_params, read_params, resolve_section
    from prunerep.data import example_shape, load_data
    from prunerep.runner.execute import load_dense
    from prunerep.studies.wgates import ensure_datasets

    p = argparse.ArgumentParser(prog="python -m prunerep.stages latency_dataset", description=__doc__.split("\n")[0])
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--profile", default=None)
    args = p.parse_args(argv)
    params = read_params(args.params)
    check_params(params)
    profile = args.profile or active_profile(params)
    cfg = resolve_section("wgates", params, profile=profile)
    data_cfg = resolve_section("data", params, profile=profile)
    pretrain = resolve_section("pretrain", params, profile=profile)
    shape = example_shape(load_data(data_cfg, cfg.subset))

    def dense(key: str):
        return load_dense(paths.dense_checkpoint(key), key, pretrain.models[key].name)

    for key, ds in ensure_datasets(cfg, shape, dense).items():
        print(f"[latency_dataset] {key}: {ds.path} ({ds.describe()})", flush=True)
    return 0
