"""Train a beta-VAE on Fashion-MNIST: an importable `fit` and a thin command line.

    python train.py --model cnn --beta 0.1 --epochs 20 --out runs/cnn-beta0.1
    python train.py --resume runs/cnn-beta0.1 --epochs 30     # continue to epoch 30

Each run folder holds checkpoint.pt (model, optimizer, RNG states, config as plain data; written
atomically at the end of every epoch) and metrics.json (config and per-epoch train/test losses).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from data import COUNTS, DataError, FashionMNIST, batches, load_fashion_mnist
from models import LIKELIHOODS, MODELS, BetaVAE, LossTerms, beta_vae_loss, build_model, count_parameters

# Defaults of the command line and of fit().
MODEL = "fc"
LATENT_DIM = 3
LIKELIHOOD = "bernoulli"
BETA = 0.1
EPOCHS = 20
BATCH_SIZE = 128
LR = 1e-3
SEED = 0
EVAL_BATCH_SIZE = 1000
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
CHECKPOINT_FORMAT = 1


class TrainingError(Exception):
    """Training stopped (a non-finite loss or gradient); the message says where and what to try."""


class CheckpointError(Exception):
    """A checkpoint is missing, unsafe, corrupt or does not match the model; the message names the file."""


# ---------------------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def dataset_loss(model: BetaVAE, images: torch.Tensor, beta: float, kl_weight: float = 1.0,
                 batch_size: int = EVAL_BATCH_SIZE, seed: int = 0) -> dict[str, float]:
    """Loss terms averaged over every image of `images` (nats per image), with z sampled from a fixed seed."""
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    sums = torch.zeros(3, dtype=torch.float64)
    for x in batches(images, batch_size, shuffle=False):
        terms = beta_vae_loss(model(x, generator=generator, sample=True), x, beta, model.likelihood, kl_weight)
        sums += torch.stack(terms).double().cpu() * len(x)
    model.train(was_training)
    return dict(zip(LossTerms._fields, (sums / len(images)).tolist()))


# ---------------------------------------------------------------------------------------------- checkpoints
def atomic_write(path: Path, write: Callable[[Any], None]) -> None:
    """Write through a temporary file in the same folder, then os.replace: the old file survives a crash."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(path: str | Path, model: BetaVAE, optimizer: torch.optim.Optimizer | None = None,
                    train_config: dict[str, Any] | None = None, epoch: int = 0,
                    history: list[dict] | None = None, rng: dict[str, torch.Tensor] | None = None) -> None:
    """Save model and training state; the configuration travels as plain data (loadable with weights_only)."""
    state = {"format": CHECKPOINT_FORMAT, "config": model.config, "train_config": dict(train_config or {}),
             "epoch": epoch, "history": list(history or []),
             "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
             "optimizer_state": optimizer.state_dict() if optimizer is not None else None,
             "rng": dict(rng or {})}
    atomic_write(Path(path), lambda f: torch.save(state, f))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint safely (weights_only=True); CheckpointError for unsafe, corrupt or foreign files."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint there")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path}: refused: it holds pickled Python objects that could run code "
                              f"(only tensors and plain data are loaded)") from None
    except Exception as error:
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or not a checkpoint: "
                              f"{type(error).__name__})") from None
    required = ("format", "config", "model_state", "epoch")
    if not isinstance(checkpoint, dict) or any(key not in checkpoint for key in required):
        raise CheckpointError(f"{path}: not a checkpoint of this project (missing {', '.join(required)})")
    return checkpoint


def load_model_state(model: BetaVAE, checkpoint: dict[str, Any], path: str | Path = "checkpoint") -> None:
    """Load weights into `model`, naming any architecture, latent size or likelihood mismatch."""
    saved, ours = checkpoint["config"], model.config
    differences = [f"{key} {saved.get(key)!r} vs {ours.get(key)!r}"
                   for key in sorted(set(saved) | set(ours)) if saved.get(key) != ours.get(key)]
    if differences:
        raise CheckpointError(f"{path}: checkpoint does not match the model (checkpoint vs model: "
                              f"{'; '.join(differences)})")
    model.load_state_dict(checkpoint["model_state"])


def load_model(path: str | Path) -> BetaVAE:
    """Rebuild a trained model from a checkpoint file or run folder, in eval mode."""
    checkpoint = load_checkpoint(path)
    model = build_model(checkpoint["config"])
    load_model_state(model, checkpoint, path)
    return model.eval()


