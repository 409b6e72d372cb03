"""Stage commands: `python -m prunerep.stages pretrain <model> [--params params.yaml]`;
`python -m prunerep.stages published <key>` writes a `pretrain.published` entry's checkpoint."""

import sys

from prunerep.stages import pretrain

COMMANDS = {"pretrain": pretrain.main, "published": pretrain.publish_main}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(f"usage: python -m prunerep.stages {{{'|'.join(COMMANDS)}}} ...")
    raise SystemExit(COMMANDS[sys.argv[1]](sys.argv[2:]))
