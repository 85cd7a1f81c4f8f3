import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from checkpoint import CheckpointError, load_checkpoint, load_model_state, save_checkpoint
from config import TrainConfig
from files import WriteError
from models import CNNVAE, FCVAE, ModelConfig, build_model
from objectives import BetaH, LossTerms, dataset_loss
from runs import RunFolder
from train import TrainingError, fit, main

ROOT = Path(__file__).resolve().parents[1]
QUIET = {"progress": False, "log": lambda line: None}


def strip(history):
    """A history without its timings: what must be identical between identical runs."""
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


@pytest.mark.parametrize("cls", [FCVAE, CNNVAE])
def test_training_lowers_the_test_loss(small_fmnist, cls):
    torch.manual_seed(0)
    model = cls()
    start = dataset_loss(model, small_fmnist.test_images)
    before = start["recon"] + 0.1 * start["kl"]
    history = fit(model, small_fmnist, TrainConfig(beta=0.1, epochs=2, batch_size=32), **QUIET)  # 126 steps
    after = history[-1]["test"]["total"]
    assert after < before - 100, (before, after)
    assert after == pytest.approx(history[-1]["test"]["recon"] + 0.1 * history[-1]["test"]["kl"])
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[-1]["train"]["total"] < history[0]["train"]["total"]


def test_checkpoint_round_trip_restores_identical_outputs(tmp_path, small_fmnist):
    torch.manual_seed(0)
    model = CNNVAE(likelihood="bernoulli")
    fit(model, small_fmnist, TrainConfig(epochs=1), out_dir=tmp_path, **QUIET)
    restored = RunFolder(tmp_path).model()
    model.eval()
    x = small_fmnist.test_images[:16]
    assert torch.equal(restored(x).recon, model(x).recon)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["config"] == model.plain_config()
    assert restored.config == model.config and isinstance(restored.config, ModelConfig)


def train_run(data, epochs, out_dir=None, checkpoint=None):
    model = build_model(ModelConfig(hidden=(64,)), seed=3)
    history = fit(
        model,
        data,
        TrainConfig(beta=0.5, epochs=epochs, batch_size=100, seed=3),
        out_dir=out_dir,
        checkpoint=checkpoint,
        **QUIET,
    )
    return model, history


def test_resume_is_bit_identical_to_training_straight_through(tmp_path, small_fmnist):
    straight, straight_history = train_run(small_fmnist, 3)
    train_run(small_fmnist, 1, out_dir=tmp_path)
    resumed, resumed_history = train_run(
        small_fmnist, 3, out_dir=tmp_path, checkpoint=load_checkpoint(tmp_path / "checkpoint.pt")
    )
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    assert strip(resumed_history) == strip(straight_history)
    assert load_checkpoint(tmp_path)["epoch"] == 3


def test_the_same_seed_gives_the_same_numbers_and_another_seed_others(tmp_path, small_fmnist):
    def run(name, seed):
        model = build_model(ModelConfig(hidden=(32,)), seed=seed)
        fit(
            model,
            small_fmnist,
            TrainConfig(epochs=2, batch_size=100, seed=seed, train_limit=500),
            out_dir=tmp_path / name,
            **QUIET,
        )
        return json.loads((tmp_path / name / "metrics.json").read_text()), load_checkpoint(tmp_path / name)

    (first, first_state), (second, second_state), (other, _) = run("a", 5), run("b", 5), run("c", 6)
    assert len(first["epochs"]) == 2 and strip(first["epochs"]) == strip(second["epochs"])
    assert all(torch.equal(v, second_state["model_state"][k]) for k, v in first_state["model_state"].items())
    assert strip(other["epochs"]) != strip(first["epochs"])


