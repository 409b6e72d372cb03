"""Choose W-Gates' gate hyper-parameters on the validation split, on a setting no stage reports.

Not a test. The paper's values of the gate learning rate, the efficiency weight's ramp and whether
the gates' gradient reaches the filters were not retrieved, so they are ours; this script runs
W-Gates in FLOPs mode (exact soft MACs: no latency dataset needed) with each candidate, and L1-norm
pruning at the same MACs and total training as a reference, from the `wgates` section of a profile,
and prints per run the validation accuracy right after removal and after fine-tuning (the columns
to choose on), the test accuracy (only reported), the MACs kept and the time::

    .venv/bin/python benchmarks/wgates_calibration.py --model resnet20 --macs 0.4 --seeds 10 \\
        --grid '[{}, {"detach_weights": true}, {"gate_lr_scale": 1.0}]'

The defaults (ResNet-20, 0.4 of the MACs, seed 10) are not used by any stage: the `wgates` stage
reports its latency targets (about 0.26 of the MACs at the default profile) with seeds 0-2, and the
`compare` stage MACs targets 0.7 / 0.5 / 0.3 with seeds 0-2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

from prunerep.config import resolve_section
from prunerep.data import SubsetConfig
from prunerep.methods.base import Budget
from prunerep.methods.baselines import OneShotHyper
from prunerep.runner import LatencySettings, RunSpec, StudyContext, execute
from prunerep.studies.wgates import _baseline_finetune


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet20", help="pretrain.models key of the dense checkpoint")
    parser.add_argument("--profile", default="default")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--macs", type=float, default=0.4, help="fraction of the dense MACs to keep")
    parser.add_argument("--seeds", default="10")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--grid", default="[{}]", help="JSON list of overrides of wgates.method, one run each")
    parser.add_argument("--no-l1", action="store_true", help="skip the L1-norm reference")
    args = parser.parse_args()

    cfg = resolve_section("wgates", profile=args.profile, params_path=args.params)
    data_cfg = resolve_section("data", profile=args.profile, params_path=args.params)
    study = StudyContext(slug="wgates-calibration", profile=args.profile, data=data_cfg,
                         subset=SubsetConfig(train=cfg.subset.train, val=cfg.subset.val, test=cfg.subset.test),
                         workers=args.workers, latency=LatencySettings(enabled=False))
    budget = Budget(macs_keep=args.macs)
    specs = []
    for seed in (int(s) for s in args.seeds.split(",")):
        common = {"seed": seed, "batch_size": cfg.batch_size, "runtime": cfg.runtime, "model": args.model,
                  "select": cfg.select}
        for i, overrides in enumerate(json.loads(args.grid)):
            hyper = dataclasses.replace(cfg.method, train=cfg.search, scope=cfg.scope, **overrides)
            specs.append(RunSpec(method="wgates", budget=budget, hyper=hyper, finetune=cfg.finetune,
                                 label=f"cal-wgates-{i}", tags={"overrides": json.dumps(overrides)}, **common))
        if not args.no_l1:
            specs.append(RunSpec(method="l1", budget=budget, hyper=OneShotHyper(scope=cfg.scope, seed=seed),
                                 finetune=_baseline_finetune(cfg), label="cal-l1", tags={"overrides": "l1"},
                                 **common))
    t0 = time.perf_counter()
    for record in execute(specs, study, save_models=False):
        row = record.row()
        info = {"overrides": row["overrides"], "seed": row["seed"],
                **{k: row.get(k) for k in ("macs_keep", "val_acc_before_finetune", "val_acc",
                                           "test_acc_before_finetune", "test_acc", "pruning_time_s")}}
        print(json.dumps(info), flush=True)
    print(f"wall time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
