#!/usr/bin/env python3
"""One entry point for a fresh clone: set up `.venv`, then reproduce or test.

    python3 run.py repro [--profile smoke|default|paper] [STAGE ...]
    python3 run.py test [PYTEST ARGS ...]

Both commands first make sure `.venv` exists and holds exactly `requirements.lock` plus this
package (editable). The install is skipped when the lock file has not changed since the last one.
`repro` then fetches the raw dataset named by `data.source` in params.yaml into `data/` (pinned by
data.dvc) and runs `dvc repro`. `test` lints (ruff) and runs the fast test tier (everything not marked slow).

Only the standard library is used here, so it runs on any Python >= 3.11 before anything is
installed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
LOCK = ROOT / "requirements.lock"
PROFILES = ("smoke", "default", "paper")


def _venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _run(cmd: list[str | os.PathLike], **kwargs) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    # dvc.yaml's commands call `python`: put the venv first on PATH so they use its interpreter.
    env = dict(os.environ, PATH=f"{_venv_python().parent}{os.pathsep}{os.environ.get('PATH', '')}",
               VIRTUAL_ENV=str(VENV))
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT, env=env, **kwargs)


def ensure_venv() -> Path:
    """Create `.venv` and install the lock file into it, unless it is already current."""
    if sys.version_info < (3, 11):  # noqa: UP036  (this file runs before the venv exists)
        sys.exit(f"run.py: Python >= 3.11 is required, this is {sys.version.split()[0]}.")
    python = _venv_python()
    if not python.exists():
        print(f"creating virtual environment at {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    digest = hashlib.sha256(LOCK.read_bytes() + (ROOT / "pyproject.toml").read_bytes()).hexdigest()
    stamp = VENV / f".installed-{digest[:16]}"
    if not stamp.exists():
        _run([python, "-m", "pip", "install", "--disable-pip-version-check", "-q", "-r", LOCK])
        _run([python, "-m", "pip", "install", "--disable-pip-version-check", "-q",
              "--no-deps", "--no-build-isolation", "-e", ROOT])
        for old in VENV.glob(".installed-*"):
            old.unlink()
        stamp.touch()
    return python


def _bin(name: str) -> Path:
    return _venv_python().parent / name


def repro(profile: str | None, stages: list[str]) -> None:
    python = ensure_venv()
    if profile is not None:
        _run([python, "-m", "prunerep.config", "set-profile", profile])
    _run([python, "-m", "prunerep.data", "fetch"])
    _run([_bin("dvc"), "repro", *stages])


def test(pytest_args: list[str]) -> None:
    python = ensure_venv()
    args = pytest_args or ["-m", "not slow"]
    _run([_bin("ruff"), "check", "src", "tests", "tools", "notebooks", "run.py"])
    _run([python, "-m", "pytest", *args])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_repro = sub.add_parser("repro", help="set up .venv, fetch the data, run `dvc repro`")
    p_repro.add_argument("--profile", choices=PROFILES,
                         help="write this profile into params.yaml before running (default: keep it)")
    p_repro.add_argument("stages", nargs="*", help="DVC stages to reproduce (default: all)")
    p_test = sub.add_parser("test", help="set up .venv, run pytest (default: -m 'not slow')")
    p_test.add_argument("pytest_args", nargs=argparse.REMAINDER)
    sub.add_parser("setup", help="only set up .venv")
    args = parser.parse_args(argv)
    try:
        if args.command == "repro":
            repro(args.profile, args.stages)
        elif args.command == "test":
            test(args.pytest_args)
        else:
            ensure_venv()
    except subprocess.CalledProcessError as err:
        sys.exit(err.returncode)


if __name__ == "__main__":
    main()
