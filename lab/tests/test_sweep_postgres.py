"""lab/sweep.py at a real PostgreSQL server (issue 22): two sweep processes share one study, as two machines
would; one is killed mid-run, Optuna's heartbeat fails its trial and the other retries it from the checkpoint.
Skipped, with the reason, where PostgreSQL (Debian package postgresql) or psycopg2 is missing."""

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from test_sweep_workers import a_worker_in_training, command, complete_points, in_background, sweep_args


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres():
    """The URL of a database on a PostgreSQL server started for this test (127.0.0.1, a free port, the
    postgres user when run as root), stopped at the end whatever happens."""
    pytest.importorskip("psycopg2", reason="the PostgreSQL driver psycopg2-binary is not installed")
    tools = sorted(Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not tools:
        pytest.skip(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb; Debian: apt-get install postgresql)"
        )
    as_user = []
    if os.geteuid() == 0:  # the server refuses to run as root
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root, and there is no postgres user to run the server as")
        as_user = ["runuser", "-u", "postgres", "--"]
    folder = Path(tempfile.mkdtemp(prefix="sweep-pg-"))  # short: the server's socket lives there
    if as_user:
        shutil.chown(folder, "postgres")
    data, port, bin_dir = folder / "data", free_port(), tools[-1]

    def run(*command):
        subprocess.run([*as_user, *map(str, command)], check=True, capture_output=True, timeout=60)

    try:
        run(bin_dir / "initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync")
        run(
            bin_dir / "pg_ctl",
            "-D",
            data,
            "-l",
            folder / "log",
            "-w",
            "-o",
            f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start",
        )
        run(bin_dir / "createdb", "-h", folder, "-p", port, "-U", "postgres", "sweep")
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/sweep"
    finally:
        subprocess.run(
            [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(folder, ignore_errors=True)


def test_two_processes_share_a_postgresql_study_and_a_killed_one_s_trial_is_retried(postgres, tmp_path, capsys):
    args = sweep_args(tmp_path, "--storage", postgres, "--heartbeat", "1", "--workers", "1")
    other = command(args, tmp_path / "killed.out")  # the first machine
    try:
        run, _ = a_worker_in_training(tmp_path, other.pid)
        future = in_background(args)  # the second machine: takes the other point
    finally:
        other.kill()
        other.join()
    assert future.result(timeout=300) == 0
    out = capsys.readouterr().out
    assert "no heartbeat; retried" in out and f"{run}: resumed, evaluated" in out
    runs = complete_points(tmp_path)  # each point trained once: its epochs 1..N, one record, one table row
    [summary] = optuna.get_all_study_summaries(postgres)
    trials = optuna.load_study(study_name=summary.study_name, storage=postgres).get_trials()
    complete = sorted(t.user_attrs["run"] for t in trials if t.state == TrialState.COMPLETE)
    assert complete == [p.name for p in runs] and [t.state for t in trials].count(TrialState.FAIL) == 1
    actions = {t.user_attrs["run"]: t.user_attrs["row"]["action"] for t in trials if t.state == TrialState.COMPLETE}
    assert actions[run.name].startswith("resumed") and [a.split(",")[0] for a in actions.values()].count("trained") == 1
