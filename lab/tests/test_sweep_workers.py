"""lab/sweep.py with worker processes: a worker killed mid-run (its trial retried from the run folder's checkpoint),
a whole sweep killed and run again, a worker paused past its heartbeat's limit and then resumed."""

import json
import multiprocessing
import os
import signal
import sqlite3
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import optuna
from optuna.trial import TrialState

from checkpoint import load_checkpoint
from lab import sweep

EPOCHS = 6


SEEDS = ("--betas", "1", "--seeds", "0", "1")  # two points, one beta: no figures
BETAS = ("--betas", "0.5", "1")  # two points, a curve over beta: figures
NAMES = {
    SEEDS: [f"fc-bernoulli-z3-beta1{s}-hidden16-train_limit500" for s in ("", "-seed1")],
    BETAS: [f"fc-bernoulli-z3-beta{b}-hidden16-train_limit500" for b in ("0.5", "1")],
}


def sweep_args(folder, *extra, grid=SEEDS):
    """A tiny two-point sweep of EPOCHS short epochs in `folder`, two worker processes."""
    return [
        "--model",
        "fc",
        "--set",
        "hidden=16",
        "--epochs",
        str(EPOCHS),
        "--train-limit",
        "500",
        *grid,
        "--eval-limit",
        "300",
        "--iwae-images",
        "100",
        "--k",
        "2",
        "--samples",
        "100",
        "--workers",
        "2",
        "--runs-dir",
        str(folder / "runs"),
        "--results-dir",
        str(folder / "results"),
        "--img-dir",
        str(folder / "img"),
        "--records-dir",
        str(folder / "records"),
        "--no-progress",
        *extra,
    ]


def in_background(args):
    """sweep.main(args) in a thread of this process (its workers are processes): a Future of its exit status."""
    pool = ThreadPoolExecutor(1)
    future = pool.submit(sweep.main, args)
    pool.shutdown(wait=False)
    return future


def trained_epochs(run):
    try:
        return len(json.loads((run / "metrics.json").read_text())["epochs"])
    except (OSError, ValueError, KeyError):
        return 0


def wait_for(condition, timeout=240.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError("timed out")


def a_worker_in_training(folder, pid=None):
    """(run folder, pid) of a sweep process (`pid`, or any process this one started) that has trained an epoch of
    a run and holds it for more."""

    def training():
        for run in (folder / "runs").glob("*/"):
            if 1 <= trained_epochs(run) < EPOCHS - 2:
                try:  # "pid N on HOST", written by the holder; its parent is the 4th field of /proc/N/stat
                    holder = int((run / ".lock").read_text().split()[1])
                    parent = int(Path(f"/proc/{holder}/stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue  # being rewritten, or gone
                if holder == pid or pid is None and parent == os.getpid():  # never signal anything else
                    return run, holder

    return wait_for(training)


def failed_trials(database):
    time.sleep(0.2)
    with sqlite3.connect(database, timeout=30) as connection:
        return connection.execute("select count(*) from trials where state = 'FAIL'").fetchone()[0]


def complete_points(folder, grid=SEEDS):
    """The run folders of the sweep's points, each trained to EPOCHS epochs, recorded, in the table."""
    runs = sorted((folder / "runs").glob("*/"))
    assert [p.name for p in runs] == NAMES[grid]
    assert all(len(load_checkpoint(p)["history"]) == EPOCHS for p in runs)
    assert len((folder / "results" / "sweep-fc-bernoulli-z3.csv").read_text().splitlines()) == 3
    assert sorted(p.stem for p in (folder / "records").glob("*.json")) == [p.name for p in runs]
    return runs


def test_a_killed_worker_is_reported_and_its_trial_retried_from_the_checkpoint(tmp_path, capfd):
    args = sweep_args(tmp_path, grid=BETAS)
    future = in_background(args)
    run, pid = a_worker_in_training(tmp_path)
    os.kill(pid, signal.SIGKILL)
    assert future.result(timeout=300) == 0
    out, err = capfd.readouterr()
    assert f"worker {pid} was killed by SIGKILL" in err
    assert f"nobody holds {run}: its worker is gone; retrying it" in out and f"{run}: resumed, evaluated" in out
    complete_points(tmp_path, BETAS)
    assert len(list((tmp_path / "img").glob("sweep-fc-bernoulli-hidden16-train_limit500-*.png"))) == 3
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "runs" / "optuna.journal"))
    )
    [summary] = optuna.get_all_study_summaries(storage)
    states = [t.state for t in optuna.load_study(study_name=summary.study_name, storage=storage).get_trials()]
    assert sorted(states, key=str) == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL]


def command(args, log):
    """The sweep command `args` in a process of its own, as another terminal or machine would run it (forked from
    this one, whose imports are done), its output in the file `log`."""

    def run():
        sys.stdout = sys.stderr = open(log, "w", buffering=1)
        os.dup2(sys.stdout.fileno(), 1)
        os.dup2(sys.stdout.fileno(), 2)
        code = 1
        try:
            code = sweep.main(args)
        finally:
            sys.stdout.flush()
            os._exit(code)  # not through pytest's exit handlers, which this process shares

    process = multiprocessing.get_context("fork").Process(target=run)
    process.start()
    return process


def test_a_sweep_killed_as_a_whole_is_finished_by_the_same_command(tmp_path, capsys):
    args = sweep_args(tmp_path, "--workers", "1")
    process = command(args, tmp_path / "killed.out")
    try:
        run, pid = a_worker_in_training(tmp_path, process.pid)
    finally:
        process.kill()
        process.join()
    assert in_background(args).result(timeout=300) == 0  # the same command again
    out = capsys.readouterr().out
    assert f"nobody holds {run}: its worker is gone; retrying it" in out and f"{run}: resumed" in out
    complete_points(tmp_path)


def test_a_worker_paused_past_its_heartbeat_limit_then_resumed_does_not_crash(tmp_path, capfd):
    database = tmp_path / "study.db"
    args = sweep_args(tmp_path, "--storage", f"sqlite:///{database}", "--heartbeat", "1", "--workers", "1")
    paused = command(args, tmp_path / "paused.out")
    try:
        run, _ = a_worker_in_training(tmp_path, paused.pid)
        os.kill(paused.pid, signal.SIGSTOP)
        future = in_background(args)  # the same command elsewhere: takes the other point, then the paused one's
        wait_for(lambda: failed_trials(database))  # silent for 3 heartbeats: failed and retried
    finally:
        os.kill(paused.pid, signal.SIGCONT)
    paused.join(timeout=300)
    assert future.result(timeout=300) == 0 and paused.exitcode == 0
    out, err = capfd.readouterr()
    paused_out = (tmp_path / "paused.out").read_text()
    assert "no heartbeat; retried" in out and "was failed meanwhile (taken for dead)" in paused_out
    assert all("Cannot tell" not in text and "Traceback" not in text for text in (out, err, paused_out))
    for path in complete_points(tmp_path):  # trained once: the retry waited for the folder, then reused it
        assert [e["epoch"] for e in json.loads((path / "metrics.json").read_text())["epochs"]] == list(
            range(1, EPOCHS + 1)
        )
    assert f"{run}: reused" in out and f"{run}: trained" not in out
