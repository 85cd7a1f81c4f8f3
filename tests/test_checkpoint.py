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
from conftest import TINY, run_main, tiny_fit  # noqa: E402

import classifier
import files
from checkpoint import CHECKPOINT, DIGEST, FORMAT, CheckpointError, load_checkpoint, load_tensors, restore
from config import TrainConfig
from files import WriteError, atomic_write, unwritable, write_json
from models import FCVAE
from runs import EVAL_FILE, RunFolder, lock
from train import fit


def run_folder(path):
    """Hold a run folder for writing, as fit does."""
    return RunFolder(path).hold()


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
    "scalar exp_avg": (lambda o: o["state"][0].update(exp_avg=torch.tensor(0.5)), r"\.state\[0\]"),
    "float64 exp_avg": (lambda o: o["state"][0].update(exp_avg=o["state"][0]["exp_avg"].double()), r"\.state\[0\]"),
    "nan exp_avg_sq": (lambda o: o["state"][0]["exp_avg_sq"].fill_(float("nan")), r"\.state\[0\]"),
    "missing exp_avg_sq": (lambda o: o["state"][0].pop("exp_avg_sq"), r"\.state\[0\]: .*exp_avg_sq"),
    "integer step": (lambda o: o["state"][0].update(step=3), r"\.state\[0\]"),
    "unknown parameter": (lambda o: o["state"].update({99: o["state"][0]}), r"\.state\[99\]"),
    "betas='x'": (lambda o: o["param_groups"][0].update(betas="x"), r"\.param_groups: not those of Adam"),
    "betas=(0.9, 1.5)": (lambda o: o["param_groups"][0].update(betas=(0.9, 1.5)), r"\.param_groups"),
    "amsgrad=True": (lambda o: o["param_groups"][0].update(amsgrad=True), r"\.param_groups"),
    "eps=-1": (lambda o: o["param_groups"][0].update(eps=-1.0), r"\.param_groups"),
    "weight_decay=-5": (lambda o: o["param_groups"][0].update(weight_decay=-5.0), r"\.param_groups"),
    "lr=0": (lambda o: o["param_groups"][0].update(lr=0.0), r"\.param_groups: not those of Adam\(lr=0.001\)"),
    "a missing group key": (lambda o: o["param_groups"][0].pop("eps"), r"\.param_groups"),
    "another parameter list": (lambda o: o["param_groups"][0].update(params=[0, 1]), r": .*doesn't match the size"),
    "a tensor parameter list": (
        lambda o: o["param_groups"][0].update(params=torch.arange(len(o["state"]))),
        r"\.param_groups",
    ),
    "a tensor state key": (lambda o: o["state"].update({torch.arange(3): o["state"][0]}), r"\.state\[tensor"),
}


@pytest.mark.parametrize("name", OPTIMIZER_EDITS)
def test_an_edited_optimizer_state_is_refused_naming_the_field(name, tmp_path, valid_checkpoint, capsys):
    """Without a digest (as written before digests): the structure is checked; with the digest kept: it fails."""
    edit, field = OPTIMIZER_EDITS[name]
    optimizer_state = copy.deepcopy(valid_checkpoint["optimizer_state"])
    edit(optimizer_state)
    run = tmp_path / "run"
    run.mkdir()
    undigested = {k: v for k, v in valid_checkpoint.items() if k != DIGEST}
    torch.save({**undigested, "optimizer_state": optimizer_state}, run / CHECKPOINT)
    with pytest.raises(CheckpointError, match=f"{CHECKPOINT}: field optimizer_state{field}"):
        load_checkpoint(run)
    code, err = run_main(["--resume", str(run), "--epochs", "2", "--no-progress"], capsys)
    assert code == 2 and err.count("\n") == 1 and "field optimizer_state" in err and "Traceback" not in err
    torch.save({**valid_checkpoint, "optimizer_state": optimizer_state}, run / CHECKPOINT)  # the digest kept
    with pytest.raises(CheckpointError, match=f"{CHECKPOINT}: field {DIGEST}: the content does not match"):
        load_checkpoint(run)


def test_the_unedited_optimizer_state_passes_and_resumes(valid_checkpoint):
    model = FCVAE(hidden=(16,))
    optimizer = torch.optim.Adam(model.parameters())
    restore(copy.deepcopy(valid_checkpoint), model, optimizer, torch.Generator())
    assert optimizer.state_dict()["state"][0]["step"].item() == 3  # 300 images, batch 100: three steps


