"""Sweeps as Optuna studies: a grid over settings (or a TPE search over CNN designs), trained by parallel workers
on one machine or many, each run evaluated, then a table and figures.

    python sweep.py --model cnn --betas 0.01 0.1 1 --seeds 0 1 2 --epochs 20 --workers 2
    python sweep.py --model fc --betas 1 --set hidden=400,256x128      # any ModelConfig/TrainConfig field
    python sweep.py --search --budget 53479 --trials 30 --epochs 20    # CNN designs within a parameter budget

Study:   runs/sweep/optuna.journal (--storage PATH on a shared filesystem, or a database URL), study "sweep"
Runs:    runs/sweep/{model}-{likelihood}-z{latent_dim}-beta{beta:g}[-seed{seed}][-{field}{value}...]/ as train.py
         writes them (finished: reused; unfinished: resumed), each with eval.json (reused while still valid)
Table:   results/sweep-{model}-{likelihood}-z{latent_dim}.csv and .md (search: results/search-budget{B}.*)
Figures: img/sweep-{model}-{likelihood}[-...]-rate_distortion.png, -knn.png, -fd.png
A worker that dies leaves a trial whose heartbeat stops; any later worker marks it failed and retries it, resuming
its run folder from the checkpoint. Running the same command again continues the study.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import fcntl
import json
import os
import subprocess
import sys
import threading
import time
import typing
import warnings
from contextlib import contextmanager
from dataclasses import asdict
from itertools import product
from pathlib import Path
from typing import Any, Iterator

import optuna
import torch
from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

import plots
from checkpoint import CHECKPOINT, CheckpointError, config_differences, load_checkpoint
from classifier import WEIGHTS, ClassifierError, load_classifier
from cli import OneLineParser, finite, option_error
from data import DataError, FashionMNISTData, load_fashion_mnist
from evaluate import (IWAE_IMAGES, K, SAMPLER_NAMES, SAMPLES, check_positive, eval_path, evaluate_run,
                      reference_features, summary, with_test_limit)
from models import LIKELIHOODS, MODELS, ModelConfig, architecture_size, build_model
from train import TrainConfig, TrainingError, fit

BETAS = (0.01, 0.1, 0.5, 1.0, 2.0, 4.0)
RUNS_DIR = Path("runs/sweep")
RESULTS_DIR = Path("results")
IMG_DIR = Path("img")
HEARTBEAT = 30          # seconds between a running trial's heartbeats; stale after STALE_BEATS missed ones
STALE_BEATS = 3
OBJECTIVES = ("recon", "elbo", "loss", "iwae_nll", "iwae_elbo", "mse", "fd_prior", "fd_aggregate", "fd_class")
EVAL_KEYS = ("k", "iwae_images", "samples", "eval_limit")  # evaluation settings, recorded with every trial
FIELDS = {f.name: (cls, f) for cls in (ModelConfig, TrainConfig) for f in dataclasses.fields(cls)}
NAMED = ("model", "likelihood", "latent_dim", "beta", "seed", "epochs")  # in every run name (or not at all)


# ---------------------------------------------------------------------------------------------- settings
def parse_value(field: str, text: str) -> Any:
    """A --set value for a ModelConfig/TrainConfig field, converted with the field's type (16x32 for tuples)."""
    kind = typing.get_type_hints(FIELDS[field][0])[field]
    if typing.get_origin(kind) is tuple:
        return tuple(int(part) for part in text.split("x"))
    if text.lower() == "none" and type(None) in typing.get_args(kind):
        return None
    kind = next((arg for arg in typing.get_args(kind) if arg is not type(None)), kind)
    return finite(kind)(text)


def as_param(value: Any) -> Any:
    """A setting as an Optuna parameter value (str, int, float or None): tuples as 16x32."""
    return "x".join(map(str, value)) if isinstance(value, tuple) else value


def split(settings: dict[str, Any]) -> tuple[ModelConfig, TrainConfig]:
    """The ModelConfig and TrainConfig of a grid point; ValueError for invalid settings."""
    pick = lambda cls: {k: v for k, v in settings.items() if k in FIELDS and FIELDS[k][0] is cls}  # noqa: E731
    return ModelConfig(**pick(ModelConfig)), TrainConfig(**pick(TrainConfig))


