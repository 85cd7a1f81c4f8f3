"""checkpoint.py and files.py against hostile files and races (issue 23): a failed run's clean-up spares a sibling
run, edited optimizer states, lock files that are links, folders or FIFOs, zip bombs and pickles as classifier
weights; and the writing helpers (atomic writes, WriteError, JSON, tables)."""
import copy
import errno
import json
import os
import resource
import signal
import time
from pathlib import Path

import pytest
import torch

import classifier
import files
from checkpoint import CHECKPOINT, FORMAT, CheckpointError, load_checkpoint, load_tensors, lock, restore, run_folder
from config import TrainConfig
from files import WriteError, atomic_write, unwritable, write_json
from models import FCVAE

from conftest import TINY, run_main, tiny_fit  # noqa: E402


@pytest.fixture(scope="module")
def valid_checkpoint(tmp_path_factory, tiny_data):
    """A resumable checkpoint of a tiny model after one epoch (300 images, batch 100: three steps), as a dict."""
    run = tmp_path_factory.mktemp("valid") / "run"
    tiny_fit(tiny_data, run)
    return load_checkpoint(run)


# ---------------------------------------------------------------------------------------------- run folders
@pytest.mark.parametrize("stop", [RuntimeError, KeyboardInterrupt])
def test_a_run_failing_before_its_first_checkpoint_removes_only_its_own_empty_folders(stop, tmp_path, tiny_data):
    race = tmp_path / "w" / "race"
    with pytest.raises(stop):
        with run_folder(race / "r2"):  # creates w, w/race and w/race/r2
            tiny_fit(tiny_data, race / "r1")  # meanwhile another process finishes a run next to it
            raise stop()
    assert load_checkpoint(race / "r1")["epoch"] == 1 and sorted(p.name for p in race.iterdir()) == ["r1"]
    with pytest.raises(stop):
        with run_folder(race / "r3" / "deep"):
            (race / "r3" / "notes.txt").write_text("someone else's file")
            raise stop()
    assert not (race / "r3" / "deep").exists() and (race / "r3" / "notes.txt").exists()
    with pytest.raises(stop):
        with run_folder(tmp_path / "new" / "a" / "b"):
            raise stop()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w"]  # alone, it leaves nothing behind


# ---------------------------------------------------------------------------------------------- optimizer state
OPTIMIZER_EDITS = {  # issue 23, case 9: each was accepted, or crashed (a scalar exp_avg: a segfault on resume)
    "scalar exp_avg": (lambda o: o["state"][0].update(exp_avg=torch.tensor(0.5)), r"state\[0\]\.exp_avg"),
    "float64 exp_avg": (lambda o: o["state"][0].update(exp_avg=o["state"][0]["exp_avg"].double()),
                        r"state\[0\]\.exp_avg"),
    "nan exp_avg_sq": (lambda o: o["state"][0]["exp_avg_sq"].fill_(float("nan")), r"state\[0\]\.exp_avg_sq"),
    "missing exp_avg_sq": (lambda o: o["state"][0].pop("exp_avg_sq"), r"state\[0\]: .*exp_avg_sq"),
    "integer step": (lambda o: o["state"][0].update(step=3), r"state\[0\]\.step"),
    "unknown parameter": (lambda o: o["state"].update({99: o["state"][0]}), r"state\[99\]"),
    "betas='x'": (lambda o: o["param_groups"][0].update(betas="x"), r"param_groups: .*betas"),
    "betas=(0.9, 1.5)": (lambda o: o["param_groups"][0].update(betas=(0.9, 1.5)), r"param_groups: .*betas"),
    "amsgrad=True": (lambda o: o["param_groups"][0].update(amsgrad=True), r"param_groups: .*amsgrad"),
    "eps=-1": (lambda o: o["param_groups"][0].update(eps=-1.0), r"param_groups: .*eps > 0"),
    "weight_decay=-5": (lambda o: o["param_groups"][0].update(weight_decay=-5.0), r"param_groups: .*weight_decay"),
    "lr=0": (lambda o: o["param_groups"][0].update(lr=0.0), r"param_groups: .*lr"),
    "a missing group key": (lambda o: o["param_groups"][0].pop("eps"), r"param_groups: its keys are not Adam's"),
    "another parameter list": (lambda o: o["param_groups"][0].update(params=[0, 1]), r"param_groups: its param"),
    "a tensor parameter list": (lambda o: o["param_groups"][0].update(params=torch.arange(len(o["state"]))),
                                r"param_groups: its param"),
    "a tensor state key": (lambda o: o["state"].update({torch.arange(3): o["state"][0]}), r"state\[tensor"),
}


