"""Train a beta-VAE on Fashion-MNIST: the training step, `fit`, and a thin command line.

    python train.py --model cnn --beta 0.1 --epochs 20 --out runs/cnn-beta0.1
    python train.py --resume runs/cnn-beta0.1 --epochs 30     # continue to epoch 30

Each run folder holds checkpoint.pt and metrics.json (see checkpoint.py), written after every epoch.
"""

from __future__ import annotations

import shlex
import signal
import sys

if __name__ == "__main__":  # Ctrl-C while the imports load: a quiet exit, not a traceback
    signal.signal(signal.SIGINT, lambda *_: sys.exit(130))

import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from checkpoint import (
    CHECKPOINT,
    METRICS,
    CheckpointError,
    config_differences,
    load_checkpoint,
    restore,
    run_folder,
    save_checkpoint,
    trained,
    write_metrics,
)
from cli import OneLineParser, add_options, given, option_error, unavailable
from config import ModelConfig, TrainConfig
from data import DataError, FashionMNISTData, batches, check_data, load_fashion_mnist
from files import WriteError, unwritable
from models import BetaVAE, LossTerms, Objective, build_model, count_parameters, dataset_loss


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
    config: TrainConfig,
    generator: torch.Generator,
    epoch: int = 1,
    bar: tqdm | None = None,
) -> dict[str, float]:
    """One epoch of optimizer steps over `images`, shuffled and noised by `generator`; the mean loss terms.
    TrainingError, before the update, at the first step whose loss or gradient is not finite."""
    model.train()
    params = list(model.parameters())
    sums = torch.zeros(3, device=images.device)
    steps, goal = -(-len(images) // config.batch_size), Objective.of(config)
    for step, x in enumerate(batches(images, config.batch_size, generator), 1):
        terms = goal.loss(model(x, generator=generator), x, model.likelihood, epoch - 1 + step / steps)
        optimizer.zero_grad(set_to_none=True)
        terms.total.backward()
        bad = nonfinite_term(terms, torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None]))
        if bad is not None:
            weight = (
                f"a smaller gamma (gamma={config.gamma:g})"
                if config.capacity is not None
                else f"a smaller beta (beta={config.beta:g})"
            )
            raise TrainingError(
                f"non-finite {bad} at epoch {epoch}, step {step}: try a lower learning rate "
                f"(lr={config.lr:g}) or {weight}"
            )
        optimizer.step()
        sums += torch.stack(terms).detach() * len(x)
        if bar is not None:
            bar.update(len(x))
            if not bar.disable and step % 50 == 0:
                bar.set_postfix(loss=f"{sums[2].item() / bar.n:.2f}")
    return dict(zip(LossTerms._fields, (sums / len(images)).tolist()))


