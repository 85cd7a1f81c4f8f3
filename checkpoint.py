"""Run folders on disk: checkpoints (saved, loaded safely and validated), metrics.json, the writer's lock.

A run folder holds checkpoint.pt (model weights, optimizer and RNG states, the model and training settings
as plain data) and metrics.json (the settings and the per-epoch history), both rewritten after every epoch.
One process at a time writes a run folder: it holds an OS lock on RUN/.lock (see run_folder).
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import math
import os
import pickle
import socket
import stat
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from config import IMAGE_SHAPE, TrainConfig
from files import atomic_write, write_json
from models import BetaVAE, build_model, count_parameters

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
LOCK = ".lock"
FORMAT = 2  # 2: train_config is the TrainConfig as a dict (no kl_weight)
MAX_UNPACKED = 4 * 2**30  # bytes a file's zip entries may declare in all (and at most 2x the file + 1 MiB)
FIELDS = ("format", "config", "train_config", "epoch", "history", "model_state", "optimizer_state", "rng")
ADAM_STATE = ("step", "exp_avg", "exp_avg_sq")
DIGEST = "tensor_sha256"  # of the tensors (tensor_digest); checkpoints written before it have none


class CheckpointError(Exception):
    """A checkpoint or run folder is missing, unsafe, corrupt, busy or unlike the model; the message names the file."""


def save_checkpoint(
    path: str | Path,
    model: BetaVAE,
    optimizer: torch.optim.Optimizer | None = None,
    train_config: dict[str, Any] | None = None,
    epoch: int = 0,
    history: list[dict] | None = None,
    rng: dict[str, torch.Tensor] | None = None,
) -> None:
    """Save model and training state; the settings travel as plain data (loadable with weights_only).
    Serialised in memory first, so that a failing write is a files.WriteError, not a zip writer's error."""
    state = {
        "format": FORMAT,
        "config": model.plain_config(),
        "train_config": dict(train_config or {}),
        "epoch": epoch,
        "history": list(history or []),
        "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer_state": optimizer.state_dict() if optimizer is not None else None,
        "rng": dict(rng or {}),
    }
    state[DIGEST] = tensor_digest(state)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write(Path(path), lambda f: f.write(buffer.getbuffer()))


def write_metrics(out_dir: Path, model: BetaVAE, train_config: dict[str, Any], history: list[dict]) -> None:
    """metrics.json: the model and training settings, the parameter count and the per-epoch history."""
    write_json(
        out_dir / METRICS,
        {"config": {**model.plain_config(), **train_config}, "parameters": count_parameters(model), "epochs": history},
    )


# ---------------------------------------------------------------------------------------------- loading
def load_tensors(path: Path, error: type[Exception] = CheckpointError, map_location: Any = "cpu") -> Any:
    """torch.load of tensors and plain data only (weights_only), after refusing zip bombs; `error` names the file.
    Every torch.load of the project goes through here."""
    not_ours = f"{path}: not a checkpoint (corrupt, truncated or another format)"
    try:
        size = path.stat().st_size
        with zipfile.ZipFile(path) as archive:
            declared = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise error(not_ours) from None
    if declared > min(MAX_UNPACKED, 2 * size + 2**20):
        raise error(f"{path}: refused: its entries claim {declared:,} bytes in a file of {size:,} bytes")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as failure:
        if "Unsupported global" in str(failure) or "GLOBAL" in str(failure):
            raise error(
                f"{path}: refused: it holds pickled Python objects that could run code (only tensors "
                f"and plain data are loaded)"
            ) from None
        raise error(not_ours) from None
    except Exception:
        raise error(not_ours) from None


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint (a file, or a run folder's) safely, its tensors onto `map_location` (torch.load's), and
    validate it; CheckpointError for unsafe, corrupt, altered, foreign or inconsistent files."""
    path = Path(path) / CHECKPOINT if Path(path).is_dir() else Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint there")
    checkpoint = load_tensors(path, map_location=map_location)
    check_checkpoint(checkpoint, path)
    return checkpoint


def plain(value: Any) -> bool:
    """Whether `value` is JSON data: str keys, lists, str, bool, None, ints and finite floats."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(plain(v) for v in value)
    return value is None or isinstance(value, (str, bool, int)) or (isinstance(value, float) and math.isfinite(value))


