"""Calibrate GReg's compressed schedule: one-shot L1 vs GReg-1/GReg-2 on the same filters.

Not a test. Prunes a dense checkpoint at one ratio with the `greg` section of a profile (default:
`default`) and prints, per run, the stop iteration and reason, the magnitude ratio reached (the
paper stops at 1000), the validation (for choosing) and test (for reporting) accuracy right after removal and after
the profile's fine-tuning, and the time. Use it to check, on the real dense model, how far a compressed schedule is from the
paper's mechanism before spending a full stage on it::

    .venv/bin/python benchmarks/greg_calibration.py --dense artifacts/pretrain/resnet56/model.pt \\
        --ratio 0.9 --methods l1,greg1 --seeds 0 --workers 2
    # other schedules: --reg '{"reg_granularity_prune": 0.2}'

Runs checkpoint under --checkpoints (default /tmp/greg_calibration) and resume after a kill.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

from prunerep.config import resolve_section
from prunerep.data import SubsetConfig
from prunerep.methods.greg import fill_ratio, greg_budget
from prunerep.runner import LatencySettings, StudyContext, execute
from prunerep.studies.greg import run_spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet56", help="pretrain.models key of the dense checkpoint")
    parser.add_argument("--profile", default="default")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--ratio", type=float, default=0.9, help="r of stage_pr [0, r, r, r, 0]")
    parser.add_argument("--methods", default="l1,greg1")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--reg", default="{}", help="JSON overrides of greg.reg")
    parser.add_argument("--prune-optim", default="{}", help="JSON overrides of greg.prune_optim")
    parser.add_argument("--val", type=int, default=500)
    parser.add_argument("--test", type=int, default=2000)
    args = parser.parse_args()

    cfg = resolve_section("greg", profile=args.profile, params_path=args.params)
    data_cfg = resolve_section("data", profile=args.profile, params_path=args.params)
    reg = dataclasses.replace(cfg.reg, **json.loads(args.reg))
    prune_optim = dataclasses.replace(cfg.prune_optim, **json.loads(args.prune_optim))
    study = StudyContext(slug="greg-calibration", profile=args.profile, data=data_cfg,
                         subset=SubsetConfig(val=args.val, test=args.test), workers=args.workers,
                         latency=LatencySettings(enabled=False))
    dense = study.load_dense(args.model)
    budget = greg_budget(dense, stage_pr=fill_ratio([0, "r", "r", "r", 0], args.ratio), input_shape=study.example_shape)
    specs = [run_spec(m, budget, granularity="filter", reg=reg, prune_optim=prune_optim, finetune=cfg.finetune,
                      seed=int(s), batch_size=cfg.batch_size, runtime=cfg.runtime, label=f"cal-{m}-r{args.ratio:g}",
                      model=args.model, tags={"variant": m, "ratio": args.ratio})
             for m in args.methods.split(",") for s in args.seeds.split(",")]
    t0 = time.perf_counter()
    for record in execute(specs, study, save_models=False):
        row, summ = {**record.row(), "speedup": record.speedup}, record.summary
        # Choose schedules on the validation columns; the test columns are only reported.
        info = {k: row[k] for k in ("label", "seed", "val_acc_before_finetune", "val_acc",
                                    "test_acc_before_finetune", "test_acc", "speedup",
                                    "pruning_time_s", "finetune_time_s")}
        if "layers" in summ:
            layers = list(summ["layers"].values())
            ratios = sorted(v["mag_ratio"] for v in layers if v["mag_ratio"] is not None)
            info.update(iterations=summ["iterations"], completed=summ["completed"],
                        stop=sorted({v["finish_reason"] for v in layers}),
                        mag_ratio_min=ratios[0] if ratios else None,
                        mag_ratio_median=ratios[len(ratios) // 2] if ratios else None)
        print(json.dumps(info), flush=True)
    print(f"wall time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