def run_name(settings: dict[str, Any]) -> str:
    """{model}-{likelihood}-z{latent_dim}-beta{beta:g}, then -seed{seed} and -{field}{value} for other settings
    that differ from their defaults (and that the model uses)."""
    model_config, config = split(settings)
    name = f"{model_config.model}-{model_config.likelihood}-z{model_config.latent_dim}-beta{config.beta:g}"
    name += f"-seed{config.seed}" if config.seed else ""
    used = {**model_config.as_dict(), **asdict(config)}
    for field, (_, spec) in FIELDS.items():
        if field not in NAMED and field in used and getattr(model_config if field in model_config.as_dict()
                                                            else config, field) != spec.default:
            value = settings[field]
            name += f"-{field}{value:g}" if isinstance(value, float) else f"-{field}{as_param(value)}"
    return name


# ---------------------------------------------------------------------------------------------- one run
def train_run(run_dir: Path, model_config: ModelConfig, config: TrainConfig, data: FashionMNISTData,
              progress: bool = True) -> str:
    """Bring the run in `run_dir` to config.epochs epochs: "reused" (already there), "resumed" or "trained"."""
    if (run_dir / CHECKPOINT).exists():
        checkpoint = load_checkpoint(run_dir)
        saved = {**checkpoint["config"], **checkpoint["train_config"]}
        wanted = {**model_config.as_dict(), **asdict(config)}
        differences = config_differences(saved, {k: v for k, v in wanted.items() if k != "epochs"})
        if differences:
            raise CheckpointError(f"{run_dir} holds a different run: {'; '.join(differences)} (saved vs wanted)")
        if checkpoint["epoch"] >= config.epochs:
            return "reused"
        fit(build_model(checkpoint["config"]), data, config, out_dir=run_dir, checkpoint=checkpoint,
            progress=progress)
        return "resumed"
    fit(build_model(model_config, seed=config.seed), data, config, out_dir=run_dir, progress=progress)
    return "trained"


