"""After `make run`: drop papermill's injected-parameters cell (it would override the parameters cell on every later
Run All in Jupyter: save_figures True would rewrite img/) and the saved widget state (the explorer's plotly.js
bundle, ~5 MB; widgets need a live kernel, and the explorer's output carries a static picture for exports).
The parameters the run used stay in the notebook's metadata (papermill.parameters).

    .venv/bin/python scripts/strip_notebooks.py Fully_Connected_VAE.ipynb CNN_VAE.ipynb
"""

import sys

import nbformat

INJECTED = "injected-parameters"


def strip(path: str) -> int:
    """Rewrite the notebook at `path` without the injected cell and the widget state; the cells dropped."""
    notebook = nbformat.read(path, as_version=4)
    cells = [cell for cell in notebook.cells if INJECTED not in cell.metadata.get("tags", [])]
    dropped, notebook.cells = len(notebook.cells) - len(cells), cells
    notebook.metadata.pop("widgets", None)
    nbformat.write(notebook, path)
    return dropped


if __name__ == "__main__":
    for name in sys.argv[1:]:
        print(f"{name}: dropped {strip(name)} injected-parameters cell(s) and the widget state")