def write_metrics(out_dir: Path, model: BetaVAE, train_config: dict[str, Any], history: list[dict]) -> None:
    metrics = {"config": {**model.config, **train_config}, "parameters": count_parameters(model), "epochs": history}
    atomic_write(out_dir / METRICS, lambda f: f.write(json.dumps(metrics, indent=1).encode()))


# ---------------------------------------------------------------------------------------------- training
def nonfinite_term(terms: LossTerms, grad_norm: torch.Tensor) -> str | None:
    """Name of the first non-finite quantity of a step, or None when all are finite (one sync)."""
    values = torch.stack([*terms, grad_norm]).detach()
    if bool(torch.isfinite(values).all()):
        return None
    names = ("reconstruction loss", "KL", "total loss", "gradient")
    return next(name for name, ok in zip(names, torch.isfinite(values).tolist()) if not ok)


def prepare_training(model: BetaVAE, lr: float = LR, device: str = "cpu") -> torch.optim.Adam:
    """fit's setup: `model` moved to `device` and its Adam optimizer. On CPU, convolution weights are made
    channels_last (fit makes them contiguous again at the end) and Adam is fused (one pass over the
    parameters): faster, and equal up to float rounding."""
    on_cpu = torch.device(device).type == "cpu"
    model.to(device, memory_format=torch.channels_last if on_cpu else torch.preserve_format)
    return torch.optim.Adam(model.parameters(), lr=lr, fused=True if on_cpu else None)


def train_epoch(model: BetaVAE, optimizer: torch.optim.Optimizer, images: torch.Tensor, batch_size: int,
                generator: torch.Generator, beta: float, kl_weight: float = 1.0, epoch: int = 1,
                bar: tqdm | None = None) -> dict[str, float]:
    """One epoch of optimizer steps over `images`, shuffled and noised by `generator`; the mean loss terms.

    This is fit's training step (and what bench.py times). TrainingError, before the update, at the first
    step whose loss or gradient is not finite.
    """
    model.train()
    params = [p for p in model.parameters()]
    sums = torch.zeros(3, device=images.device)
    for step, x in enumerate(batches(images, batch_size, generator), 1):
        terms = beta_vae_loss(model(x, generator=generator), x, beta, model.likelihood, kl_weight)
        optimizer.zero_grad(set_to_none=True)
        terms.total.backward()
        grad_norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
        bad = nonfinite_term(terms, grad_norm)
        if bad is not None:
            raise TrainingError(f"non-finite {bad} at epoch {epoch}, step {step}: try a lower learning rate "
                                f"(lr={optimizer.param_groups[0]['lr']:g}) or a smaller beta")
        optimizer.step()
        sums += torch.stack(terms).detach() * len(x)
        if bar is not None:
            bar.update(len(x))
            if not bar.disable and step % 50 == 0:
                bar.set_postfix(loss=f"{sums[2].item() / bar.n:.2f}")
    return dict(zip(LossTerms._fields, (sums / len(images)).tolist()))


