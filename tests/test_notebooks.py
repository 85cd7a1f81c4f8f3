"""The committed notebooks as a user runs them: opened in Jupyter, the parameters cell edited to quick settings (the
README's epochs = 2, train_limit = 5000; the shapes notebook one epoch on 2,000 images) and Run All, executed by
nbclient as Jupyter does (no papermill, which would replace that cell). Nothing tracked may change and training shows
its progress bar. lab/tests/test_notebooks_papermill.py covers `make run`'s papermill path."""

import asyncio
import re
from pathlib import Path

import nbformat
import torch
from conftest import ROOT, fingerprint
from nbclient import NotebookClient

# each notebook's quick settings, typed into its first cell: the README's quick look for the Fashion-MNIST ones; the
# shapes notebook's test images (10,000) are evaluated every epoch and encoded for its figures and metrics, so it
# trains on fewer to stay as quick
QUICK = {
    "Fully_Connected_VAE.ipynb": {"epochs": 2, "train_limit": 5000},
    "CNN_VAE.ipynb": {"epochs": 2, "train_limit": 5000},
    "Disentangling_VAE.ipynb": {"epochs": 1, "train_limit": 2000},
}
NOTEBOOKS = tuple(QUICK)


def with_quick_settings(source: str, quick: dict[str, int]) -> str:
    """The parameters cell with the quick values in place of its own."""
    for name, value in quick.items():
        source, found = re.subn(rf"^{name} = [^\s#]+", f"{name} = {value}", source, count=1, flags=re.M)
        assert found, f"the parameters cell has no line '{name} = ...'"
    return source


async def run_all(name: str, folder: Path) -> nbformat.NotebookNode:
    """Run All of the committed notebook with the quick settings, its working folder `folder` (so its run folder,
    runs/notebook-*, lands there and not over the user's); project modules import from ROOT."""
    notebook = nbformat.read(ROOT / name, as_version=4)
    first = next(cell for cell in notebook.cells if cell.cell_type == "code")
    assert "parameters" in first.metadata.get("tags", []), "the first code cell is the parameters cell"
    first.source = with_quick_settings(first.source, QUICK[name])
    client = NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": folder}})
    await client.async_execute()
    return notebook


def printed(notebook: nbformat.NotebookNode) -> str:
    """Everything the notebook's cells printed."""
    return "".join(output.get("text", "") for cell in notebook.cells for output in cell.get("outputs", []))


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
    """The notebooks at once (a kernel of one thread each): one test, so that pytest-xdist runs them once."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    folders = {name: tmp_path / Path(name).stem for name in NOTEBOOKS}
    for folder in folders.values():
        folder.mkdir()
    before = fingerprint()

    async def every_notebook():
        return await asyncio.gather(*(run_all(name, folder) for name, folder in folders.items()))

    executed = dict(zip(NOTEBOOKS, asyncio.run(every_notebook())))
    assert fingerprint() == before, "Run All changed a tracked file (or left a new one)"
    for name, notebook in executed.items():
        with subtests.test(msg=f"{name} shows training progress"):
            bars = progress_bars(notebook)
            assert bars and all("img" in bar for bar in bars), bars
        with subtests.test(msg=f"{name} trained with the quick settings, in its own folder"):
            run = next(folders[name].glob("runs/notebook-*"))
            assert (run / "checkpoint.pt").exists() and not list(folders[name].glob("img"))
            text, epochs, images = printed(notebook), QUICK[name]["epochs"], QUICK[name]["train_limit"]
            assert f"{images:,} training images" in text and f"epoch {epochs}/{epochs}" in text
    with subtests.test(msg="the shapes notebook trains on shapes and prints the disentanglement metrics"):
        run = next(folders["Disentangling_VAE.ipynb"].glob("runs/notebook-*"))
        assert torch.load(run / "checkpoint.pt", weights_only=True)["train_config"]["dataset"] == "shapes"
        lines = printed(executed["Disentangling_VAE.ipynb"]).splitlines()
        for metric in ("MIG", "FactorVAE score", "DCI disentangle", "DCI completeness", "DCI informative"):
            assert any(re.fullmatch(rf"  {metric} +[01]\.\d{{3}}   .+", line) for line in lines), metric
