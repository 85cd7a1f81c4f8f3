"""lab/sweep.py in this process: grids and their reuse, records, cached evaluations keyed by the checkpoint,
continuing a study with other settings, the table guard, a damaged journal, the search, and bad input."""

import hashlib
import importlib.util
import json
import os
import shutil
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from checkpoint import DIGEST, CheckpointError, load_checkpoint
from classifier import WEIGHTS
from cli import ISAS
from evaluate import summary
from files import sha256
from lab import machine, search, sweep, trials
from lab.tables import read_table
from runs import lock

ROOT = Path(__file__).resolve().parents[2]
TABLE = "results/sweep-fc-bernoulli-z3.csv"
GRID = ("--betas", "1", "--seeds", "0", "1")  # two points, one beta: no figures to draw


def sweep_args(folder, *extra, epochs="1", hidden="16"):
    """A tiny sweep in `folder`: FC with one hidden layer of 16, 500 training images, 1 epoch, in this process."""
    return [
        "--model",
        "fc",
        "--set",
        f"hidden={hidden}",
        "--epochs",
        epochs,
        "--train-limit",
        "500",
        "--eval-limit",
        "300",
        "--iwae-images",
        "100",
        "--k",
        "2",
        "--samples",
        "100",
        "--workers",
        "1",
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


def studies(folder, journal="runs/optuna.journal"):
    storage = JournalStorage(JournalFileBackend(str(folder / journal)))
    return {
        s.study_name: optuna.load_study(study_name=s.study_name, storage=storage).get_trials()
        for s in optuna.get_all_study_summaries(storage)
    }


def stamps(folder):
    """The modification times of the run folders' files (their locks record who last looked)."""
    locks = (".lock", search.TRIAL_LOCK)
    return {p: p.stat().st_mtime_ns for p in (folder / "runs").glob("*/*") if p.name not in locks}


def runs(folder):
    return sorted(p for p in (folder / "runs").iterdir() if p.is_dir())


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A finished two-point sweep (seeds 0 and 1), made once; tests work on copies of it."""
    folder = tmp_path_factory.mktemp("swept")
    assert sweep.main(sweep_args(folder, *GRID)) == 0
    return folder


@pytest.fixture
def copy(swept, tmp_path):
    shutil.copytree(swept, tmp_path / "sweep", copy_function=shutil.copy2)
    return tmp_path / "sweep"


def test_run_names_add_the_settings_that_differ_from_the_defaults():
    assert search.run_name({"model": "fc", "beta": 0.5}) == "fc-bernoulli-z3-beta0.5"
    assert (
        search.run_name(
            {"model": "cnn", "beta": 1.0, "seed": 2, "channels": (16, 32), "hidden": (7,), "lr": 3e-4, "epochs": 5}
        )
        == "cnn-bernoulli-z3-beta1-seed2-channels16x32-lr0.0003"
    )
    assert search.parse_value("hidden", "400x200") == (400, 200) and search.parse_value("train_limit", "none") is None


def test_a_sweep_trains_evaluates_and_records_each_point_and_writes_the_table(swept):
    names = [f"fc-bernoulli-z3-beta1{s}-hidden16-train_limit500" for s in ("", "-seed1")]
    assert [p.name for p in runs(swept)] == names
    assert all(load_checkpoint(p)["epoch"] == 1 for p in runs(swept))
    [trials] = studies(swept).values()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert all(t.value == t.user_attrs["row"]["metrics"]["recon"] for t in trials)
    records = sorted((swept / "records").glob("*.json"))
    assert [p.stem for p in records] == names
    assert all(json.loads(p.read_text())["eval"]["epoch"] == 1 for p in records)
    table = (swept / TABLE).read_text().splitlines()
    assert len(table) == 3 and table[0].startswith("seed,beta,epochs,parameters,recon,kl")


def test_the_same_command_again_does_nothing_and_a_new_study_reuses_runs_and_evaluations(copy, capsys):
    before, table = stamps(copy), (copy / TABLE).read_text()
    assert sweep.main(sweep_args(copy, *GRID)) == 0
    assert "trained" not in capsys.readouterr().out and stamps(copy) == before
    assert (copy / TABLE).read_text() == table and len(studies(copy)) == 1
    assert sweep.main(sweep_args(copy, "--seeds", "1", "0", "0", "--betas", "1")) == 0  # the same grid
    assert len(studies(copy)) == 1 and stamps(copy) == before
    assert sweep.main(sweep_args(copy, *GRID, "--storage", str(copy / "other.journal"))) == 0
    assert capsys.readouterr().out.count(": reused, cached evaluation") == 2
    assert stamps(copy) == before


def test_a_sweep_uses_avx2_convolution_kernels_unless_told_otherwise(copy, monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "restored after the test")
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    assert sweep.main(sweep_args(copy, *GRID)) == 0 and os.environ["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "ALL")
    assert sweep.main(sweep_args(copy, *GRID)) == 0 and os.environ["ONEDNN_MAX_CPU_ISA"] == "ALL"


@pytest.mark.parametrize("stale", [("checkpoint_sha256", "epoch"), ("classifier_sha256", "classifier_sha256")])
def test_a_stale_eval_json_is_evaluated_again_whatever_its_file_time(copy, capsys, stale):
    first, second = runs(copy)
    for run, key, value in zip((first, second), stale, ("0" * 64, 7) if stale[1] == "epoch" else ("0" * 64, None)):
        result = json.loads((run / "eval.json").read_text())
        (run / "eval.json").write_text(json.dumps({**result, key: value}))
        os.utime(run / "eval.json", (2e9, 2e9))  # newer than everything
    assert sweep.main(sweep_args(copy, *GRID, "--storage", str(copy / "other.journal"))) == 0
    assert capsys.readouterr().out.count(": reused, evaluated") == 2
    for run in (first, second):
        result = json.loads((run / "eval.json").read_text())
        assert result["epoch"] == 1 and result["checkpoint_sha256"] == sha256(run / "checkpoint.pt")
        assert result["classifier_sha256"] == hashlib.sha256(WEIGHTS.read_bytes()).hexdigest()


def test_more_epochs_or_another_k_continue_in_a_study_of_their_own_resuming_the_runs(copy, capsys):
    assert sweep.main(sweep_args(copy, *GRID, epochs="2")) == 0
    assert capsys.readouterr().out.count(": resumed, evaluated") == 2
    assert all(load_checkpoint(p)["epoch"] == 2 and len(load_checkpoint(p)["history"]) == 2 for p in runs(copy))
    assert sweep.main(sweep_args(copy, *GRID, "--k", "3", epochs="2")) == 0
    assert capsys.readouterr().out.count(": reused, evaluated") == 2
    assert all(json.loads((p / "eval.json").read_text())["k"] == 3 for p in runs(copy))
    assert sorted(len(trials) for trials in studies(copy).values()) == [2, 2, 2]
    assert all(json.loads(p.read_text())["eval"]["k"] == 3 for p in (copy / "records").glob("*.json"))


def test_a_table_is_not_replaced_by_a_smaller_one_unless_forced(copy, capsys):
    table = (copy / TABLE).read_text()
    assert sweep.main(sweep_args(copy, "--betas", "1")) == 1  # seed 0 only
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "holds 2 rows, this sweep 1: not replaced" in error
    assert (copy / TABLE).read_text() == table
    assert sweep.main(sweep_args(copy, "--betas", "1", "--force")) == 0
    assert len((copy / TABLE).read_text().splitlines()) == 2


@pytest.mark.parametrize("tail", [b'{"op_code":4,"worker_id":"w","stu', b"garbage\n"])
def test_a_journal_whose_last_line_a_crash_cut_short_is_repaired_after_a_backup(copy, capsys, tail):
    journal = copy / "runs" / "optuna.journal"
    intact, before = journal.read_bytes(), stamps(copy)
    journal.write_bytes(intact + tail)
    assert sweep.main(sweep_args(copy, *GRID)) == 0
    assert "dropped its last line" in capsys.readouterr().err
    repaired = journal.read_bytes()  # then, records appended by that call, each on a line of its own
    assert repaired.startswith(intact) and all("op_code" in json.loads(line) for line in repaired.splitlines())
    assert stamps(copy) == before
    [backup] = journal.parent.glob("optuna.journal.bak-*")
    assert backup.read_bytes() == intact + tail


def test_a_journal_damaged_before_its_last_line_is_refused_in_one_line(copy, capsys):
    journal = copy / "runs" / "optuna.journal"
    lines = journal.read_bytes().split(b"\n")
    journal.write_bytes(b"\n".join(lines[:1] + [b"garbage"] + lines[1:]))
    with pytest.raises(SystemExit) as exit_info:
        sweep.main(sweep_args(copy, *GRID))
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and error.count("\n") == 1 and "line 2 is not an Optuna journal record" in error


def test_search_trains_only_designs_within_the_budget(tmp_path):
    args = sweep_args(tmp_path, "--search", "--budget", "10000", "--trials", "1")
    args[1] = "cnn"
    assert sweep.main(args) == 0
    [found] = studies(tmp_path).values()
    complete = [t for t in found if t.state == TrialState.COMPLETE]
    assert len(complete) == 1 and all(t.user_attrs["parameters"] <= 10000 for t in complete)
    assert all(t.user_attrs["parameters"] > 10000 for t in found if t.state == TrialState.PRUNED)
    for t in complete:  # the decoder's widths are searched too: mirrored, or one per encoder layer
        decoder = t.user_attrs["row"]["settings"]["decoder_channels"]
        assert len(decoder.split("x")) == t.params["depth"] if t.params["decoder"] == "own" else decoder == "mirror"
    rows = (tmp_path / "results" / "search-budget10000.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[0].startswith("depth,channels,decoder_channels,")
    assert ",parameters,epochs,recon" in rows[0]


PROC = "/proc/sweep-test"  # nothing can be created there, not even by root
BAD_INPUT = [
    (["--betas", "-1"], "--betas must be >= 0"),
    (["--model", "mlp"], "invalid choice: 'mlp'"),
    (["--set", "width=3"], "--set width=3: expected FIELD=V1,V2"),
    (["--set", "hidden=a"], "--set hidden=a:"),
    (["--eval-limit", "1"], "--eval-limit must be >= 10"),
    (["--samples", "3"], "--samples must be >= 10"),
    (["--train-limit", "3"], "evaluation needs >= 6 test and training images"),
    (["--study", "../x"], "--study '../x': use 1 to 100 letters"),
    (["--study", "a/b"], "--study 'a/b': use 1 to 100 letters"),
    (["--study", "x" * 300], "...: use 1 to 100 letters"),
    (["--storage", "/nonexistent/folder/study.journal"], "folder /nonexistent/folder does not exist"),
    (["--storage", "sqlite:////nonexistent/folder/study.db"], "folder /nonexistent/folder does not exist"),
    (["--storage", "nosuchdb://user@127.0.0.1/db"], "unknown database kind 'nosuchdb'"),
    (
        ["--storage", "postgresql://user@127.0.0.1:port/db"],  # was: invalid literal for int() with base 10: 'port'
        "--storage postgresql://user@127.0.0.1:port/db: not a database URL (its port 'port' is not a number): "
        "KIND[+DRIVER]://USER:PASSWORD@HOST:PORT/DATABASE, or a journal file's path",
    ),
    (["--storage", "://x"], "--storage ://x: not a database URL (SQLAlchemy cannot read it)"),
    (
        ["--storage", "postgresql://user:secret@127.0.0.1/db"],  # was: No module named 'psycopg'
        "--storage postgresql://user:***@127.0.0.1/db: its database driver is not installed (No module named "
        "'psycopg'); psycopg2 is (lab/requirements.txt): write postgresql+psycopg2://...",
    ),
    (  # the run named beta0.1 trained, then the other was refused: it held 0.1000001
        ["--betas", "0.1", "0.1000001"],
        "--betas 0.1 and 0.1000001 name the same run folder fc-bernoulli-z3-beta0.1-hidden16-train_limit500 (run "
        "names keep 6 significant digits): give values that differ there",
    ),
    (["--set", "lr=0.002,0.0020000001"], "--set lr=0.002 and 0.0020000001 name the same run folder"),
    (["--storage", "sqlite://"], "an in-memory database is not shared"),
    (["--storage", "mysql+pymysql://user:secret@127.0.0.1/db"], "database driver is not installed"),
    (["--storage", f"{PROC}.journal"], f"cannot write {PROC}.journal"),
    (["--storage", f"sqlite:///{PROC}.db"], "unable to open database file"),
    (["--runs-dir", PROC], f"--runs-dir {PROC} is not writable"),
    (["--records-dir", PROC], f"--records-dir {PROC} is not writable"),
]


@pytest.mark.parametrize("extra, message", BAD_INPUT, ids=[" ".join(extra)[:40] for extra, _ in BAD_INPUT])
def test_bad_input_is_one_line_and_exit_status_2_before_any_work(tmp_path, capsys, extra, message):
    driver = {"mysql+pymysql": "pymysql", "postgresql": "psycopg"}.get(extra[-1].split("://")[0])  # their default
    if "driver is not installed" in message and importlib.util.find_spec(driver):
        pytest.skip(f"{driver} is installed here: no missing driver to show")
    with pytest.raises(SystemExit) as exit_info:
        sweep.main(sweep_args(tmp_path, *extra))
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and error.count("\n") == 1 and message in error, error
    assert "secret" not in error and not list(tmp_path.glob("runs/*/checkpoint.pt"))


def same_cell(cell, value):
    """Whether a table cell (as read from the CSV) holds `value`."""
    if isinstance(value, (str, bool)):
        return cell == str(value)
    return float(cell) == pytest.approx(value, rel=1e-12)


def test_the_committed_sweep_table_holds_the_numbers_of_the_committed_records():
    """results/sweep-betas-*: made from run folders that are gone; each metric but the evaluation's timing equals
    the summary of its run's committed record (rerun since, with the same numbers)."""
    rows = read_table(ROOT / "results/sweep-betas-fc-bernoulli+gaussian-z3")
    assert len(rows) == 14
    for row in rows:
        name = search.run_name({"model": "fc", "likelihood": row["likelihood"], "beta": float(row["beta"])})
        record = json.loads((ROOT / f"results/runs/{name}.json").read_text())
        metrics = {**summary(record["eval"]), "parameters": record["parameters"], "epochs": len(record["epochs"])}
        compared = [k for k in metrics if k in row and k != "eval_seconds"]  # a timing: not in records
        assert len(compared) == len(row) - 3 and all(same_cell(row[k], metrics[k]) for k in compared), name


# ---------------------------------------------------------------------------------------------- issue 34: trust
def test_records_name_the_checkpoint_digest_the_cpu_and_the_onednn_isa(swept):
    for run in runs(swept):
        record = json.loads((swept / "records" / f"{run.name}.json").read_text())
        assert record["eval"]["checkpoint_digest"] == load_checkpoint(run)[DIGEST]
        assert record["machine"] == {"cpu": machine.cpu_model(), "onednn_max_cpu_isa": os.environ["ONEDNN_MAX_CPU_ISA"]}
        assert record["machine"]["cpu"] and record["machine"]["onednn_max_cpu_isa"] in ISAS


def test_every_column_of_a_row_comes_from_the_run_not_the_request(copy, capsys):
    """Case 5: a 2-epoch run reused by a 1-epoch sweep was a row saying epochs 1 with the 2-epoch numbers."""
    assert sweep.main(sweep_args(copy, *GRID, epochs="2")) == 0
    assert sweep.main(sweep_args(copy, *GRID, "--k", "3")) == 0  # --epochs 1: the runs are reused
    assert capsys.readouterr().out.count(": reused, evaluated") == 2
    rows = read_table(copy / TABLE.removesuffix(".csv"))
    for row, run in zip(rows, runs(copy)):
        result = json.loads((run / "eval.json").read_text())
        saved = load_checkpoint(run)
        assert row["epochs"] == "2" and result["epoch"] == saved["epoch"] == 2 and result["k"] == 3
        trained = saved["train_config"]
        assert row["seed"] == str(trained["seed"]) and same_cell(row["beta"], trained["beta"])
        assert all(same_cell(row[k], v) for k, v in summary(result).items() if k in row and k != "eval_seconds")


def test_records_follow_the_results_dir_unless_a_records_dir_is_given(copy, tmp_path, monkeypatch):
    """Case 7: records landed in the committed results/runs from a sweep whose other folders were elsewhere."""
    monkeypatch.chdir(tmp_path)  # where the default results/runs would be
    args = sweep_args(copy, *GRID, "--storage", str(copy / "other.journal"))  # a new study: each run is recorded
    del args[args.index("--records-dir") : args.index("--records-dir") + 2]
    assert sweep.main(args) == 0
    assert not (tmp_path / "results").exists()
    assert sorted(p.stem for p in (copy / "results" / "runs").glob("*.json")) == [p.name for p in runs(copy)]


def test_workers_are_at_most_the_points_left_and_twice_the_cores(copy, capsys, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert [machine.available_workers(*case) for case in ((100, 50), (3, 1), (2, 5), (8, 0))] == [4, 1, 2, 1]
    assert capsys.readouterr().err.count("\n") == 3
    assert sweep.main(sweep_args(copy, *GRID, "--workers", "64")) == 0  # nothing left: in this process
    assert "sweep: --workers 64: starting 1 (0 points left, at most 2 per core on 2 cores)" in capsys.readouterr().err


def test_a_trial_holds_its_run_folder_before_it_names_it(copy, monkeypatch):
    """Case 8: a trial named its folder before fit locked it, so other workers took live trials for dead."""
    named, real = [], optuna.trial.Trial.set_user_attr

    def set_user_attr(trial, key, value):
        if key == "run":
            try:
                os.close(lock(copy / "runs" / value, name=search.TRIAL_LOCK))
                named.append("free")
            except CheckpointError:
                named.append("held")
        real(trial, key, value)

    monkeypatch.setattr(optuna.trial.Trial, "set_user_attr", set_user_attr)
    assert sweep.main(sweep_args(copy, *GRID, "--storage", str(copy / "other.journal"))) == 0
    assert named == ["held", "held"]


def test_long_run_names_end_in_a_stable_digest():
    settings = {"model": "fc", "beta": 1.0, "hidden": (1024,) * 40, "lr": 0.000123}
    name = search.run_name(settings)
    assert len(name) == search.MAX_NAME and name.startswith("fc-bernoulli-z3-beta1-hidden1024x1024")
    assert name == search.run_name(dict(settings)) and name != search.run_name({**settings, "lr": 0.000124})
    assert search.run_name({"model": "fc", "beta": 1.0}) == "fc-bernoulli-z3-beta1"  # short names unchanged


@pytest.mark.parametrize("isa", ["AVX3", "avx2", "", "ALL;"])
def test_an_unknown_onednn_isa_is_refused_in_one_line(tmp_path, capsys, monkeypatch, isa):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa)
    with pytest.raises(SystemExit) as exit_info:
        sweep.main(sweep_args(tmp_path, *GRID))
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and error.count("\n") == 1 and "is not one of oneDNN's: ALL, DEFAULT" in error
    assert not (tmp_path / "runs").exists()


def test_a_database_gone_mid_sweep_is_one_line_and_the_same_command_continues(copy, capfd, monkeypatch):
    """Case 10: PostgreSQL dying mid-sweep was 741 lines with 17 tracebacks ending in UnboundLocalError. Here the
    server's death is SQLAlchemy's OperationalError on every statement, from the moment the first run trains."""
    args = sweep_args(copy, *GRID, "--storage", f"sqlite:///{copy / 'study.db'}", "--heartbeat", "1", epochs="2")
    gone, open_storage, train_run = [], sweep.open_storage, trials.train_run

    def dying(*given):
        storage = open_storage(*given)

        def execute(connection, cursor, statement, *rest):
            if gone:
                raise sqlalchemy.exc.OperationalError(statement, None, Exception("server closed the connection"))

        sqlalchemy.event.listen(storage.engine, "before_cursor_execute", execute)
        return storage

    def training(*given, **kwargs):
        gone.append(True)
        time.sleep(1.5)  # a heartbeat or two fails meanwhile
        return train_run(*given, **kwargs)

    monkeypatch.setattr(sweep, "open_storage", dying)
    monkeypatch.setattr(trials, "train_run", training)
    assert sweep.main(args) == 1
    out, err = capfd.readouterr()
    assert err.count("\n") == 1 and "Traceback" not in out + err, err
    assert (
        err.startswith("sweep: error: the database went away (server closed the connection)")
        and "run the same command again to continue" in err
    )
    monkeypatch.undo()
    assert sweep.main(args) == 0 and all(load_checkpoint(run)["epoch"] == 2 for run in runs(copy))
