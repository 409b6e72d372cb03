"""The bad-input catalogue (issue #15): what a new user gets wrong, run against the real entry
points (`python -m prunerep.config check`, `python -m prunerep.data ...`, `python -m
prunerep.stages pretrain`, `python -m prunerep.nbrun`, and `prunerep.runner.execute`, which every
paper notebook calls before its first run).

Every case asserts:

- a non-zero exit status (command lines) or the expected exception (the runner);
- ONE message (one ``error:`` line on stderr, no Python traceback) that names the key path or the
  file at fault and says the fix; the whole message must equal the one recorded for the case in
  ``bad_input_messages.json`` (workspace paths written ``<tmp>``);
- nothing left where DVC would trust it: no file or folder appears or changes in the workspace
  except those a case lists as allowed (none is a DVC output).

``docs/bad_input.md`` is rendered from this list and those messages; a test keeps it current.
After changing a message on purpose: ``ACCEPT=1 pytest tests/unit/test_bad_input.py`` rewrites
both files (review the diff).
"""

from __future__ import annotations

import contextlib
import copy
import fnmatch
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest
import torch
import yaml

from prunerep.config import main as config_main
from prunerep.data import __main__ as data_cli
from prunerep.data.arrays import save_cache
from prunerep.nbrun import main as nbrun_main
from prunerep.stages.pretrain import main as pretrain_main

try:
    from .data_fixtures import make_tiny, write_image_folder, write_zip
except ImportError:  # run as a plain module (rootdir without packages)
    from data_fixtures import make_tiny, write_image_folder, write_zip

ROOT = Path(__file__).resolve().parents[2]
MESSAGES = Path(__file__).with_name("bad_input_messages.json")
DOCS = ROOT / "docs" / "bad_input.md"
ACCEPT = os.environ.get("ACCEPT") == "1"
MARKER = "PWNED"  # the file a code-running pickle would create


# ---------------------------------------------------------------------------------------------
# workspaces


def _committed() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def _set(params: dict[str, Any], path: str, value: Any) -> None:
    keys = path.split(".")
    node: Any = params
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    if isinstance(node, list):
        node[int(keys[-1])] = value
    else:
        node[keys[-1]] = value