# ---------------------------------------------------------------------------------------------- fit
def fit(
    model: BetaVAE,
    data: FashionMNISTData,
    config: TrainConfig = TrainConfig(),
    *,
    device: str = "cpu",
    out_dir: str | Path | None = None,
    checkpoint: dict[str, Any] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Train `model` to config.epochs epochs; returns the per-epoch history.

    Each history entry: epoch, train and test {recon, kl, total} (test: the whole test set), seconds.
    With `out_dir`, checkpoint.pt and metrics.json are written at the end of every epoch (checkpoint.run_folder:
    locked; a run already there needs `checkpoint` to continue it or overwrite=True to move it aside).
    With `checkpoint` (from load_checkpoint), training continues exactly where it stopped.
    """
    check_data(data, model.likelihood, config.train_limit)
    train_x = data.train_images[: config.train_limit]
    record, goal = {**asdict(config), "train_images": len(train_x)}, Objective.of(config)
    optimizer = prepare_training(model, config.lr, device)
    generator = torch.Generator().manual_seed(config.seed)  # shuffling and reparameterization noise
    history = restore(checkpoint, model, optimizer, generator) if checkpoint is not None else []
    out_dir = Path(out_dir) if out_dir is not None else None

    def save() -> None:
        if out_dir is not None:
            rng = {"train": generator.get_state(), "torch": torch.get_rng_state()}
            save_checkpoint(out_dir / CHECKPOINT, model, optimizer, record, len(history), history, rng)
            write_metrics(out_dir, model, record, history)

    with run_folder(out_dir, checkpoint, overwrite, log):
        save()  # epoch 0 (an interrupted first epoch can be resumed); on resume, metrics.json from the checkpoint
        train_x, test_x = train_x.to(device), data.test_images.to(device)
        for epoch in range(len(history) + 1, config.epochs + 1):
            started = time.perf_counter()
            bar = tqdm(
                total=len(train_x), desc=f"epoch {epoch}/{config.epochs}", unit="img", leave=False, disable=not progress
            )
            try:
                train = train_epoch(model, optimizer, train_x, config, generator, epoch, bar)
            except TrainingError as error:
                where = (
                    ""
                    if out_dir is None
                    else f"; the last good checkpoint is {out_dir / CHECKPOINT}"
                    if history
                    else f"; nothing was trained: a new run may replace {out_dir} (train.py --out {out_dir})"
                )
                raise TrainingError(f"{error}{where}") from None
            finally:
                bar.close()
            seconds = time.perf_counter() - started
            test = dataset_loss(model, test_x)
            test["total"] = goal.total(test["recon"], test["kl"], epoch)
            history.append({"epoch": epoch, "train": train, "test": test, "seconds": seconds})
            if config.capacity is not None:  # the target the KL is pulled to at the epoch's end
                history[-1]["capacity"] = goal.target(epoch)
            save()
            log(
                f"epoch {epoch}/{config.epochs}  train {train['total']:.2f} (recon {train['recon']:.2f}, "
                f"kl {train['kl']:.2f})  test {test['total']:.2f} (recon {test['recon']:.2f}, kl {test['kl']:.2f})  "
                f"{seconds:.1f}s"
            )
    model.to(memory_format=torch.contiguous_format)  # the layout load_model gives: the same outputs to the bit
    return history


def interrupted(folder: str | Path) -> str:
    """What a Ctrl-C left in a run folder, and how to resume it."""
    try:
        epoch = load_checkpoint(folder)["epoch"]
    except CheckpointError:
        return f"\ninterrupted before anything was saved in {folder}"
    return (
        f"\ninterrupted; epoch {epoch} is saved in {Path(folder) / CHECKPOINT}. "
        f"Resume with: python train.py --resume {shlex.quote(str(folder))}"
    )


# ---------------------------------------------------------------------------------------------- command line
def parse_args(argv: list[str] | None) -> tuple[Any, ModelConfig | dict, TrainConfig, dict | None]:
    """(args, model config, training config, checkpoint to resume or None); one-line errors, exit status 2."""
    p = OneLineParser(prog="train.py", description="Train a beta-VAE on Fashion-MNIST.")
    add_options(p, ModelConfig)
    add_options(p, TrainConfig)
    p.add_argument("--data-dir", help="folder with the four Fashion-MNIST IDX files")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or mps")
    p.add_argument("--out", help="run folder (default runs/MODEL-betaBETA)")
    p.add_argument(
        "--resume", metavar="RUN", help="continue the run in this folder (only --epochs and --device may change)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    model_given, train_given = given(args, ModelConfig), given(args, TrainConfig)
    if unavailable(args.device):
        p.error(f"--device {unavailable(args.device)}")
    if args.resume is None:
        try:
            model_config, config = ModelConfig(**model_given), TrainConfig(**train_given)
        except ValueError as error:
            p.error(option_error(error))
        if args.out == "":
            p.error("--out '' is not a folder name")
        args.out = args.out or f"runs/{model_config.model}-beta{config.beta:g}"
        out = Path(args.out)
        try:
            if trained(out):  # a checkpoint at epoch 0 holds no training: replaced
                p.error(f"--out {out} already holds a run; continue it with --resume {out} or choose another --out")
        except CheckpointError as error:
            p.error(f"--out: {error}")
        if unwritable(out):
            p.error(f"--out {unwritable(out)}")
        return args, model_config, config, None
    if Path(args.resume).name == CHECKPOINT and Path(args.resume).is_file():
        args.resume = str(Path(args.resume).parent)  # the run's checkpoint file names its folder
    try:
        checkpoint = load_checkpoint(Path(args.resume) / CHECKPOINT)
    except CheckpointError as error:
        p.error(f"--resume: {error}")
    saved = TrainConfig(**{k: v for k, v in checkpoint["train_config"].items() if k != "train_images"})
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
    if config.epochs <= checkpoint["epoch"]:
        p.error(
            f"--resume: the run already has {checkpoint['epoch']} epochs; pass --epochs N "
            f"with N > {checkpoint['epoch']} to train further"
        )
    if args.out is not None and Path(args.out).resolve() != Path(args.resume).resolve():
        p.error("--out and --resume name different folders; a resumed run stays in its folder")
    args.out = args.resume
    return args, checkpoint["config"], config, checkpoint


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C from here on: KeyboardInterrupt
    args, model_config, config, checkpoint = parse_args(argv)
    try:
        model = build_model(model_config, seed=config.seed)
        data = load_fashion_mnist(model.likelihood, args.data_dir)
        print(
            f"{model.config.model} beta-VAE, {count_parameters(model):,} parameters, latent_dim "
            f"{model.latent_dim}, {model.likelihood}, beta {config.beta:g}, "
            f"{len(data.train_images[: config.train_limit]):,} training images -> {args.out}"
        )
        history = fit(
            model,
            data,
            config,
            device=args.device,
            out_dir=args.out,
            checkpoint=checkpoint,
            progress=not args.no_progress,
        )
    except KeyboardInterrupt:
        print(interrupted(args.out), file=sys.stderr)
        return 130
    except (DataError, TrainingError, CheckpointError, WriteError, ValueError) as error:
        print(f"train.py: error: {error}", file=sys.stderr)
        return 2 if isinstance(error, (DataError, ValueError)) else 1
    print(f"done: test total {history[-1]['test']['total']:.2f} nats/image; {Path(args.out) / METRICS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
