"""Study commands: `python -m prunerep.studies latency_dataset [--params params.yaml] [--profile NAME]`
measures (or reuses) W-Gates' latency datasets on this device ahead of the `wgates` stage;
`python -m prunerep.studies gdp_large <setting> [--params FILE]` runs one of GDP's large-scale
settings (ImageNet, Pascal VOC) from its published dense weights."""

import sys

from prunerep.studies import gdp, wgates

COMMANDS = {"latency_dataset": wgates.main, "gdp_large": gdp.large_scale_main}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(f"usage: python -m prunerep.studies {{{'|'.join(COMMANDS)}}} ...")
    raise SystemExit(COMMANDS[sys.argv[1]](sys.argv[2:]))
