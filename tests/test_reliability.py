"""Issues 15 and 23: no raw tracebacks on the paths a user hits, and no run silently lost (locks, overwrite, disk
full, Ctrl-C, hand-edited checkpoints, small evaluation inputs, numbers out of range, file modes). The hostile lock
files, optimizer states and weights of issue 23 are in test_checkpoint.py."""

import errno
import json
import os
import re
import shlex
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import TINY, run_main, tiny_fit  # noqa: E402
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import checkpoint
import evaluate
import train
from checkpoint import CHECKPOINT, CheckpointError, load_checkpoint, restore, save_checkpoint
from cli import unavailable
from config import TrainConfig
from data import DataError, Dataset
from fashion_mnist import find_data_dir
from files import write_json
from models import FCVAE
from objectives import BetaH
from quality import SANITY_NAMES
from runs import EVAL_FILE, METRICS, RunFolder, lock
from samplers import AggregateSampler, ClassSampler
from train import fit


def run_folder(path):
    """Hold a run folder for writing, as fit does."""
    return RunFolder(path).hold()


# ---------------------------------------------------------------------------------------------- runs lost
def test_a_second_writer_is_refused_naming_the_folder_and_the_holder(tmp_path, tiny_data, capsys, loaded_once):
    run = tmp_path / "run"
    with run_folder(run):
        with pytest.raises(CheckpointError, match=f"{run} is being written by pid {os.getpid()} on "):
            tiny_fit(tiny_data, run)
        code, err = run_main([*TINY, "--out", str(run)], capsys)
        assert code == 1 and f"pid {os.getpid()}" in err and err.count("\n") == 1 and "Traceback" not in err
    tiny_fit(tiny_data, run)  # released: a later writer gets it
    fd = lock(run)
    code, err = run_main(["--resume", str(run), "--epochs", "2", "--no-progress"], capsys)
    os.close(fd)
    assert code == 1 and "being written by" in err and load_checkpoint(run)["epoch"] == 1


def test_fit_into_an_existing_run_refuses_or_moves_it_aside(tmp_path, tiny_data):
    run = tmp_path / "run"
    tiny_fit(tiny_data, run)
    before = (run / CHECKPOINT).read_bytes()
    with pytest.raises(CheckpointError, match=r"already holds a run.*checkpoint=RunFolder.*overwrite=True"):
        tiny_fit(tiny_data, run, epochs=2)
    assert (run / CHECKPOINT).read_bytes() == before
    lines = []
    torch.manual_seed(0)
    fit(
        FCVAE(hidden=(16,)),
        tiny_data,
        TrainConfig(epochs=2, batch_size=100),
        out_dir=run,
        overwrite=True,
        progress=False,
        log=lines.append,
    )
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("run.old-")]
    assert len(aside) == 1 and (aside[0] / CHECKPOINT).read_bytes() == before
    assert any(str(aside[0]) in line and "(1 .old-* copy of it now" in line for line in lines)
    assert load_checkpoint(run)["epoch"] == 2
    (tmp_path / "run.old-earlier").mkdir()  # copies pile up only in plain sight: the next move counts them
    fit(
        FCVAE(hidden=(16,)),
        tiny_data,
        TrainConfig(epochs=1, batch_size=100),
        out_dir=run,
        overwrite=True,
        progress=False,
        log=lines.append,
    )
    assert "(3 .old-* copies of it now: delete those you do not need)" in lines[-2], lines[-2]


def test_a_stale_checkpoint_cannot_continue_over_a_newer_one(tmp_path, tiny_data):
    run = tmp_path / "run"
    tiny_fit(tiny_data, run)
    old = load_checkpoint(run)
    tiny_fit(tiny_data, run, epochs=2, checkpoint=old)
    with pytest.raises(CheckpointError, match="holds epoch 2, the checkpoint given is at epoch 1"):
        tiny_fit(tiny_data, run, epochs=3, checkpoint=old)
    assert load_checkpoint(run)["epoch"] == 2


