"""What every notebook shows about itself: the set-up, the recipe it ran, the verdicts.

- `setup_notebook(...)`: repo root as cwd, validated config, output directory (a `NotebookContext`).
- `recipe_summary(ctx)`: the keys of the notebook's params section whose value at the active
  profile differs from the `paper` profile (the papers' recipes), with one line saying profile,
  device, threads and data; never a dump of the config.
- `show_verdicts(claims_table)`: the "What we found" cell: one row per claim, verdicts by the one
  rule, the rule under it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from prunerep.config import (
    PROFILES,
    REFERENCE_PROFILE,
    active_profile,
    check_params,
    from_dict,
    read_params,
    registered_sections,
    resolve_section,
    to_dict,
)
from prunerep.reporting.tables import MarkdownText, constant_sentence, markdown_table

#: nbrun points the kernel at the params file it validated (default: params.yaml at the root).
PARAMS_ENV = "PRUNEREP_PARAMS"
#: recipe_summary lists at most this many differing keys (the rest are counted).
MAX_RECIPE_ROWS = 30


def repo_root(start: Path | None = None) -> Path:
    """The nearest directory upwards holding params.yaml and dvc.yaml."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "params.yaml").exists() and (candidate / "dvc.yaml").exists():
            return candidate
    raise FileNotFoundError("no params.yaml/dvc.yaml in this directory or above: open the notebook "
                            "inside the repository")


@dataclass(frozen=True)
class NotebookContext:
    """What `setup_notebook` returns: the slug, profile, validated section, data config, outputs."""

    slug: str
    profile: str
    cfg: Any            # the section's frozen dataclass
    data: Any           # DataConfig
    out_dir: Path
    params: Mapping[str, Any] = field(default_factory=dict, repr=False)   # raw params.yaml

    def describe(self) -> str:
        """One short line (no absolute paths)."""
        return f"{self.slug}: profile `{self.profile}`, outputs in `{self.out_dir.as_posix()}`"


def _params_path(root: Path) -> Path:
    env = os.environ.get(PARAMS_ENV)
    return Path(env) if env else root / "params.yaml"


def setup_notebook(slug: str, profile: str, section: dict[str, Any], data: dict[str, Any],
                   out_dir: str) -> NotebookContext:
    """Validate the parameters and resolve the notebook's section.

    `python -m prunerep.nbrun` injects only `profile` and `out_dir` (a short parameters cell) and
    points the kernel at the params.yaml it validated; the section is resolved from that file, so
    `dvc repro` runs the notebook with exactly the params of params.yaml. A non-empty `section`
    (and `data`), e.g. typed by hand in JupyterLab, is used as given instead.
    """
    root = repo_root()
    os.chdir(root)  # every path in params.yaml and dvc.yaml is relative to the repo root
    params = read_params(_params_path(root))
    if section:
        sections = registered_sections()
        cfg = from_dict(sections[slug], section, slug)
        data_cfg = (from_dict(sections["data"], data, "data") if data
                    else resolve_section("data", params, profile=profile or None))
        profile = profile or active_profile(params)
    else:
        check_params(params)
        profile = profile or active_profile(params)
        cfg = resolve_section(slug, params, profile=profile)
        data_cfg = resolve_section("data", params, profile=profile)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return NotebookContext(slug=slug, profile=profile, cfg=cfg, data=data_cfg, out_dir=out, params=params)


# ----------------------------------------------------------------------------- the recipe


def short_repr(value: Any, width: int = 40) -> str:
    """A compact, one-line value for a table cell (long values end in "…")."""
    if value is None:
        text = "none"
    elif isinstance(value, str):
        text = value
    elif isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, list | tuple):
        text = "[" + ", ".join(short_repr(v, width) for v in value) + "]"
    elif isinstance(value, Mapping):
        text = "{" + ", ".join(f"{k}: {short_repr(v, width)}" for k, v in value.items()) + "}"
    else:
        text = str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def recipe_differences(active: Any, reference: Any) -> list[tuple[str, Any, Any]]:
    """(dotted key, active value, reference value) for every leaf that differs, in key order of
    the active config; mappings are compared key by key, lists of mappings of equal length item
    by item (`grids[0].models`); a key only one side has shows None on the other."""
    out: list[tuple[str, Any, Any]] = []
    _diff(to_dict(active), to_dict(reference), "", out)
    return out


def _diff(a: Any, r: Any, key: str, out: list[tuple[str, Any, Any]]) -> None:
    if isinstance(a, Mapping) and isinstance(r, Mapping):
        for k in [*a, *(k for k in r if k not in a)]:
            _diff(a.get(k), r.get(k), f"{key}.{k}" if key else str(k), out)
    elif (isinstance(a, list | tuple) and isinstance(r, list | tuple) and len(a) == len(r)
          and any(isinstance(v, Mapping) for v in [*a, *r])):
        for i, (x, y) in enumerate(zip(a, r, strict=True)):
            _diff(x, y, f"{key}[{i}]", out)
    elif a != r:
        out.append((key, a, r))