def tensor_like(value: Any, shape: tuple | torch.Size) -> bool:
    return (
        isinstance(value, torch.Tensor)
        and value.shape == shape
        and value.dtype == torch.float32
        and bool(torch.isfinite(value).all())
    )


def check_checkpoint(checkpoint: Any, path: Path) -> None:
    """CheckpointError naming the first field of `checkpoint` that is missing, unknown, altered or not as saved.
    The tensors are judged by torch's own load_state_dict (model and Adam) into a model that allocates nothing."""

    def need(ok: bool, field: str, why: str) -> None:
        if not ok:
            raise CheckpointError(f"{path}: field {field}: {why}")

    def judged(field: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except Exception as error:  # the library's verdict on what the file holds
            raise CheckpointError(f"{path}: field {field}: {' '.join(str(error).split())}") from None

    need(
        isinstance(checkpoint, dict) and "format" in checkpoint and "model_state" in checkpoint,
        "format",
        "missing: not a checkpoint of this project",
    )
    need(
        type(checkpoint["format"]) is int and checkpoint["format"] == FORMAT,
        "format",  # type first: no tensor ==
        f"version {checkpoint['format']!r} is not {FORMAT}, the one this code reads",
    )
    need(
        set(checkpoint) - {DIGEST} == set(FIELDS),
        ", ".join(sorted(set(checkpoint) ^ {*FIELDS, DIGEST})),
        "missing or unknown",
    )
    need(
        DIGEST not in checkpoint or str(checkpoint[DIGEST]) == tensor_digest(checkpoint),
        DIGEST,
        "its tensors do not match the digest saved with them (the file was changed or damaged)",
    )
    config, train_config = checkpoint["config"], checkpoint["train_config"]
    need(
        isinstance(config, dict)
        and plain(config)
        and config.get("image_shape", list(IMAGE_SHAPE)) == list(IMAGE_SHAPE),
        "config",
        f"not a dict of plain settings for {list(IMAGE_SHAPE)} images",
    )
    with torch.device("meta"):  # the model it describes, allocating nothing
        model = judged("config", lambda: build_model(config))
    need(config == model.plain_config(), "config", f"not the full settings of a model ({model.plain_config()})")
    with warnings.catch_warnings(action="ignore"):  # copying into a meta model: only names and shapes count
        judged("model_state", lambda: model.load_state_dict(checkpoint["model_state"]))
    need(
        all(checkpoint["model_state"][k].dtype == v.dtype for k, v in model.state_dict().items()),
        "model_state",
        "its tensors are not of the model's dtypes",
    )  # load_state_dict would convert them silently
    need(
        isinstance(train_config, dict)
        and plain(train_config)
        and type(train_config.get("train_images", 1)) is int
        and train_config.get("train_images", 1) >= 1,
        "train_config",
        "not a dict of plain settings",
    )
    lr = judged(
        "train_config", lambda: TrainConfig(**{k: v for k, v in train_config.items() if k != "train_images"})
    ).lr
    epoch, history = checkpoint["epoch"], checkpoint["history"]
    need(type(epoch) is int and epoch >= 0, "epoch", f"{epoch!r} is not a non-negative integer")
    need(isinstance(history, list) and len(history) == epoch, "history", f"not a list of {epoch} epochs")
    numbers = lambda part, keys: isinstance(part, dict) and all(type(part.get(k)) in (int, float) for k in keys)  # noqa
    for i, entry in enumerate(history):  # plain: finite
        need(
            plain(entry)
            and numbers(entry, ("seconds",))
            and entry.get("epoch") == i + 1
            and all(numbers(entry.get(part), ("recon", "kl", "total")) for part in ("train", "test")),
            f"history[{i}]",
            "not an entry {epoch, train, test, seconds} of finite numbers",
        )
    if (state := checkpoint["optimizer_state"]) is not None:  # what this project's Adam(lr) writes for the model
        judged("optimizer_state", lambda: torch.optim.Adam(model.parameters()).load_state_dict(state))
        fresh = torch.optim.Adam(model.parameters(), lr=lr).state_dict()["param_groups"][0]
        group = state["param_groups"][0]
        need(
            set(group) == set(fresh)
            and all(type(group[k]) is type(v) and group[k] == v for k, v in fresh.items() if k != "fused"),
            "optimizer_state.param_groups",
            f"not those of Adam(lr={lr:g}) for the model's {len(fresh['params'])} parameters",
        )
        shapes = [p.shape for p in model.parameters()]
        for i, values in state["state"].items():
            need(
                type(i) is int
                and 0 <= i < len(shapes)
                and isinstance(values, dict)
                and set(values) == set(ADAM_STATE)
                and tensor_like(values["step"], ())
                and all(tensor_like(values[k], shapes[i]) for k in ADAM_STATE[1:]),
                f"optimizer_state.state[{i!r}]",
                f"not Adam's {', '.join(ADAM_STATE)} (finite float32 tensors)",
            )
    need(isinstance(checkpoint["rng"], dict) and set(checkpoint["rng"]) <= {"train", "torch"}, "rng", "not RNG states")
    for key, value in checkpoint["rng"].items():
        judged(
            f"rng.{key}", lambda value=value: torch.Generator().set_state(value.cpu())
        )  # any map_location: CPU states


def tensor_digest(checkpoint: dict[str, Any]) -> str:
    """sha256 over the name, dtype, shape and bytes of every tensor in the model, optimizer and RNG states."""
    digest = hashlib.sha256()

    def add(value: Any, name: str) -> None:
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().contiguous()
            digest.update(f"{name} {value.dtype} {tuple(value.shape)}\n".encode())
            digest.update(value.reshape(-1).view(torch.uint8).numpy())
        elif isinstance(value, (dict, list, tuple)):
            for key, item in value.items() if isinstance(value, dict) else enumerate(value):
                add(item, f"{name}.{key}")

    for field in ("model_state", "optimizer_state", "rng"):
        add(checkpoint.get(field), field)
    return digest.hexdigest()


def config_differences(saved: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """'key saved vs wanted' for every key of `wanted` whose value differs from the saved one."""
    normal = lambda value: list(value) if isinstance(value, tuple) else value  # noqa: E731
    return [f"{k} {saved.get(k)!r} vs {normal(v)!r}" for k, v in wanted.items() if normal(saved.get(k)) != normal(v)]


def load_model_state(model: BetaVAE, checkpoint: dict[str, Any], path: str | Path = "checkpoint") -> None:
    """Load weights into `model`, naming any architecture, latent size or likelihood mismatch."""
    if differences := config_differences(checkpoint["config"], model.plain_config()):
        raise CheckpointError(
            f"{path}: checkpoint does not match the model (checkpoint vs model: {'; '.join(differences)})"
        )
    model.load_state_dict(checkpoint["model_state"])


def restore(
    checkpoint: dict[str, Any], model: BetaVAE, optimizer: torch.optim.Optimizer, generator: torch.Generator
) -> list[dict]:
    """Put a loaded checkpoint's weights, optimizer and RNG states back; its history (to continue training)."""
    if checkpoint["optimizer_state"] is None or set(checkpoint["rng"]) != {"train", "torch"}:
        raise CheckpointError("the checkpoint holds a model only (no optimizer or RNG state): it cannot be resumed")
    load_model_state(model, checkpoint)
    optimizer.load_state_dict(checkpoint["optimizer_state"])
    generator.set_state(checkpoint["rng"]["train"].cpu())
    torch.set_rng_state(checkpoint["rng"]["torch"].cpu())
    return list(checkpoint["history"])


def load_model(path: str | Path, checkpoint: dict[str, Any] | None = None) -> BetaVAE:
    """Rebuild a trained model from a checkpoint file or run folder (or its loaded `checkpoint`), in eval mode."""
    checkpoint = load_checkpoint(path) if checkpoint is None else checkpoint
    model = build_model(checkpoint["config"])
    load_model_state(model, checkpoint, path)
    return model.eval()


# ---------------------------------------------------------------------------------------------- run folders
def trained(folder: str | Path) -> bool:
    """Whether `folder` holds a checkpoint past epoch 0 (one at epoch 0 holds no training: a new run replaces it)."""
    return (Path(folder) / CHECKPOINT).exists() and load_checkpoint(folder)["epoch"] > 0


def lock(folder: Path, wait: bool = False, name: str = LOCK) -> int:
    """An exclusive OS lock on folder/NAME, a regular file opened without following links (released when the
    process ends); it records our pid and host. CheckpointError naming the holder when another process has it."""
    path = folder / name
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o666)
    except OSError as error:
        raise CheckpointError(
            f"{path}: cannot open the run's lock file ({error.strerror}); remove it if it is a link or a folder"
        ) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise CheckpointError(f"{path}: the run's lock is not a regular file; remove it")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise CheckpointError(
            f"{folder} is being written by {holder}; wait for it to end or choose another folder"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
    return fd


@contextmanager
def run_folder(
    folder: str | Path | None,
    checkpoint: dict[str, Any] | None = None,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
) -> Iterator[None]:
    """Hold `folder` for writing a run (nothing when None): created if missing, locked, our stale temporary files
    removed. A run already there (past epoch 0) is refused unless `checkpoint` continues it (at the same epoch) or
    `overwrite` moves it aside to FOLDER.old-TIMESTAMP. If nothing was saved, the folders made here go, if empty."""
    if folder is None:
        yield
        return
    folder = Path(folder)
    created = [p for p in [folder, *folder.parents] if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    fd = lock(folder)
    try:
        for stale in (p for name in (CHECKPOINT, METRICS) for p in folder.glob(f".{name}.*.tmp")):  # ours only
            stale.unlink(missing_ok=True)
        if (folder / CHECKPOINT).exists() and checkpoint is not None:
            saved = load_checkpoint(folder)["epoch"]
            if saved != checkpoint["epoch"]:
                raise CheckpointError(
                    f"{folder} holds epoch {saved}, the checkpoint given is at epoch "
                    f"{checkpoint['epoch']}: load it again"
                )
        elif (folder / CHECKPOINT).exists() and overwrite:
            stamp = f"{folder}.old-{time.strftime('%Y%m%d-%H%M%S')}"  # -2, -3, ... after a second one that second
            aside = next(a for i in range(1, 10**6) if not (a := Path(stamp + (f"-{i}" if i > 1 else ""))).exists())
            folder.rename(aside)  # our lock moves with it until the new folder is locked
            folder.mkdir()
            os.close(fd)
            fd = lock(folder)
            kept = sum(p.name.startswith(f"{folder.name}.old-") for p in folder.parent.iterdir())
            log(
                f"moved the previous run in {folder} aside to {aside} ({kept} .old-* cop{'y' if kept == 1 else 'ies'} "
                f"of it now: delete those you do not need)"
            )
        elif trained(folder):
            raise CheckpointError(
                f"{folder} already holds a run: pass checkpoint=load_checkpoint({str(folder)!r}) "
                f"to continue it, or overwrite=True to start over (the old run is moved aside)"
            )
        yield
    finally:
        if not (folder / CHECKPOINT).exists():
            (folder / LOCK).unlink(missing_ok=True)
            for path in created:  # innermost first; a folder someone else wrote into stays
                try:
                    path.rmdir()
                except OSError:
                    break
        os.close(fd)