def test_non_finite_loss_stops_with_message_and_keeps_last_checkpoint(tmp_path, small_fmnist, monkeypatch):
    real_loss, calls = BetaH.loss, {"n": 0}
    steps_per_epoch = 2000 // 128 + 1

    def loss_that_fails_in_epoch_two(self, output, x, *args):
        terms = real_loss(self, output, x, *args)
        if output.recon.requires_grad:
            calls["n"] += 1
            if calls["n"] == steps_per_epoch + 3:
                return LossTerms(terms.recon * float("nan"), terms.kl, terms.total * float("nan"))
        return terms

    monkeypatch.setattr(BetaH, "loss", loss_that_fails_in_epoch_two)
    torch.manual_seed(0)
    with pytest.raises(
        TrainingError,
        match=r"non-finite reconstruction loss at epoch 2, step 3.*learning rate"
        r".*smaller beta \(beta=0.1\).*last good checkpoint",
    ):
        fit(FCVAE(hidden=(64,)), small_fmnist, TrainConfig(epochs=3), out_dir=tmp_path, **QUIET)
    checkpoint = load_checkpoint(tmp_path)
    assert checkpoint["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in checkpoint["model_state"].values())


def test_non_finite_gradient_is_caught(small_fmnist):
    model = FCVAE(hidden=(64,))
    model.decoder[-2].weight.register_hook(lambda grad: grad * float("inf"))
    with pytest.raises(TrainingError, match="non-finite gradient at epoch 1, step 1"):
        fit(model, small_fmnist, TrainConfig(epochs=1), **QUIET)


def test_fit_takes_its_settings_as_a_train_config_only(small_fmnist):
    with pytest.raises(TypeError):
        fit(FCVAE(hidden=(16,)), small_fmnist, epochs=1, **QUIET)  # the old **settings are gone


def test_batch_normalisation_refuses_a_last_batch_of_one_image_before_training(small_fmnist, capsys, loaded_once):
    """Trust round five, case 7: FC --norm batch with a last batch of one image gave torch's own text."""
    with pytest.raises(ValueError, match=r"last batch of each epoch holds one image \(129 training images"):
        fit(FCVAE(hidden=(16,), norm="batch"), small_fmnist.limited(train=129), TrainConfig(epochs=1), **QUIET)
    code = main(
        ["--model", "fc", "--norm", "batch", "--train-limit", "257", "--out", "/nonexistent/x", "--no-progress"]
    )
    assert code == 2 and "batch normalisation cannot train on one" in capsys.readouterr().err
    fit(FCVAE(hidden=(16,)), small_fmnist.limited(train=129), TrainConfig(epochs=1), **QUIET)  # no norm: fine


@pytest.mark.parametrize("existed", [True, False])
def test_disk_full_while_writing_keeps_the_previous_checkpoint_and_claims_intact_only_if_there_was_one(
    tmp_path, monkeypatch, existed
):
    import files

    model, path = FCVAE(hidden=(16,)), tmp_path / "checkpoint.pt"
    if existed:
        save_checkpoint(path, model, train_config={"seed": 1})

    def replace_on_a_full_disk(source, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", replace_on_a_full_disk)
    with pytest.raises(WriteError) as error:
        save_checkpoint(path, model, train_config={"seed": 2})
    monkeypatch.undo()
    assert f"no space left on device while writing {path}" in str(error.value)
    assert ("the previous checkpoint.pt is intact" in str(error.value)) == existed
    if existed:
        assert load_checkpoint(path)["train_config"]["seed"] == 1
    assert os.listdir(tmp_path) == (["checkpoint.pt"] if existed else [])  # no temporary file left


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


class RunsShell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("payload", [RunsCode, RunsShell])
def test_checkpoint_with_pickled_code_is_refused_not_called_corrupt(tmp_path, payload):
    marker, path = tmp_path / "pwned", tmp_path / "evil.pt"
    torch.save({"format": 2, "config": {}, "model_state": {}, "epoch": 0, "x": payload(marker)}, path)
    with pytest.raises(CheckpointError, match="evil.pt: refused: .*pickled") as error:
        load_checkpoint(path)
    assert "corrupt" not in str(error.value)
    assert not marker.exists()


def test_truncated_or_foreign_files_are_clear_errors(tmp_path):
    good = tmp_path / "good.pt"
    save_checkpoint(good, FCVAE(hidden=(16,)))
    (tmp_path / "cut.pt").write_bytes(good.read_bytes()[:500])
    (tmp_path / "text.pt").write_text("hello")
    torch.save({"weights": torch.ones(2)}, tmp_path / "other.pt")
    for name, message in (
        ("cut.pt", "truncated"),
        ("text.pt", "truncated"),
        ("other.pt", "not a checkpoint"),
        ("missing.pt", "no checkpoint"),
    ):
        with pytest.raises(CheckpointError, match=f"{name}.*{message}"):
            load_checkpoint(tmp_path / name)


@pytest.mark.parametrize(
    "other, mismatch",
    [
        ({"model": "cnn"}, "model 'fc' vs 'cnn'"),
        ({"latent_dim": 5}, "latent_dim 3 vs 5"),
        ({"likelihood": "gaussian"}, "likelihood 'bernoulli' vs 'gaussian'"),
    ],
)
def test_loading_into_another_model_names_the_mismatch(tmp_path, other, mismatch):
    save_checkpoint(tmp_path / "checkpoint.pt", FCVAE(hidden=(16,)))
    model = build_model({"model": "fc", "hidden": [16], "latent_dim": 3, "likelihood": "bernoulli", **other})
    with pytest.raises(CheckpointError, match=mismatch):
        load_model_state(model, load_checkpoint(tmp_path), tmp_path)


def test_cli_end_to_end_and_resume_continues_the_epoch_count(tmp_path, capsys, loaded_once):
    out = tmp_path / "run"
    assert (
        main(
            [
                "--model",
                "cnn",
                "--channels",
                "8",
                "8",
                "--epochs",
                "1",
                "--train-limit",
                "1000",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["model"] == "cnn" and metrics["config"]["train_images"] == 1000
    assert metrics["config"]["channels"] == [8, 8] and "target_capacity" not in metrics["config"]
    assert set(metrics["epochs"][0]["test"]) == {"recon", "kl", "total"}
    assert main(["--resume", str(out), "--epochs", "2", "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2] and metrics["config"]["train_images"] == 1000
    assert load_checkpoint(out)["epoch"] == 2
    # the run's checkpoint file names its folder
    assert main(["--resume", str(out / "checkpoint.pt"), "--epochs", "3", "--no-progress"]) == 0
    assert load_checkpoint(out)["epoch"] == 3 and sorted(p.name for p in out.iterdir()) == [
        ".lock",
        "checkpoint.pt",
        "metrics.json",
    ]


def test_ctrl_c_saves_the_last_epoch_and_says_how_to_resume(tmp_path, capsys, monkeypatch, loaded_once):
    real_loss, calls = BetaH.loss, {"n": 0}

    def interrupt_in_epoch_two(self, output, x, *args):
        if output.recon.requires_grad:
            calls["n"] += 1
            if calls["n"] == 6:  # 4 steps per epoch
                raise KeyboardInterrupt
        return real_loss(self, output, x, *args)

    monkeypatch.setattr(BetaH, "loss", interrupt_in_epoch_two)
    out = tmp_path / "run"
    code = main(
        ["--model", "fc", "--hidden", "32", "--epochs", "3", "--train-limit", "500", "--out", str(out), "--no-progress"]
    )
    assert code == 130
    assert f"python train.py --resume {out}" in capsys.readouterr().err
    assert load_checkpoint(out)["epoch"] == 1


def test_ctrl_c_while_the_imports_load_exits_130_without_a_traceback(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "train.py", "--out", str(tmp_path / "run")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    maps, deadline = Path(f"/proc/{process.pid}/maps"), time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline:  # until torch loads: the lines above it have run
        try:
            if "libtorch" in maps.read_text():
                break
        except OSError:  # no /proc: wait as long as python takes to start
            time.sleep(0.3)
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)  # the rest of the imports take a second or more
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--beta", "-1"], "--beta must be >= 0"),
        (["--epochs", "0"], "--epochs must be >= 1"),
        (["--latent-dim", "0"], "--latent-dim must be >= 1"),
        (["--batch-size", "0"], "--batch-size must be >= 1"),
        (["--lr", "0"], "--lr must be > 0"),
        (["--model", "rnn"], "invalid choice: 'rnn'"),
        (["--likelihood", "laplace"], "invalid choice: 'laplace'"),
        (["--beta", "abc"], "invalid float value"),
        (["--channels", "0"], "--channels must be integers >= 1"),
        (["--hidden", "-3"], "--hidden must be integers >= 1"),
        (["--kernel-size", "0"], "--kernel-size must be >= 1"),
        (["--kernel-size", "7"], "--kernel-size must be >= 1 (an integer below 7)"),
        (["--norm", "layer"], "invalid choice: 'layer'"),
        (["--activation", "tanh"], "invalid choice: 'tanh'"),
        (["--channels", "16", "x"], "invalid int value"),
        (["--gamma", "3"], "only apply with objective B"),
        (["--capacity-epochs", "4"], "only apply with objective B"),
        (["--objective", "TC", "--capacity", "3"], "capacity only apply with objective B, not TC"),
        (["--objective", "B"], "--capacity must be given for objective B"),
        (["--dataset", "mnist"], "invalid choice: 'mnist'"),
        (["--capacity", "-1"], "--capacity must be >= 0"),
    ],
)
def test_bad_command_line_is_one_line_and_exit_status_2(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()


def test_gamma_and_capacity_epochs_need_capacity():
    for settings in ({"gamma": 3.0}, {"capacity_epochs": 4}, {"gamma": 3.0, "capacity_epochs": 4}):
        with pytest.raises(ValueError, match="only apply with objective B"):
            TrainConfig(**settings)
        assert TrainConfig(capacity=5.0, **settings).capacity == 5.0
    with pytest.raises(TypeError):
        TrainConfig(target_capacity=5.0)


def test_bad_output_and_resume_folders_are_one_line_errors(tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("")
    existing = tmp_path / "existing"
    existing.mkdir()
    terms = {"recon": 1.0, "kl": 1.0, "total": 2.0}  # a trained epoch: a checkpoint at epoch 0 would be replaced
    save_checkpoint(
        existing / "checkpoint.pt",
        FCVAE(hidden=(16,)),
        epoch=1,
        history=[{"epoch": 1, "train": terms, "test": terms, "seconds": 1.0}],
    )
    cases = [
        (["--out", str(a_file)], "is a file"),
        (["--out", str(a_file / "sub")], "not writable"),
        (["--out", str(existing)], "already holds a run"),
        (["--out", ""], "--out '' is not a folder name"),
        (["--resume", str(tmp_path / "empty")], "no checkpoint"),
        (["--resume", str(tmp_path / "empty" / "checkpoint.pt")], "no checkpoint"),
        (["--resume", str(existing), "--beta", "0.7"], "differs from the run's"),
        (
            ["--resume", str(existing / "checkpoint.pt"), "--epochs", "2", "--out", str(a_file)],
            "--out and --resume name different folders",
        ),
    ]
    for args, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and message in err and err.count("\n") == 1, (args, err)
    assert load_checkpoint(existing)["epoch"] == 1  # nothing already saved was touched


def test_missing_data_is_a_one_line_error_from_the_real_command(tmp_path):
    result = subprocess.run(
        [sys.executable, "train.py", "--data-dir", str(tmp_path), "--out", str(tmp_path / "r")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "dataset-fashion-mnist" in result.stderr
    assert not (tmp_path / "r").exists()


def test_samplers_py_is_not_a_command(monkeypatch):
    import runpy

    monkeypatch.setattr(sys, "argv", ["samplers.py", "--samples", "5"])
    with pytest.raises(SystemExit) as exit_info:  # as `python samplers.py` runs it, without a second torch import
        runpy.run_path(str(ROOT / "samplers.py"), run_name="__main__")
    message = exit_info.value.code
    assert isinstance(message, str) and "\n" not in message and "library" in message  # python exits 1 with it


def test_a_run_killed_with_sigkill_resumes_to_the_same_weights_and_history(tmp_path, fmnist):
    run, settings = tmp_path / "run", ["--hidden", "16", "--train-limit", "300", "--batch-size", "100", "--seed", "4"]
    process = subprocess.Popen(
        [sys.executable, "train.py", *settings, "--epochs", "1000", "--no-progress", "--out", str(run)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while process.poll() is None and time.monotonic() < deadline:
            metrics = run / "metrics.json"
            if metrics.exists() and json.loads(metrics.read_text() or "{}").get("epochs"):
                break  # at least one epoch saved: kill it mid-run, wherever it is
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        stderr = process.communicate(timeout=60)[1].decode()
    assert process.returncode == -signal.SIGKILL, stderr
    saved = load_checkpoint(run)  # the last checkpoint is whole, whatever the kill interrupted
    epochs = saved["epoch"] + 1
    data = fmnist.limited(train=300)  # what train.py loaded
    config = TrainConfig(epochs=epochs, batch_size=100, seed=4, train_limit=300)
    straight = build_model(ModelConfig(hidden=(16,)), seed=4)
    straight_history = fit(straight, data, config, **QUIET)
    resumed = build_model(saved["config"])
    resumed_history = fit(resumed, data, config, out_dir=run, checkpoint=saved, **QUIET)
    assert saved["epoch"] >= 1 and len(resumed_history) == epochs
    assert strip(resumed_history) == strip(straight_history)
    assert all(torch.equal(a, b) for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()))
