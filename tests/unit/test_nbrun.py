"""The notebook runner injects the resolved section and leaves nothing behind on failure."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from prunerep.config import ConfigError
from prunerep.nbrun import notebook_parameters, run_notebook

ROOT = Path(__file__).resolve().parents[2]


def _notebook(path: Path, body: str) -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile: str = "x"\nsection: dict = {}\ndata: dict = {}\nout_dir: str = ""')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def test_parameters_are_the_resolved_section():
    p = notebook_parameters("baseline", ROOT / "params.yaml", "results")
    assert p["out_dir"] == "results/baseline"
    assert p["profile"] in ("smoke", "default", "paper")
    assert p["section"]["models"] and p["data"]["val_size"] == 5000


def test_unknown_section_is_a_config_error():
    with pytest.raises(ConfigError, match="nosuch"):
        notebook_parameters("nosuch", ROOT / "params.yaml")


def test_run_injects_parameters_and_writes_atomically(tmp_path):
    (tmp_path / "nb").mkdir()
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    _notebook(tmp_path / "nb" / "baseline.ipynb",
              "import json, pathlib\npathlib.Path(out_dir, 'seen.json').write_text(json.dumps({'profile': profile, 'models': section['models']}))")
    out = run_notebook("baseline", params_path=tmp_path / "params.yaml", notebooks=tmp_path / "nb",
                       out_root=tmp_path / "results", failed_dir=tmp_path / "failed", cwd=tmp_path)
    assert out == tmp_path / "results" / "baseline" / "baseline.ipynb"
    seen = json.loads((tmp_path / "results" / "baseline" / "seen.json").read_text())
    assert seen["models"] == notebook_parameters("baseline", tmp_path / "params.yaml")["section"]["models"]
    executed = out.read_text()
    assert "injected-parameters" in executed  # the executed copy shows exactly what ran
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
