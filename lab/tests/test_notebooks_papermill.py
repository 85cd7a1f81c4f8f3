"""`make run`'s path (the full suite: it is slow): both notebooks run by papermill on a small override, each with one
of the new likelihoods, into a temporary folder, leaving the committed files alone; the explorer exports as a
picture. tests/test_notebooks.py runs them as Jupyter's Run All does."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from core_conftest import fingerprint  # noqa: E402  (tests/conftest.py)

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ("Fully_Connected_VAE.ipynb", "CNN_VAE.ipynb")
# each notebook once, with one of the two new likelihoods (the committed runs are the bernoulli ones)
CASES = [(NOTEBOOKS[0], "sigma"), (NOTEBOOKS[1], "continuous_bernoulli")]


def execute_both(tmp_path: Path) -> tuple[dict[str, str | None], dict[str, tuple[Path, str, int]]]:
    """Both notebooks executed by papermill at the same time, one kernel of one thread each (most of a small run
    is the kernels' imports, which a second core halves): the fingerprint before, and per notebook its folder,
    papermill's output and exit status."""
    before = fingerprint()
    processes = {}
    for name, likelihood in CASES:
        folder = tmp_path / Path(name).stem
        folder.mkdir()
        # save_figures and progress keep their defaults: a quick run must leave img/ alone by itself
        parameters = {"epochs": 1, "train_limit": 2000, "run_dir": str(folder / "run"), "likelihood": likelihood}
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


def test_both_notebooks_run_on_a_small_override_and_show_the_explorer_as_a_picture(subtests, tmp_path):
    """One test, so that pytest-xdist runs the notebooks once; each check is a subtest."""
    before, results = execute_both(tmp_path)
    for name, likelihood in CASES:
        folder, output, status = results[name]
        with subtests.test(msg=f"{name} runs with likelihood {likelihood}"):
            assert status == 0, output[-4000:]  # papermill stops at the first cell that fails and names it
            assert torch.load(folder / "run" / "checkpoint.pt", weights_only=True)["config"]["likelihood"] == likelihood
        with subtests.test(msg=f"{name}: the explorer shows a picture without widget state"):
            assert status == 0
            html = explorer_html(folder, name)
            assert html.count('src="data:image/png;base64,') == 1
            assert "LatentExplorer(children=" not in html
    assert fingerprint() == before  # no figure written to img/, no notebook changed
