import json
import os
from pathlib import Path

import pytest
import torch

import train
from models import CNNVAE, FCVAE, LossTerms, build_model
import checkpoint
from checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from train import TrainingError, fit, main

ROOT = Path(__file__).resolve().parents[1]
QUIET = {"progress": False, "log": lambda line: None}


@pytest.mark.parametrize("cls", [FCVAE, CNNVAE])
def test_training_lowers_the_test_loss(small_fmnist, cls):
    torch.manual_seed(0)
    model = cls()
    before = train.dataset_loss(model, small_fmnist.test_images, beta=0.1)["total"]
    history = fit(model, small_fmnist, beta=0.1, epochs=5, batch_size=32, **QUIET)  # 315 steps
    after = history[-1]["test"]["total"]
    assert after < before - 100, (before, after)
    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5]
    assert history[-1]["train"]["total"] < history[0]["train"]["total"]


def test_checkpoint_round_trip_restores_identical_outputs(tmp_path, small_fmnist):
    torch.manual_seed(0)
    model = CNNVAE(likelihood="bernoulli")
    fit(model, small_fmnist, epochs=1, out_dir=tmp_path, **QUIET)
    restored = load_model(tmp_path)
    model.eval()
    x = small_fmnist.test_images[:16]
    assert torch.equal(restored(x).recon, model(x).recon)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["config"] == model.config


def train_run(data, epochs, out_dir=None, checkpoint=None):
    torch.manual_seed(3)
    model = FCVAE(hidden=(64,))
    history = fit(model, data, beta=0.5, epochs=epochs, batch_size=100, seed=3, out_dir=out_dir,
                  checkpoint=checkpoint, **QUIET)
    return model, history


def test_resume_is_bit_identical_to_training_straight_through(tmp_path, small_fmnist):
    straight, straight_history = train_run(small_fmnist, 3)
    train_run(small_fmnist, 1, out_dir=tmp_path)
    resumed, resumed_history = train_run(small_fmnist, 3, out_dir=tmp_path,
                                         checkpoint=load_checkpoint(tmp_path / "checkpoint.pt"))
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    strip = lambda history: [{k: v for k, v in h.items() if k != "seconds"} for h in history]  # noqa: E731
    assert strip(resumed_history) == strip(straight_history)
    assert load_checkpoint(tmp_path)["epoch"] == 3