def params_set(sets: dict[str, Any], base: dict[str, Any] | None = None) -> Callable[[Path], None]:
    """Setup: ``params.yaml`` = the committed file (or `base`) with `sets` (dotted key -> value)."""

    def setup(ws: Path) -> None:
        params = copy.deepcopy(base if base is not None else _committed())
        for path, value in sets.items():
            _set(params, path, value)
        (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    return setup


def params_text(edit: Callable[[str], str]) -> Callable[[Path], None]:
    """Setup: ``params.yaml`` = the committed file's text, edited (comments and layout kept)."""

    def setup(ws: Path) -> None:
        text = (ROOT / "params.yaml").read_text()
        new = edit(text)
        assert new != text, "the edit did not apply: update the case to the committed params.yaml"
        (ws / "params.yaml").write_text(new)

    return setup


def both(*setups: Callable[[Path], None]) -> Callable[[Path], None]:
    def setup(ws: Path) -> None:
        for s in setups:
            s(ws)

    return setup


def _tiny_cache(ws: Path, n_train: int = 200) -> None:
    """A decoded CIFAR-10-shaped cache of random images, as `prepare` writes it."""
    g = torch.Generator().manual_seed(0)
    save_cache(ws / "artifacts" / "data" / "dataset.pt", dataset="cifar10",
               train_images=torch.randint(0, 256, (n_train, 3, 32, 32), dtype=torch.uint8, generator=g),
               train_labels=torch.arange(n_train) % 10,
               test_images=torch.randint(0, 256, (50, 3, 32, 32), dtype=torch.uint8, generator=g),
               test_labels=torch.arange(50) % 10, classes=[str(i) for i in range(10)], source="synthetic")


#: The pretrain stage on the tiny cache: the committed file at profile smoke, a tiny model key
#: beside the committed ones (the papers' sections name those), CPU.
def _tiny_params() -> dict[str, Any]:
    params = _committed()
    params["profile"] = "smoke"
    params["data"] = {"dataset": "cifar10", "source": "download", "val_size": 40, "split_seed": 0}
    params["pretrain"]["models"]["tiny"] = {"name": "resnet20", "kwargs": {"shortcut": "A"}}
    params["pretrain"]["optim"]["batch_size"] = 16
    params["pretrain"]["runtime"] = {"device": "cpu", "channels_last": False, "progress": False}
    params["pretrain"]["profiles"]["smoke"] = {"optim": {"epochs": 1, "schedule": "constant"}}
    return params


def pretrain_ws(sets: dict[str, Any] | None = None, cache: bool = True) -> Callable[[Path], None]:
    def setup(ws: Path) -> None:
        if cache:
            _tiny_cache(ws)
        params_set(sets or {}, _tiny_params())(ws)

    return setup


def data_ws(data: dict[str, Any], raw: Callable[[Path], None] | None = None) -> Callable[[Path], None]:
    """Setup: a params.yaml with this `data` section, and raw files written by `raw(tmp)`
    (``tmp`` = the workspace's parent: sources live in ``../shared/`` as the committed one)."""

    def setup(ws: Path) -> None:
        if raw is not None:
            raw(ws.parent)
        (ws / "params.yaml").write_text(yaml.safe_dump({"data": data}, sort_keys=False))

    return setup


def _image_folder(tmp: Path, name: str = "tiny") -> Path:
    return write_image_folder(make_tiny(), tmp / "shared" / name)


def _one_class_zip(tmp: Path) -> None:
    folder = _image_folder(tmp, "one")
    for cls in ("dog", "frog"):
        shutil.rmtree(folder / "train" / cls)
        shutil.rmtree(folder / "test" / cls)
    write_zip(folder, tmp / "shared" / "one.zip")


def _mixed_sizes(tmp: Path) -> None:
    from PIL import Image

    folder = _image_folder(tmp, "mixed")
    Image.new("RGB", (9, 9)).save(folder / "train" / "dog" / "0001.png")


def _undecodable(tmp: Path) -> None:
    folder = _image_folder(tmp, "broken")
    (folder / "train" / "frog" / "0002.png").write_bytes(b"this is not a PNG file")


def _mislaid_zip(tmp: Path) -> None:
    folder = _image_folder(tmp, "flat")
    for cls in ("cat", "dog", "frog"):   # class folders at the top, no train/ and test/
        shutil.move(str(folder / "train" / cls), str(folder / cls))
    shutil.rmtree(folder / "train")
    shutil.rmtree(folder / "test")
    write_zip(folder, tmp / "shared" / "flat.zip")


def _truncated_zip(tmp: Path) -> None:
    zipped = write_zip(_image_folder(tmp), tmp / "shared" / "cut.zip")
    data = zipped.read_bytes()
    zipped.write_bytes(data[: len(data) // 2])


class _RunsCode:
    """Unpickling this runs a shell command: what a checkpoint from an untrusted source may hold."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def _write_code_pickle(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({**payload, "hook": _RunsCode(path.parent / MARKER)}, path)


def _cache_file(kind: str) -> Callable[[Path], None]:
    def setup(ws: Path) -> None:
        _tiny_cache(ws)
        cache = ws / "artifacts" / "data" / "dataset.pt"
        if kind == "truncated":
            data = cache.read_bytes()
            cache.write_bytes(data[: len(data) // 3])
        else:
            _write_code_pickle(cache, {"format": "prunerep.data/1"})

    return setup


# -- the runner: a paper stage's runs, before the first starts


def _dense(ws: Path, key: str, kind: str = "resnet20") -> None:
    from prunerep.models import get_model
    from prunerep.models.checkpoint import save_model

    path = ws / "artifacts" / "pretrain" / key / "model.pt"
    if kind in ("resnet20", "resnet56"):
        save_model(get_model(kind, shortcut="A"), path)
    elif kind == "truncated":
        save_model(get_model("resnet20", shortcut="A"), path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        _write_code_pickle(path, {"format": "prunerep.model/1"})


def runner_ws(key: str, kind: str = "resnet20", n_train: int = 200) -> Callable[[Path], None]:
    def setup(ws: Path) -> None:
        _tiny_cache(ws, n_train)
        _dense(ws, key, kind)

    return setup


def run_execute(key: str, expected: str, *, macs_keep: float = 0.5, batch_size: int = 16,
                method: str = "l1") -> Callable[[Path], None]:
    """What a paper notebook does: plan one run of `key` (L1 + one epoch of fine-tuning) and
    hand it to the runner."""

    def call(ws: Path) -> None:
        from prunerep.data import DataConfig
        from prunerep.engine import OptimConfig
        from prunerep.methods import Budget
        from prunerep.runner import RunSpec, StudyContext, execute

        ctx = StudyContext(slug="gdp", profile="smoke", data=DataConfig(val_size=40), workers=1,
                           expected_arch={key: expected})
        spec = RunSpec(method=method, budget=Budget(macs_keep=macs_keep), model=key, batch_size=batch_size,
                       finetune=OptimConfig(epochs=1, batch_size=batch_size), label=f"{method}@{macs_keep:g}")
        execute([spec], ctx)

    return call


# -- nbrun: the notebook stage


def _notebook(ws: Path, slug: str, body: str | None = None) -> None:
    """notebooks/<slug>.ipynb: the committed notebook, or a small one whose cell is `body`."""
    (ws / "notebooks").mkdir(exist_ok=True)
    if body is None:
        shutil.copy(ROOT / "notebooks" / f"{slug}.ipynb", ws / "notebooks" / f"{slug}.ipynb")
        return
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile = "smoke"\nout_dir = ""')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, ws / "notebooks" / f"{slug}.ipynb")


_IMPOSSIBLE_BUDGET_CELL = """\
from prunerep.data import DataConfig
from prunerep.methods import Budget
from prunerep.runner import RunSpec, StudyContext, execute
ctx = StudyContext(slug="greg", profile=profile, data=DataConfig(val_size=40), expected_arch={"resnet20": "resnet20"})
execute([RunSpec(method="l1", budget=Budget(macs_keep=0.0005), model="resnet20", batch_size=16, label="l1")], ctx)
"""


# ---------------------------------------------------------------------------------------------
# the catalogue


@dataclass(frozen=True)
class Case:
    """One bad input, what is run, and what must come out."""

    id: str
    given: str                                   # the bad input (the table's first column)
    command: str                                 # what the user ran
    setup: Callable[[Path], None]                # writes the workspace (cwd of the call)
    call: Callable[[Path], Any]                  # runs the entry point; a command line returns its status
    names: tuple[str, ...]                       # the message names these (key path, file) ...
    fix: str                                     # ... and says this (the fix)
    raises: type[BaseException] | None = None   # API entry point: the exception it raises
    status: int = 2                              # command line: its exit status
    left: str = ""                               # what stays on disk (default: `LEFT` of its command)
    allowed: tuple[str, ...] = ()                # workspace paths it may write (globs; no DVC output)
    cuda: bool | None = None                     # pretend this machine has (no) CUDA


def config_check(ws: Path) -> int:
    return config_main(["check", "--params", "params.yaml"])


def data(*argv: str) -> Callable[[Path], int]:
    return lambda ws: data_cli.main([*argv])


def pretrain(key: str) -> Callable[[Path], int]:
    return lambda ws: pretrain_main([key])


def nbrun(slug: str) -> Callable[[Path], int]:
    return lambda ws: nbrun_main([slug])


CHECK = "python -m prunerep.config check"
FETCH = "python -m prunerep.data fetch"
DOCS_CMD = "ACCEPT=1 pytest tests/unit/test_bad_input.py"

CASES: list[Case] = [
    # -- params.yaml: syntax ------------------------------------------------------------------
    Case("yaml-syntax", "`greg: model: resnet56` (a second `: ` on one line)", CHECK,
         params_text(lambda t: "greg: model: resnet56\n" + t), config_check,
         ("params.yaml", "line 1, column 12"), "fix the syntax there"),
    Case("yaml-tab", "a tab indenting a key", CHECK,
         params_text(lambda t: t.replace("  val_size: 5000", "\tval_size: 5000", 1)), config_check,
         ("params.yaml", "line"), "YAML indents with spaces"),
    Case("yaml-duplicate-key", "the same key twice in one mapping (PyYAML keeps the last; DVC refuses the file)",
         CHECK, params_text(lambda t: t.replace("  val_size: 5000", "  val_size: 5000\n  val_size: 100", 1)),
         config_check, ("params.yaml", "'val_size'"), "delete or rename one of them"),
    Case("yaml-not-a-mapping", "params.yaml is a list", CHECK,
         lambda ws: (ws / "params.yaml").write_text("- data\n- pretrain\n"), config_check,
         ("params.yaml",), "one `<section>:` block per stage"),
    Case("params-missing", "no params.yaml in the working folder", CHECK, lambda ws: None, config_check,
         ("params.yaml",), "Run from the repository root"),
    # -- params.yaml: typos at every depth ----------------------------------------------------
    Case("typo-section", "`pretrian:` (depth 1)", CHECK,
         params_text(lambda t: t.replace("\npretrain:\n", "\npretrian:\n", 1)), config_check,
         ("pretrian",), "Did you mean 'pretrain'?"),
    Case("typo-key", "`greg.modle` (depth 2)", CHECK, params_set({"greg.modle": "resnet56"}), config_check,
         ("greg.modle",), "Did you mean 'model'?"),
    Case("typo-nested", "`greg.reg.update_reg_intervall` (depth 3)", CHECK,
         params_set({"greg.reg.update_reg_intervall": 10}), config_check,
         ("greg.reg.update_reg_intervall",), "Did you mean 'update_reg_interval'?"),
    Case("typo-deep", "`greg.table2.resnet56_cifar10.stage_prr` (depth 4)", CHECK,
         params_set({"greg.table2.resnet56_cifar10.stage_prr": [0, 0.5, 0.5, 0.5, 0]}), config_check,
         ("greg.table2.resnet56_cifar10.stage_prr",), "Did you mean 'stage_pr'?"),
    Case("typo-list-item", "`dsa.grids[0].budget` (a key inside a list item)", CHECK,
         params_set({"dsa.grids.0.budget": 0.5}), config_check,
         ("dsa.grids[0].budget",), "Did you mean 'budgets'?"),
    Case("typo-profile-block", "`gdp.profiles.default.gdp.ramp_epoch` (a key of a profile block, depth 5)",
         CHECK, params_set({"gdp.profiles.default.gdp.ramp_epoch": 1.0}), config_check,
         ("gdp.gdp.ramp_epoch", "gdp.profiles.default"), "Did you mean 'ramp_epochs'?"),
    Case("typo-profile-name", "`gdp.profiles.defualt:`", CHECK,
         params_set({"gdp.profiles.defualt": {"epochs": 1}}), config_check,
         ("gdp.profiles.defualt",), "Did you mean 'default'?"),
    Case("typo-value", "`gdp.optim.schedule: cosin`", CHECK, params_set({"gdp.optim.schedule": "cosin"}),
         config_check, ("gdp.optim.schedule",), "is not one of ['constant', 'cosine', 'multistep', 'onecycle']"),
    # -- params.yaml: types and ranges -------------------------------------------------------
    Case("type-int", "`pretrain.seed: zero`", CHECK, params_set({"pretrain.seed": "zero"}), config_check,
         ("pretrain.seed",), "expected an integer"),
    Case("type-list", "`gdp.seeds: 0` (a number where a list goes)", CHECK, params_set({"gdp.seeds": 0}),
         config_check, ("gdp.seeds",), "expected a list"),
    Case("range-greg-ratio", "`greg.table1.ratios: [1.5]`", CHECK, params_set({"greg.table1.ratios": [1.5]}),
         config_check, ("greg.table1.ratios",), "in [0, 1)"),
    Case("range-greg-ratio-profile", "`greg.profiles.default.table1.ratios: [0.9, 1.5]` (in the active profile)",
         CHECK, params_set({"greg.profiles.default.table1.ratios": [0.9, 1.5]}), config_check,
         ("greg.table1.ratios", "greg.profiles.default"), "in [0, 1)"),
    Case("range-dsa-budget", "`dsa.timing.budget: 1.5`", CHECK, params_set({"dsa.timing.budget": 1.5}),
         config_check, ("dsa.timing.budget",), "fraction of the dense MACs in (0, 1]"),
    Case("empty-gdp-seeds", "`gdp.seeds: []`", CHECK, params_set({"gdp.seeds": []}), config_check,
         ("gdp.seeds",), "give at least one seed"),
    Case("empty-dsa-grid-seeds", "a `dsa` grid with `seeds: []` (ran nothing and still captioned a verdict)",
         CHECK, params_set({"dsa.profiles.default.grids.0.seeds": []}), config_check,
         ("dsa.grids[0].seeds", "dsa.profiles.default"), "give at least one value, or delete the grid"),
    Case("empty-dsa-timing-seeds", "`dsa.timing.seeds: []` with timing enabled", CHECK,
         params_set({"dsa.profiles.default.timing.seeds": []}), config_check,
         ("dsa.timing.seeds",), "set timing.enabled: false"),
    Case("range-val-size", "`data.val_size: -1`", CHECK, params_set({"data.val_size": -1}), config_check,
         ("data.val_size",), "must be an integer >= 0"),
    Case("range-subset", "`pretrain.profiles.smoke.subset.train: 0`", CHECK,
         params_set({"pretrain.profiles.smoke.subset.train": 0}), config_check,
         ("pretrain.subset.train", "pretrain.profiles.smoke"), "give a positive number, or null"),
    Case("range-workers", "`gdp.workers: 0`", CHECK, params_set({"gdp.workers": 0}), config_check,
         ("gdp.workers",), "must be >= 1"),
    Case("range-batch", "`pretrain.optim.batch_size: 0`", CHECK, params_set({"pretrain.optim.batch_size": 0}),
         config_check, ("pretrain.optim.batch_size",), "must be > 0"),
    Case("range-dsa-min-keep", "`dsa.method.min_keep: 1.5`", CHECK, params_set({"dsa.method.min_keep": 1.5}),
         config_check, ("dsa.method.min_keep",), "in [0, 1)"),
    Case("range-gdp-budget", "`gdp.budgets.resnet56: [0.5, 0]`", CHECK,
         params_set({"gdp.budgets.resnet56": [0.5, 0]}), config_check,
         ("gdp.budgets.resnet56",), "give MACs fractions in (0, 1)"),
    # -- params.yaml: unknown names -----------------------------------------------------------
    Case("unknown-profile", "`profile: fast`", CHECK, params_set({"profile": "fast"}), config_check,
         ("profile",), "Set `profile:` in params.yaml"),
    Case("unknown-architecture", "`pretrain.models.resnet56.name: resnet99`", CHECK,
         params_set({"pretrain.models.resnet56.name": "resnet99"}), config_check,
         ("pretrain.models.resnet56.name", "'resnet99'"), "Did you mean 'resnet56'?"),
    Case("unknown-model-key", "`greg.model: resnet99` (no `pretrain@resnet99` stage makes it)", CHECK,
         params_set({"greg.model": "resnet99"}), config_check,
         ("greg.model", "pretrain.models"), "add `resnet99: {name: <registered model>}` to pretrain.models"),
    Case("unknown-model-key-profile", "`gdp.profiles.default.controls.model: resnet32` (a key absent from pretrain.models)",
         CHECK, params_set({"gdp.profiles.default.controls.model": "resnet32"}), config_check,
         ("gdp.controls.model", "'resnet32'"), "Use one of ['resnet20', 'resnet56', 'vgg16']"),
    Case("unknown-model-key-baseline", "`baseline.models: [resnet56, resnet110]`", CHECK,
         params_set({"baseline.models": ["resnet56", "resnet110"]}), config_check,
         ("baseline.models[1]", "'resnet110'"), "dvc repro pretrain@resnet110"),
    Case("unknown-method", "`greg.table1.methods: [l1, greg3]`", CHECK,
         params_set({"greg.table1.methods": ["l1", "greg3"]}), config_check,
         ("greg.table1.methods", "'greg3'"), "is not one of ['greg1', 'greg2', 'l1']"),
    Case("unknown-baseline", "`gdp.baselines: [l1, fpgm]`", CHECK, params_set({"gdp.baselines": ["l1", "fpgm"]}),
         config_check, ("gdp.baselines", "'fpgm'"), "choose from l1, slimming, random"),
    Case("unknown-device", "`pretrain.runtime.device: gpu0`", CHECK,
         params_set({"pretrain.runtime.device": "gpu0"}), config_check,
         ("pretrain.runtime.device", "'gpu0'"), "use auto (CUDA when present, else CPU), cpu, cuda or cuda:N"),
    Case("device-absent", "`gdp.runtime.device: cuda` on a machine without CUDA", CHECK,
         params_set({"gdp.runtime.device": "cuda"}), config_check,
         ("gdp.runtime.device", "'cuda'"), "use auto or cpu", cuda=False),
    # -- the data command line (its own loader: same checks, same messages) -------------------
    Case("data-typo", "`data.sauce:` read by the data CLI", FETCH,
         data_ws({"dataset": "tiny", "sauce": "../shared/tiny.zip"}), data("fetch", "--params", "params.yaml"),
         ("params.yaml", "data.sauce"), "Did you mean 'source'?"),
    Case("data-yaml-syntax", "invalid YAML read by the data CLI", FETCH,
         lambda ws: (ws / "params.yaml").write_text("data:\n  source: [../shared/tiny.zip\n"),
         data("fetch", "--params", "params.yaml"), ("params.yaml", "line 3"), "fix the syntax there"),
    Case("data-duplicate-key", "a duplicate key read by the data CLI", FETCH,
         lambda ws: (ws / "params.yaml").write_text("data:\n  val_size: 10\n  val_size: 20\n"),
         data("fetch", "--params", "params.yaml"), ("params.yaml", "'val_size'"), "delete or rename one of them"),
    Case("data-params-missing", "`--params` naming a file that does not exist", FETCH, lambda ws: None,
         data("fetch", "--params", "nope.yaml"), ("nope.yaml",), "give the path of params.yaml"),
    Case("data-source-missing", "`data.source:` a path that does not exist", FETCH,
         data_ws({"dataset": "tiny", "source": "../shared/nope.zip"}), data("fetch", "--params", "params.yaml"),
         ("data.source", "../shared/nope.zip"), "Set data.source in params.yaml"),
    Case("data-unknown-torchvision", "`data.source: torchvision:Cifar11` (no such dataset)", FETCH,
         data_ws({"dataset": "cifar11", "source": "torchvision:Cifar11"}), data("fetch", "--params", "params.yaml"),
         ("data.source", "'Cifar11'"), "names are case-sensitive"),
    Case("data-one-class", "a zip with one class folder (prepare refused it after fetch had copied it)", FETCH,
         data_ws({"dataset": "mine", "source": "../shared/one.zip", "val_size": 2}, _one_class_zip),
         data("fetch", "--params", "params.yaml"), ("one.zip",), "needs at least 2"),
    Case("data-mixed-sizes", "an image folder with a 9x9 image among 8x8 ones", FETCH,
         data_ws({"dataset": "mine", "source": "../shared/mixed", "val_size": 2}, _mixed_sizes),
         data("fetch", "--params", "params.yaml"), ("mixed", "0001.png"), "must have one size"),
    Case("data-undecodable", "an image folder with a file that is not an image", FETCH,
         data_ws({"dataset": "mine", "source": "../shared/broken", "val_size": 2}, _undecodable),
         data("fetch", "--params", "params.yaml"), ("train/frog/0002.png",), "Replace or delete that file"),
    Case("data-mislaid", "a zip of class folders without train/ and test/", FETCH,
         data_ws({"dataset": "mine", "source": "../shared/flat.zip", "val_size": 2}, _mislaid_zip),
         data("fetch", "--params", "params.yaml"), ("flat.zip", "unknown dataset layout"),
         "image folder train/<class>/*.png|jpg and test/<class>/*"),
    Case("data-truncated-zip", "a zip cut in half", FETCH,
         data_ws({"dataset": "mine", "source": "../shared/cut.zip", "val_size": 2}, _truncated_zip),
         data("fetch", "--params", "params.yaml"), ("cut.zip",), "Replace it with a good copy"),
    Case("data-named-classes", "`data.dataset: cifar10` on a 3-class image folder", FETCH,
         data_ws({"dataset": "cifar10", "source": "../shared/tiny", "val_size": 2}, _image_folder),
         data("fetch", "--params", "params.yaml"), ("data.dataset", "10 classes"),
         "fix data.dataset or data.source"),
    Case("prepare-not-fetched", "`prepare` before `fetch`", "python -m prunerep.data prepare --out artifacts/data/dataset.pt",
         data_ws({"dataset": "tiny", "source": "../shared/tiny.zip", "val_size": 2}),
         data("prepare", "--params", "params.yaml", "--out", "artifacts/data/dataset.pt"),
         ("data/tiny/tiny.zip",), "Run `python -m prunerep.data fetch`"),
    Case("info-truncated-cache", "a decoded cache cut to a third", "python -m prunerep.data info artifacts/data/dataset.pt",
         _cache_file("truncated"), data("info", "artifacts/data/dataset.pt"),
         ("artifacts/data/dataset.pt", "truncated"), "Delete it and re-run `python -m prunerep.data prepare"),
    Case("info-code-pickle", "a cache whose pickle would run a shell command when loaded",
         "python -m prunerep.data info artifacts/data/dataset.pt", _cache_file("code"),
         data("info", "artifacts/data/dataset.pt"), ("artifacts/data/dataset.pt", "could run code"),
         "so it is refused", left="nothing; the pickled command did not run"),
    # -- the pretrain stage ----------------------------------------------------------------------
    Case("pretrain-unknown-key", "`pretrain nosuch`", "python -m prunerep.stages pretrain nosuch",
         pretrain_ws(), pretrain("nosuch"), ("pretrain.models", "'nosuch'"), "or add 'nosuch' to pretrain.models"),
    Case("pretrain-no-cache", "the stage run before the `data` stage", "python -m prunerep.stages pretrain tiny",
         pretrain_ws(cache=False), pretrain("tiny"), ("artifacts/data/dataset.pt",),
         "Create it with `python -m prunerep.data prepare"),
    Case("pretrain-val-size", "`data.val_size` as large as the training set", "python -m prunerep.stages pretrain tiny",
         pretrain_ws({"data.val_size": 200}), pretrain("tiny"), ("data.val_size",),
         "lower data.val_size in params.yaml"),
    Case("pretrain-batch-over-subset", "`batch_size` larger than the training split (was trained on one short batch, "
         "the metrics reporting the requested batch)", "python -m prunerep.stages pretrain tiny",
         pretrain_ws({"pretrain.optim.batch_size": 512}), pretrain("tiny"),
         ("pretrain.optim.batch_size", "160 images"), "lower it"),
    Case("pretrain-device", "`pretrain.runtime.device: gpu0`", "python -m prunerep.stages pretrain tiny",
         pretrain_ws({"pretrain.runtime.device": "gpu0"}), pretrain("tiny"),
         ("pretrain.runtime.device", "'gpu0'"), "use auto"),
    # -- the runner (every paper notebook), before its first run -----------------------------------
    Case("dense-other-arch", "a ResNet-20 checkpoint where `pretrain.models.resnet56` (a ResNet-56) is expected",
         "python -m prunerep.nbrun <paper> (prunerep.runner.execute)",
         runner_ws("resnet56", "resnet20"), run_execute("resnet56", "resnet56"),
         ("artifacts/pretrain/resnet56/model.pt", "'resnet20'"), "rerun `dvc repro pretrain@resnet56`",
         raises=ValueError),
    Case("dense-truncated", "a dense checkpoint cut in half", "python -m prunerep.nbrun <paper> (prunerep.runner.execute)",
         runner_ws("resnet20", "truncated"), run_execute("resnet20", "resnet20"),
         ("artifacts/pretrain/resnet20/model.pt", "truncated"), "Delete it and rerun", raises=ValueError),
    Case("dense-code-pickle", "a dense checkpoint whose pickle would run a shell command",
         "python -m prunerep.nbrun <paper> (prunerep.runner.execute)",
         runner_ws("resnet20", "code"), run_execute("resnet20", "resnet20"),
         ("artifacts/pretrain/resnet20/model.pt", "could run code"), "so it is refused", raises=ValueError,
         left="nothing: no run started; the pickled command did not run"),
    Case("budget-impossible", "a MACs budget below the smallest network pruning can reach (`macs_keep: 0.0005`: "
         "less than one channel per layer; was found only once the run had started)", "python -m prunerep.nbrun <paper> (prunerep.runner.execute)",
         runner_ws("resnet20"), run_execute("resnet20", "resnet20", macs_keep=0.0005),
         ("gdp", "0.0005", "'resnet20'"), "give budgets above", raises=ValueError),
    Case("batch-over-subset", "a run's `batch_size` larger than its training images (an empty epoch, then a "
         "late traceback)", "python -m prunerep.nbrun <paper> (prunerep.runner.execute)",
         runner_ws("resnet20"), run_execute("resnet20", "resnet20", batch_size=256),
         ("gdp.batch_size", "160 training images"), "raise gdp.subset.train", raises=ValueError),
    # -- nbrun ------------------------------------------------------------------------------------
    Case("nbrun-unknown-slug", "`nbrun gerg`", "python -m prunerep.nbrun gerg",
         lambda ws: _notebook(ws, "greg"), nbrun("gerg"), ("notebooks/gerg.ipynb",), "Did you mean 'greg'?"),
    Case("nbrun-device", "`greg.runtime.device: gpu0`, before the kernel starts", "python -m prunerep.nbrun greg",
         both(lambda ws: _notebook(ws, "greg"), params_set({"greg.runtime.device": "gpu0"})), nbrun("greg"),
         ("greg.runtime.device",), "use auto"),
    Case("nbrun-cell-error", "an impossible budget found by the runner inside the notebook",
         "python -m prunerep.nbrun greg",
         both(runner_ws("resnet20"), params_set({"profile": "smoke"}),
              lambda ws: _notebook(ws, "greg", _IMPOSSIBLE_BUDGET_CELL)),
         nbrun("greg"), ("notebooks/greg.ipynb", "cell 3", "ValueError"), "give budgets above", status=1,
         left="the executed notebook with its traceback, `artifacts/failed/greg.ipynb` (not a DVC output); "
              "`results/greg/` removed; no run started",
         allowed=("artifacts/failed", "artifacts/failed/greg.ipynb", "results")),
]


# ---------------------------------------------------------------------------------------------
# the test


def _tree(root: Path) -> dict[str, tuple[int, int] | None]:
    """Every file (size, mtime) and folder (None) under `root`."""
    out: dict[str, tuple[int, int] | None] = {}
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        if "__pycache__" in rel or rel.endswith(".ipynb_checkpoints"):
            continue
        out[rel] = None if path.is_dir() else (path.stat().st_size, path.stat().st_mtime_ns)
    return out


def _normalise(message: str, tmp: Path) -> str:
    for p in sorted({str(tmp.resolve()), str(tmp)}, key=len, reverse=True):
        message = message.replace(p, "<tmp>")
    return message


def _recorded() -> dict[str, str]:
    return json.loads(MESSAGES.read_text()) if MESSAGES.exists() else {}


def _record(case_id: str, message: str) -> None:
    messages = _recorded()
    messages[case_id] = message
    order = {c.id: i for i, c in enumerate(CASES)}
    MESSAGES.write_text(json.dumps(dict(sorted(messages.items(), key=lambda kv: order.get(kv[0], 1 << 30))),
                                   indent=1, ensure_ascii=False) + "\n")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                   capsys: pytest.CaptureFixture[str]) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    case.setup(ws)
    monkeypatch.chdir(ws)
    if case.cuda is not None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: case.cuda)
    before = _tree(tmp_path)
    capsys.readouterr()
    if case.raises is None:
        status = case.call(ws)
        err = capsys.readouterr().err
        assert status == case.status, err
        assert "Traceback" not in err, err
        errors = [line for line in err.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, f"expected one `error:` line, got:\n{err}"
        message = errors[0].removeprefix("error: ")
    else:
        with pytest.raises(case.raises) as info:
            case.call(ws)
        message = str(info.value)
        assert "\n" not in message, message
    message = _normalise(message, tmp_path)
    for part in case.names:
        assert part in message, f"the message does not name {part!r}: {message}"
    assert case.fix in message, f"the message does not say the fix {case.fix!r}: {message}"
    # nothing DVC would trust: no new or changed file or folder but the allowed ones
    after = _tree(tmp_path)
    changed = sorted(k for k in after if before.get(k, "new") != after[k])
    unexpected = [k for k in changed if not any(fnmatch.fnmatch(k, f"ws/{a}") for a in case.allowed)]
    assert not unexpected, f"left behind: {unexpected}"
    assert not (tmp_path / MARKER).exists() and not list(tmp_path.rglob(MARKER)), "the pickle ran code"
    if ACCEPT:
        _record(case.id, message)
    else:
        recorded = _recorded().get(case.id)
        assert message == recorded, (f"message changed; if on purpose, run `{DOCS_CMD}` and review the diff\n"
                                     f"  now:      {message}\n  recorded: {recorded}")


def test_catalogue_covers_the_issue() -> None:
    """At least 30 cases, unique ids, one recorded message each, every entry point exercised."""
    ids = [c.id for c in CASES]
    assert len(ids) >= 30 and len(set(ids)) == len(ids)
    if not ACCEPT:
        assert set(_recorded()) == set(ids), "run the catalogue with ACCEPT=1 once to record new cases"
    commands = " ".join(c.command for c in CASES)
    for entry in ("config check", "data fetch", "data prepare", "data info", "stages pretrain", "nbrun",
                  "runner.execute"):
        assert entry in commands, entry


# ---------------------------------------------------------------------------------------------
# the table


#: What every case of a command leaves on disk, unless it says otherwise (checked: see `allowed`).
LEFT = {
    "python -m prunerep.config": "nothing (the check only reads)",
    "python -m prunerep.data fetch": "nothing: no copy, no empty folder under `data/`",
    "python -m prunerep.data prepare": "nothing: no cache written",
    "python -m prunerep.data info": "nothing (it only reads)",
    "python -m prunerep.stages": "nothing: no `artifacts/pretrain/`, `results/pretrain/` or resume checkpoint",
    "python -m prunerep.nbrun <paper>": "nothing: no run started, no log, no `artifacts/<paper>/`",
    "python -m prunerep.nbrun": "nothing: the kernel never started, `results/<paper>/` untouched",
}


def left_on_disk(case: Case) -> str:
    return case.left or next(v for k, v in LEFT.items() if case.command.startswith(k))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_table(cases: list[Case], messages: dict[str, str]) -> str:
    """docs/bad_input.md: the catalogue as a Markdown table (input -> error -> what is left)."""
    lines = [
        "# Bad input: what a user gets wrong, and what they are told",
        "",
        f"<!-- generated from tests/unit/test_bad_input.py by `{DOCS_CMD}`; do not edit by hand -->",
        "",
        f"{len(cases)} cases, each run by the fast test tier against the real entry point (four of them "
        "also through `python -m`, in the slow tier). Every one stops before any work starts (no "
        "training run, no copy into `data/`, no full decode) with one message naming the key path or "
        "the file and the fix, a non-zero exit status (2 for bad input, 1 for a notebook whose cell "
        "raised) and no Python traceback, and leaves nothing a later `dvc repro` would trust. "
        "`<tmp>` stands for the folder the case ran in.",
        "",
        "| # | input | command | error message | left on disk |",
        "|---|---|---|---|---|",
    ]
    for i, c in enumerate(cases, 1):
        message = messages.get(c.id, "(not recorded)")  # as code: `<tmp>`, `<section>` are not HTML
        lines.append(f"| {i} | {_cell(c.given)} | `{_cell(c.command)}` | `` {_cell(message)} `` "
                     f"| {_cell(left_on_disk(c))} |")
    return "\n".join(lines) + "\n"


def test_docs_table_is_current() -> None:
    table = render_table(CASES, _recorded())
    if ACCEPT:
        DOCS.parent.mkdir(exist_ok=True)
        DOCS.write_text(table)
    assert DOCS.exists() and DOCS.read_text() == table, f"docs/bad_input.md is stale: run `{DOCS_CMD}`"


# ---------------------------------------------------------------------------------------------
# the same through `python -m` (the process a user starts), for one case per command line


@pytest.mark.slow
@pytest.mark.parametrize(("module", "case_id"), [
    ("prunerep.config", "yaml-duplicate-key"),
    ("prunerep.data", "data-one-class"),
    ("prunerep.stages", "pretrain-batch-over-subset"),
    ("prunerep.nbrun", "nbrun-device"),
])
def test_python_m_prints_the_same_single_line(module: str, case_id: str, tmp_path: Path) -> None:
    case = next(c for c in CASES if c.id == case_id)
    ws = tmp_path / "ws"
    ws.mkdir()
    case.setup(ws)
    argv = {"prunerep.config": ["check", "--params", "params.yaml"],
            "prunerep.data": ["fetch", "--params", "params.yaml"],
            "prunerep.stages": ["pretrain", "tiny"],
            "prunerep.nbrun": ["greg"]}[module]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
        [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]))
    out = subprocess.run([sys.executable, "-m", module, *argv], cwd=ws, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == case.status, out.stderr
    assert "Traceback" not in out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert [_normalise(e.removeprefix("error: "), tmp_path) for e in errors] == [_recorded()[case_id]]
    with contextlib.suppress(FileNotFoundError):
        assert not list((ws / "results").iterdir())


# ---------------------------------------------------------------------------------------------
# not an error, but never silent


def test_a_subset_larger_than_its_split_is_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A fast profile's subset on a small dataset of one's own is the whole split (CI's
    other-shape run relies on it): said on stderr, and recorded beside the requested value."""
    from prunerep.data import load_splits

    _tiny_cache(tmp_path)
    with caplog.at_level("WARNING", logger="prunerep.data"):
        splits = load_splits(tmp_path / "artifacts" / "data" / "dataset.pt", val_size=40, train_subset=1000)
    assert len(splits.train) == 160
    assert "subset.train: 1000 images asked, the train split has 160: using all 160" in caplog.text
    assert splits.describe()["subset_clamped"] == {"train": [1000, 160]}
    assert splits.describe()["train_subset"] == 1000
    # within the split: nothing said, nothing added to the record
    caplog.clear()
    with caplog.at_level("WARNING", logger="prunerep.data"):
        splits = load_splits(tmp_path / "artifacts" / "data" / "dataset.pt", val_size=40, train_subset=100)
    assert not caplog.text and "subset_clamped" not in splits.describe()
