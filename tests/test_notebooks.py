"""Both committed notebooks as a user runs them: opened in Jupyter, the parameters cell edited to the README's quick
settings (epochs = 2, train_limit = 5000) and Run All, executed by nbclient as Jupyter does (no papermill, which
would replace that cell). Nothing tracked may change and training shows its progress bar.
lab/tests/test_notebooks_papermill.py covers `make run`'s papermill path."""

import asyncio
import re
from pathlib import Path

import nbformat
from conftest import ROOT, fingerprint
from nbclient import NotebookClient

NOTEBOOKS = ("Fully_Connected_VAE.ipynb", "CNN_VAE.ipynb")
QUICK = {"epochs": "2", "train_limit": "5000"}  # the README's quick look, typed into the first cell


def with_quick_settings(source: str) -> str:
    """The parameters cell with the README's quick values in place of its own."""
    for name, value in QUICK.items():
        source, found = re.subn(rf"^{name} = [^\s#]+", f"{name} = {value}", source, count=1, flags=re.M)
        assert found, f"the parameters cell has no line '{name} = ...'"
    return source


async def run_all(name: str, folder: Path) -> nbformat.NotebookNode:
    """Run All of the committed notebook with the quick settings, its working folder `folder` (so its run folder,
    runs/notebook-*, lands there and not over the user's); project modules import from ROOT."""
    notebook = nbformat.read(ROOT / name, as_version=4)
    first = next(cell for cell in notebook.cells if cell.cell_type == "code")
    assert "parameters" in first.metadata.get("tags", []), "the first code cell is the parameters cell"
    first.source = with_quick_settings(first.source)
    client = NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": folder}})
    await client.async_execute()
    return notebook


def progress_bars(notebook: nbformat.NotebookNode) -> list[str]:
    """The text of every progress bar (tqdm's widget) the notebook's outputs show."""
    return [
        output.data["text/plain"]
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if "application/vnd.jupyter.widget-view+json" in output.get("data", {})
        and re.search(r"epoch \d+/\d+", output.data.get("text/plain", ""))
    ]


def test_the_committed_notebooks_carry_no_papermill_cell():
    for name in NOTEBOOKS:
        notebook = nbformat.read(ROOT / name, as_version=4)
        tags = [tag for cell in notebook.cells for tag in cell.metadata.get("tags", [])]
        assert "injected-parameters" not in tags and tags.count("parameters") == 1, name


def test_run_all_with_the_quick_settings_changes_nothing_tracked_and_shows_progress(subtests, tmp_path, monkeypatch):
    """Both notebooks at once (a kernel of one thread each): one test, so that pytest-xdist runs them once."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    folders = {name: tmp_path / Path(name).stem for name in NOTEBOOKS}
    for folder in folders.values():
        folder.mkdir()
    before = fingerprint()

    async def both():
        return await asyncio.gather(*(run_all(name, folder) for name, folder in folders.items()))

    executed = dict(zip(NOTEBOOKS, asyncio.run(both())))
    assert fingerprint() == before, "Run All changed a tracked file (or left a new one)"
    for name, notebook in executed.items():
        with subtests.test(msg=f"{name} shows training progress"):
            bars = progress_bars(notebook)
            assert bars and all("img" in bar for bar in bars), bars
        with subtests.test(msg=f"{name} trained with the quick settings, in its own folder"):
            run = next(folders[name].glob("runs/notebook-*"))
            assert (run / "checkpoint.pt").exists() and not list(folders[name].glob("img"))
            printed = "".join(o.get("text", "") for cell in notebook.cells for o in cell.get("outputs", []))
            assert "5,000 training images" in printed and "epoch 2/2" in printed