def cached_eval(run_dir: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The run's eval.json when it is newer than the checkpoint and the classifier, and made with `settings`."""
    path = eval_path(run_dir)
    if not path.exists() or path.stat().st_mtime <= max(p.stat().st_mtime for p in (run_dir / CHECKPOINT, WEIGHTS)):
        return None
    try:
        result = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    try:
        summary(result)  # an eval.json from an older evaluate.py lacks metrics: evaluate again
    except (KeyError, TypeError):
        return None
    return result if all(result.get(key) == value for key, value in settings.items()) else None


class Runner:
    """Trains (or reuses) and evaluates grid points in this process; data and reference features loaded once."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.data, self.references = args, {}, {}
        self.classifier = load_classifier()

    def __call__(self, settings: dict[str, Any]) -> dict[str, Any]:
        """The table row of one grid point: its settings, run folder, what was done, and the summary metrics."""
        args = self.args
        model_config, config = split(settings)
        if model_config.likelihood not in self.data:
            self.data[model_config.likelihood] = load_fashion_mnist(model_config.likelihood)
        full = self.data[model_config.likelihood]
        run_dir = Path(args.runs_dir) / run_name(settings)
        with folder_lock(Path(args.runs_dir) / ".locks" / run_dir.name) as locked:
            if not locked:
                raise optuna.TrialPruned(f"{run_dir} is in use by another worker")
            action = train_run(run_dir, model_config, config, full, not args.no_progress)
            data = with_test_limit(FashionMNISTData(full.train_images[:config.train_limit],
                                                    full.train_labels[:config.train_limit], full.test_images,
                                                    full.test_labels, full.likelihood), args.eval_limit)
            test_images = len(data.test_images)
            wanted = {"k": args.k, "samples": args.samples, "test_images": test_images,
                      "train_images": len(data.train_images), "iwae_images": min(args.iwae_images, test_images)}
            result = cached_eval(run_dir, wanted)
            if result is None:
                key = (model_config.likelihood, config.train_limit)
                if key not in self.references:
                    self.references[key] = reference_features(self.classifier, data)
                result = evaluate_run(run_dir, data, args.k, args.iwae_images, args.samples, self.classifier,
                                      self.references[key])
                action += f", evaluated in {result['seconds']:.0f} s"
            else:
                action += ", cached evaluation"
        print(f"{run_dir}: {action}", flush=True)
        return {**{k: as_param(v) for k, v in settings.items()}, "run": str(run_dir), "action": action,
                "epochs": result["epoch"], "parameters": architecture_size(model_config),
                **summary(result)}


@contextmanager
def folder_lock(path: Path) -> Iterator[bool]:
    """An exclusive lock on `path` while the block runs: True if taken, False if another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


# ---------------------------------------------------------------------------------------------- workers
@contextmanager
def heartbeat(trial: optuna.Trial, interval: float) -> Iterator[None]:
    """Record time.time() as the trial's user attribute "heartbeat" every `interval` seconds while the block runs."""
    stop = threading.Event()

    def beat() -> None:
        while True:
            try:
                trial.set_user_attr("heartbeat", time.time())
            except RuntimeError:  # finished meanwhile (retried by a worker that thought this one dead)
                return
            if stop.wait(interval):
                return
    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def retry(study: optuna.Study, number: int) -> None:
    """Mark a running trial failed and enqueue its parameters again (Optuna's retry callback); a no-op when another
    worker got there first."""
    trial = study.get_trials(deepcopy=False)[number]
    try:  # as Optuna's heartbeat does it (study.tell would run the sampler's after_trial)
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    except RuntimeError:  # already finished: someone else retried it
        return
    RetryHeartbeatStaleTrialCallback()(study, trial)


def recover(study: optuna.Study, interval: float) -> None:
    """Retry the running trials whose heartbeat is older than STALE_BEATS intervals (their worker died)."""
    now = time.time()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        last = max(trial.user_attrs.get("heartbeat", 0.0), trial.datetime_start.timestamp())
        if now - last > STALE_BEATS * interval:
            print(f"trial {trial.number}: no heartbeat for {now - last:.0f} s, retrying it", flush=True)
            retry(study, trial.number)


def unretried(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The failed trials that no later trial retries."""
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in RetryHeartbeatStaleTrialCallback.retry_history(t)}
    return [t for t in trials if t.state == TrialState.FAIL and t.number not in retried]


def retry_failed(study: optuna.Study) -> None:
    """Enqueue once more every failed trial not yet retried (a run that failed, or an interrupted sweep)."""
    for trial in unretried(study):
        RetryHeartbeatStaleTrialCallback()(study, trial)


def work(study: optuna.Study, job: "Job", interval: float) -> None:
    """Take trials until the job has none left; each is trained and evaluated under a heartbeat. A failed run
    (TrainingError) fails its trial; an interruption or another error fails it too and ends the worker."""
    runner = Runner(job.args)

    def objective(trial: optuna.Trial) -> float:
        with heartbeat(trial, interval):
            try:
                row = job.run(trial, runner)
            except optuna.TrialPruned as reason:
                trial.set_user_attr("pruned", str(reason))
                raise
            except TrainingError as error:
                trial.set_user_attr("error", str(error))
                print(f"trial {trial.number}: {error}", file=sys.stderr, flush=True)
                raise
        for key, value in row.items():
            trial.set_user_attr(key, value)
        return row[job.args.objective]

    def stop_when_done(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        recover(study, interval)
        if not job.pending(study):
            study.stop()

    recover(study, interval)
    if job.pending(study):
        study.optimize(objective, callbacks=[stop_when_done], catch=(TrainingError,))


class Job:
    """A grid: one trial per point of the given values (GridSampler)."""

    def __init__(self, args: argparse.Namespace, grid: dict[str, list[Any]]) -> None:
        self.args, self.grid = args, grid
        self.space = {name: [as_param(v) for v in values] for name, values in grid.items()}
        self.points = [dict(zip(grid, values)) for values in product(*grid.values())]
        self.sampler = optuna.samplers.GridSampler(self.space, seed=0)

    def pending(self, study: optuna.Study) -> bool:
        """Whether a retry waits or some grid point has no trial yet."""
        trials = study.get_trials(deepcopy=False)
        started = {t.system_attrs["grid_id"] for t in trials
                   if t.system_attrs.get("search_space") == self.space and "grid_id" in t.system_attrs}
        return any(t.state == TrialState.WAITING for t in trials) or len(started) < len(self.points)

    def run(self, trial: optuna.Trial, runner: Runner) -> dict[str, Any]:
        params = {name: trial.suggest_categorical(name, values) for name, values in self.space.items()}
        return runner({name: self.grid[name][self.space[name].index(value)] for name, value in params.items()})

    def rows(self, study: optuna.Study) -> list[dict[str, Any]]:
        """The finished trials of this grid's points (the latest per point), in grid order."""
        done = {tuple(t.params.get(n) for n in self.space): t.user_attrs
                for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
        keys = [tuple(as_param(p[n]) for n in self.space) for p in self.points]
        return [done[key] for key in keys if key in done]


class Search(Job):
    """A TPE search over CNN designs (depth, encoder channels per layer, the decoder's own channels or the
    encoder's mirrored, kernel_size/norm where ModelConfig has them) within a parameter budget; designs over it
    are pruned without training."""

    def __init__(self, args: argparse.Namespace, grid: dict[str, list[Any]]) -> None:
        super().__init__(args, grid)
        self.base = self.points[0]
        self.sampler = optuna.samplers.TPESampler(seed=0)
        self.depths = [d for d in range(1, 5) if valid({**self.base, "channels": (8,) * d})]
        self.extra = {name: FIELDS[name][1].metadata.get("choices", (3, 4, 5)) for name in ("kernel_size", "norm")
                      if name in FIELDS}

    def pending(self, study: optuna.Study) -> bool:
        states = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)
        return len(study.get_trials(deepcopy=False, states=states)) < self.args.trials

    def run(self, trial: optuna.Trial, runner: Runner) -> dict[str, Any]:
        depth = trial.suggest_int("depth", min(self.depths), max(self.depths))
        widths = lambda name: tuple(trial.suggest_int(f"{name}{i}", 4, 128, log=True)  # noqa: E731
                                    for i in range(depth))
        settings = {**self.base, "channels": widths("channels")}
        if trial.suggest_categorical("decoder", ["mirror", "own"]) == "own":  # decoder-heavy or -light
            settings["decoder_channels"] = widths("decoder_channels")
        settings.update({name: trial.suggest_categorical(name, list(choices)) for name, choices in self.extra.items()})
        if not valid(settings):
            raise optuna.TrialPruned("not a valid design")
        parameters = architecture_size(split(settings)[0])
        trial.set_user_attr("parameters", parameters)
        if parameters > self.args.budget:
            raise optuna.TrialPruned(f"{parameters} parameters, over the budget of {self.args.budget}")
        return {"depth": depth, "decoder_channels": "mirror", **runner(settings)}

    def rows(self, study: optuna.Study) -> list[dict[str, Any]]:
        trials = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.value)
        return [t.user_attrs for t in trials]


def valid(settings: dict[str, Any]) -> bool:
    """Whether the settings describe a model (ModelConfig builds it on the meta device to count its parameters)."""
    try:
        split(settings)
    except (ValueError, TypeError, RuntimeError):
        return False
    return True


def storage_of(args: argparse.Namespace, p: OneLineParser) -> optuna.storages.BaseStorage:
    """--storage: a database URL (RDBStorage) or a journal file path whose folder exists."""
    if "://" in args.storage:
        return RDBStorage(args.storage)
    path = Path(args.storage)
    if not path.parent.is_dir():
        p.error(f"--storage {path}: folder {path.parent} does not exist")
    return JournalStorage(JournalFileBackend(str(path)))


# ---------------------------------------------------------------------------------------------- results
def write_table(rows: list[dict[str, Any]], stem: Path) -> None:
    """rows -> STEM.csv and STEM.md."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    with open(stem.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    cell = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(cell(v) for v in row.values()) + " |" for row in rows]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")


def report(job: Job, study: optuna.Study, args: argparse.Namespace) -> list[Path]:
    """The table (and for grids the figures, one set per combination of the other settings); the files written."""
    attrs = job.rows(study)
    if not attrs:
        return []
    metrics = list(summary(json.loads(eval_path(attrs[0]["run"]).read_text())))
    if isinstance(job, Search):
        columns = ["depth", "channels", "decoder_channels", *job.extra, "parameters", "epochs"]
        stem = Path(args.results_dir) / f"search-budget{args.budget}"
    else:
        varying = [n for n, values in job.grid.items() if len(values) > 1 and n != "beta"]
        columns = [*varying, "beta", "epochs", "parameters"]
        tag = lambda name: "+".join(map(str, job.space[name]))  # noqa: E731
        prefix = "sweep" if args.study in (None, "sweep") else f"sweep-{args.study}"  # one table per study
        stem = Path(args.results_dir) / f"{prefix}-{tag('model')}-{tag('likelihood')}-z{tag('latent_dim')}"
    rows = [{c: a.get(c) for c in columns}
            | {m: a[m] for m in metrics} for a in attrs]
    write_table(rows, stem)
    files = [stem.with_suffix(".csv"), stem.with_suffix(".md")]
    if isinstance(job, Search):
        return files
    groups: dict[str, list[dict]] = {}
    for a, row in zip(attrs, rows):
        groups.setdefault(Path(a["run"]).name.replace(f"-z{ModelConfig.latent_dim}-", "-").replace(
            f"-beta{a['beta']:g}", ""), []).append(row)
    for name, group in groups.items():
        if len(group) < 2:  # a curve over beta needs two betas
            continue
        name = name if args.study in (None, "sweep") else f"{args.study}-{name}"
        for kind, figure in plots.plot_sweep(group, SAMPLER_NAMES).items():
            plots.save(figure, f"sweep-{name}-{kind}.png", folder=Path(args.img_dir))
            files.append(Path(args.img_dir) / f"sweep-{name}-{kind}.png")
    return files



# ---------------------------------------------------------------------------------------------- command line
def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, Job, OneLineParser]:
    p = OneLineParser(prog="sweep.py", description="Grid sweeps and CNN design searches as Optuna studies.")
    p.add_argument("--model", "--models", nargs="+", choices=sorted(MODELS), help="(default fc; search: cnn)")
    p.add_argument("--likelihood", "--likelihoods", nargs="+", choices=LIKELIHOODS, default=[ModelConfig.likelihood])
    p.add_argument("--betas", type=finite(float), nargs="+",
                   help="(default 0.01 0.1 0.5 1 2 4; search: 0.1)")
    p.add_argument("--seeds", type=int, nargs="+", default=[TrainConfig.seed])
    p.add_argument("--latent-dim", type=int, nargs="+", default=[ModelConfig.latent_dim])
    p.add_argument("--epochs", type=int, default=TrainConfig.epochs, help=f"(default {TrainConfig.epochs})")
    p.add_argument("--train-limit", type=int, help="train on the first N training images only (quick checks)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=V1,V2",
                   help="grid over any other ModelConfig/TrainConfig field (tuples as 16x32), repeatable")
    p.add_argument("--search", action="store_true", help="TPE search over CNN designs within --budget")
    p.add_argument("--budget", type=int, help="search: most parameters a design may have")
    p.add_argument("--trials", type=int, default=20, help="search: designs to train (default 20)")
    p.add_argument("--objective", choices=OBJECTIVES, default="recon", help="trial value, minimised (default recon)")
    p.add_argument("--workers", type=int, default=2, help="worker processes on this machine, each with cores/N "
                   "threads (default 2: on 2 cores two 1-thread runs beat one 2-thread run 1.6x, results/bench.md)")
    p.add_argument("--storage", help="journal file (default RUNS_DIR/optuna.journal) or database URL")
    p.add_argument("--study", help="study name (default sweep; search: search-budgetB)")
    p.add_argument("--heartbeat", type=finite(float), default=HEARTBEAT,
                   help=f"seconds between heartbeats; silent for {STALE_BEATS}: retried (default {HEARTBEAT})")
    p.add_argument("--k", type=int, default=K, help=f"IWAE importance samples (default {K})")
    p.add_argument("--iwae-images", type=int, default=IWAE_IMAGES,
                   help=f"IWAE on the first N test images (default {IWAE_IMAGES}; 10000: all)")
    p.add_argument("--samples", type=int, default=SAMPLES, help=f"generated images per sampler (default {SAMPLES})")
    p.add_argument("--eval-limit", type=int, help="evaluate on the first N test images only (quick checks)")
    p.add_argument("--runs-dir", default=str(RUNS_DIR), help=f"(default {RUNS_DIR})")
    p.add_argument("--results-dir", default=str(RESULTS_DIR), help=f"(default {RESULTS_DIR})")
    p.add_argument("--img-dir", default=str(IMG_DIR), help=f"(default {IMG_DIR})")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    check_positive(p, args, "epochs", "k", "iwae_images", "samples", "train_limit", "eval_limit", "workers",
                   "trials", "budget")
    if not args.heartbeat > 0:
        p.error(f"--heartbeat must be > 0, got {args.heartbeat}")
    if args.search and args.budget is None:
        p.error("--search needs --budget PARAMETERS")
    args.model = args.model or ["cnn" if args.search else ModelConfig.model]
    grid: dict[str, list[Any]] = {"model": args.model, "likelihood": args.likelihood, "latent_dim": args.latent_dim,
                                  "beta": args.betas or ([TrainConfig.beta] if args.search else list(BETAS)),
                                  "seed": args.seeds, "epochs": [args.epochs], "train_limit": [args.train_limit]}
    for text in args.set:
        field, _, values = text.partition("=")
        if field not in FIELDS or field in grid or not values:
            p.error(f"--set {text}: expected FIELD=V1,V2,... with FIELD one of the other settings: "
                    f"{', '.join(f for f in FIELDS if f not in grid)}")
        try:
            grid[field] = [parse_value(field, value) for value in values.split(",")]
        except (ValueError, argparse.ArgumentTypeError) as error:
            p.error(f"--set {text}: {error}")
    grid = {name: list(dict.fromkeys(values)) for name, values in grid.items()}  # drop repeats, keep order
    grid.update({key: [getattr(args, key)] for key in EVAL_KEYS})  # so that other settings make other trials
    for point in (dict(zip(grid, values)) for values in product(*grid.values())):
        try:
            split(point)
        except ValueError as error:
            p.error(option_error(error).replace("--beta ", "--betas ").replace("--seed ", "--seeds "))
    job = (Search if args.search else Job)(args, grid)
    smallest = args.search and job.depths and {**job.base, "channels": (4,) * min(job.depths)}
    if args.search and (len(job.points) > 1 or not smallest or job.base["model"] != "cnn" or not valid(smallest)
                        or architecture_size(split(smallest)[0]) > args.budget):
        p.error("--search needs one value per setting, a cnn model and a --budget that its smallest design fits in")
    args.storage = args.storage or str(Path(args.runs_dir) / "optuna.journal")
    args.study = args.study or (f"search-budget{args.budget}" if args.search else "sweep")
    return args, job, p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args, job, p = parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if not args.worker and "://" not in args.storage and args.storage == str(Path(args.runs_dir) / "optuna.journal"):
        Path(args.runs_dir).mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(storage=storage_of(args, p), study_name=args.study, sampler=job.sampler,
                                direction="minimize", load_if_exists=True)
    cores = int(os.environ.get("OMP_NUM_THREADS") or len(os.sched_getaffinity(0)))
    started = time.perf_counter()
    try:
        if args.worker or args.workers == 1:
            torch.set_num_threads(max(1, cores // args.workers))
            if not args.worker:
                retry_failed(study)
            work(study, job, args.heartbeat)
        else:
            retry_failed(study)
            workers = [subprocess.Popen([sys.executable, __file__, *argv, "--worker"]) for _ in range(args.workers)]
            codes = [worker.wait() for worker in workers]
            if any(codes):
                return max(codes)
    except (CheckpointError, ClassifierError, DataError) as error:
        p.error(str(error))
    except KeyboardInterrupt:
        print("\ninterrupted; finished epochs and evaluations are saved: run the same command again to continue",
              file=sys.stderr)
        return 130
    if args.worker:
        return 0
    files = report(job, study, args)
    failed = [t.number for t in unretried(study)]
    print(f"done in {time.perf_counter() - started:.0f} s: " + ", ".join(map(str, files)))
    if files:
        print(files[1].read_text(), end="")
    if failed:
        print(f"sweep.py: failed trials {failed} (see their 'error'); the next call retries them", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
