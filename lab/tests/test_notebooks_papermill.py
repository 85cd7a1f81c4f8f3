"""`make run`'s path (the full suite: it is slow): the three notebooks run by papermill on a small override (the
Fashion-MNIST ones each with one of the new likelihoods, the shapes one with the FC family and beta-TCVAE), into a
temporary folder, leaving the committed files alone; the explorer exports as a picture. tests/test_notebooks.py runs
them as Jupyter's Run All does."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from core_conftest import fingerprint  # noqa: E402  (tests/conftest.py)

ROOT = Path(__file__).resolve().parents[2]
# each notebook once, with settings its committed run does not use (those are bernoulli, H, and the shapes one's CNN):
# the parameters papermill sets, and what the checkpoint's model and training settings must then say
CASES = {
    "Fully_Connected_VAE.ipynb": {"likelihood": "sigma"},
    "CNN_VAE.ipynb": {"likelihood": "continuous_bernoulli"},
    "Disentangling_VAE.ipynb": {"model": "fc", "objective": "TC"},
}


def execute_all(tmp_path: Path) -> tuple[dict[str, str | None], dict[str, tuple[Path, str, int]]]:
    """The notebooks executed by papermill at the same time, one kernel of one thread each (most of a small run
    is the kernels' imports, which a second core halves): the fingerprint before, and per notebook its folder,
    papermill's output and exit status."""
    before = fingerprint()
    processes = {}
    for name, settings in CASES.items():
        folder = tmp_path / Path(name).stem
        folder.mkdir()
        # save_figures and progress keep their defaults: a quick run must leave img/ alone by itself
        parameters = {"epochs": 1, "train_limit": 2000, "run_dir": str(folder / "run"), **settings}
        command = [
            sys.executable,
            "-m",
            "papermill",
            str(ROOT / name),
            str(folder / name),
            "-y",
            json.dumps(parameters),
            "-k",
            "python3",
            "--cwd",
            str(ROOT),
            "--no-progress-bar",
        ]
        processes[name] = (
            folder,
            subprocess.Popen(
                command,
                env={**os.environ, "OMP_NUM_THREADS": "1"},
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            ),
        )
    results = {
        name: (folder, process.communicate(timeout=600)[0], process.returncode)
        for name, (folder, process) in processes.items()
    }
    return before, results


def explorer_html(notebook_path: Path, name: str) -> str:
    """The explorer cell of an executed notebook as an HTML export shows it, without widget state (as on GitHub
    or in an export of a notebook that `make run` refreshed)."""
    import nbformat
    from nbconvert import HTMLExporter

    notebook = nbformat.read(notebook_path / name, 4)
    notebook.metadata.pop("widgets", None)
    explorer = notebook.cells[-1]
    assert explorer.source.startswith("LatentExplorer(")
    notebook.cells = [explorer]
    return HTMLExporter().from_notebook_node(notebook)[0]


def test_every_notebook_runs_on_a_small_override_and_shows_the_explorer_as_a_picture(subtests, tmp_path):
    """One test, so that pytest-xdist runs the notebooks once; each check is a subtest."""
    before, results = execute_all(tmp_path)
    for name, settings in CASES.items():
        folder, output, status = results[name]
        with subtests.test(msg=f"{name} runs with {settings}"):
            assert status == 0, output[-4000:]  # papermill stops at the first cell that fails and names it
            checkpoint = torch.load(folder / "run" / "checkpoint.pt", weights_only=True)
            saved = {**checkpoint["config"], **checkpoint["train_config"]}
            assert {key: saved[key] for key in settings} == settings
        with subtests.test(msg=f"{name}: the explorer shows a picture without widget state"):
            assert status == 0
            html = explorer_html(folder, name)
            assert html.count('src="data:image/png;base64,') == 1
            assert "LatentExplorer(children=" not in html
    assert fingerprint() == before  # no figure written to img/, no notebook changed


def test_a_train_limit_too_small_for_the_samplers_stops_before_training(tmp_path, monkeypatch):
    """Trust round five, case 7: with train_limit = 10 the notebook failed only after training, at the samplers.
    Now its data cell says why (Run All, as Jupyter runs it) and the training cell never runs."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    notebook = nbformat.read(ROOT / "Fully_Connected_VAE.ipynb", as_version=4)
    first = next(cell for cell in notebook.cells if cell.cell_type == "code")
    first.source = first.source.replace("train_limit = None", "train_limit = 10", 1)
    for cell in (c for c in notebook.cells if c.cell_type == "code"):  # the committed outputs away: only this run shows
        cell.outputs, cell.execution_count = [], None
    client = NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": tmp_path}})
    with pytest.raises(CellExecutionError, match="single training image; the class sampler needs two or more"):
        client.execute()
    training = next(cell for cell in notebook.cells if "history = fit(" in cell.get("source", ""))
    assert training.get("outputs") == [] and training.get("execution_count") is None
    assert not (tmp_path / "runs").exists()