def fit(model: BetaVAE, data: FashionMNIST, beta: float = BETA, epochs: int = EPOCHS, lr: float = LR,
        batch_size: int = BATCH_SIZE, seed: int = SEED, kl_weight: float = 1.0, device: str = "cpu",
        out_dir: str | Path | None = None, checkpoint: dict[str, Any] | None = None,
        progress: bool = True, log: Callable[[str], None] = print) -> list[dict]:
    """Train `model` with Adam to `epochs` epochs; returns the per-epoch history.

    Each history entry: epoch, train and test {recon, kl, total} (test: the whole test set), seconds.
    With `out_dir`, checkpoint.pt and metrics.json are written at the end of every epoch.
    With `checkpoint` (from load_checkpoint), training continues exactly where it stopped.
    """
    if data.likelihood != model.likelihood:
        raise ValueError(f"data scaled for {data.likelihood!r} but the model's likelihood is {model.likelihood!r}")
    for name, value, low in (("epochs", epochs, 1), ("batch_size", batch_size, 1)):
        if value < low:
            raise ValueError(f"{name} must be >= {low}, got {value}")
    if not lr > 0 or not beta >= 0:
        raise ValueError(f"need lr > 0 and beta >= 0, got lr={lr}, beta={beta}")
    train_config = {"beta": beta, "kl_weight": kl_weight, "lr": lr, "batch_size": batch_size, "seed": seed,
                    "epochs": epochs, "train_images": len(data.train_images)}
    optimizer = prepare_training(model, lr, device)
    generator = torch.Generator().manual_seed(seed)  # shuffling and reparameterization noise
    history: list[dict] = []
    start_epoch = 0
    if checkpoint is not None:
        load_model_state(model, checkpoint)
        optimizer.load_state_dict(checkpoint["optimizer_state"])
        generator.set_state(checkpoint["rng"]["train"])
        torch.set_rng_state(checkpoint["rng"]["torch"])
        history, start_epoch = list(checkpoint["history"]), checkpoint["epoch"]
    out_dir = Path(out_dir) if out_dir is not None else None

    def save(epoch: int) -> None:
        if out_dir is None:
            return
        rng = {"train": generator.get_state(), "torch": torch.get_rng_state()}
        save_checkpoint(out_dir / CHECKPOINT, model, optimizer, train_config, epoch, history, rng)
        write_metrics(out_dir, model, train_config, history)

    if out_dir is not None and start_epoch == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        save(0)  # an interrupted first epoch can be resumed too
    train_x = data.train_images.to(device)
    test_x = data.test_images.to(device)
    for epoch in range(start_epoch + 1, epochs + 1):
        started = time.perf_counter()
        bar = tqdm(total=len(train_x), desc=f"epoch {epoch}/{epochs}", unit="img", leave=False, disable=not progress)
        try:
            train = train_epoch(model, optimizer, train_x, batch_size, generator, beta, kl_weight, epoch, bar)
        except TrainingError as error:
            where = f"; the last good checkpoint is {out_dir / CHECKPOINT}" if out_dir else ""
            raise TrainingError(f"{error}{where}") from None
        finally:
            bar.close()
        seconds = time.perf_counter() - started
        test = dataset_loss(model, test_x, beta, kl_weight)
        history.append({"epoch": epoch, "train": train, "test": test, "seconds": seconds})
        save(epoch)
        log(f"epoch {epoch}/{epochs}  train {train['total']:.2f} (recon {train['recon']:.2f}, kl {train['kl']:.2f})  "
            f"test {test['total']:.2f} (recon {test['recon']:.2f}, kl {test['kl']:.2f})  {seconds:.1f}s")
    model.to(memory_format=torch.contiguous_format)  # the layout load_model gives: the same outputs to the bit
    return history


