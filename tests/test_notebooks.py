"""Both notebooks run top to bottom on a small override, into a temporary folder, leaving the committed files alone."""
import hashlib
from pathlib import Path

import papermill
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ("Fully_Connected_VAE.ipynb", "CNN_VAE.ipynb")


def fingerprint() -> dict[str, str]:
    """sha256 of the committed notebooks and of every file in img/."""
    files = [ROOT / name for name in NOTEBOOKS] + sorted((ROOT / "img").rglob("*"))
    return {str(f.relative_to(ROOT)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files if f.is_file()}


# each notebook once, with one of the two new likelihoods (the committed runs are the bernoulli ones):
# four papermill runs would cost a minute and a half of the test suite's two minutes
@pytest.mark.parametrize("name, likelihood", [(NOTEBOOKS[0], "sigma"), (NOTEBOOKS[1], "continuous_bernoulli")])
def test_notebook_runs_on_a_small_override(tmp_path, monkeypatch, name, likelihood):
    # the kernel inherits this: one thread is as fast on this tiny run, and far faster on a busy machine
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    before = fingerprint()
    parameters = {"epochs": 1, "train_limit": 2000, "save_figures": False, "run_dir": str(tmp_path / "run"),
                  "likelihood": likelihood}
    # papermill raises PapermillExecutionError on the first cell that fails
    papermill.execute_notebook(str(ROOT / name), str(tmp_path / name), parameters=parameters,
                               kernel_name="python3", cwd=str(ROOT), progress_bar=False)
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["config"]["likelihood"] == likelihood
    assert fingerprint() == before
