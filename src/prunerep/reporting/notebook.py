"""Set-up cell of every notebook: repo root as cwd, validated config, output directory."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prunerep.config import (
    active_profile,
    check_params,
    from_dict,
    read_params,
    registered_sections,
    resolve_section,
)


def repo_root(start: Path | None = None) -> Path:
    """The nearest directory upwards holding params.yaml and dvc.yaml."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "params.yaml").exists() and (candidate / "dvc.yaml").exists():
            return candidate
    raise FileNotFoundError(f"no params.yaml/dvc.yaml above {here}: open the notebook inside the repository")


@dataclass(frozen=True)
class NotebookContext:
    slug: str
    profile: str
    cfg: Any            # the section's frozen dataclass
    data: Any           # DataConfig
    out_dir: Path

    def describe(self) -> str:
        return f"profile `{self.profile}`, outputs in `{self.out_dir}`"


def setup_notebook(slug: str, profile: str, section: dict[str, Any], data: dict[str, Any],
                   out_dir: str) -> NotebookContext:
    """Validate the injected parameters (or read params.yaml when run interactively).

    papermill injects the resolved section; opened by hand in JupyterLab the parameters are
    empty and the section is resolved from params.yaml for `profile`.
    """
    root = repo_root()
    os.chdir(root)  # every path in params.yaml and dvc.yaml is relative to the repo root
    sections = registered_sections()
    if section:
        cfg = from_dict(sections[slug], section, slug)
        data_cfg = from_dict(sections["data"], data, "data")
    else:
        params = read_params(root / "params.yaml")
        check_params(params)
        profile = profile or active_profile(params)
        cfg = resolve_section(slug, params, profile=profile)
        data_cfg = resolve_section("data", params, profile=profile)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return NotebookContext(slug=slug, profile=profile, cfg=cfg, data=data_cfg, out_dir=out)
