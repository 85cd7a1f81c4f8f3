"""Tests of sweep.py: grid studies with parallel workers, retries after a killed worker, reuse, search, bad input."""
import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
import torch
from optuna.trial import TrialState

import sweep
from checkpoint import load_checkpoint

ROOT = sweep.Path(sweep.__file__).resolve().parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def sweep_args(tmp_path, *extra, model="fc", hidden="16", epochs="1", limit="500"):
    """A tiny, quick sweep in tmp_path: FC with one hidden layer of 16, 500 training images, 1 epoch."""
    return ["--model", model, "--set", f"hidden={hidden}", "--epochs", epochs, "--train-limit", limit,
            "--eval-limit", "300", "--workers", "1",  # in this process, unless a test asks for more
            "--iwae-images", "300", "--k", "2", "--samples", "200", "--runs-dir", str(tmp_path / "runs"),
            "--results-dir", str(tmp_path / "results"), "--img-dir", str(tmp_path / "img"), "--no-progress", *extra]


def trials(storage, name="sweep"):
    return optuna.load_study(study_name=name, storage=sweep.JournalStorage(
        sweep.JournalFileBackend(str(storage)))).get_trials()


def stamps(runs):
    return {path: path.stat().st_mtime_ns for path in runs.rglob("*") if path.is_file() and "journal" not in path.name}


def trained_epochs(run):
    try:
        return len(json.loads((run / "metrics.json").read_text())["epochs"])
    except FileNotFoundError:
        return 0


def test_run_names_add_the_settings_that_differ_from_the_defaults():
    assert sweep.run_name({"model": "fc", "beta": 0.5}) == "fc-bernoulli-z3-beta0.5"
    assert sweep.run_name({"model": "cnn", "beta": 1.0, "seed": 2, "channels": (16, 32), "hidden": (7,),
                           "lr": 3e-4}) == "cnn-bernoulli-z3-beta1-seed2-channels16x32-lr0.0003"
    assert sweep.parse_value("hidden", "400x200") == (400, 200) and sweep.parse_value("train_limit", "none") is None


def test_two_workers_train_each_grid_point_once_and_a_later_call_reuses_them(tmp_path, capfd):
    args = sweep_args(tmp_path, "--betas", "0.5", "1", "--seeds", "0", "1")
    assert sweep.main([*args, "--workers", "2"]) == 0  # two worker processes
    assert capfd.readouterr().out.count(": trained, evaluated") == 4
    runs = sorted(path for path in (tmp_path / "runs").iterdir() if path.is_dir() and path.name != ".locks")
    assert [path.name for path in runs] == [f"fc-bernoulli-z3-beta{b}{s}-hidden16-train_limit500"
                                            for b in ("0.5", "1") for s in ("", "-seed1")]
    assert all(load_checkpoint(path)["epoch"] == 1 for path in runs)
    journal = tmp_path / "runs" / "optuna.journal"
    finished = trials(journal)
    assert [t.state for t in finished] == [TrialState.COMPLETE] * 4
    assert sorted(t.user_attrs["run"] for t in finished) == list(map(str, runs))
    assert all(t.value == t.user_attrs["recon"] for t in finished)
    table = (tmp_path / "results" / "sweep-fc-bernoulli-z3.csv").read_text().splitlines()
    assert len(table) == 5 and table[0].startswith("seed,beta,epochs,parameters,recon,kl")

    before = stamps(tmp_path / "runs")
    assert sweep.main(args) == 0  # the same command: the study is finished, nothing runs
    assert len(trials(journal)) == 4 and stamps(tmp_path / "runs") == before
    assert (tmp_path / "results" / "sweep-fc-bernoulli-z3.csv").read_text().splitlines() == table
    capfd.readouterr()
    assert sweep.main([*args, "--storage", str(tmp_path / "other.journal")]) == 0  # a new study, same run folders
    assert capfd.readouterr().out.count(": reused, cached evaluation") == 4
    assert stamps(tmp_path / "runs") == before


