"""One trial of a sweep: bring its run to its epochs (or reuse it), evaluate it (or reuse its eval.json) and write its
record, holding the run folder's locks meanwhile; and a worker's loop over the study's trials (lab/sweep.py is the
command)."""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from checkpoint import CheckpointError, config_differences
from classifier import load_classifier
from config import EvalConfig, TrainConfig
from data import Dataset, load_dataset
from evaluate import evaluate_run, summary
from lab.records import SmallerRun, write_record
from lab.search import TRIAL_LOCK, Job, recover, run_name, split
from models import ModelConfig, build_model
from quality import reference_features
from runs import RunFolder, lock
from train import TrainingError, fit


def train_run(
    run: RunFolder, model_config: ModelConfig, config: TrainConfig, data: Dataset, progress: bool, waited: bool = False
) -> tuple[str, int]:
    """Bring `run` to config.epochs epochs: ("reused" | "resumed" | "trained", its epoch). If another process holds
    the folder (a worker taken for dead that still runs), wait for it, then look again."""
    checkpoint = run.checkpoint if run.exists() else None
    if checkpoint is not None:
        wanted = {k: v for k, v in {**model_config.as_dict(), **asdict(config)}.items() if k != "epochs"}
        differences = config_differences({**checkpoint["config"], **asdict(run.train_config)}, wanted)
        if differences:
            raise CheckpointError(f"{run.path} holds a different run: {'; '.join(differences)} (saved vs wanted)")
        if run.epoch >= config.epochs:
            return "reused", run.epoch
    try:
        model = build_model(model_config if checkpoint is None else checkpoint["config"], seed=config.seed)
        fit(model, data, config, out_dir=run, checkpoint=checkpoint, progress=progress)
    except CheckpointError:
        if waited:
            raise
        os.close(lock(run.path, wait=True))
        return train_run(RunFolder(run.path), model_config, config, data, progress, waited=True)
    return ("trained" if checkpoint is None else "resumed"), config.epochs


def cached_eval(run: RunFolder, config: EvalConfig, data: Dataset) -> dict[str, Any] | None:
    """The run's eval.json if it evaluated this very checkpoint (epoch and sha256) with these settings, data and
    classifier weights."""
    result = run.read_eval()
    try:
        summary(result)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    wanted = {
        **asdict(config),
        "epoch": run.epoch,
        "checkpoint_sha256": run.sha256(),
        "test_images": len(data.test_images),
        "train_images": len(data.train_images),
    }
    if data.classifier_weights is not None:
        wanted["classifier_sha256"] = classifier(data.classifier_weights).weights_sha256
    return result if all(result.get(key) == value for key, value in wanted.items()) else None


@functools.lru_cache(maxsize=4)
def eval_data(name: str, train_limit: int | None, eval_limit: int | None) -> Dataset:
    """The images a run is evaluated on: its training images, and the test images up to --eval-limit."""
    return dataset(name).limited(train=train_limit, test=eval_limit)


@functools.lru_cache(maxsize=4)
def reference(*data_key: Any) -> Any:
    """The classifier's reference features of eval_data(*data_key), for datasets with a classifier: once per
    process."""
    data = eval_data(*data_key)
    if data.classifier_weights is None:
        return None
    return reference_features(classifier(data.classifier_weights), data)


classifier = functools.lru_cache(maxsize=1)(load_classifier)  # once per process
dataset = functools.lru_cache(maxsize=2)(load_dataset)


def run_trial(study: optuna.Study, job: Job, args: argparse.Namespace) -> None:
    """One trial through Study.optimize (with a database, Optuna's heartbeat runs meanwhile): train (or reuse),
    evaluate (or reuse) and record its run, holding RUN/.trial from before it names the run until the trial is told
    (and RUN/.lock: fit's, then ours); the kernel releases them when the process ends: search.recover. A worker
    whose trial was failed meanwhile (taken for dead) says so and goes on."""
    held, done = [], []  # the locks; the folder and metrics once evaluated

    def objective(trial: optuna.Trial) -> float:
        settings = job.settings(trial)
        (model_config, config), folder = split(settings), Path(args.runs_dir) / run_name(settings)
        full, run = dataset(config.dataset), RunFolder(folder)
        folder.mkdir(parents=True, exist_ok=True)
        try:
            held.append(lock(folder, name=TRIAL_LOCK))  # locked before it is named: recover sees it live
        except CheckpointError:  # a worker taken for dead still has it: named now, its lock says we wait
            trial.set_user_attr("run", folder.name)
            held.append(lock(folder, wait=True, name=TRIAL_LOCK))
        trial.set_user_attr("run", folder.name)
        try:
            action, epoch = train_run(run, model_config, config, full, not args.no_progress)
        except TrainingError as error:
            print(f"trial {trial.number}: {error}", file=sys.stderr, flush=True)
            raise
        held.append(lock(folder, wait=True))
        run = RunFolder(folder)  # what training left, loaded once from here on
        key = (config.dataset, config.train_limit, args.eval.eval_limit)
        data = eval_data(*key)
        result = cached = cached_eval(run, args.eval, data)
        if cached is None:
            weights = data.classifier_weights
            result = evaluate_run(run, data, args.eval, weights and classifier(weights), reference(*key))
        action += ", cached evaluation" if cached else f", evaluated in {result['seconds']:.0f} s"
        try:
            note = write_record(folder, Path(args.records_dir), replace=args.replace_records)
        except SmallerRun as error:  # the trial fails: the same command with --replace-records retries it
            trial.set_user_attr("refused", str(error))
            raise
        if note:
            print(note, flush=True)
        print(f"{folder}: {action}", flush=True)
        done.extend([folder, summary(result)])
        saved = run.checkpoint  # every column from the run itself (a reused run may have more epochs)
        ran = {**saved["config"], **asdict(run.train_config), "epochs": result["epoch"]}
        ran = {k: tuple(ran[k]) if isinstance(ran.get(k), list) else ran.get(k, v) for k, v in settings.items()}
        trial.set_user_attr(
            "row",
            {
                "settings": job.describe(ran),
                "run": folder.name,
                "action": action,
                "epochs": result["epoch"],
                "parameters": result["parameters"],
                "metrics": done[1],
            },
        )
        return done[1][args.objective]

    try:
        study.optimize(objective, n_trials=1, catch=(TrainingError, SmallerRun))
    except (ValueError, UpdateFinishedTrialError):
        if not done:
            raise
        print(f"{done[0]}: its trial was failed meanwhile (taken for dead); its retry reuses the run", flush=True)
    finally:
        for fd in held:
            os.close(fd)


def work(study: optuna.Study, storage: Any, job: Job, args: argparse.Namespace) -> None:
    """Take trials while there are some, then wait for the running ones, retrying those whose worker died: every
    trial of the study is finished when this returns."""
    while True:
        trials = recover(study, storage, Path(args.runs_dir))
        if job.todo(trials):
            run_trial(study, job, args)
        elif any(t.state == TrialState.RUNNING for t in trials):
            time.sleep(0.5)  # then look at the study again
        else:
            return
