"""Run folders on disk: atomic writes, checkpoints (saved and loaded safely), and comparing saved settings.

A run folder holds checkpoint.pt (model weights, optimizer and RNG states, the model and training settings
as plain data) and metrics.json (the settings and the per-epoch history), both rewritten after every epoch.
"""
from __future__ import annotations

import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from models import BetaVAE, build_model, count_parameters

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
FORMAT = 2  # 2: train_config is the TrainConfig as a dict (no kl_weight)


class CheckpointError(Exception):
    """A checkpoint is missing, unsafe, corrupt or does not match the model; the message names the file."""


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


def unwritable(folder: Path) -> str | None:
    """Why files cannot be written in `folder` (which may not exist yet), or None; creates nothing."""
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"{folder} is not writable ({existing} is a file)"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{folder} is not writable (no write permission on {existing})"
    return None


def write_json(path: Path, data: Any) -> None:
    """Atomically write `data` as indented JSON (no NaN or Infinity: they are not JSON)."""
    atomic_write(path, lambda f: f.write(json.dumps(data, indent=1, allow_nan=False).encode()))


def save_checkpoint(path: str | Path, model: BetaVAE, optimizer: torch.optim.Optimizer | None = None,
                    train_config: dict[str, Any] | None = None, epoch: int = 0,
                    history: list[dict] | None = None, rng: dict[str, torch.Tensor] | None = None) -> None:
    """Save model and training state; the settings travel as plain data (loadable with weights_only)."""
    state = {"format": FORMAT, "config": model.config, "train_config": dict(train_config or {}),
             "epoch": epoch, "history": list(history or []),
             "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
             "optimizer_state": optimizer.state_dict() if optimizer is not None else None,
             "rng": dict(rng or {})}
    atomic_write(Path(path), lambda f: torch.save(state, f))


def write_metrics(out_dir: Path, model: BetaVAE, train_config: dict[str, Any], history: list[dict]) -> None:
    """metrics.json: the model and training settings, the parameter count and the per-epoch history."""
    write_json(out_dir / METRICS, {"config": {**model.config, **train_config},
                                   "parameters": count_parameters(model), "epochs": history})


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


def config_differences(saved: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """'key saved vs wanted' for every key of `wanted` whose value differs from the saved one."""
    normal = lambda value: list(value) if isinstance(value, tuple) else value  # noqa: E731
    return [f"{key} {saved.get(key)!r} vs {normal(value)!r}" for key, value in wanted.items()
            if normal(saved.get(key)) != normal(value)]


def load_model_state(model: BetaVAE, checkpoint: dict[str, Any], path: str | Path = "checkpoint") -> None:
    """Load weights into `model`, naming any architecture, latent size or likelihood mismatch."""
    differences = config_differences(checkpoint["config"], model.config)
    if differences:
        raise CheckpointError(f"{path}: checkpoint does not match the model (checkpoint vs model: "
                              f"{'; '.join(differences)})")
    model.load_state_dict(checkpoint["model_state"])


def load_model(path: str | Path) -> BetaVAE:
    """Rebuild a trained model from a checkpoint file or run folder, in eval mode."""
    checkpoint = load_checkpoint(path)
    try:
        model = build_model(checkpoint["config"])
    except (ValueError, TypeError) as error:
        raise CheckpointError(f"{path}: its model config is not valid ({error})") from None
    load_model_state(model, checkpoint, path)
    return model.eval()
