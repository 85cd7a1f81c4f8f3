"""The study side of a sweep: what it explores (a grid, or a TPE search over CNN designs within a parameter budget),
each trial's settings and run folder, the study's name, and the trials whose worker died (storage: lab/storage.py)."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import re
import typing
from datetime import datetime
from itertools import product
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import FrozenTrial, TrialState

from checkpoint import CheckpointError
from cli import finite, option_error
from config import TrainConfig
from lab.storage import MAX_RETRY
from models import CNNVAE, ModelConfig, architecture_size
from objectives import OBJECTIVES
from runs import lock

BETAS = [0.01, 0.1, 0.5, 1.0, 2.0, 4.0]  # the grid's default
FIELDS = {f.name: (cls, f) for cls in (ModelConfig, TrainConfig) for f in dataclasses.fields(cls)}
NAMED = ("model", "likelihood", "latent_dim", "beta", "seed", "epochs", "objective")  # named as they are, or not
STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}")  # it becomes part of file names
START_GRACE = 60.0  # journal: a running trial without a run folder after this long lost its worker
TRIAL_LOCK = ".trial"  # RUN/.trial: held by the trial's worker from before it names the run until it is told
MAX_NAME = 120  # a longer run name is cut and ends in a digest of the whole name
OPTIONS = {"beta": "--betas ", "seed": "--seeds ", "latent_dim": "--latent-dim ", "epochs": "--epochs "}


def parse_value(field: str, text: str) -> Any:
    """A --set value for a ModelConfig/TrainConfig field, converted with the field's type (16x32 for tuples)."""
    kind = typing.get_type_hints(FIELDS[field][0])[field]
    if typing.get_origin(kind) is tuple:
        return tuple(int(part) for part in text.split("x"))
    if text.lower() == "none" and type(None) in typing.get_args(kind):
        return None
    return finite(next((arg for arg in typing.get_args(kind) if arg is not type(None)), kind))(text)


def as_param(value: Any) -> Any:
    """A setting as an Optuna parameter value (str, int, float or None): tuples as 16x32."""
    return "x".join(map(str, value)) if isinstance(value, tuple) else value


def split(settings: dict[str, Any]) -> tuple[ModelConfig, TrainConfig]:
    """The ModelConfig and TrainConfig of a grid point or a record's settings; ValueError for invalid settings."""

    def pick(cls: type) -> dict[str, Any]:
        return {k: v for k, v in settings.items() if k in FIELDS and FIELDS[k][0] is cls}

    return ModelConfig(**pick(ModelConfig)), TrainConfig(**pick(TrainConfig))


def run_name(settings: dict[str, Any]) -> str:
    """{model}-{likelihood}-z{latent_dim}-beta{beta:g}, then -seed{seed} and -{field}{value} for other settings
    off their defaults (that the model uses), and the objective's tag where its settings do not name it; beyond
    MAX_NAME characters, cut and ended by a digest of the whole. No epochs: a sweep to more epochs resumes the same
    folders."""
    model_config, config = split(settings)
    name = f"{model_config.model}-{model_config.likelihood}-z{model_config.latent_dim}-beta{config.beta:g}"
    name += f"-seed{config.seed}" if config.seed else ""
    used = {**model_config.as_dict(), **dataclasses.asdict(config)}
    for field, (_, spec) in FIELDS.items():
        if (
            field not in NAMED
            and field in used
            and getattr(model_config if field in model_config.as_dict() else config, field) != spec.default
        ):
            value = getattr(model_config if field in model_config.as_dict() else config, field)
            name += f"-{field}{value:g}" if isinstance(value, float) else f"-{field}{as_param(value)}"
    name += OBJECTIVES[config.objective].run_tag
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return name if len(name) <= MAX_NAME else f"{name[: MAX_NAME - 11]}-{digest}"


def valid(settings: dict[str, Any]) -> bool:
    try:
        return bool(split(settings))
    except (ValueError, TypeError, RuntimeError):
        return False


class Grid(optuna.samplers.GridSampler):
    """GridSampler without Study.stop in after_trial (it fails outside Study.optimize, where dead trials are told)."""

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Any) -> None:
        pass