# ---------------------------------------------------------------------------------------------- command line
class OneLineParser(argparse.ArgumentParser):
    """argparse that reports bad input in one line (and exit status 2), without the usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = OneLineParser(prog="train.py", description="Train a beta-VAE on Fashion-MNIST.")
    # None means "not given": the defaults apply to new runs; --resume takes the checkpoint's values.
    p.add_argument("--model", choices=sorted(MODELS), help=f"architecture (default {MODEL})")
    p.add_argument("--beta", type=float, help=f"weight of the KL term, >= 0 (default {BETA})")
    p.add_argument("--latent-dim", type=int, help=f"latent dimensions (default {LATENT_DIM})")
    p.add_argument("--likelihood", choices=LIKELIHOODS, help=f"(default {LIKELIHOOD})")
    p.add_argument("--epochs", type=int, help=f"train to this epoch (default {EPOCHS}; with --resume: the run's)")
    p.add_argument("--batch-size", type=int, help=f"(default {BATCH_SIZE})")
    p.add_argument("--lr", type=float, help=f"Adam learning rate (default {LR})")
    p.add_argument("--seed", type=int, help=f"(default {SEED})")
    p.add_argument("--kl-weight", type=float, help="extra factor on the KL term; it simply multiplies beta (default 1)")
    p.add_argument("--train-limit", type=int, help="use only the first N training images")
    p.add_argument("--data-dir", help="folder with the four Fashion-MNIST IDX files")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or mps")
    p.add_argument("--out", help="run folder (default runs/MODEL-betaBETA)")
    p.add_argument("--resume", metavar="RUN", help="continue the run in this folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    for name, low, strict in (("beta", 0, False), ("kl_weight", 0, False), ("lr", 0, True), ("epochs", 1, False),
                              ("latent_dim", 1, False), ("batch_size", 1, False), ("train_limit", 1, False)):
        value = getattr(args, name)
        if value is not None and (math.isnan(value) or value < low or (strict and value == low)):
            p.error(f"--{name.replace('_', '-')} must be {'>' if strict else '>='} {low}, got {value}")
    if args.device != "cpu" and not (
            (args.device.startswith("cuda") and torch.cuda.is_available())
            or (args.device == "mps" and torch.backends.mps.is_available())):
        p.error(f"--device {args.device} is not available on this machine")
    run_keys = ("model", "beta", "latent_dim", "likelihood", "batch_size", "lr", "seed", "kl_weight")
    if args.resume is not None:
        checkpoint_path = Path(args.resume) / CHECKPOINT
        try:
            args.checkpoint = load_checkpoint(checkpoint_path)
        except CheckpointError as error:
            p.error(f"--resume: {error}")
        saved = {**args.checkpoint["config"], **args.checkpoint["train_config"]}
        for key in run_keys:
            given = getattr(args, key)
            if given is not None and given != saved.get(key):
                p.error(f"--{key.replace('_', '-')} {given} differs from the run's {saved.get(key)}; "
                        f"--resume continues a run as it was configured (only --epochs and --device may change)")
            setattr(args, key, saved.get(key))
        args.epochs = args.epochs if args.epochs is not None else saved["epochs"]
        if args.epochs <= args.checkpoint["epoch"]:
            p.error(f"--resume: the run already has {args.checkpoint['epoch']} epochs; pass --epochs N "
                    f"with N > {args.checkpoint['epoch']} to train further")
        if args.out is not None and Path(args.out).resolve() != Path(args.resume).resolve():
            p.error("--out and --resume name different folders; a resumed run stays in its folder")
        args.out = args.resume
        saved_limit = saved.get("train_images") if saved.get("train_images", COUNTS["train"]) < COUNTS["train"] else None
        if args.train_limit is not None and args.train_limit != saved_limit:
            p.error(f"--train-limit {args.train_limit} differs from the run's {saved_limit}")
        args.train_limit = saved_limit
    else:
        args.checkpoint = None
        defaults = {"model": MODEL, "beta": BETA, "latent_dim": LATENT_DIM, "likelihood": LIKELIHOOD, "epochs": EPOCHS,
                    "batch_size": BATCH_SIZE, "lr": LR, "seed": SEED, "kl_weight": 1.0}
        for key, value in defaults.items():
            if getattr(args, key) is None:
                setattr(args, key, value)
        args.out = args.out or f"runs/{args.model}-beta{args.beta:g}"
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            p.error(f"--out {out} is a file, not a folder")
        if (out / CHECKPOINT).exists():
            p.error(f"--out {out} already holds a run; continue it with --resume {out} or choose another --out")
        try:
            out.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=out):
                pass
        except OSError as error:
            p.error(f"--out {out} is not writable ({error.strerror or error})")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        data = load_fashion_mnist(args.likelihood, args.data_dir, args.train_limit)
    except DataError as error:
        print(f"train.py: error: {error}", file=sys.stderr)
        return 2
    torch.manual_seed(args.seed)
    model = build_model({"model": args.model, "latent_dim": args.latent_dim, "likelihood": args.likelihood})
    print(f"{args.model} beta-VAE, {count_parameters(model):,} parameters, latent_dim {args.latent_dim}, "
          f"{args.likelihood}, beta {args.beta:g}, {len(data.train_images):,} training images -> {args.out}")
    try:
        history = fit(model, data, args.beta, args.epochs, args.lr, args.batch_size, args.seed, args.kl_weight,
                      args.device, args.out, args.checkpoint, progress=not args.no_progress)
    except KeyboardInterrupt:
        done = load_checkpoint(Path(args.out) / CHECKPOINT)["epoch"]
        print(f"\ninterrupted; epoch {done} is saved in {args.out}/{CHECKPOINT}. "
              f"Resume with: python train.py --resume {args.out}", file=sys.stderr)
        return 130
    except TrainingError as error:
        print(f"train.py: error: {error}", file=sys.stderr)
        return 1
    print(f"done: test total {history[-1]['test']['total']:.2f} nats/image; {args.out}/{METRICS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
