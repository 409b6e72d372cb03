"""Execute a paper notebook with papermill, parameterised from params.yaml.

    python -m prunerep.nbrun greg [--params params.yaml] [--out results]

The notebook ``notebooks/<slug>.ipynb`` receives, in its ``parameters`` cell, two short lines:

- ``profile``: the active profile (smoke | default | paper);
- ``out_dir``: ``results/<slug>``, where it writes tables, figures and metrics.

params.yaml is validated as a whole before the kernel starts, and the kernel is pointed at that
same file (environment variable ``PRUNEREP_PARAMS``): the notebook's `setup_notebook` resolves
its section from it, and `recipe_summary` shows what differs from the papers' recipes, instead of
a dump of the whole section in the parameters cell. The resolved ``<slug>`` and ``data`` sections
are recorded in the executed notebook's metadata (``metadata.prunerep``), so the executed copy,
``results/<slug>/<slug>.ipynb``, still records exactly what ran. If execution fails, ``results/<slug>`` is removed
(no half-written output for DVC to trust) and the failed notebook is kept under
``artifacts/failed/`` for inspection.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from prunerep.config import (
    ConfigError,
    _suggest,
    active_profile,
    check_params,
    read_params,
    to_dict,
)

#: The kernel reads params from this file (see `prunerep.reporting.notebook.setup_notebook`).
PARAMS_ENV = "PRUNEREP_PARAMS"


class NotebookFailed(RuntimeError):
    """A cell of the notebook raised; the message names the notebook, the cell, the error and
    where the executed copy (with the full traceback) was kept."""


def resolved_sections(slug: str, params_path: str | Path = "params.yaml") -> dict[str, Any]:
    """The validated, resolved ``<slug>`` and ``data`` sections and the active profile."""
    params = read_params(params_path)
    resolved = check_params(params)
    if slug not in resolved:
        raise ConfigError(f"{slug}: no params section for this notebook; sections: {sorted(resolved)}.")
    return {"profile": active_profile(params), "section": to_dict(resolved[slug]),
            "data": to_dict(resolved["data"])}


def notebook_parameters(slug: str, params_path: str | Path = "params.yaml",
                        out_root: str | Path = "results", resolved: dict[str, Any] | None = None) -> dict[str, Any]:
    """The parameters papermill injects into notebook `slug` (params.yaml validated first, unless
    `resolved`, what `resolved_sections` returned, is given)."""
    resolved = resolved if resolved is not None else resolved_sections(slug, params_path)
    return {"profile": resolved["profile"], "out_dir": str(Path(out_root) / slug)}


def run_notebook(slug: str, *, params_path: str | Path = "params.yaml", notebooks: str | Path = "notebooks",
                 out_root: str | Path = "results", failed_dir: str | Path = "artifacts/failed",
                 cwd: str | Path = ".", kernel_name: str = "python3") -> Path:
    """Execute ``notebooks/<slug>.ipynb`` into ``<out_root>/<slug>/<slug>.ipynb``."""
    import papermill

    source = Path(notebooks) / f"{slug}.ipynb"
    if not source.exists():
        known = sorted(p.stem for p in Path(notebooks).glob("*.ipynb"))
        raise FileNotFoundError(f"{source}: notebook not found (slug {slug!r}).{_suggest(slug, known)} "
                                f"Notebooks: {known}.")
    resolved = resolved_sections(slug, params_path)      # params.yaml read and validated once
    parameters = notebook_parameters(slug, params_path, out_root, resolved)
    out_dir = Path(out_root) / slug
    if out_dir.exists():
        shutil.rmtree(out_dir)  # stale tables/figures of an earlier run must not survive this one
    out_dir.mkdir(parents=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{slug}.", suffix=".ipynb", dir=out_dir)
    os.close(fd)
    previous = os.environ.get(PARAMS_ENV)
    os.environ[PARAMS_ENV] = str(Path(params_path).resolve())  # the kernel inherits it
    try:
        # coalesce_streams: a cell's prints become one output (not one per flush)
        papermill.execute_notebook(str(source), tmp, parameters=parameters, cwd=str(cwd),
                                   kernel_name=kernel_name, progress_bar=False, log_output=True,
                                   coalesce_streams=True)
    except BaseException as err:
        failed = Path(failed_dir) / f"{slug}.ipynb"
        failed.parent.mkdir(parents=True, exist_ok=True)
        if Path(tmp).exists():
            os.replace(tmp, failed)
        shutil.rmtree(out_dir, ignore_errors=True)
        if isinstance(err, papermill.PapermillExecutionError):  # a cell raised: say which, and what
            evalue = " ".join(str(err.evalue).split())
            raise NotebookFailed(f"{source} failed in cell {err.exec_count}: {err.ename}: {evalue} "
                                 f"(executed notebook with the traceback: {failed})") from err
        print(f"nbrun: {slug} failed; the executed notebook is at {failed}", file=sys.stderr)
        raise
    finally:
        if previous is None:
            os.environ.pop(PARAMS_ENV, None)
        else:
            os.environ[PARAMS_ENV] = previous
    final = out_dir / f"{slug}.ipynb"
    _record_final_path(tmp, final, resolved)
    os.replace(tmp, final)
    return final


def _record_final_path(executed: str | Path, final: Path, resolved: dict[str, Any] | None = None) -> None:
    """Papermill records the temporary file's absolute path; the committed notebook names its
    repository-relative path instead (no path of the machine that ran it). The resolved sections
    the notebook ran with go into its metadata (``metadata.prunerep``)."""
    import nbformat

    nb = nbformat.read(str(executed), as_version=4)
    meta = nb.metadata.get("papermill")
    if meta is not None:
        meta["output_path"] = final.as_posix()
    if resolved is not None:
        nb.metadata["prunerep"] = resolved
    nbformat.write(nb, str(executed))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m prunerep.nbrun", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("slug", help="notebook / params section name, e.g. greg")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default="results",
                        help="write <out>/<slug>/ (default results/, the pipeline's outputs); e.g. "
                             "results-imagenet for a run on other params that must not replace them")
    args = parser.parse_args(argv)
    try:
        path = run_notebook(args.slug, params_path=args.params, out_root=args.out)
    except ConfigError as err:
        message = str(err)
        print(f"error: {message if message.startswith(args.params) else f'{args.params}: {message}'}",
              file=sys.stderr)
        return 2
    except FileNotFoundError as err:  # no notebook of that name
        print(f"error: {err}", file=sys.stderr)
        return 2
    except NotebookFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"nbrun: wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