def test_non_finite_loss_stops_with_message_and_keeps_last_checkpoint(tmp_path, small_fmnist, monkeypatch):
    real_loss, calls = train.beta_vae_loss, {"n": 0}
    steps_per_epoch = 2000 // 128 + 1

    def loss_that_fails_in_epoch_two(output, x, *args, **kwargs):
        terms = real_loss(output, x, *args, **kwargs)
        if output.recon.requires_grad:
            calls["n"] += 1
            if calls["n"] == steps_per_epoch + 3:
                return LossTerms(terms.recon * float("nan"), terms.kl, terms.total * float("nan"))
        return terms

    monkeypatch.setattr(train, "beta_vae_loss", loss_that_fails_in_epoch_two)
    torch.manual_seed(0)
    with pytest.raises(TrainingError, match=r"non-finite reconstruction loss at epoch 2, step 3.*learning rate"):
        fit(FCVAE(), small_fmnist, epochs=3, out_dir=tmp_path, **QUIET)
    checkpoint = load_checkpoint(tmp_path)
    assert checkpoint["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in checkpoint["model_state"].values())


def test_non_finite_gradient_is_caught(small_fmnist, monkeypatch):
    model = FCVAE()
    model.decoder[-2].weight.register_hook(lambda grad: grad * float("inf"))
    with pytest.raises(TrainingError, match="non-finite gradient at epoch 1, step 1"):
        fit(model, small_fmnist, epochs=1, **QUIET)


def test_crash_while_writing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model, path = FCVAE(hidden=(16,)), tmp_path / "checkpoint.pt"
    save_checkpoint(path, model, train_config={"seed": 1})
    real_save = torch.save

    def save_half_then_crash(obj, f):
        real_save(obj, f)
        f.truncate(100)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", save_half_then_crash)
    with pytest.raises(OSError):
        save_checkpoint(path, model, train_config={"seed": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["train_config"]["seed"] == 1
    assert os.listdir(tmp_path) == ["checkpoint.pt"]


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_checkpoint_with_pickled_code_is_refused(tmp_path):
    marker, path = tmp_path / "pwned", tmp_path / "evil.pt"
    torch.save({"format": 1, "config": {}, "model_state": {}, "epoch": 0, "x": RunsCode(marker)}, path)
    with pytest.raises(CheckpointError, match="evil.pt.*refused"):
        load_checkpoint(path)
    assert not marker.exists()


def test_truncated_or_foreign_files_are_clear_errors(tmp_path):
    good = tmp_path / "good.pt"
    save_checkpoint(good, FCVAE(hidden=(16,)))
    (tmp_path / "cut.pt").write_bytes(good.read_bytes()[:500])
    (tmp_path / "text.pt").write_text("hello")
    torch.save({"weights": torch.ones(2)}, tmp_path / "other.pt")
    for name, message in (("cut.pt", "truncated"), ("text.pt", "truncated"), ("other.pt", "not a checkpoint"),
                          ("missing.pt", "no checkpoint")):
        with pytest.raises(CheckpointError, match=f"{name}.*{message}"):
            load_checkpoint(tmp_path / name)


@pytest.mark.parametrize("other, mismatch", [({"model": "cnn"}, "model 'fc' vs 'cnn'"),
                                             ({"latent_dim": 5}, "latent_dim 3 vs 5"),
                                             ({"likelihood": "gaussian"}, "likelihood 'bernoulli' vs 'gaussian'")])
def test_loading_into_another_model_names_the_mismatch(tmp_path, other, mismatch):
    save_checkpoint(tmp_path / "checkpoint.pt", FCVAE())
    model = build_model({"model": "fc", "latent_dim": 3, "likelihood": "bernoulli", **other})
    with pytest.raises(CheckpointError, match=mismatch):
        checkpoint.load_model_state(model, load_checkpoint(tmp_path), tmp_path)


def test_cli_end_to_end_and_resume_continues_the_epoch_count(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["--model", "cnn", "--epochs", "1", "--train-limit", "2000", "--out", str(out), "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["model"] == "cnn" and metrics["config"]["train_images"] == 2000
    assert set(metrics["epochs"][0]["test"]) == {"recon", "kl", "total"}
    assert main(["--resume", str(out), "--epochs", "2", "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2] and metrics["config"]["train_images"] == 2000
    assert load_checkpoint(out)["epoch"] == 2


def test_ctrl_c_saves_the_last_epoch_and_says_how_to_resume(tmp_path, capsys, monkeypatch):
    real_loss, calls = train.beta_vae_loss, {"n": 0}

    def interrupt_in_epoch_two(output, x, *args, **kwargs):
        if output.recon.requires_grad:
            calls["n"] += 1
            if calls["n"] == 20:
                raise KeyboardInterrupt
        return real_loss(output, x, *args, **kwargs)

    monkeypatch.setattr(train, "beta_vae_loss", interrupt_in_epoch_two)
    out = tmp_path / "run"
    code = main(["--model", "fc", "--epochs", "3", "--train-limit", "2000", "--out", str(out), "--no-progress"])
    assert code == 130
    assert f"python train.py --resume {out}" in capsys.readouterr().err
    assert load_checkpoint(out)["epoch"] == 1


@pytest.mark.parametrize("args, message", [
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
    (["--kernel-size", "0"], "--kernel-size must be from 1 to 7"),
    (["--norm", "layer"], "invalid choice: 'layer'"),
    (["--activation", "tanh"], "invalid choice: 'tanh'"),
    (["--channels", "16", "x"], "invalid int value"),
])
def test_bad_command_line_is_one_line_and_exit_status_2(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and err.count("\n") == 1


def test_bad_output_and_resume_folders_are_one_line_errors(tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("")
    existing = tmp_path / "existing"
    save_checkpoint(existing / "checkpoint.pt", FCVAE()) if existing.mkdir() is None else None
    cases = [(["--out", str(a_file)], "is a file"),
             (["--out", str(a_file / "sub")], "not writable"),
             (["--out", str(existing)], "already holds a run"),
             (["--resume", str(tmp_path / "empty")], "no checkpoint"),
             (["--resume", str(existing), "--beta", "0.7"], "differs from the run's")]
    for args, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and message in err and err.count("\n") == 1, (args, err)
    assert load_checkpoint(existing)["epoch"] == 0  # nothing already saved was touched


def test_missing_data_is_a_one_line_error_from_the_real_command(tmp_path):
    import subprocess
    import sys
    result = subprocess.run([sys.executable, "train.py", "--data-dir", str(tmp_path), "--out", str(tmp_path / "r")],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "dataset-fashion-mnist" in result.stderr