def _runtime_line(ctx: NotebookContext) -> str:
    import torch

    from prunerep.engine import pick_device

    device = pick_device(str(getattr(ctx.cfg, "device", "auto")))
    data = ctx.data
    source = getattr(data, "source", "")
    where = f" from `{Path(source).name}`" if source and source != "download" else ""
    return (f"Profile `{ctx.profile}` · device {device.type} · {torch.get_num_threads()} threads "
            f"in this process · workers {getattr(ctx.cfg, 'workers', 1)} · data "
            f"`{getattr(data, 'dataset', '?')}`{where}, {getattr(data, 'val_size', '?')} "
            "validation images held out.")


def recipe_summary(ctx: NotebookContext, reference_profile: str = REFERENCE_PROFILE) -> MarkdownText:
    """The keys of the notebook's section (and `data`) whose value at the active profile differs
    from `reference_profile` (the papers' recipes), as a short Markdown table under one line
    naming profile, device, threads and data."""
    if reference_profile not in PROFILES:
        raise ValueError(f"reference_profile {reference_profile!r} is not one of {PROFILES}")
    params = ctx.params or read_params(_params_path(repo_root()))
    line = _runtime_line(ctx)
    if ctx.profile == reference_profile:
        return MarkdownText(f"{line}\n\nThis is the `{reference_profile}` profile: the papers' "
                            "recipes as params.yaml holds them.\n")
    diffs = [(f"{ctx.slug}.{k}", a, r) for k, a, r in recipe_differences(
        ctx.cfg, resolve_section(ctx.slug, params, profile=reference_profile))]
    diffs += [(f"data.{k}", a, r) for k, a, r in recipe_differences(
        ctx.data, resolve_section("data", params, profile=reference_profile))]
    if not diffs:
        return MarkdownText(f"{line}\n\nNo key of `{ctx.slug}` differs from the "
                            f"`{reference_profile}` profile.\n")
    shown = diffs[:MAX_RECIPE_ROWS]
    table = pd.DataFrame([{"key": k, f"this run ({ctx.profile})": short_repr(a),
                           f"{reference_profile} profile": short_repr(r)} for k, a, r in shown])
    more = len(diffs) - len(shown)
    tail = (f"\n\n… and {more} more (`python -m prunerep.config show {ctx.slug}` prints the "
            "whole section).") if more else ""
    return MarkdownText(
        f"{line}\n\nWhat this run changes from the `{reference_profile}` profile (the papers' "
        f"recipes) in params.yaml:\n\n{markdown_table(table)}{tail}\n")


# ----------------------------------------------------------------------------- verdicts


def emphasise_verdict(verdict: str) -> str:
    """Bold for a decided verdict, italics for the undecided ones."""
    from prunerep.reporting.stats import NOT_SUPPORTED, SUPPORTED

    return f"**{verdict}**" if verdict in (SUPPORTED, NOT_SUPPORTED) else f"*{verdict}*"


def _quoted(claim_id: str, statement: str, claims: Mapping[str, Any]) -> str:
    claim = claims.get(claim_id)
    if claim is not None and claim.wording == "paraphrased":
        return f"{statement} (paraphrased)"
    return f"“{statement}”"


VERDICT_COLUMNS: tuple[str, ...] = ("claim", "statement", "our test", "n", "paper value", "ours",
                                    "verdict", "budget")


def verdict_markdown(claims_table: pd.DataFrame, claims: Mapping[str, Any] | None = None) -> str:
    """The Markdown of `show_verdicts` (see there)."""
    from prunerep.reporting.ledger import load_claims
    from prunerep.reporting.stats import VERDICT_RULE

    missing = [c for c in VERDICT_COLUMNS if c not in claims_table.columns]
    if missing:
        raise ValueError(f"show_verdicts: columns {missing} missing; pass the table write_claims returns")
    if claims is None:
        try:
            claims = load_claims()
        except (OSError, ValueError):
            claims = {}
    df = claims_table.loc[:, list(VERDICT_COLUMNS)].copy()
    df["statement"] = [_quoted(str(c), str(s), claims) for c, s in zip(df["claim"], df["statement"], strict=True)]
    df["verdict"] = [emphasise_verdict(str(v)) for v in df["verdict"]]
    df["n"] = [int(n) for n in df["n"]]
    notes = [str(x) for x in claims_table.get("note", pd.Series(dtype=str)).fillna("") if str(x)]
    head = ""
    budgets = set(df["budget"].astype(str))
    if len(df) > 1 and len(budgets) == 1:  # one budget for every claim: say it once
        if budgets != {"—"}:
            head = constant_sentence({"budget": str(df["budget"].iloc[0])}) + "\n\n"
        df = df.drop(columns=["budget"])
    if notes:
        df["note"] = claims_table["note"].fillna("").astype(str).to_numpy()
    return (f"{head}{markdown_table(df)}\n\n**Verdict rule.** {VERDICT_RULE} "
            "The paper value is the paper's own number (on its budget); ours is on the budget "
            "shown.\n")


def show_verdicts(claims_table: pd.DataFrame, claims: Mapping[str, Any] | None = None) -> MarkdownText:
    """The notebook's verdict cell: one row per claim (id, the statement quoted, our test, n, the
    paper's value, ours, the verdict emphasised, the budget), then the verdict rule.

    `claims_table` is what `write_claims(slug, evidence, out_dir)` returns; the verdicts in it
    were computed by `Evidence.judge` (this function only shows them)."""
    return MarkdownText(verdict_markdown(claims_table, claims))