def test_resume_removes_stale_temporary_files_and_rewrites_metrics(tmp_path, tiny_data, monkeypatch):
    run = tmp_path / "run"
    tiny_fit(tiny_data, run)
    stale = [run / ".checkpoint.pt.abc123.tmp", run / ".metrics.json.xyz.tmp"]
    for path in stale:
        path.write_bytes(b"x" * 1000)
    (run / METRICS).write_text(json.dumps({"epochs": []}))  # lags the checkpoint, as after a kill -9

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(BetaH, "loss", interrupt)
    with pytest.raises(KeyboardInterrupt):
        tiny_fit(tiny_data, run, epochs=2, checkpoint=load_checkpoint(run))
    assert not any(path.exists() for path in stale)
    assert json.loads((run / METRICS).read_text())["epochs"] == load_checkpoint(run)["history"]


# ---------------------------------------------------------------------------------------------- one-line errors
@pytest.mark.parametrize("full_at", [1, 3])
def test_disk_full_is_one_line_and_keeps_the_previous_checkpoint(full_at, tmp_path, capsys, monkeypatch, loaded_once):
    real_fsync, calls = os.fsync, {"n": 0}

    def fsync_until_full(fd):
        calls["n"] += 1
        if calls["n"] == full_at:  # 1: epoch 0's checkpoint.pt; 3: epoch 1's (after epoch 0's metrics.json)
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_until_full)
    run = tmp_path / "run"
    code, err = run_main([*TINY, "--out", str(run)], capsys)
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert f"no space left on device while writing {run / CHECKPOINT}" in err
    if full_at == 1:  # there was no previous checkpoint: nothing is claimed intact, and the empty folder goes
        assert "intact" not in err and not run.exists()
    else:
        assert "; the previous checkpoint.pt is intact" in err
        assert load_checkpoint(run)["epoch"] == 0 and sorted(os.listdir(run)) == [".lock", CHECKPOINT, METRICS]


@pytest.mark.parametrize("where", ["data", "first write"])
def test_ctrl_c_before_the_first_checkpoint_is_one_line_and_leaves_no_folder(
    where, tmp_path, capsys, monkeypatch, loaded_once
):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(*(train, "load_dataset") if where == "data" else (checkpoint.torch, "save"), interrupt)
    out = tmp_path / "new" / "run"
    code, err = run_main([*TINY, "--out", str(out)], capsys)
    assert code == 130 and "Traceback" not in err and "before anything was saved" in err
    assert err.strip().count("\n") == 0 and not (tmp_path / "new").exists()


def test_resume_hint_is_shell_quoted(tmp_path, capsys, monkeypatch, loaded_once):
    real_loss, calls = BetaH.loss, {"n": 0}

    def interrupt_in_epoch_two(self, output, x, *args):
        calls["n"] += 1
        if calls["n"] == 5:  # 3 steps per epoch
            raise KeyboardInterrupt
        return real_loss(self, output, x, *args)

    monkeypatch.setattr(BetaH, "loss", interrupt_in_epoch_two)
    out = tmp_path / "my run"
    code, err = run_main([*TINY, "--epochs", "3", "--batch-size", "100", "--out", str(out)], capsys)
    assert code == 130 and f"python train.py --resume {shlex.quote(str(out))}" in err and "'" in err


@pytest.fixture(scope="module")
def valid_checkpoint(tmp_path_factory):
    """A resumable checkpoint of a tiny model after one epoch, as a dict."""
    tiny = Dataset("zeros", *(torch.zeros(200, 1, 28, 28), torch.zeros(200, dtype=torch.long)) * 2, ("a",))
    run = tmp_path_factory.mktemp("valid") / "run"
    tiny_fit(tiny, run)
    return load_checkpoint(run)