@pytest.fixture
def one_thread(monkeypatch):
    """In-process sweeps at one thread, as the worker subprocesses run: float sums then agree to the bit."""
    threads = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield
    torch.set_num_threads(threads)


def test_a_killed_worker_s_trial_is_retried_and_resumes_to_the_same_result(tmp_path, capsys, one_thread):
    args = sweep_args(tmp_path, "--betas", "1", "--heartbeat", "0.3", hidden="64", epochs="5", limit="2000")
    worker = subprocess.Popen([sys.executable, str(ROOT / "sweep.py"), *args], env=ENV, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = tmp_path / "runs" / "fc-bernoulli-z3-beta1-hidden64-train_limit2000"
    deadline = time.time() + 60
    while time.time() < deadline and not trained_epochs(run):
        time.sleep(0.02)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    killed_at = load_checkpoint(run)["epoch"]
    assert 1 <= killed_at < 5
    assert [t.state for t in trials(tmp_path / "runs" / "optuna.journal")] == [TrialState.RUNNING]
    time.sleep(1.0)  # three missed heartbeats

    assert sweep.main(args) == 0
    out = capsys.readouterr().out
    assert "no heartbeat" in out and f"{run}: resumed" in out
    states = [t.state for t in trials(tmp_path / "runs" / "optuna.journal")]
    assert states == [TrialState.FAIL, TrialState.COMPLETE]
    resumed = load_checkpoint(run)

    other = tmp_path / "uninterrupted"
    assert sweep.main([*args, "--runs-dir", str(other), "--results-dir", str(other)]) == 0
    straight = load_checkpoint(other / run.name)
    drop = lambda history: [{k: v for k, v in e.items() if k != "seconds"} for e in history]  # noqa: E731
    assert drop(resumed["history"]) == drop(straight["history"]) and len(straight["history"]) == 5
    metrics = [json.loads((folder / "eval.json").read_text()) for folder in (run, other / run.name)]
    assert [{k: v for k, v in m.items() if k not in ("seconds", "run")} for m in metrics][0] == \
        {k: v for k, v in metrics[1].items() if k not in ("seconds", "run")}


def test_search_trains_only_designs_within_the_budget(tmp_path):
    args = sweep_args(tmp_path, "--search", "--budget", "10000", "--trials", "2", model="cnn")
    assert sweep.main(args) == 0
    found = trials(tmp_path / "runs" / "optuna.journal", "search-budget10000")
    complete = [t for t in found if t.state == TrialState.COMPLETE]
    assert len(complete) == 2 and all(t.user_attrs["parameters"] <= 10000 for t in complete)
    assert all(t.user_attrs["parameters"] > 10000 for t in found if t.state == TrialState.PRUNED)
    for t in complete:  # the decoder's widths are searched too: mirrored, or one per encoder layer
        decoder = t.user_attrs["decoder_channels"]
        own = t.params["decoder"] == "own"
        assert len(decoder.split("x")) == t.params["depth"] if own else decoder == "mirror"
    rows = (tmp_path / "results" / "search-budget10000.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("depth,channels,decoder_channels,")
    assert ",parameters,epochs,recon" in rows[0]


@pytest.mark.parametrize("extra, message", [
    (["--betas", "-1"], "--betas must be >= 0"),
    (["--model", "mlp"], "invalid choice: 'mlp'"),
    (["--storage", "/nonexistent/folder/study.journal"], "folder /nonexistent/folder does not exist"),
    (["--set", "width=3"], "--set width=3: expected FIELD=V1,V2"),
    (["--set", "hidden=a"], "--set hidden=a:"),
])
def test_bad_input_is_one_line_and_exit_status_2(tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as exit_info:
        sweep.main(sweep_args(tmp_path, *extra))
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and error.count("\n") == 1 and message in error, error
