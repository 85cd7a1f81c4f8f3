"""Train a beta-VAE: the training step, `fit`, and a thin command line.

    python train.py --model cnn --beta 0.1 --epochs 20 --out runs/cnn-beta0.1
    python train.py --resume runs/cnn-beta0.1 --epochs 30     # continue to epoch 30
    python train.py --dataset shapes --latent-dim 10 --beta 4 --out runs/shapes-beta4

Each run folder holds checkpoint.pt and metrics.json (runs.py), written after every epoch.
"""

from __future__ import annotations

import shlex
import signal
import sys

if __name__ == "__main__":  # Ctrl-C while the imports load: a quiet exit, not a traceback
    signal.signal(signal.SIGINT, lambda *_: sys.exit(130))

import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from checkpoint import DIGEST, CheckpointError, config_differences, restore
from cli import OneLineParser, add_options, given, onednn_problem, option_error, unavailable
from config import TrainConfig
from data import DataError, Dataset, batches, load_dataset
from files import WriteError, unwritable
from models import BetaVAE, ModelConfig, build_model, count_parameters
from objectives import LossTerms, Objective, dataset_loss, objective
from runs import RunFolder


class TrainingError(Exception):
    """Training stopped (a non-finite loss or gradient); the message says where and what to try."""


# ---------------------------------------------------------------------------------------------- step and epoch
def prepare_training(model: BetaVAE, lr: float, device: str = "cpu") -> torch.optim.Adam:
    """`model` moved to `device` and its Adam optimizer. On CPU, convolution weights are made channels_last
    (fit makes them contiguous again at the end) and Adam is fused: faster, equal up to float rounding."""
    on_cpu = torch.device(device).type == "cpu"
    model.to(device, memory_format=torch.channels_last if on_cpu else torch.preserve_format)
    return torch.optim.Adam(model.parameters(), lr=lr, fused=True if on_cpu else None)


def nonfinite_term(terms: LossTerms, grad_norm: torch.Tensor) -> str | None:
    """Name of the first non-finite quantity of a step, or None when all are finite (one sync)."""
    finite = torch.isfinite(torch.stack([*terms, grad_norm]).detach())
    if bool(finite.all()):
        return None
    return ("reconstruction loss", "KL", "total loss", "gradient")[finite.tolist().index(False)]


def train_epoch(
    model: BetaVAE,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    goal: Objective,
    config: TrainConfig,
    generator: torch.Generator,
    epoch: int = 1,
    bar: tqdm | None = None,
) -> dict[str, float]:
    """One epoch of optimizer steps over `images` minimising `goal`, shuffled and noised by `generator`; the mean loss
    terms. TrainingError, before the update, at the first step whose loss or gradient is not finite."""
    model.train()
    params = list(model.parameters())
    sums = torch.zeros(3, device=images.device)
    steps = -(-len(images) // config.batch_size)
    for step, x in enumerate(batches(images, config.batch_size, generator), 1):
        terms = goal.loss(model(x, generator=generator), x, model.likelihood, epoch - 1 + step / steps)
        optimizer.zero_grad(set_to_none=True)
        terms.total.backward()
        bad = nonfinite_term(terms, torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None]))
        if bad is not None:
            weight = f"{goal.weight}={getattr(config, goal.weight):g}"
            raise TrainingError(
                f"non-finite {bad} at epoch {epoch}, step {step}: try a lower learning rate "
                f"(lr={config.lr:g}) or a smaller {goal.weight} ({weight})"
            )
        optimizer.step()
        sums += torch.stack(terms).detach() * len(x)
        if bar is not None:
            bar.update(len(x))
            if not bar.disable and step % 50 == 0:
                bar.set_postfix(loss=f"{sums[2].item() / bar.n:.2f}")
    return dict(zip(LossTerms._fields, (sums / len(images)).tolist()))