# ---------------------------------------------------------------------------------------------- lock files
@pytest.mark.parametrize("kind", ["symlink", "dangling symlink", "folder", "fifo"])
def test_a_lock_that_is_not_a_regular_file_is_refused_in_one_line_and_nothing_is_written(
    kind, tmp_path, tiny_data, capsys, loaded_once
):
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
    bomb[central + 24 : central + 28] = (2**32 - 2).to_bytes(4, "little")
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
    callers = [
        str(path.relative_to(root))
        for path in sorted([*root.glob("*.py"), *root.glob("lab/*.py")])
        if "torch.load(" in path.read_text()
    ]
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
    assert valid_checkpoint["format"] == FORMAT == 3
    assert valid_checkpoint["config"] == FCVAE(hidden=(16,)).plain_config()
    assert TrainConfig.from_dict(valid_checkpoint["train_config"]) == TrainConfig(epochs=1, batch_size=100)
    for train_config, why in (
        ({"target_capacity": 5.0}, "target_capacity"),  # the setting of format 1: gone
        ({"gamma": 3.0}, "gamma only apply with objective B"),
        ({"epochs": 0}, "epochs must be >= 1"),
    ):
        torch.save(
            {**valid_checkpoint, DIGEST: None, "train_config": {**valid_checkpoint["train_config"], **train_config}},
            tmp_path / "edited.pt",
        )
        with pytest.raises(CheckpointError, match=f"edited.pt: field train_config: .*{why}"):
            load_checkpoint(tmp_path / "edited.pt")


# ---------------------------------------------------------------------------------------------- files.py
def test_atomic_write_replaces_whole_files_or_leaves_the_old_one(tmp_path):
    path = tmp_path / "notes.json"
    write_json(path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}

    def half_then_crash(f):
        f.write(b'{"a": ')
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


# ---------------------------------------------------------------------------------------------- issue 34: trust
def xor_inside_a_tensor(path, tensor):
    """XOR 100 bytes in the middle of `tensor`'s bytes in the file: the zip and its pickle stay readable."""
    data = bytearray(path.read_bytes())
    start = data.index(tensor.contiguous().numpy().tobytes()) + 64
    data[start : start + 100] = bytes(b ^ 0x5A for b in data[start : start + 100])
    path.write_bytes(data)


