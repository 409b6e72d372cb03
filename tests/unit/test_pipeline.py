"""The pipeline's files agree: slugs, notebooks, params sections, dvc.yaml, DVC settings."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import yaml
from papermill.translators import PythonTranslator

from prunerep.config import read_params, registered_sections

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_STAGES = {"baseline", "greg", "gdp", "dsa"}


def _dvc_stages() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def test_every_notebook_has_a_params_section_and_a_stage():
    notebooks = {p.stem for p in (ROOT / "notebooks").glob("*.ipynb")}
    sections = set(registered_sections())
    stages = _dvc_stages()
    assert notebooks >= NOTEBOOK_STAGES
    for slug in notebooks:
        assert slug in sections, f"notebooks/{slug}.ipynb has no params section"
        assert slug in read_params(ROOT / "params.yaml"), f"params.yaml lacks section {slug}"
        assert stages[slug]["cmd"] == f"python -m prunerep.nbrun {slug}"
        assert f"notebooks/{slug}.ipynb" in stages[slug]["deps"]
        # params.yaml reaches the stage only through what it reads, resolved (stage inputs@slug)
        assert f"results/inputs/{slug}.json" in stages[slug]["deps"]
        assert "params" not in stages[slug], f"stage {slug}: depend on results/inputs/{slug}.json"
        assert slug in stages["inputs"]["foreach"]


def test_stage_inputs_stages_track_what_they_resolve():
    """inputs@<slug> and pretrain_inputs@<model> rerun on any edit of what they read (the cheap
    stage reruns; the expensive one only if the resolved file's bytes change)."""
    stages = _dvc_stages()
    inputs, pretrain = stages["inputs"]["do"], stages["pretrain_inputs"]["do"]
    assert inputs["cmd"] == "python -m prunerep.config inputs ${item} --out results/inputs/${item}.json"
    assert set(inputs["params"]) == {"profile", "data", "pretrain", "${item}"}
    assert stages["pretrain_inputs"]["foreach"] == "${pretrain.models}"
    assert pretrain["cmd"].endswith("--model ${key} --out results/inputs/pretrain-${key}.json")
    assert set(pretrain["params"]) == {"profile", "data", "pretrain"}
    assert "results/inputs/pretrain-${key}.json" in stages["pretrain"]["do"]["deps"]
    assert "params" not in stages["pretrain"]["do"]
    for stage in (inputs, pretrain):
        assert "src/prunerep/config.py" in stage["deps"]
        assert all(out.get(next(iter(out)), {}).get("cache") is False for out in stage["outs"])


def test_pretrain_foreach_matches_params_and_baseline_deps():
    params = read_params(ROOT / "params.yaml")
    stages = _dvc_stages()
    assert stages["pretrain"]["foreach"] == "${pretrain.models}"
    for key in params["pretrain"]["models"]:
        assert f"artifacts/pretrain/{key}/model.pt" in stages["baseline"]["deps"]
    assert set(params["baseline"]["models"]) <= set(params["pretrain"]["models"])


def test_source_notebooks_have_no_outputs_and_a_parameters_cell():
    for path in (ROOT / "notebooks").glob("*.ipynb"):
        nb = json.loads(path.read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert not any(c.get("outputs") or c.get("execution_count") for c in code), f"{path} has outputs"
        tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, f"{path}: exactly one cell tagged `parameters` expected"
        # papermill must parse every parameter, or it warns "Passed unknown parameter" and the
        # executed copy's parameters cell no longer documents what ran
        cell = nbformat.v4.new_code_cell("".join(tagged[0]["source"]))
        parsed = {p.name for p in PythonTranslator.inspect(cell)}
        for name in ("profile", "section", "data", "out_dir"):
            assert name in parsed, f"{path}: papermill does not parse parameter {name}"
        prose = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
        assert "Assumptions and deviations" in prose, f"{path}: no 'Assumptions and deviations' section"


def test_notebooks_match_their_percent_sources():
    import sys

    sys.path.insert(0, str(ROOT / "tools"))
    try:
        from nbwrite import parse
    finally:
        sys.path.pop(0)
    for src in (ROOT / "tools" / "notebooks").glob("*.py"):
        generated = parse(src.read_text())
        committed = json.loads((ROOT / "notebooks" / f"{src.stem}.ipynb").read_text())
        assert [("".join(c["source"]) if isinstance(c["source"], list) else c["source"]) for c in committed["cells"]] == \
            [c["source"] for c in generated.cells], f"notebooks/{src.stem}.ipynb is stale: run python tools/nbwrite.py"


def test_dvc_is_quiet_and_offline_safe():
    config = (ROOT / ".dvc" / "config").read_text()
    assert "analytics = false" in config and "check_update = false" in config
    assert (ROOT / "data.dvc").exists()
    assert yaml.safe_load((ROOT / "data.dvc").read_text())["outs"][0]["path"] == "data"