class Job:
    """A grid: one trial per point of the given values."""

    def __init__(self, grid: dict[str, list[Any]]) -> None:
        self.grid = grid
        self.space = {name: [as_param(v) for v in values] for name, values in grid.items()}
        self.points = [dict(zip(grid, values)) for values in product(*grid.values())]
        self.columns = [*(n for n, v in grid.items() if len(v) > 1 and n != "beta"), "beta", "epochs", "parameters"]

    def sampler(self, worker: int) -> optuna.samplers.BaseSampler:
        return Grid(self.space)  # not seeded: workers that start together pick different points

    def settings(self, trial: optuna.Trial) -> dict[str, Any]:
        params = {name: trial.suggest_categorical(name, values) for name, values in self.space.items()}
        return {name: self.grid[name][self.space[name].index(value)] for name, value in params.items()}

    def describe(self, settings: dict[str, Any]) -> dict[str, Any]:
        return {key: as_param(value) for key, value in settings.items()}

    def todo(self, trials: list[FrozenTrial]) -> bool:  # a retry waits, or a grid point has no trial yet
        started = {t.system_attrs["grid_id"] for t in trials if "grid_id" in t.system_attrs}
        return any(t.state == TrialState.WAITING for t in trials) or len(started) < len(self.points)

    def table(self, trials: list[FrozenTrial]) -> tuple[list[dict[str, Any]], list[str]]:
        """The row of each finished point (its latest complete trial), in grid order; the unfinished ones' runs."""
        done = {
            tuple(t.params.get(n) for n in self.space): t.user_attrs["row"]
            for t in trials
            if t.state == TrialState.COMPLETE and "row" in t.user_attrs
        }
        rows = [done.get(tuple(as_param(p[n]) for n in self.space)) for p in self.points]
        return [r for r in rows if r], [run_name(p) for p, r in zip(self.points, rows) if not r]

    def stem(self, study: str | None) -> str:  # the table's file name
        tag = lambda name: "+".join(map(str, self.space[name]))  # noqa: E731
        prefix = "sweep" if study in (None, "sweep") else f"sweep-{study}"
        return f"{prefix}-{tag('model')}-{tag('likelihood')}-z{tag('latent_dim')}"


class Search(Job):
    """TPE over CNN designs (depth, channels, the decoder's own or mirrored, kernel_size, norm) within a budget."""

    def __init__(self, grid: dict[str, list[Any]], budget: int, trials: int) -> None:
        super().__init__(grid)
        self.base, self.budget, self.trials = self.points[0], budget, trials
        self.depths = [d for d in range(1, 5) if valid({**self.base, "channels": (8,) * d})] or [1]
        self.extra = {name: FIELDS[name][1].metadata.get("choices", (3, 4, 5)) for name in ("kernel_size", "norm")}
        self.columns = ["depth", "channels", "decoder_channels", *self.extra, "parameters", "epochs"]
        smallest = {**self.base, "channels": (4,) * self.depths[0]}  # fits the budget, or no search
        is_cnn = self.base["model"] == CNNVAE.family  # the design space is the CNN's channels
        self.fits = is_cnn and valid(smallest) and architecture_size(split(smallest)[0]) <= budget

    def sampler(self, worker: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.TPESampler(seed=worker)  # seeded, another seed per worker

    def settings(self, trial: optuna.Trial) -> dict[str, Any]:
        depth = trial.suggest_int("depth", min(self.depths), max(self.depths))

        def widths(name: str) -> tuple[int, ...]:
            return tuple(trial.suggest_int(f"{name}{i}", 4, 128, log=True) for i in range(depth))

        settings = {**self.base, "channels": widths("channels")}
        if trial.suggest_categorical("decoder", ["mirror", "own"]) == "own":  # decoder-heavy or -light
            settings["decoder_channels"] = widths("decoder_channels")
        settings.update({name: trial.suggest_categorical(name, list(choices)) for name, choices in self.extra.items()})
        if not valid(settings):
            raise optuna.TrialPruned("not a valid design")
        parameters = architecture_size(split(settings)[0])
        trial.set_user_attr("parameters", parameters)
        if parameters > self.budget:
            raise optuna.TrialPruned(f"{parameters} parameters, over the budget of {self.budget}")
        return settings

    def describe(self, settings: dict[str, Any]) -> dict[str, Any]:
        return {
            "depth": len(settings["channels"]),
            **super().describe(settings),
            "decoder_channels": as_param(settings.get("decoder_channels")) or "mirror",
        }

    def todo(self, trials: list[FrozenTrial]) -> bool:
        states = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)
        return sum(t.state in states for t in trials) < self.trials

    def table(self, trials: list[FrozenTrial]) -> tuple[list[dict[str, Any]], list[str]]:
        """The trained designs, best first; how many are missing."""
        done = sorted(
            (t for t in trials if t.state == TrialState.COMPLETE and "row" in t.user_attrs), key=lambda t: t.value
        )
        left = self.trials - len(done)
        return [t.user_attrs["row"] for t in done], [f"{left} of {self.trials} designs"] if left > 0 else []

    def stem(self, study: str | None) -> str:
        return study or f"search-budget{self.budget}"