def test_a_checkpoint_whose_tensor_bytes_changed_is_refused_by_load_resume_and_evaluate(
    tmp_path, tiny_data, capsys, loaded_once
):
    """Case 1: torch.load does not check the zip's CRC, so 100 flipped bytes in a weight used to train and
    evaluate on; the digest refuses them in one line, and no eval.json is written."""
    import evaluate

    run = tmp_path / "run"
    tiny_fit(tiny_data, run)
    xor_inside_a_tensor(run / CHECKPOINT, load_checkpoint(run)["model_state"]["encoder.1.weight"])
    torch.load(run / CHECKPOINT, weights_only=True)  # still loads: only the digest can tell
    with pytest.raises(CheckpointError, match=f"{CHECKPOINT}: field {DIGEST}: the content does not match") as error:
        load_checkpoint(run)
    assert "\n" not in str(error.value)
    code, err = run_main(["--resume", str(run), "--epochs", "2", "--no-progress"], capsys)
    assert code == 2 and err.count("\n") == 1 and DIGEST in err
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main([str(run), "--train-limit", "200", "--iwae-images", "10"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and DIGEST in err
    assert not (run / EVAL_FILE).exists()


EDITS = {  # trust round five, case 3: each loaded, resumed and evaluated without a word while the digest covered
    "activation": lambda c: c["config"].update(activation="elu"),  # only the tensors
    "likelihood": lambda c: c["config"].update(likelihood="continuous_bernoulli"),
    "training beta": lambda c: c["train_config"].update(beta=5.0),
    "history": lambda c: c["history"][0]["test"].update(recon=1.0),
    "epoch": lambda c: c["history"][0].update(seconds=0.5),
}


@pytest.mark.parametrize("field", EDITS)
def test_an_edit_to_the_settings_or_the_history_is_refused_by_the_digest_of_the_whole(field, tmp_path, tiny_data):
    run = tmp_path / "run"
    tiny_fit(tiny_data, run)
    edited = load_checkpoint(run)
    EDITS[field](edited)
    torch.save(edited, run / CHECKPOINT)
    with pytest.raises(CheckpointError, match=f"field {DIGEST}: the content does not match"):
        load_checkpoint(run)


def test_a_checkpoint_without_a_digest_loads_unverified_said_once_and_stays_so_when_resumed(
    tmp_path, tiny_data, valid_checkpoint, capsys, loaded_once
):
    """Case 3: the digest removed and the weights scaled by 1.05 was accepted silently, and resuming it wrote a fresh
    valid digest over the tampered weights. Now every command says it is unverified, and it stays so."""
    import evaluate

    run = tmp_path / "run"
    run.mkdir()
    tampered = {k: v for k, v in valid_checkpoint.items() if k != DIGEST}
    tampered["model_state"] = {k: v * 1.05 for k, v in tampered["model_state"].items()}
    torch.save(tampered, run / CHECKPOINT)
    said = []
    folder = RunFolder(run, log=said.append)
    assert folder.checkpoint[DIGEST] is None and not folder.verified and folder.epoch == 1
    assert len(said) == 1 and "unverified" in said[0] and str(run / CHECKPOINT) in said[0]
    code, err = run_main(["--resume", str(run), "--epochs", "2", "--no-progress"], capsys)
    assert code == 0 and err.count("unverified") == 1
    assert load_checkpoint(run)[DIGEST] is None and load_checkpoint(run)["epoch"] == 2  # no fresh digest
    evaluate.main(
        [str(run), "--train-limit", "200", "--eval-limit", "200", "--iwae-images", "10", "--samples", "20", "--k", "1"]
    )
    assert capsys.readouterr().err.count("unverified") == 1
    saved = json.loads((run / EVAL_FILE).read_text())
    assert saved["checkpoint_verified"] is False and saved["checkpoint_digest"] is None


def test_a_format_2_checkpoint_loads_unverified(tmp_path, valid_checkpoint):
    run = tmp_path / "run"
    run.mkdir()
    old = {**{k: v for k, v in valid_checkpoint.items() if k != DIGEST}, "format": 2, "tensor_sha256": "ab" * 32}
    torch.save(old, run / CHECKPOINT)
    loaded = load_checkpoint(run)
    assert loaded[DIGEST] is None and "tensor_sha256" not in loaded and not RunFolder(run, log=list().append).verified


def test_eval_json_names_the_checkpoint_file_and_its_digest(tmp_path, tiny_data):
    import evaluate
    from files import sha256

    run = tmp_path / "run"
    tiny_fit(tiny_data, run)
    result = evaluate.evaluate_run(
        RunFolder(run),
        tiny_data.limited(test=50),
        evaluate.EvalConfig(k=1, iwae_images=5, samples=20),
        classifier.load_classifier(),
    )
    saved = json.loads((run / EVAL_FILE).read_text())
    assert saved["checkpoint_digest"] == load_checkpoint(run)[DIGEST] == result["checkpoint_digest"]
    assert saved["checkpoint_verified"] is True and saved["checkpoint_sha256"] == sha256(run / CHECKPOINT)


def test_a_checkpoint_loads_onto_another_device_with_its_digest_intact(tmp_path, tiny_data):
    """Saved from a run on each device present, loaded with each map_location (default: the CPU)."""
    devices = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
    for saved_on in devices:
        run = tmp_path / saved_on
        torch.manual_seed(0)
        fit(
            FCVAE(hidden=(16,)),
            tiny_data,
            TrainConfig(epochs=1, batch_size=100),
            device=saved_on,
            out_dir=run,
            progress=False,
            log=lambda line: None,
        )
        reference = load_checkpoint(run)
        assert reference["model_state"]["encoder.1.weight"].device.type == "cpu"
        for location in [*devices, torch.device("cpu"), lambda storage, where: storage]:
            moved = load_checkpoint(run, map_location=location)
            weight, step = moved["model_state"]["encoder.1.weight"], moved["optimizer_state"]["state"][0]["exp_avg"]
            if isinstance(location, str):
                assert weight.device.type == step.device.type == location
            assert torch.equal(weight.cpu(), reference["model_state"]["encoder.1.weight"])
            assert moved[DIGEST] == reference[DIGEST]


def test_a_writer_removes_only_its_own_temporary_files(tmp_path, tiny_data, capsys, loaded_once):
    """Case 6: --out on a folder holding a user's .draft.tmp removed it (every .*.tmp went)."""
    run = tmp_path / "run"
    run.mkdir()
    theirs = [run / ".draft.tmp", run / ".notes.checkpoint.pt.tmp", run / ".eval.json.x.tmp"]
    ours = [run / ".checkpoint.pt.abc123.tmp", run / ".metrics.json.k9_z1x2q.tmp"]
    for path in theirs + ours:
        path.write_text("draft")
    code, _ = run_main([*TINY, "--epochs", "1", "--out", str(run)], capsys)
    assert code == 0 and all(p.read_text() == "draft" for p in theirs) and not any(p.exists() for p in ours)


def test_a_run_that_stops_in_its_first_epoch_leaves_a_folder_a_new_run_replaces(tmp_path, capsys, loaded_once):
    """Case 9: a non-finite loss in epoch 1 left an epoch-0 folder that neither --out nor --resume accepted."""
    run = tmp_path / "run"
    code, err = run_main([*TINY, "--likelihood", "sigma", "--lr", "1e30", "--out", str(run)], capsys)
    assert code == 1 and err.count("\n") == 1 and "non-finite" in err
    assert f"nothing was trained: a new run may replace {run} (train.py --out {run})" in err
    assert load_checkpoint(run)["epoch"] == 0
    code, err = run_main([*TINY, "--likelihood", "sigma", "--epochs", "1", "--out", str(run)], capsys)
    assert code == 0 and load_checkpoint(run)["epoch"] == 1 and load_checkpoint(run)["train_config"]["lr"] == 0.001
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # replaced, nothing moved aside
    code, err = run_main([*TINY, "--out", str(run)], capsys)  # a trained run is still never replaced
    assert code == 2 and "already holds a run" in err
