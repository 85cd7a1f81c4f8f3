"""Both notebooks run top to bottom on a small override, into a temporary folder, leaving the committed files alone."""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ("Fully_Connected_VAE.ipynb", "CNN_VAE.ipynb")
# each notebook once, with one of the two new likelihoods (the committed runs are the bernoulli ones)
CASES = [(NOTEBOOKS[0], "sigma"), (NOTEBOOKS[1], "continuous_bernoulli")]


def fingerprint() -> dict[str, str]:
    """sha256 of the committed notebooks and of every file in img/."""
    files = [ROOT / name for name in NOTEBOOKS] + sorted((ROOT / "img").rglob("*"))
    return {str(f.relative_to(ROOT)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files if f.is_file()}


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Both notebooks executed by papermill at the same time, one kernel of one thread each (most of a small run
    is the kernels' imports, which a second core halves): the fingerprint before, and per notebook its folder,
    papermill's output and exit status."""
    before = fingerprint()
    processes = {}
    for name, likelihood in CASES:
        folder = tmp_path_factory.mktemp(Path(name).stem)
        parameters = {"epochs": 1, "train_limit": 2000, "save_figures": False, "run_dir": str(folder / "run"),
                      "likelihood": likelihood}
        command = [sys.executable, "-m", "papermill", str(ROOT / name), str(folder / name), "-y",
                   json.dumps(parameters), "-k", "python3", "--cwd", str(ROOT), "--no-progress-bar"]
        processes[name] = folder, subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, text=True,
                                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    results = {name: (folder, process.communicate(timeout=600)[0], process.returncode)
               for name, (folder, process) in processes.items()}
    return before, results


@pytest.mark.parametrize("name, likelihood", CASES)
def test_notebook_runs_on_a_small_override(executed, name, likelihood):
    before, results = executed
    folder, output, status = results[name]
    assert status == 0, output[-4000:]  # papermill stops at the first cell that fails and names it
    assert torch.load(folder / "run" / "checkpoint.pt", weights_only=True)["config"]["likelihood"] == likelihood
    assert fingerprint() == before