# ---------------------------------------------------------------------------------------------- fit
def check_batches(model: BetaVAE, images: int, batch_size: int) -> None:
    """ValueError when batch normalisation would meet a batch of one image (the epoch's last)."""
    if images % batch_size == 1 and any(
        isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)) for m in model.modules()
    ):
        raise ValueError(
            f"the last batch of each epoch holds one image ({images:,} training images, batch_size {batch_size}), and "
            f"batch normalisation cannot train on one: choose another batch_size or train_limit"
        )


def fit(
    model: BetaVAE,
    data: Dataset,
    config: TrainConfig = TrainConfig(),
    *,
    device: str = "cpu",
    out_dir: str | Path | RunFolder | None = None,
    checkpoint: dict[str, Any] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Train `model` on `data` to config.epochs epochs; returns the per-epoch history.

    Each history entry: epoch, train and test {recon, kl, total} (test: the whole test set), seconds.
    With `out_dir`, checkpoint.pt and metrics.json are written at the end of every epoch (RunFolder.hold: locked;
    a run already there needs `checkpoint` to continue it or overwrite=True to move it aside).
    With `checkpoint` (a RunFolder's), training continues exactly where it stopped; one without a digest stays
    unverified.
    """
    train_x = data.train_images[: config.train_limit]
    check_batches(model, len(train_x), config.batch_size)
    record, goal = {**asdict(config), "train_images": len(train_x)}, objective(config, len(train_x))
    optimizer = prepare_training(model, config.lr, device)
    generator = torch.Generator().manual_seed(config.seed)  # shuffling and reparameterization noise
    history = restore(checkpoint, model, optimizer, generator) if checkpoint is not None else []
    verified = checkpoint is None or checkpoint.get(DIGEST) is not None
    run = RunFolder(out_dir, log) if isinstance(out_dir, (str, Path)) else out_dir

    def save() -> None:
        if run is not None:
            rng = {"train": generator.get_state(), "torch": torch.get_rng_state()}
            run.save(model, optimizer, record, history, rng, verified)

    with nullcontext() if run is None else run.hold(checkpoint, overwrite):
        save()  # epoch 0 (an interrupted first epoch can be resumed); on resume, metrics.json from the checkpoint
        train_x, test_x = train_x.to(device), data.test_images.to(device)
        for epoch in range(len(history) + 1, config.epochs + 1):
            started = time.perf_counter()
            bar = tqdm(
                total=len(train_x), desc=f"epoch {epoch}/{config.epochs}", unit="img", leave=False, disable=not progress
            )
            try:
                train = train_epoch(model, optimizer, train_x, goal, config, generator, epoch, bar)
            except TrainingError as error:
                raise TrainingError(f"{error}{stopped_at(run, history)}") from None
            finally:
                bar.close()
            seconds = time.perf_counter() - started
            test = dataset_loss(model, test_x)
            test["total"] = goal.total(test["recon"], test["kl"], epoch)
            history.append(
                {"epoch": epoch, "train": train, "test": test, "seconds": seconds, **goal.epoch_notes(epoch)}
            )
            save()
            log(
                f"epoch {epoch}/{config.epochs}  train {train['total']:.2f} (recon {train['recon']:.2f}, "
                f"kl {train['kl']:.2f})  test {test['total']:.2f} (recon {test['recon']:.2f}, kl {test['kl']:.2f})  "
                f"{seconds:.1f}s"
            )
    model.to(memory_format=torch.contiguous_format)  # the layout a loaded model has: the same outputs to the bit
    return history


def stopped_at(run: RunFolder | None, history: list[dict]) -> str:
    """Where a run that stopped on a non-finite loss left its last good state."""
    if run is None:
        return ""
    if history:
        return f"; the last good checkpoint is {run.checkpoint_file}"
    return f"; nothing was trained: a new run may replace {run.path} (train.py --out {run.path})"


def interrupted(run: RunFolder) -> str:
    """What a Ctrl-C left in a run folder, and how to resume it."""
    try:
        epoch = run.epoch
    except CheckpointError:
        return f"\ninterrupted before anything was saved in {run.path}"
    return (
        f"\ninterrupted; epoch {epoch} is saved in {run.checkpoint_file}. "
        f"Resume with: python train.py --resume {shlex.quote(str(run.path))}"
    )


# ---------------------------------------------------------------------------------------------- command line
def parse_args(argv: list[str] | None) -> tuple[Any, ModelConfig | dict, TrainConfig, RunFolder]:
    """(args, model config, training config, run folder: to resume where it holds a run); one-line errors, exit
    status 2."""
    p = OneLineParser(prog="train.py", description="Train a beta-VAE.")
    add_options(p, ModelConfig)
    add_options(p, TrainConfig)
    p.add_argument("--data-dir", help="fashion-mnist: the folder of its four IDX files (default: found automatically)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or mps")
    p.add_argument("--out", help="run folder (default runs/MODEL-betaBETA)")
    p.add_argument(
        "--resume", metavar="RUN", help="continue the run in this folder (only --epochs and --device may change)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    model_given, train_given = given(args, ModelConfig), given(args, TrainConfig)
    for problem in (unavailable(args.device), onednn_problem()):
        if problem:
            p.error(problem)
    if args.resume is None:
        try:
            model_config, config = ModelConfig(**model_given), TrainConfig(**train_given)
        except ValueError as error:
            p.error(option_error(error))
        args.out = f"runs/{model_config.model}-beta{config.beta:g}" if args.out is None else args.out
        if unwritable(args.out):
            p.error(f"--out {unwritable(args.out)}")
        run = RunFolder(args.out)
        try:
            if run.trained():  # a checkpoint at epoch 0 holds no training: replaced
                p.error(
                    f"--out {run.path} already holds a run; continue it with --resume {run.path} or choose "
                    f"another --out"
                )
        except CheckpointError as error:
            p.error(f"--out: {error}")
        return args, model_config, config, run
    run = RunFolder(args.resume)
    try:
        checkpoint, saved = run.checkpoint, run.train_config
    except CheckpointError as error:
        p.error(f"--resume: {error}")
    differences = config_differences(
        {**checkpoint["config"], **asdict(saved)},
        {k: v for k, v in {**model_given, **train_given}.items() if k != "epochs"},
    )
    if differences:
        p.error(
            f"--resume: what was given differs from the run's settings (run vs given: {'; '.join(differences)}); "
            f"a resumed run keeps them, only --epochs and --device may change"
        )
    config = replace(saved, epochs=train_given.get("epochs", saved.epochs))
    if config.epochs <= run.epoch:
        p.error(
            f"--resume: the run already has {run.epoch} epochs; pass --epochs N with N > {run.epoch} to train further"
        )
    if args.out is not None and Path(args.out).resolve() != run.path.resolve():
        p.error("--out and --resume name different folders; a resumed run stays in its folder")
    args.out = str(run.path)
    return args, checkpoint["config"], config, run


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C from here on: KeyboardInterrupt
    args, model_config, config, run = parse_args(argv)
    try:
        model = build_model(model_config, seed=config.seed)
        data = load_dataset(config.dataset, args.data_dir)
        print(
            f"{model.label} beta-VAE, {count_parameters(model):,} parameters, latent_dim {model.latent_dim}, "
            f"{model.likelihood}, objective {config.objective}, beta {config.beta:g}, {data.name}, "
            f"{len(data.train_images[: config.train_limit]):,} training images -> {run.path}"
        )
        if model.latent_dim < len(data.factor_names):
            print(f"note: latent_dim {model.latent_dim} < the {len(data.factor_names)} factors of {data.name}")
        checkpoint = run.checkpoint if args.resume is not None else None
        history = fit(
            model, data, config, device=args.device, out_dir=run, checkpoint=checkpoint, progress=not args.no_progress
        )
    except KeyboardInterrupt:
        print(interrupted(run), file=sys.stderr)
        return 130
    except (DataError, TrainingError, CheckpointError, WriteError, ValueError) as error:
        print(f"train.py: error: {error}", file=sys.stderr)
        return 2 if isinstance(error, (DataError, ValueError)) else 1
    print(f"done: test total {history[-1]['test']['total']:.2f} nats/image; {run.metrics_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
