import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data import load_dataset  # noqa: E402


@pytest.fixture(scope="session")
def fmnist():
    """The real Fashion-MNIST, loaded once per test session."""
    return load_dataset("fashion-mnist")


@pytest.fixture(scope="session")
def shapes_data():
    """The shapes dataset (made in ./data on first use), loaded once per test session."""
    return load_dataset("shapes")


@pytest.fixture(scope="session")
def small_fmnist(fmnist):
    """The first 2,000 training images and the first 2,000 test images: for quick training tests."""
    return fmnist.limited(train=2000, test=2000)


TEST_IMAGES = 2000


@pytest.fixture
def loaded_once(fmnist, monkeypatch):
    """train.py and evaluate.py take the session's Fashion-MNIST instead of decoding the gzipped IDX files again
    (seconds per call), with only the first TEST_IMAGES test images (each epoch's test loss runs over all of them).
    A data_dir, or another dataset, still reads the files."""
    import evaluate
    import train

    def load(name="fashion-mnist", data_dir=None, limit=None):
        if data_dir is not None or name != "fashion-mnist":
            return load_dataset(name, data_dir, limit)
        return fmnist.limited(train=limit, test=TEST_IMAGES)

    monkeypatch.setattr(train, "load_dataset", load)
    monkeypatch.setattr(evaluate, "load_dataset", load)
    return load


QUIET = {"progress": False, "log": lambda line: None}
TINY = ["--model", "fc", "--hidden", "16", "--train-limit", "300", "--no-progress"]


@pytest.fixture(scope="module")
def tiny_data(small_fmnist):
    """300 training and 300 test images."""
    return small_fmnist.limited(train=300, test=300)


def tiny_fit(data, out_dir=None, epochs=1, **kwargs):
    """A one-layer FC (16 units) trained from seed 0 on `data`: (model, history)."""
    import torch

    from config import TrainConfig
    from models import FCVAE
    from train import fit

    torch.manual_seed(0)
    model = FCVAE(hidden=(16,))
    return model, fit(model, data, TrainConfig(epochs=epochs, batch_size=100), out_dir=out_dir, **QUIET, **kwargs)


def run_main(args, capsys):
    """(exit status, stderr) of train.main, whether it returns or exits."""
    from train import main

    try:
        code = main(args)
    except SystemExit as exit_info:
        code = exit_info.code
    return code, capsys.readouterr().err


def fingerprint() -> dict[str, str | None]:
    """What `git status` would show changed: sha256 of every tracked file (None: deleted), and the untracked files
    git does not ignore (runs/ is ignored). Without git: every file under img/ and the notebooks."""

    def git(*args: str) -> list[str] | None:
        done = subprocess.run(["git", *args, "-z"], cwd=ROOT, capture_output=True)
        return [name for name in done.stdout.decode().split("\0") if name] if done.returncode == 0 else None

    tracked = git("ls-files")
    files = (
        [ROOT / name for name in tracked]
        if tracked is not None
        else [*ROOT.glob("*.ipynb"), *(f for f in (ROOT / "img").rglob("*") if f.is_file())]
    )
    digests = {
        str(f.relative_to(ROOT)): hashlib.sha256(f.read_bytes()).hexdigest() if f.exists() else None
        for f in sorted(files)
    }
    return {**digests, **{f"untracked {name}": "" for name in git("ls-files", "--others", "--exclude-standard") or []}}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI (CI=true) a skipped test fails: the full suite runs everything it names, or says why not."""
    report = yield
    if report.skipped and os.environ.get("CI") == "true" and call.when in ("setup", "call"):
        report.outcome, report.longrepr = "failed", f"skipped under CI: {report.longrepr}"
    return report