def make_job(args: Any) -> Job:
    """The grid or search of the command line's options; ValueError naming the option when they make none."""
    if args.study is not None and not STUDY_NAME.fullmatch(args.study):
        raise ValueError(
            f"--study {args.study[:40]!r}{'...' if len(args.study) > 40 else ''}: use 1 to 100 "
            f"letters, digits and -_.+, starting with a letter or digit (it becomes part of file names)"
        )
    if args.search and args.budget is None:
        raise ValueError("--search needs --budget PARAMETERS")
    grid: dict[str, list[Any]] = {
        "model": args.model or ["cnn" if args.search else ModelConfig.model],
        "likelihood": args.likelihood,
        "latent_dim": args.latent_dim,
        "beta": args.betas or ([TrainConfig.beta] if args.search else BETAS),
        "seed": args.seeds,
        "epochs": [args.epochs],
        "train_limit": [args.train_limit],
    }
    for text in args.set:
        field, _, values = text.partition("=")
        if field not in FIELDS or field in grid or not values:
            raise ValueError(
                f"--set {text}: expected FIELD=V1,V2,... with FIELD one of the other settings: "
                f"{', '.join(f for f in FIELDS if f not in grid)}"
            )
        try:
            grid[field] = [parse_value(field, value) for value in values.split(",")]
        except (ValueError, argparse.ArgumentTypeError) as error:
            raise ValueError(f"--set {text}: {error}") from None
    # each dimension in ascending order, without repeats: the same values in another order make the same study
    grid = {name: sorted(set(values), key=lambda v: (v is not None, v)) for name, values in grid.items()}
    for point in (dict(zip(grid, values)) for values in product(*grid.values())):
        try:
            split(point)
        except ValueError as error:
            raise ValueError(
                option_error(error).replace("--beta ", "--betas ").replace("--seed ", "--seeds ")
            ) from None
    same_folder([dict(zip(grid, values)) for values in product(*grid.values())])
    job = Search(grid, args.budget, args.trials) if args.search else Job(grid)
    if args.search and (len(job.points) > 1 or not job.fits):
        raise ValueError("--search needs one value per setting, a cnn model and a --budget its smallest design fits")
    return job


def same_folder(points: list[dict[str, Any]]) -> None:
    """ValueError when two points that differ in a setting their model uses name the same run folder (names keep 6
    significant digits: beta 0.1 and 0.1000001 are both beta0.1): the second would find the first's run, and be
    refused after the first trained."""
    seen: dict[str, dict[str, Any]] = {}
    for point in points:
        name, used = run_name(point), {k: v for k, v in point.items() if k in uses(point)}
        other = seen.setdefault(name, used)
        if other != used:
            field = next(k for k in used if used[k] != other.get(k))
            raise ValueError(
                f"{OPTIONS.get(field, f'--set {field}=')}{as_param(other[field])} and {as_param(used[field])} name the "
                f"same run folder {name} (run names keep 6 significant digits): give values that differ there"
            )


def uses(point: dict[str, Any]) -> set[str]:
    """The settings of a grid point that its model uses."""
    model_config, config = split(point)
    return {*model_config.as_dict(), *dataclasses.asdict(config)}


def study_name(base: str, job: Job, evaluation: dict[str, Any]) -> str:
    """`base` and a digest of the grid or search space (epochs included) and the evaluation settings: other values
    make another study, which reuses the run folders (so no parameter ever changes its choices within a study)."""
    identity = json.dumps(
        {"space": job.space, "budget": getattr(job, "budget", None), "eval": evaluation}, sort_keys=True
    )
    return f"{base}-{hashlib.sha256(identity.encode()).hexdigest()[:10]}"


def retry(study: optuna.Study, trial: FrozenTrial, why: str) -> None:
    """Fail a running trial and enqueue it again (Optuna's retry callback); nothing if it finished meanwhile."""
    try:
        failed = study.tell(trial.number, state=TrialState.FAIL)
    except (ValueError, UpdateFinishedTrialError):
        return
    RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)(study, failed)
    print(f"trial {trial.number} ({trial.user_attrs.get('run')}): {why}; retrying it", flush=True)


def recover(study: optuna.Study, storage: Any, runs_dir: Path) -> list[FrozenTrial]:
    """Fail and retry the running trials whose worker is gone; the study's trials. Database: Optuna's heartbeat.
    Journal: a trial whose RUN/.trial lock can be taken (while we hold it, no one else retries it)."""
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if isinstance(storage, RDBStorage):
        fail_stale_trials(study)
        failed = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
        for t in (t for t in running if t.number in failed):
            print(f"trial {t.number} ({t.user_attrs.get('run')}): no heartbeat; retried", flush=True)
    for t in running if not isinstance(storage, RDBStorage) else ():
        age, folder = (datetime.now() - t.datetime_start).total_seconds(), runs_dir / t.user_attrs.get("run", "")
        if "run" not in t.user_attrs or not folder.is_dir():
            retry(study, t, f"no run folder after {START_GRACE:.0f} s") if age > START_GRACE else None
        else:
            try:
                fd = lock(folder, name=TRIAL_LOCK)
            except CheckpointError:
                continue  # held: its worker is alive (or paused)
            retry(study, t, f"nobody holds {folder}: its worker is gone")
            os.close(fd)
    return study.get_trials(deepcopy=False)


def kept_records(trials: list[FrozenTrial]) -> dict[str, str]:
    """The runs whose record a smaller run did not replace (write_record refused; not done since): run -> why."""
    done = {t.user_attrs.get("run") for t in trials if t.state == TrialState.COMPLETE}
    return {
        t.user_attrs["run"]: t.user_attrs["refused"]
        for t in trials
        if t.state == TrialState.FAIL and "refused" in t.user_attrs and t.user_attrs["run"] not in done
    }