def edited(checkpoint_dict, edit):
    """A deep-enough copy of a checkpoint with `edit` (a function of the copy) applied."""
    copy = {
        k: (dict(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v)
        for k, v in checkpoint_dict.items()
    }
    edit(copy)
    return copy


EDITS = {
    "format": lambda c: c.update(format=4),
    "format (tensor([]))": lambda c: c.update(format=torch.zeros(0)),  # compared with ==, it was a RuntimeError
    "epoch": lambda c: c.update(epoch=-1),
    "history": lambda c: c.update(history=[]),
    "history[0]": lambda c: c.update(history=[{"epoch": 1, "train": {}, "test": {}, "seconds": 1.0}]),
    "config": lambda c: c["config"].update(latent_dim="3"),
    "model_state (size mismatch for encoder.1.weight)": lambda c: c["model_state"].update(
        {"encoder.1.weight": torch.zeros(3, 3)}
    ),
    "model_state (not of the model's dtypes)":  # load_state_dict alone would convert float64 silently
    lambda c: c["model_state"].update({k: v.double() for k, v in c["model_state"].items()}),
    "optimizer_state": lambda c: c.update(optimizer_state={"state": {}}),
    "rng.train": lambda c: c["rng"].update(train=torch.zeros(3)),
    "train_config": lambda c: c["train_config"].update(beta="high"),
    "surprise": lambda c: c.update(surprise=1),
    "model_state (non-finite weights)": lambda c: c["model_state"]["encoder.1.weight"].fill_(float("nan")),
    "rng": lambda c: c.pop("rng"),
}


@pytest.mark.parametrize("field", EDITS)
def test_every_field_of_a_checkpoint_is_validated(field, tmp_path, valid_checkpoint):
    path = tmp_path / "edited.pt"  # without its digest, as written before digests (with it: see test_checkpoint.py)
    torch.save(edited(valid_checkpoint, lambda c: (c.pop(checkpoint.DIGEST), EDITS[field](c))), path)
    with pytest.raises(CheckpointError, match=f"edited.pt: field {re.escape(field.split(' (')[0])}") as error:
        load_checkpoint(path)
    assert "\n" not in str(error.value) and field.partition(" (")[2].rstrip(")") in str(error.value)


def test_corrupt_foreign_and_size_claiming_files_are_named_for_what_they_are(tmp_path):
    good = tmp_path / "good.pt"
    save_checkpoint(good, FCVAE(hidden=(16,)))
    data = bytearray(good.read_bytes())
    start = data.index(b"\x80\x02") + 3  # inside the pickle of data.pkl: a corrupt, not an unsafe, file
    data[start : start + 8] = b"\xff" * 8
    (tmp_path / "corrupt.pt").write_bytes(data)
    with zipfile.ZipFile(tmp_path / "foreign.zip", "w") as archive:
        archive.writestr("notes.txt", "hello")
    bomb = bytearray(good.read_bytes())
    central = bomb.index(b"PK\x01\x02")  # central directory entry: uncompressed size at offset 24
    bomb[central + 24 : central + 28] = (2**32 - 2).to_bytes(4, "little")
    (tmp_path / "bomb.pt").write_bytes(bomb)
    for name, message in (
        ("corrupt.pt", "not a checkpoint"),
        ("foreign.zip", "not a checkpoint"),
        ("bomb.pt", r"claim 4,29\d,\d+,\d+ bytes in a file of"),
    ):
        with pytest.raises(CheckpointError, match=f"{name}: .*{message}") as error:
            load_checkpoint(tmp_path / name)
        assert "could run code" not in str(error.value)


VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 10**20),
    st.floats(),
    st.text(max_size=5),
    st.lists(st.integers(-3, 40), max_size=4),
    st.dictionaries(st.text(max_size=3), st.integers()),
    st.builds(torch.zeros, st.integers(0, 5)),
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_checkpoints_load_or_raise_checkpoint_error_only(tmp_path, valid_checkpoint, data):
    base = valid_checkpoint
    fuzzed = edited(base, lambda c: None)
    for key in data.draw(st.lists(st.sampled_from(sorted(fuzzed)), max_size=3)):
        fuzzed.pop(key, None)  # missing fields
    for key in data.draw(st.lists(st.sampled_from(sorted(base)), max_size=3)):
        fuzzed[key] = data.draw(VALUES)  # mistyped fields
    for part in ("config", "train_config", "rng", "model_state"):  # mistyped or extra fields one level down
        if isinstance(fuzzed.get(part), dict) and data.draw(st.booleans()):
            fuzzed[part] = {**fuzzed[part], data.draw(st.sampled_from([*fuzzed[part], "extra"])): data.draw(VALUES)}
    fuzzed.update(data.draw(st.dictionaries(st.sampled_from(["extra", "notes"]), VALUES, max_size=1)))
    path = tmp_path / "fuzzed.pt"
    torch.save(fuzzed, path)
    try:
        loaded = load_checkpoint(path)
    except CheckpointError:
        return
    model = FCVAE(hidden=(16,))
    try:
        restore(loaded, model, torch.optim.Adam(model.parameters()), torch.Generator())
    except CheckpointError:
        pass


