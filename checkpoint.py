"""Run folders on disk: atomic writes, checkpoints (saved and loaded safely), the writer's lock, and comparing
saved settings.

A run folder holds checkpoint.pt (model weights, optimizer and RNG states, the model and training settings
as plain data) and metrics.json (the settings and the per-epoch history), both rewritten after every epoch.
One process at a time writes a run folder: it holds an OS lock on RUN/.lock (see run_folder).
"""
from __future__ import annotations

import errno
import fcntl
import io
import json
import math
import os
import pickle
import shlex
import shutil
import socket
import tempfile
import time
import zipfile
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from models import IMAGE_SHAPE, BetaVAE, build_model, count_parameters

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
LOCK = ".lock"
FORMAT = 2  # 2: train_config is the TrainConfig as a dict (no kl_weight)
MAX_UNPACKED = 4 * 2 ** 30  # bytes a checkpoint's zip entries may declare in all (and at most 2x the file + 1 MiB)
FIELDS = ("format", "config", "train_config", "epoch", "history", "model_state", "optimizer_state", "rng")
LOSS_TERMS = ("recon", "kl", "total")


class CheckpointError(Exception):
    """A checkpoint or run folder is missing, unsafe, corrupt, busy or does not match the model; the message
    names the file."""


def atomic_write(path: Path, write: Callable[[Any], None]) -> None:
    """Write through a temporary file in the same folder, then os.replace: the old file survives a crash.
    The file honours the umask; a full disk is a CheckpointError that says the previous file is intact."""
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException as error:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            previous = "checkpoint" if path.name == CHECKPOINT else path.name
            raise CheckpointError(f"no space left on device while writing {path}; the previous {previous} "
                                  f"is intact") from None
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
    """Save model and training state; the settings travel as plain data (loadable with weights_only).
    Serialised in memory first, so that a failing write is an OSError, not a zip writer's RuntimeError."""
    state = {"format": FORMAT, "config": model.config, "train_config": dict(train_config or {}),
             "epoch": epoch, "history": list(history or []),
             "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
             "optimizer_state": optimizer.state_dict() if optimizer is not None else None,
             "rng": dict(rng or {})}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write(Path(path), lambda f: f.write(buffer.getbuffer()))


def write_metrics(out_dir: Path, model: BetaVAE, train_config: dict[str, Any], history: list[dict]) -> None:
    """metrics.json: the model and training settings, the parameter count and the per-epoch history."""
    write_json(out_dir / METRICS, {"config": {**model.config, **train_config},
                                   "parameters": count_parameters(model), "epochs": history})


# ---------------------------------------------------------------------------------------------- loading
def load_checkpoint(path: str | Path, train_settings: type | None = None) -> dict[str, Any]:
    """Load a checkpoint safely (weights_only=True) and validate every field (see check_checkpoint);
    CheckpointError for unsafe, corrupt, foreign or inconsistent files. `train_settings` (train.TrainConfig)
    also validates train_config."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint there")
    not_checkpoint = f"{path}: not a checkpoint (corrupt, truncated or another format)"
    try:
        with zipfile.ZipFile(path) as archive:
            declared = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise CheckpointError(not_checkpoint) from None
    if declared > min(MAX_UNPACKED, 2 * path.stat().st_size + 2 ** 20):
        raise CheckpointError(f"{path}: refused: its entries claim {declared:,} bytes in a file of "
                              f"{path.stat().st_size:,} bytes")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "Unsupported global" not in str(error):
            raise CheckpointError(not_checkpoint) from None
        raise CheckpointError(f"{path}: refused: it holds pickled Python objects that could run code "
                              f"(only tensors and plain data are loaded)") from None
    except Exception:
        raise CheckpointError(not_checkpoint) from None
    check_checkpoint(checkpoint, path, train_settings)
    return checkpoint


def plain(value: Any) -> bool:
    """Whether `value` is JSON data: str keys, lists, str, bool, None, ints and finite floats."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(plain(v) for v in value)
    return value is None or isinstance(value, (str, bool, int)) or (isinstance(value, float) and math.isfinite(value))