@pytest.mark.parametrize("name", OPTIMIZER_EDITS)
def test_an_edited_optimizer_state_is_refused_naming_the_field(name, tmp_path, valid_checkpoint, capsys):
    edit, field = OPTIMIZER_EDITS[name]
    optimizer_state = copy.deepcopy(valid_checkpoint["optimizer_state"])
    edit(optimizer_state)
    run = tmp_path / "run"
    run.mkdir()
    torch.save({**valid_checkpoint, "optimizer_state": optimizer_state}, run / CHECKPOINT)
    with pytest.raises(CheckpointError, match=f"{CHECKPOINT}: field optimizer_state\\.{field}"):
        load_checkpoint(run)
    code, err = run_main(["--resume", str(run), "--epochs", "2", "--no-progress"], capsys)
    assert code == 2 and err.count("\n") == 1 and "field optimizer_state." in err and "Traceback" not in err


def test_the_unedited_optimizer_state_passes_and_resumes(valid_checkpoint):
    model = FCVAE(hidden=(16,))
    optimizer = torch.optim.Adam(model.parameters())
    restore(copy.deepcopy(valid_checkpoint), model, optimizer, torch.Generator())
    assert optimizer.state_dict()["state"][0]["step"].item() == 3  # 300 images, batch 100: three steps


# ---------------------------------------------------------------------------------------------- lock files
@pytest.mark.parametrize("kind", ["symlink", "dangling symlink", "folder", "fifo"])
def test_a_lock_that_is_not_a_regular_file_is_refused_in_one_line_and_nothing_is_written(kind, tmp_path, tiny_data,
                                                                                        capsys, loaded_once):
    run, target = tmp_path / "run", tmp_path / "precious.txt"
    run.mkdir()
    if kind == "symlink":
        target.write_text("precious")
        os.symlink(target, run / ".lock")
    elif kind == "dangling symlink":
        os.symlink(target, run / ".lock")
    elif kind == "folder":
        (run / ".lock").mkdir()
    else:
        os.mkfifo(run / ".lock")  # opening it must not wait for the other end (O_NONBLOCK)

    def hung(*args):
        raise TimeoutError("opening the lock hung")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(30)  # a hang becomes a failure
    try:
        with pytest.raises(CheckpointError, match=r"\.lock: .*(lock file|not a regular file)") as error:
            lock(run)
        assert "\n" not in str(error.value)
        with pytest.raises(CheckpointError):
            tiny_fit(tiny_data, run)
        code, err = run_main([*TINY, "--out", str(run)], capsys)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert code == 1 and err.count("\n") == 1 and ".lock" in err and "Traceback" not in err
    assert sorted(p.name for p in run.iterdir()) == [".lock"]  # no checkpoint written
    if kind == "symlink":
        assert target.read_text() == "precious" and (run / ".lock").is_symlink()
    else:
        assert not target.exists()


# ---------------------------------------------------------------------------------------------- guarded loading
def hostile_weights(path, tmp_path):
    """A classifier-weights file whose zip entry claims almost 4 GiB (a zip bomb's header, in a small file)."""
    torch.save({"state": classifier.Classifier().state_dict()}, tmp_path / "honest.pt")
    bomb = bytearray((tmp_path / "honest.pt").read_bytes())
    central = bomb.index(b"PK\x01\x02")  # central directory entry: uncompressed size at offset 24
    bomb[central + 24:central + 28] = (2 ** 32 - 2).to_bytes(4, "little")
    path.write_bytes(bomb)
    return path


def test_hostile_classifier_weights_are_refused_quickly_without_allocating(tmp_path):
    bomb = hostile_weights(tmp_path / "bomb.pt", tmp_path)
    peak, started = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.monotonic()
    with pytest.raises(classifier.ClassifierError, match=r"bomb.pt: refused: its entries claim 4,29\d,\d+,\d+ bytes"):
        classifier.load_classifier(bomb)
    assert time.monotonic() - started < 5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 512 * 1024  # KiB: far below gigabytes
    marker, evil = tmp_path / "pwned", tmp_path / "evil.pt"

    class RunsShell:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"state": RunsShell()}, evil)
    with pytest.raises(classifier.ClassifierError, match="evil.pt: refused: .*pickled") as error:
        classifier.load_classifier(evil)
    assert "corrupt" not in str(error.value) and not marker.exists()
    assert isinstance(classifier.load_classifier(tmp_path / "honest.pt"), classifier.Classifier)