# ---------------------------------------------------------------------------------------------- evaluate
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_data):
    run = tmp_path_factory.mktemp("eval") / "run"
    tiny_fit(tiny_data, run)
    return run


@pytest.mark.parametrize(
    "args, message",
    [
        (["--train-limit", "12"], "has a single training image"),
        (["--train-limit", "40"], "the one-class sanity row needs > 3 training images of class 1, got 3"),
        (["--k", str(10**9)], "--k must be >= 1 (an integer below 100001)"),
    ],
)
def test_small_or_huge_evaluation_inputs_are_one_line_errors(args, message, tiny_run, capsys, monkeypatch, loaded_once):
    monkeypatch.setattr(evaluate, "load_classifier", lambda: None)  # check_inputs comes before it is used
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main([str(tiny_run), *args, "--iwae-images", "10"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and err.count("\n") == 1, err


@pytest.mark.parametrize(
    "args, message",
    [  # issue 23, case 8: refused before any work
        (["--samples", "2"], "--samples must be >= 10"),
        (["--samples", "3"], "--samples must be >= 10"),
        (["--samples", "9"], "--samples must be >= 10"),
        (["--eval-limit", "1"], "--eval-limit must be >= 10"),
        (["--eval-limit", "9"], "--eval-limit must be >= 10"),
        (["--iwae-images", "0"], "--iwae-images must be >= 1"),
        (["--batch-size", "0"], "--batch-size must be >= 1"),
        (["--train-limit", "0"], "--train-limit must be >= 1"),
    ],
)
def test_evaluation_settings_too_small_are_one_line_errors_before_any_work(
    args, message, tiny_run, capsys, monkeypatch
):
    for name in ("RunFolder", "load_dataset", "load_classifier", "evaluate_run"):
        monkeypatch.setattr(evaluate, name, lambda *args, **kwargs: pytest.fail("worked before refusing"))
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main([str(tiny_run), *args])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and err.count("\n") == 1, err
    assert not (tiny_run / EVAL_FILE).exists()


def test_the_smallest_evaluation_settings_accepted_complete(tiny_run, tmp_path, capsys, loaded_once):
    run = tmp_path / "run"
    run.mkdir()
    (run / CHECKPOINT).write_bytes((tiny_run / CHECKPOINT).read_bytes())
    assert (
        evaluate.main(
            [
                str(run),
                "--samples",
                "10",
                "--eval-limit",
                "10",
                "--k",
                "1",
                "--iwae-images",
                "1",
                "--batch-size",
                "1",
                "--train-limit",
                "100",
            ]
        )
        == 0
    )
    result = json.loads((run / EVAL_FILE).read_text())
    assert (result["samples"], result["test_images"], result["train_images"]) == (10, 10, 100)
    assert set(result["sanity"]) == set(SANITY_NAMES) and f"every metric: {run}" in capsys.readouterr().out


def test_evaluate_refuses_non_finite_weights_and_unwritable_folders_before_computing(
    tiny_run, tmp_path, capsys, monkeypatch, loaded_once
):
    monkeypatch.setattr(evaluate, "load_classifier", lambda: None)
    broken = tmp_path / "broken"
    state = load_checkpoint(tiny_run)
    state["model_state"]["decoder.2.weight"][0, 0] = float("nan")  # the decoder's, as the encoder's
    state.pop(checkpoint.DIGEST)  # as if written so (a digest would refuse the change itself)
    broken.mkdir()
    torch.save(state, broken / CHECKPOINT)
    for run, message in ((broken, "non-finite weights"), (tiny_run, "cannot save eval.json")):
        if run == tiny_run:
            monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)
            monkeypatch.setattr(evaluate, "evaluate_run", lambda *args, **kwargs: pytest.fail("computed"))
        with pytest.raises(SystemExit) as exit_info:
            evaluate.main([str(run), "--train-limit", "200", "--iwae-images", "10"])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and message in err and err.count("\n") == 1, err


def test_samplers_name_what_is_too_small(small_fmnist):
    means, labels = torch.randn(12, 3), small_fmnist.train_labels[:12]
    with pytest.raises(ValueError, match="single training image"):
        ClassSampler(means, labels)
    with pytest.raises(ValueError, match="too few for the 10-component mixture"):
        AggregateSampler(means[:5])


# ---------------------------------------------------------------------------------------------- command line
@pytest.mark.parametrize(
    "args, message",
    [
        (["--seed", str(2**64)], "--seed must be >= 0 (an integer below 9223372036854775808)"),
        (["--latent-dim", str(10**12)], "--latent-dim must be >= 1"),
        (["--hidden", "65536", "65536"], "parameters are too many"),
        (["--beta", "inf"], "must be a finite number"),
        (["--beta", "1e309"], "must be a finite number"),
        (["--lr", "nan"], "must be a finite number"),
    ],
)
def test_numbers_out_of_range_are_one_line_and_leave_no_folder(args, message, tmp_path, capsys):
    code, err = run_main([*args, "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()


def test_settings_out_of_range_in_python_are_value_errors():
    for bad in ({"seed": 2**64}, {"seed": 1.5}, {"beta": float("inf")}):
        with pytest.raises(ValueError):
            TrainConfig(**bad)


def test_data_error_says_no_download_was_tried_for_an_empty_data_dir(tmp_path):
    with pytest.raises(DataError) as error:
        find_data_dir(tmp_path)
    assert "download" not in str(error.value) and str(tmp_path) in str(error.value)


def test_device_cpu_0_is_accepted(tmp_path):
    assert unavailable("cpu:0") is None
    args, *_ = train.parse_args(["--device", "cpu:0", "--out", str(tmp_path / "run")])
    assert args.device == "cpu:0"


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_honour_the_umask(umask, mode, tmp_path):
    previous = os.umask(umask)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        save_checkpoint(tmp_path / CHECKPOINT, FCVAE(hidden=(16,)))
    finally:
        os.umask(previous)
    assert [Path(tmp_path / name).stat().st_mode & 0o777 for name in ("a.json", CHECKPOINT)] == [mode, mode]


# ---------------------------------------------------------------------------------------------- trust, round five
QUICK_EVAL = ["--train-limit", "200", "--iwae-images", "10", "--samples", "20", "--k", "1", "--eval-limit", "50"]


def test_evaluating_a_run_still_being_trained_says_so_in_a_line(tiny_run, capsys, loaded_once):
    """Case 7: evaluate.py on a run still training evaluated its epoch 1 without a word."""
    with RunFolder(tiny_run).hold(continuing=load_checkpoint(tiny_run)):  # as train.py holds it while training
        assert evaluate.main([str(tiny_run), *QUICK_EVAL]) == 0
    out = capsys.readouterr().out
    assert f"note: {tiny_run} is being trained by pid {os.getpid()}" in out and "epoch 1 checkpoint" in out
    assert evaluate.main([str(tiny_run), *QUICK_EVAL]) == 0  # released: no note
    assert "being trained" not in capsys.readouterr().out


def test_finite_weights_with_non_finite_outputs_are_one_line_not_a_json_error(tmp_path, capsys, loaded_once):
    """Case 5: weights whose outputs overflow made evaluate.py fail with 'Out of range float values are not JSON
    compliant: nan'."""
    model = FCVAE(hidden=(16,))
    with torch.no_grad():
        model.decoder[-2].weight.fill_(3e38)  # finite, but every logit overflows to inf
    run = tmp_path / "run"
    run.mkdir()
    save_checkpoint(run / CHECKPOINT, model)
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main([str(run), *QUICK_EVAL])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and "outputs are not finite" in err, err
    assert not (run / EVAL_FILE).exists()


def test_an_unknown_onednn_isa_and_an_overlong_name_are_one_line_before_training(tmp_path, capsys, monkeypatch):
    """Case 7: train.py ignored ONEDNN_MAX_CPU_ISA=garbage (lab.sweep refused it); case 6: a 256-character --out
    name was an OSError traceback."""
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "garbage")
    code, err = run_main([*TINY, "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and "ONEDNN_MAX_CPU_ISA='garbage' is not one of oneDNN's" in err and err.count("\n") == 1
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    code, err = run_main([*TINY, "--out", str(tmp_path / ("x" * 256))], capsys)
    assert code == 2 and "longer than 255 bytes" in err and err.count("\n") == 1 and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
