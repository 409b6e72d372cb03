"""Write a source notebook (no outputs) from a compact cell list: `python tools/nbwrite.py`.

Used by the maintainers to (re)generate notebooks/*.ipynb from tools/notebooks/<slug>.py, whose
cells are separated by lines `# %% [markdown]` / `# %%` / `# %% parameters` (jupytext's light
"percent" format, without needing jupytext installed).
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat


def parse(text: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                   "language_info": {"name": "python"}}
    kind, tags, lines = None, [], []

    def flush() -> None:
        if kind is None:
            return
        body = "\n".join(lines).strip("\n")
        if kind == "markdown":
            body = "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in body.splitlines())
            nb.cells.append(nbformat.v4.new_markdown_cell(body))
        else:
            cell = nbformat.v4.new_code_cell(body)
            if tags:
                cell.metadata["tags"] = list(tags)
            nb.cells.append(cell)

    for line in text.splitlines():
        if line.startswith("# %%"):
            flush()
            rest = line[4:].strip()
            kind = "markdown" if rest == "[markdown]" else "code"
            tags = ["parameters"] if rest == "parameters" else []
            lines = []
        else:
            lines.append(line)
    flush()
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"
    return nb


def main(argv: list[str]) -> None:
    root = Path(__file__).resolve().parents[1]
    sources = [Path(a) for a in argv] or sorted((root / "tools" / "notebooks").glob("*.py"))
    for src in sources:
        nb = parse(src.read_text())
        out = root / "notebooks" / f"{src.stem}.ipynb"
        nbformat.write(nb, out)
        print(f"wrote {out.relative_to(root)}")


if __name__ == "__main__":
    main(sys.argv[1:])
