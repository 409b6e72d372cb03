"""Execute a paper notebook with papermill, parameterised from params.yaml.

    python -m prunerep.nbrun greg [--params params.yaml]

The notebook ``notebooks/<slug>.ipynb`` receives, in its ``parameters`` cell:

- ``profile``: the active profile (smoke | default | paper);
- ``section``: the resolved ``<slug>`` section (shared keys merged with the profile's block);
- ``data``: the resolved ``data`` section;
- ``out_dir``: ``results/<slug>``, where it writes tables, figures and metrics.

So the executed copy, ``results/<slug>/<slug>.ipynb``, shows exactly what ran. params.yaml is
validated as a whole before the kernel starts. If execution fails, ``results/<slug>`` is removed
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

from prunerep.config import ConfigError, active_profile, check_params, read_params, to_dict


def notebook_parameters(slug: str, params_path: str | Path = "params.yaml",
                        out_root: str | Path = "results") -> dict[str, Any]:
    """The parameters papermill injects into notebook `slug` (validated)."""
    params = read_params(params_path)
    resolved = check_params(params)
    if slug not in resolved:
        raise ConfigError(f"{slug}: no params section for this notebook; sections: {sorted(resolved)}.")
    return {"profile": active_profile(params), "section": to_dict(resolved[slug]),
            "data": to_dict(resolved["data"]), "out_dir": str(Path(out_root) / slug)}


def run_notebook(slug: str, *, params_path: str | Path = "params.yaml", notebooks: str | Path = "notebooks",
                 out_root: str | Path = "results", failed_dir: str | Path = "artifacts/failed",
                 cwd: str | Path = ".", kernel_name: str = "python3") -> Path:
    """Execute ``notebooks/<slug>.ipynb`` into ``<out_root>/<slug>/<slug>.ipynb``."""
    import papermill

    source = Path(notebooks) / f"{slug}.ipynb"
    if not source.exists():
        raise FileNotFoundError(f"{source}: notebook not found (slug {slug!r}).")
    parameters = notebook_parameters(slug, params_path, out_root)
    out_dir = Path(out_root) / slug
    if out_dir.exists():
        shutil.rmtree(out_dir)  # stale tables/figures of an earlier run must not survive this one
    out_dir.mkdir(parents=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{slug}.", suffix=".ipynb", dir=out_dir)
    os.close(fd)
    try:
        papermill.execute_notebook(str(source), tmp, parameters=parameters, cwd=str(cwd),
                                   kernel_name=kernel_name, progress_bar=False, log_output=True)
    except BaseException:
        failed = Path(failed_dir) / f"{slug}.ipynb"
        failed.parent.mkdir(parents=True, exist_ok=True)
        if Path(tmp).exists():
            os.replace(tmp, failed)
        shutil.rmtree(out_dir, ignore_errors=True)
        print(f"nbrun: {slug} failed; the executed notebook is at {failed}", file=sys.stderr)
        raise
    final = out_dir / f"{slug}.ipynb"
    _record_final_path(tmp, final)
    os.replace(tmp, final)
    return final


def _record_final_path(executed: str | Path, final: Path) -> None:
    """Papermill records the temporary file's absolute path; the committed notebook names its
    repository-relative path instead (no path of the machine that ran it)."""
    import nbformat

    nb = nbformat.read(str(executed), as_version=4)
    meta = nb.metadata.get("papermill")
    if meta is not None:
        meta["output_path"] = final.as_posix()
        nbformat.write(nb, str(executed))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m prunerep.nbrun", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("slug", help="notebook / params section name, e.g. greg")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    try:
        path = run_notebook(args.slug, params_path=args.params)
    except ConfigError as err:
        print(f"error: params.yaml: {err}", file=sys.stderr)
        return 2
    print(f"nbrun: wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