def test_every_torch_load_goes_through_the_guarded_loader():
    root = Path(__file__).resolve().parents[1]
    callers = [str(path.relative_to(root)) for path in sorted([*root.glob("*.py"), *root.glob("lab/*.py")])
               if "torch.load(" in path.read_text()]
    assert callers == ["checkpoint.py"] and (root / "checkpoint.py").read_text().count("torch.load(") == 1


def test_load_tensors_names_the_file_with_the_caller_s_error(tmp_path):
    torch.save({"weights": torch.ones(3)}, tmp_path / "plain.pt")
    assert torch.equal(load_tensors(tmp_path / "plain.pt")["weights"], torch.ones(3))
    (tmp_path / "text.pt").write_text("not a zip")
    for error in (CheckpointError, classifier.ClassifierError):
        with pytest.raises(error, match="text.pt: not a checkpoint"):
            load_tensors(tmp_path / "text.pt", error)
        with pytest.raises(error, match="missing.pt: not a checkpoint"):
            load_tensors(tmp_path / "missing.pt", error)


def test_checkpoints_store_the_plain_config_and_a_validated_train_config(tmp_path, valid_checkpoint):
    assert valid_checkpoint["format"] == FORMAT == 2
    assert valid_checkpoint["config"] == FCVAE(hidden=(16,)).plain_config()
    assert TrainConfig(**{k: v for k, v in valid_checkpoint["train_config"].items() if k != "train_images"}) == \
        TrainConfig(epochs=1, batch_size=100)
    for train_config, why in (({"target_capacity": 5.0}, "target_capacity"),  # the setting of format 1: gone
                              ({"gamma": 3.0}, "only apply with capacity"), ({"epochs": 0}, "epochs must be >= 1")):
        torch.save({**valid_checkpoint, "train_config": {**valid_checkpoint["train_config"], **train_config}},
                   tmp_path / "edited.pt")
        with pytest.raises(CheckpointError, match=f"edited.pt: field train_config: not valid .*{why}"):
            load_checkpoint(tmp_path / "edited.pt")


# ---------------------------------------------------------------------------------------------- files.py
def test_atomic_write_replaces_whole_files_or_leaves_the_old_one(tmp_path):
    path = tmp_path / "notes.json"
    write_json(path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}

    def half_then_crash(f):
        f.write(b"{\"a\": ")
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(path, half_then_crash)
    assert json.loads(path.read_text()) == {"a": 1} and os.listdir(tmp_path) == ["notes.json"]
    with pytest.raises(ValueError):
        write_json(path, {"a": float("nan")})  # not JSON
    assert json.loads(path.read_text()) == {"a": 1}


@pytest.mark.parametrize("existed", [True, False])
def test_a_full_disk_is_a_write_error_that_claims_intact_only_when_there_was_a_file(existed, tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    if existed:
        write_json(path, {"epochs": [1]})

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full)
    with pytest.raises(WriteError) as error:
        write_json(path, {"epochs": [1, 2]})
    monkeypatch.undo()
    assert str(error.value).startswith(f"no space left on device while writing {path}")
    assert str(error.value).endswith("; the previous metrics.json is intact") == existed
    assert "intact" in str(error.value) or not existed
    assert sorted(os.listdir(tmp_path)) == (["metrics.json"] if existed else [])
    if existed:
        assert json.loads(path.read_text()) == {"epochs": [1]}


def test_other_write_failures_name_the_file(tmp_path, monkeypatch):
    def denied(*args):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(files.os, "replace", denied)
    with pytest.raises(WriteError, match=f"cannot write {tmp_path / 'a.json'}: Permission denied"):
        write_json(tmp_path / "a.json", {})
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []


def test_unwritable_says_why_and_creates_nothing(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    assert unwritable(tmp_path / "new" / "deeper") is None and not (tmp_path / "new").exists()
    assert unwritable("") == "'' is not a folder name" and unwritable(".") is None  # '' is not the current folder
    assert "is a file" in unwritable(tmp_path / "file" / "sub")
    monkeypatch.setattr(files.os, "access", lambda *args: False)
    assert "no write permission" in unwritable(tmp_path / "run")
