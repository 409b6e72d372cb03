"""The notebook runner injects a short parameters cell, runs the notebook with the params file
it validated (recorded in the executed notebook's metadata) and leaves nothing behind on failure."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from prunerep.config import ConfigError
from prunerep.nbrun import notebook_parameters, resolved_sections, run_notebook

ROOT = Path(__file__).resolve().parents[2]


def _notebook(path: Path, body: str) -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile: str = "x"\nsection: dict = {}\ndata: dict = {}\nout_dir: str = ""')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def test_parameters_are_short_and_the_sections_resolved():
    p = notebook_parameters("baseline", ROOT / "params.yaml", "results")
    assert set(p) == {"profile", "out_dir"}  # no section dump in the parameters cell
    assert p["out_dir"] == "results/baseline"
    assert p["profile"] in ("smoke", "default", "paper")
    r = resolved_sections("baseline", ROOT / "params.yaml")
    assert r["section"]["models"] and r["data"]["val_size"] == 5000 and r["profile"] == p["profile"]


def test_unknown_section_is_a_config_error():
    with pytest.raises(ConfigError, match="nosuch"):
        notebook_parameters("nosuch", ROOT / "params.yaml")


def test_run_resolves_the_validated_params_and_writes_atomically(tmp_path):
    (tmp_path / "nb").mkdir()
    # another models list than the repository's, so reading the wrong params.yaml would show
    text = (ROOT / "params.yaml").read_text().replace("models: [resnet56, resnet20, vgg16]", "models: [resnet20]")
    assert "models: [resnet20]" in text
    (tmp_path / "params.yaml").write_text(text)
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    _notebook(tmp_path / "nb" / "baseline.ipynb",
              "import json, pathlib\nfrom prunerep.reporting.notebook import setup_notebook\n"
              "ctx = setup_notebook('baseline', profile, section, data, out_dir)\n"
              "pathlib.Path(out_dir, 'seen.json').write_text(json.dumps({'profile': ctx.profile, 'models': ctx.cfg.models}))")
    out = run_notebook("baseline", params_path=tmp_path / "params.yaml", notebooks=tmp_path / "nb",
                       out_root=tmp_path / "results", failed_dir=tmp_path / "failed", cwd=tmp_path)
    assert out == tmp_path / "results" / "baseline" / "baseline.ipynb"
    seen = json.loads((tmp_path / "results" / "baseline" / "seen.json").read_text())
    assert seen["models"] == ["resnet20"]
    executed = out.read_text()
    assert "injected-parameters" in executed
    # the executed copy records exactly what ran: the resolved sections, in its metadata
    meta = json.loads(executed)["metadata"]["prunerep"]
    assert meta["section"]["models"] == ["resnet20"] and meta["profile"] == seen["profile"]
    assert "section =" not in executed  # the parameters cell stays short
    # it records where it was written (not the temporary file it was executed into)
    assert json.loads(executed)["metadata"]["papermill"]["output_path"] == out.as_posix()
    assert ".baseline." not in executed


def test_failure_removes_outputs_and_keeps_the_failed_notebook(tmp_path):
    (tmp_path / "nb").mkdir()
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    _notebook(tmp_path / "nb" / "baseline.ipynb", "import pathlib\npathlib.Path(out_dir, 'partial.csv').write_text('x')\nraise RuntimeError('boom')")
    with pytest.raises(Exception, match="boom"):
        run_notebook("baseline", params_path=tmp_path / "params.yaml", notebooks=tmp_path / "nb",
                     out_root=tmp_path / "results", failed_dir=tmp_path / "failed", cwd=tmp_path)
    assert not (tmp_path / "results" / "baseline").exists()
    assert (tmp_path / "failed" / "baseline.ipynb").exists()
