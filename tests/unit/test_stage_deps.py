"""Every paper stage declares exactly the code its notebook runs: the shared layers and its own
method and study modules, never another paper's. Checked by following the imports (static, also
inside functions) from the notebook's cells through the package, so an import added later that
reaches an undeclared file fails here instead of leaving DVC blind to it."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
PAPERS = ("gdp", "wgates", "functionality", "dsa", "dais", "greg")


def _module_file(name: str) -> Path | None:
    base = SRC / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def _lazy_export_nodes(tree: ast.AST) -> set[int]:
    """Nodes inside a module-level ``__getattr__`` (PEP 562 lazy exports such as ``prunerep.prune``):
    importing the module does not run them."""
    body = tree.body if isinstance(tree, ast.Module) else []
    return {id(n) for f in body if isinstance(f, ast.FunctionDef) and f.name == "__getattr__" for n in ast.walk(f)}


def _imports(tree: ast.AST, package: str) -> set[str]:
    """Modules of prunerep that `tree` imports (absolute and relative), submodules included."""
    out: set[str] = set()
    lazy = _lazy_export_nodes(tree)
    for node in ast.walk(tree):
        if id(node) in lazy:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("prunerep")}
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join([*parts, mod]) if mod else ".".join(parts)
            if not mod.startswith("prunerep"):
                continue
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in node.names if _module_file(f"{mod}.{a.name}") is not None}
    return out


def _closure(roots: set[str]) -> set[Path]:
    seen: set[str] = set()
    todo = list(roots)
    files: set[Path] = set()
    while todo:
        name = todo.pop()
        # importing a.b.c runs a/__init__, a/b/__init__ too
        parents = [".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)]
        for mod in [name, *parents]:
            if mod in seen:
                continue
            seen.add(mod)
            path = _module_file(mod)
            if path is None:
                continue
            files.add(path)
            package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
            todo.extend(_imports(ast.parse(path.read_text()), package) - seen)
    return files


def _notebook_imports(slug: str) -> set[str]:
    nb = json.loads((REPO / "notebooks" / f"{slug}.ipynb").read_text())
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    code = "\n".join(line for line in code.splitlines() if not line.lstrip().startswith(("%", "!")))
    return _imports(ast.parse(code), "prunerep") | {"prunerep.nbrun"}


def _declared(slug: str) -> list[str]:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][slug]["deps"]


@pytest.mark.parametrize("slug", [*PAPERS, "baseline", "compare"])
def test_a_notebook_stage_declares_every_file_its_notebook_imports(slug):
    declared = [REPO / d for d in _declared(slug) if d.startswith("src/")]
    used = _closure(_notebook_imports(slug))
    assert used, "no prunerep import found in the notebook"
    undeclared = sorted(p.relative_to(REPO).as_posix() for p in used
                        if not any(p == d or d in p.parents for d in declared))
    assert not undeclared, f"dvc.yaml stage {slug!r} does not list {undeclared}"


@pytest.mark.parametrize("slug", PAPERS)
def test_a_paper_stage_does_not_depend_on_another_papers_code_or_references(slug):
    deps = _declared(slug)
    assert "src/prunerep" not in deps and "references/claims" not in deps
    for other in set(PAPERS) - {slug}:
        assert not [d for d in deps if d.endswith((f"/{other}.py", f"/{other}.yaml"))], other
    assert f"references/claims/{slug}.yaml" in deps and f"references/paper_results/{slug}.yaml" in deps


@pytest.mark.parametrize("profile", ["smoke", "default", "paper"])
def test_the_compare_stage_declares_every_method_module_it_runs(profile):
    """The comparison runs methods through the registry (imported by name, not by a static
    import), so its stage must list each method's module itself."""
    from prunerep.config import resolve_section
    from prunerep.methods import method_module
    from prunerep.studies.compare import methods

    cfg = resolve_section("compare", params_path=REPO / "params.yaml", profile=profile)
    deps = set(_declared("compare"))
    missing = [m for m in methods(cfg)
               if "src/" + method_module(m).replace(".", "/") + ".py" not in deps]
    assert not missing, f"dvc.yaml stage 'compare' runs {missing} but does not list their modules"
