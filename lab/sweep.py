"""Sweeps as Optuna studies: a grid over settings, or a TPE search over CNN designs (lab/search.py), run by worker
processes that share one study; each run is trained into its folder, evaluated and recorded (lab/trials.py), then
a table.
docs/sweeps.md: where everything goes, several machines at one database, dead workers, continuing a sweep.

    python -m lab.sweep --model cnn --betas 0.01 0.1 1 --seeds 0 1 2 --epochs 20 --workers 2
    python -m lab.sweep --search --budget 53479 --trials 30 --epochs 20
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import optuna
import sqlalchemy.exc
import torch
from optuna.exceptions import ExperimentalWarning
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from checkpoint import CheckpointError
from classifier import ClassifierError
from cli import OneLineParser, add_options, check_range, finite, given, option_error
from config import EvalConfig, TrainConfig
from data import DataError
from evaluate import check_data_sizes
from files import WriteError, unwritable
from lab.machine import available_workers, cores, onednn_isa, supervise
from lab.records import RecordError
from lab.search import Job, Search, kept_records, make_job, study_name
from lab.storage import LOST, StorageError, check_journal, lost_database, one_line, open_storage, quiet_heartbeat, shown
from lab.tables import read_table, write_table
from lab.trials import work
from likelihoods import LIKELIHOODS
from models import FAMILIES, ModelConfig
from quality import SAMPLER_NAMES

OBJECTIVES = ("recon", "elbo", "loss", "iwae_nll", "iwae_elbo", "mse", "fd_prior", "fd_aggregate", "fd_class")
HEARTBEAT = 30  # database storage: seconds between a running trial's heartbeats
GONE = 3  # a worker's exit status when the database went away: the parent says so, once
EXPECTED = (
    CheckpointError,
    ClassifierError,
    DataError,
    WriteError,
    RecordError,
    ValueError,
    sqlalchemy.exc.SQLAlchemyError,
)  # one line each, exit status 1


def report(job: Job, trials: list[FrozenTrial], args: argparse.Namespace) -> tuple[list[Path], str | None, list]:
    """Write the table and, for grids, the figures (one set per combination of the settings other than beta): the
    files, or why not (a table is not replaced by one with fewer rows unless --force), and the missing points."""
    attrs, missing = job.table(trials)
    rows = [{c: a.get(c, a["settings"].get(c)) for c in job.columns} | a["metrics"] for a in attrs]
    stem = Path(args.results_dir) / job.stem(args.study)
    old = len(read_table(stem))
    if old > len(rows) and not args.force:
        return (
            [],
            (
                f"{stem.with_suffix('.csv')} holds {old} rows, this sweep {len(rows)}: not replaced (--force "
                f"replaces it; --study NAME writes a table of its own)"
            ),
            missing,
        )
    files, groups = write_table(rows, stem) if rows else [], {}
    for a, row in zip(attrs, rows) if not isinstance(job, Search) else ():
        name = a["run"].replace(f"-z{ModelConfig.latent_dim}-", "-").replace(f"-beta{row['beta']:g}", "")
        groups.setdefault(name if args.study in (None, "sweep") else f"{args.study}-{name}", []).append(row)
    for name, group in ((n, g) for n, g in groups.items() if len(g) > 1):  # a curve over beta needs two betas
        import plots  # matplotlib: only here
        from lab import figures

        for kind, figure in figures.plot_sweep(group, SAMPLER_NAMES).items():
            plots.save(figure, f"sweep-{name}-{kind}.png", folder=Path(args.img_dir))
            files.append(Path(args.img_dir) / f"sweep-{name}-{kind}.png")
    return files, None, missing


def writable(folder: Path) -> str | None:
    """Why no file can be written in `folder`, or None; creates it and tries (root ignores permissions)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        os.close((probe := tempfile.mkstemp(dir=folder))[0])
        os.unlink(probe[1])
    except OSError as error:
        return unwritable(folder) or f"{folder} is not writable ({error.strerror})"
    return None


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, Job, OneLineParser]:
    p = OneLineParser(prog="python -m lab.sweep", description="Optuna grid sweeps and CNN design searches.")
    add = p.add_argument
    add("--model", "--models", nargs="+", choices=tuple(FAMILIES), help="(default fc; search: cnn)")
    add("--likelihood", "--likelihoods", nargs="+", choices=LIKELIHOODS, default=[ModelConfig.likelihood])
    add("--betas", type=finite(float), nargs="+", help="(default 0.01 0.1 0.5 1 2 4; search: 0.1)")
    add("--seeds", type=int, nargs="+", default=[TrainConfig.seed])
    add("--latent-dim", type=int, nargs="+", default=[ModelConfig.latent_dim])
    add("--epochs", type=int, default=TrainConfig.epochs, help=f"(default {TrainConfig.epochs})")
    add("--train-limit", type=int, help="train on the first N training images only (quick checks)")
    add(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=V1,V2",
        help="grid over any other ModelConfig/TrainConfig field (tuples as 16x32), repeatable",
    )
    add_options(p, EvalConfig, skip=("batch_size", "seed"))  # --seed(s) and --batch-size: the training's
    add("--search", action="store_true", help="TPE search over CNN designs within --budget")
    add("--budget", type=int, help="search: most parameters a design may have")
    add("--trials", type=int, default=20, help="search: designs to train (default 20)")
    add("--objective", choices=OBJECTIVES, default="recon", help="trial value, minimised (default recon)")
    add("--workers", type=int, default=2, help="worker processes, cores/N threads each (default 2; 1: this one)")
    add("--storage", help="journal file (default RUNS_DIR/optuna.journal) or database URL")
    add("--study", help="study name: up to 100 letters, digits, -_.+ (default sweep; search: search-budgetB)")
    add("--heartbeat", type=int, default=HEARTBEAT, help=f"database: seconds between heartbeats (default {HEARTBEAT})")
    add("--runs-dir", default="runs/sweep", help="(default runs/sweep)")
    add("--results-dir", default="results", help="tables (default results)")
    add("--img-dir", default="img", help="figures (default img)")
    add("--records-dir", help="run records (default RESULTS_DIR/runs: they follow --results-dir)")
    add("--force", action="store_true", help="replace a table even by one with fewer rows")
    add(
        "--replace-records",
        action="store_true",
        help="let a run with fewer epochs or a smaller evaluation replace its record (refused otherwise)",
    )
    add("--no-progress", action="store_true", help="no progress bars")
    add("--worker", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    try:
        args.eval = EvalConfig(**given(args, EvalConfig))
        for name in (n for n in ("workers", "trials", "budget", "heartbeat") if getattr(args, n) is not None):
            check_range(name, getattr(args, name), 1, 10**9, integer=True)
    except ValueError as error:
        p.error(option_error(error))
    try:
        check_data_sizes(args.train_limit or 10**9, args.eval.eval_limit or 10**9)
        job = make_job(args)
    except ValueError as error:
        p.error(str(error))
    args.storage = args.storage or str(Path(args.runs_dir) / "optuna.journal")
    args.records_dir = args.records_dir or str(Path(args.results_dir) / "runs")
    if isa_error := onednn_isa():
        p.error(isa_error)
    for option in ("runs_dir", "results_dir", "img_dir", "records_dir") if args.worker is None else ():
        if writable(Path(getattr(args, option))):
            p.error(f"--{option.replace('_', '-')} {writable(Path(getattr(args, option)))}")
    return args, job, p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args, job, p = parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=ExperimentalWarning)
    threading.excepthook = quiet_heartbeat
    try:
        note = check_journal(Path(args.storage)) if "://" not in args.storage and args.worker is None else None
        print(f"sweep: {note}", file=sys.stderr) if note else None
        storage = open_storage(args.storage, args.heartbeat)
        base = args.study or (f"search-budget{args.budget}" if args.search else "sweep")
        study = optuna.create_study(
            storage=storage,
            study_name=study_name(base, job, asdict(args.eval)),
            direction="minimize",
            sampler=job.sampler(args.worker or 0),
            load_if_exists=True,
        )
    except (StorageError, sqlalchemy.exc.SQLAlchemyError, OSError, ValueError) as error:
        p.error(f"--storage {shown(args.storage)}: {one_line(error)}")
    started = time.perf_counter()
    try:
        if args.worker is not None:
            torch.set_num_threads(max(1, cores() // args.workers))
            work(study, storage, job, args)
            return 0
        print(f"study {study.study_name} in {shown(args.storage)}", flush=True)
        trials = study.get_trials(deepcopy=False)  # each failed trial that no later one retries: once more
        retried = {n for t in trials for n in RetryHeartbeatStaleTrialCallback.retry_history(t)}
        for t in (t for t in trials if t.state == TrialState.FAIL and t.number not in retried):
            RetryHeartbeatStaleTrialCallback()(study, t)
        workers = available_workers(args.workers, getattr(job, "trials", len(job.points)) - len(job.table(trials)[0]))
        if workers > 1 and (code := supervise(main, argv, workers)):
            print(f"sweep: error: {LOST.format('')}", file=sys.stderr) if code == GONE else None
            return 1 if code == GONE else code
        torch.set_num_threads(cores())
        work(study, storage, job, args)  # --workers 1: everything; else what killed workers left
        files, refused, missing = report(job, study.get_trials(deepcopy=False), args)
    except Exception as error:
        if (lost := lost_database(error)) is None and not isinstance(error, EXPECTED):
            raise
        if lost is None or args.worker is None:
            print(f"sweep: error: {LOST.format(f' ({one_line(lost)})') if lost else one_line(error)}", file=sys.stderr)
        return GONE if lost is not None and args.worker is not None else 1
    except KeyboardInterrupt:
        print(
            "\ninterrupted; finished epochs and evaluations are saved: run the same command again to continue",
            file=sys.stderr,
        ) if args.worker is None else None
        return 130
    print(f"done in {time.perf_counter() - started:.0f} s: " + ", ".join(map(str, files)))
    print(files[1].read_text(), end="") if files else None
    kept = kept_records(study.get_trials(deepcopy=False))
    missing = [name for name in missing if name not in kept]
    print(*(f"sweep: {line}" for line in kept.values()), sep="\n", file=sys.stderr) if kept else None
    if refused or missing:
        print(
            f"sweep: {refused}"
            if refused
            else f"sweep: missing {', '.join(missing)} (failed: see "
            f"the errors above); run the same command again to retry them",
            file=sys.stderr,
        )
    return 1 if refused or missing or kept else 0


if __name__ == "__main__":
    sys.exit(main())