def is_int(value: Any, low: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def check_checkpoint(checkpoint: Any, path: Path, train_settings: type | None = None) -> None:
    """CheckpointError naming the first field of `checkpoint` that is missing, unknown or not as saved."""
    def need(ok: bool, field: str, why: str) -> None:
        if not ok:
            raise CheckpointError(f"{path}: field {field}: {why}")

    if not isinstance(checkpoint, dict) or "format" not in checkpoint or "model_state" not in checkpoint:
        raise CheckpointError(f"{path}: not a checkpoint of this project (no format and model_state fields)")
    need(is_int(checkpoint["format"]) and checkpoint["format"] == FORMAT, "format",
         f"version {checkpoint['format']!r} is not {FORMAT}, the one this code reads")
    for field in FIELDS:
        need(field in checkpoint, field, "missing")
    need(set(checkpoint) <= set(FIELDS), ", ".join(sorted(set(checkpoint) - set(FIELDS))), "unknown field")
    config = checkpoint["config"]
    need(isinstance(config, dict) and plain(config), "config", "not a dict of plain settings")
    need(config.get("image_shape", list(IMAGE_SHAPE)) == list(IMAGE_SHAPE), "config.image_shape",
         f"{config.get('image_shape')!r} is not {list(IMAGE_SHAPE)}")
    try:
        with torch.device("meta"):  # the shapes of the model it describes, allocating nothing
            model = build_model(config)
    except (ValueError, TypeError, KeyError) as error:
        raise CheckpointError(f"{path}: field config: not a valid model config ({error})") from None
    need(config == model.config, "config", f"not the full settings of a model ({model.config} expected)")
    expected, state = model.state_dict(), checkpoint["model_state"]
    need(isinstance(state, dict) and set(state) == set(expected), "model_state",
         f"its tensors are not those of the {config['model']} model the config describes")
    for key, tensor in state.items():
        need(isinstance(tensor, torch.Tensor) and tensor.shape == expected[key].shape
             and tensor.dtype == expected[key].dtype, f"model_state.{key}",
             f"expected a {expected[key].dtype} tensor of shape {tuple(expected[key].shape)}")
    train_config = checkpoint["train_config"]
    need(isinstance(train_config, dict) and plain(train_config), "train_config", "not a dict of plain settings")
    need(is_int(train_config.get("train_images", 1), 1), "train_config.train_images", "not a positive integer")
    if train_settings is not None:
        names = {f.name for f in fields(train_settings)}
        need(set(train_config) <= names | {"train_images"}, "train_config",
             f"unknown settings {sorted(set(train_config) - names - {'train_images'})}")
        try:
            train_settings(**{k: v for k, v in train_config.items() if k != "train_images"})
        except (TypeError, ValueError) as error:
            raise CheckpointError(f"{path}: field train_config: not valid ({error})") from None
    epoch, history = checkpoint["epoch"], checkpoint["history"]
    need(is_int(epoch), "epoch", f"{epoch!r} is not a non-negative integer")
    need(isinstance(history, list) and len(history) == epoch, "history", f"not a list of {epoch} epochs")
    for i, entry in enumerate(history):
        need(isinstance(entry, dict) and plain(entry) and entry.get("epoch") == i + 1
             and isinstance(entry.get("seconds"), (int, float)) and all(
                 isinstance(entry.get(part), dict) and all(isinstance(entry[part].get(t), (int, float))
                                                           for t in LOSS_TERMS) for part in ("train", "test")),
             f"history[{i}]", "not an entry {epoch, train, test, seconds} of finite numbers")
    check_optimizer_state(checkpoint["optimizer_state"], [p.shape for p in model.parameters()], need)
    rng, size = checkpoint["rng"], torch.get_rng_state().shape
    need(isinstance(rng, dict) and set(rng) <= {"train", "torch"}, "rng", "not a dict of train and torch states")
    for key, value in rng.items():
        need(isinstance(value, torch.Tensor) and value.dtype == torch.uint8 and value.shape == size, f"rng.{key}",
             f"not a CPU generator state (uint8 tensor of shape {tuple(size)})")


def check_optimizer_state(state: Any, shapes: list[torch.Size], need: Callable[[bool, str, str], None]) -> None:
    """An Adam state_dict for parameters of these shapes (or None: a checkpoint of the model alone)."""
    if state is None:
        return
    need(isinstance(state, dict) and set(state) == {"state", "param_groups"}
         and isinstance(state["state"], dict) and isinstance(state["param_groups"], list), "optimizer_state",
         "not an optimizer state_dict (state and param_groups)")
    ids = []
    for group in state["param_groups"]:
        need(isinstance(group, dict) and isinstance(group.get("params"), list)
             and isinstance(group.get("lr"), (int, float)) and 0 < group["lr"] < math.inf
             and plain({k: list(v) if isinstance(v, tuple) else v for k, v in group.items()}),
             "optimizer_state.param_groups", "not a list of groups with params and a positive lr")
        ids += group["params"]
    need(ids == list(range(len(shapes))), "optimizer_state.param_groups",
         f"its parameters are not the model's {len(shapes)}")
    for i, values in state["state"].items():
        need(i in ids and isinstance(values, dict), f"optimizer_state.state[{i!r}]", "not a parameter's state")
        for key, value in values.items():
            need(isinstance(value, torch.Tensor) and value.shape in (shapes[i], torch.Size([])),
                 f"optimizer_state.state[{i}].{key}", f"not a tensor of shape {tuple(shapes[i])} or a scalar")


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


def restore(checkpoint: dict[str, Any], model: BetaVAE, optimizer: torch.optim.Optimizer,
            generator: torch.Generator) -> list[dict]:
    """Put a loaded checkpoint's weights, optimizer and RNG states back; its history (to continue training)."""
    if checkpoint["optimizer_state"] is None or set(checkpoint["rng"]) != {"train", "torch"}:
        raise CheckpointError("the checkpoint holds a model only (no optimizer or RNG state): it cannot be resumed")
    load_model_state(model, checkpoint)
    optimizer.load_state_dict(checkpoint["optimizer_state"])
    generator.set_state(checkpoint["rng"]["train"])
    torch.set_rng_state(checkpoint["rng"]["torch"])
    return list(checkpoint["history"])


def load_model(path: str | Path) -> BetaVAE:
    """Rebuild a trained model from a checkpoint file or run folder, in eval mode."""
    checkpoint = load_checkpoint(path)
    model = build_model(checkpoint["config"])
    load_model_state(model, checkpoint, path)
    return model.eval()


# ---------------------------------------------------------------------------------------------- run folders
def lock(folder: Path) -> int:
    """An exclusive OS lock on folder/.lock (released when the process ends); it records our pid and host.
    CheckpointError naming the holder when another process has it."""
    fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise CheckpointError(f"{folder} is being written by {holder}; wait for it to end or choose another "
                              f"folder") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
    return fd


@contextmanager
def run_folder(folder: str | Path | None, checkpoint: dict[str, Any] | None = None, overwrite: bool = False,
               log: Callable[[str], None] = print) -> Iterator[None]:
    """Hold `folder` for writing a run (nothing when None): created if missing, locked against other writers,
    stale temporary files removed. A run already there is refused unless `checkpoint` continues it (the one
    on disk must be at the same epoch) or `overwrite` moves it aside to FOLDER.old-TIMESTAMP. A folder this
    call created is removed again if nothing was saved in it."""
    if folder is None:
        yield
        return
    folder = Path(folder)
    created = next((p for p in [*reversed(folder.parents), folder] if not p.exists()), None)
    folder.mkdir(parents=True, exist_ok=True)
    fd = lock(folder)
    try:
        for stale in [*folder.glob(f".{CHECKPOINT}.*.tmp"), *folder.glob(f".{METRICS}.*.tmp")]:
            stale.unlink(missing_ok=True)
        if (folder / CHECKPOINT).exists() and checkpoint is not None:
            saved = load_checkpoint(folder)["epoch"]
            if saved != checkpoint["epoch"]:
                raise CheckpointError(f"{folder} holds epoch {saved}, the checkpoint given is at epoch "
                                      f"{checkpoint['epoch']}: load it again")
        elif (folder / CHECKPOINT).exists() and not overwrite:
            raise CheckpointError(f"{folder} already holds a run: pass checkpoint=load_checkpoint({str(folder)!r}) "
                                  f"to continue it, or overwrite=True to start over (the old run is moved aside)")
        elif (folder / CHECKPOINT).exists():
            aside = folder.with_name(f"{folder.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
            folder.rename(aside)  # our lock moves with it until the new folder is locked
            folder.mkdir()
            os.close(fd)
            fd = lock(folder)
            log(f"moved the previous run in {folder} aside to {aside}")
        yield
    finally:
        if not (folder / CHECKPOINT).exists():
            shutil.rmtree(created) if created is not None else (folder / LOCK).unlink(missing_ok=True)
        os.close(fd)


def interrupted(folder: str | Path) -> str:
    """What a Ctrl-C left in a run folder, and how to resume it."""
    try:
        epoch = load_checkpoint(folder)["epoch"]
    except CheckpointError:
        return f"\ninterrupted before anything was saved in {folder}"
    return (f"\ninterrupted; epoch {epoch} is saved in {Path(folder) / CHECKPOINT}. "
            f"Resume with: python train.py --resume {shlex.quote(str(folder))}")
