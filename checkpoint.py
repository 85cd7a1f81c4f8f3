"""Run folders on disk: checkpoints (saved, loaded safely and validated), metrics.json, the writer's lock.

A run folder holds checkpoint.pt (model weights, optimizer and RNG states, the model and training settings
as plain data) and metrics.json (the settings and the per-epoch history), both rewritten after every epoch.
One process at a time writes a run folder: it holds an OS lock on RUN/.lock (see run_folder).
"""
from __future__ import annotations

import fcntl
import io
import math
import os
import pickle
import socket
import stat
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from config import IMAGE_SHAPE, TrainConfig
from files import atomic_write, write_json
from models import BetaVAE, build_model, count_parameters

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
LOCK = ".lock"
FORMAT = 2  # 2: train_config is the TrainConfig as a dict (no kl_weight)
MAX_UNPACKED = 4 * 2 ** 30  # bytes a file's zip entries may declare in all (and at most 2x the file + 1 MiB)
FIELDS = ("format", "config", "train_config", "epoch", "history", "model_state", "optimizer_state", "rng")
ADAM_STATE = ("step", "exp_avg", "exp_avg_sq")


class CheckpointError(Exception):
    """A checkpoint or run folder is missing, unsafe, corrupt, busy or does not match the model; the message
    names the file."""


def save_checkpoint(path: str | Path, model: BetaVAE, optimizer: torch.optim.Optimizer | None = None,
                    train_config: dict[str, Any] | None = None, epoch: int = 0,
                    history: list[dict] | None = None, rng: dict[str, torch.Tensor] | None = None) -> None:
    """Save model and training state; the settings travel as plain data (loadable with weights_only).
    Serialised in memory first, so that a failing write is a files.WriteError, not a zip writer's error."""
    state = {"format": FORMAT, "config": model.plain_config(), "train_config": dict(train_config or {}),
             "epoch": epoch, "history": list(history or []),
             "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
             "optimizer_state": optimizer.state_dict() if optimizer is not None else None,
             "rng": dict(rng or {})}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write(Path(path), lambda f: f.write(buffer.getbuffer()))


def write_metrics(out_dir: Path, model: BetaVAE, train_config: dict[str, Any], history: list[dict]) -> None:
    """metrics.json: the model and training settings, the parameter count and the per-epoch history."""
    write_json(out_dir / METRICS, {"config": {**model.plain_config(), **train_config},
                                   "parameters": count_parameters(model), "epochs": history})


# ---------------------------------------------------------------------------------------------- loading
def load_tensors(path: Path, error: type[Exception] = CheckpointError) -> Any:
    """torch.load of tensors and plain data only (weights_only), after refusing zip bombs; `error` names the file.
    Every torch.load of the project goes through here."""
    not_ours = f"{path}: not a checkpoint (corrupt, truncated or another format)"
    try:
        size = path.stat().st_size
        with zipfile.ZipFile(path) as archive:
            declared = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise error(not_ours) from None
    if declared > min(MAX_UNPACKED, 2 * size + 2 ** 20):
        raise error(f"{path}: refused: its entries claim {declared:,} bytes in a file of {size:,} bytes")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as failure:
        if "Unsupported global" in str(failure) or "GLOBAL" in str(failure):
            raise error(f"{path}: refused: it holds pickled Python objects that could run code (only tensors "
                        f"and plain data are loaded)") from None
        raise error(not_ours) from None
    except Exception:
        raise error(not_ours) from None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint (a file, or a run folder's) safely and validate every field; CheckpointError for
    unsafe, corrupt, foreign or inconsistent files."""
    path = Path(path)
    path = path / CHECKPOINT if path.is_dir() else path
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint there")
    checkpoint = load_tensors(path)
    check_checkpoint(checkpoint, path)
    return checkpoint


def plain(value: Any) -> bool:
    """Whether `value` is JSON data: str keys, lists, str, bool, None, ints and finite floats."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(plain(v) for v in value)
    return value is None or isinstance(value, (str, bool, int)) or (isinstance(value, float) and math.isfinite(value))


def number(value: Any, low: float = -math.inf) -> bool:
    """A finite int or float (not a bool), at least `low`."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= low


def tensor_like(value: Any, shape: tuple | torch.Size) -> bool:
    return isinstance(value, torch.Tensor) and value.shape == shape and value.dtype == torch.float32 and \
        bool(torch.isfinite(value).all())


def check_checkpoint(checkpoint: Any, path: Path) -> None:
    """CheckpointError naming the first field of `checkpoint` that is missing, unknown or not as saved."""
    def need(ok: bool, field: str, why: str) -> None:
        if not ok:
            raise CheckpointError(f"{path}: field {field}: {why}")

    need(isinstance(checkpoint, dict) and "format" in checkpoint and "model_state" in checkpoint, "format",
         "missing: not a checkpoint of this project")
    need(type(checkpoint["format"]) is int and checkpoint["format"] == FORMAT, "format",  # type first: no tensor ==
         f"version {checkpoint['format']!r} is not {FORMAT}, the one this code reads")
    need(set(checkpoint) == set(FIELDS), ", ".join(sorted(set(checkpoint) ^ set(FIELDS))), "missing or unknown")
    config = checkpoint["config"]
    need(isinstance(config, dict) and plain(config) and config.get("image_shape", list(IMAGE_SHAPE))
         == list(IMAGE_SHAPE), "config", f"not a dict of plain settings for {list(IMAGE_SHAPE)} images")
    try:
        with torch.device("meta"):  # the shapes of the model it describes, allocating nothing
            model = build_model(config)
    except (ValueError, TypeError, KeyError) as error:
        raise CheckpointError(f"{path}: field config: not a valid model config ({error})") from None
    need(config == model.plain_config(), "config", f"not the full settings of a model ({model.plain_config()})")
    expected, state = model.state_dict(), checkpoint["model_state"]
    need(isinstance(state, dict) and set(state) == set(expected), "model_state",
         f"its tensors are not those of the {config['model']} model the config describes")
    for key, tensor in state.items():
        need(isinstance(tensor, torch.Tensor) and tensor.shape == expected[key].shape
             and tensor.dtype == expected[key].dtype, f"model_state.{key}",
             f"expected a {expected[key].dtype} tensor of shape {tuple(expected[key].shape)}")
    train_config = checkpoint["train_config"]
    need(isinstance(train_config, dict) and plain(train_config) and type(train_config.get("train_images", 1)) is int
         and train_config.get("train_images", 1) >= 1, "train_config", "not a dict of plain settings")
    try:
        TrainConfig(**{k: v for k, v in train_config.items() if k != "train_images"})
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: field train_config: not valid ({error})") from None
    epoch, history = checkpoint["epoch"], checkpoint["history"]
    need(type(epoch) is int and epoch >= 0, "epoch", f"{epoch!r} is not a non-negative integer")
    need(isinstance(history, list) and len(history) == epoch, "history", f"not a list of {epoch} epochs")
    terms = lambda part: isinstance(part, dict) and all(number(part.get(t)) for t in ("recon", "kl", "total"))  # noqa
    for i, entry in enumerate(history):
        need(isinstance(entry, dict) and plain(entry) and entry.get("epoch") == i + 1 and number(entry.get("seconds"))
             and terms(entry.get("train")) and terms(entry.get("test")), f"history[{i}]",
             "not an entry {epoch, train, test, seconds} of finite numbers")
    if checkpoint["optimizer_state"] is not None:
        check_optimizer_state(checkpoint["optimizer_state"], list(model.parameters()), need)
    rng, size = checkpoint["rng"], torch.get_rng_state().shape
    need(isinstance(rng, dict) and set(rng) <= {"train", "torch"}, "rng", "not a dict of train and torch states")
    for key, value in rng.items():
        need(isinstance(value, torch.Tensor) and value.dtype == torch.uint8 and value.shape == size, f"rng.{key}",
             f"not a CPU generator state (uint8 tensor of shape {tuple(size)})")


def check_optimizer_state(state: Any, parameters: list[torch.nn.Parameter],
                          need: Callable[[bool, str, str], None]) -> None:
    """`state` is what Adam's state_dict gives for these parameters: the same group keys as a fresh Adam's,
    hyper-parameters in range, and per parameter a step count and two float32 tensors of its shape."""
    fresh = torch.optim.Adam(parameters).state_dict()["param_groups"][0]
    need(isinstance(state, dict) and set(state) == {"state", "param_groups"} and isinstance(state["state"], dict)
         and isinstance(state["param_groups"], list) and len(state["param_groups"]) == 1, "optimizer_state",
         "not the state_dict of an Adam optimizer with one parameter group")
    group = state["param_groups"][0]
    need(isinstance(group, dict) and set(group) == set(fresh), "optimizer_state.param_groups",
         f"its keys are not Adam's ({', '.join(sorted(fresh))})")
    betas = group["betas"]
    need(number(group["lr"], 0) and group["lr"] > 0 and number(group["eps"], 0) and group["eps"] > 0
         and number(group["weight_decay"], 0) and isinstance(betas, (tuple, list)) and len(betas) == 2
         and all(number(b, 0) and b < 1 for b in betas) and group["amsgrad"] is False and group["maximize"] is False,
         "optimizer_state.param_groups", "hyper-parameters out of range (lr, eps > 0; 0 <= betas < 1; "
                                         "weight_decay >= 0; amsgrad and maximize off)")
    need(group["params"] == list(range(len(parameters))), "optimizer_state.param_groups",
         f"its parameters are not the model's {len(parameters)}")
    for i, values in state["state"].items():
        need(type(i) is int and i in group["params"] and isinstance(values, dict) and set(values) == set(ADAM_STATE),
             f"optimizer_state.state[{i!r}]", f"not a parameter's Adam state ({', '.join(ADAM_STATE)})")
        shape = parameters[i].shape
        need(tensor_like(values["step"], ()) and values["step"] >= 0, f"optimizer_state.state[{i}].step",
             "not a non-negative float32 scalar tensor")
        for key in ADAM_STATE[1:]:
            need(tensor_like(values[key], shape), f"optimizer_state.state[{i}].{key}",
                 f"not a finite float32 tensor of shape {tuple(shape)}")


def config_differences(saved: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """'key saved vs wanted' for every key of `wanted` whose value differs from the saved one."""
    normal = lambda value: list(value) if isinstance(value, tuple) else value  # noqa: E731
    return [f"{k} {saved.get(k)!r} vs {normal(v)!r}" for k, v in wanted.items() if normal(saved.get(k)) != normal(v)]


def load_model_state(model: BetaVAE, checkpoint: dict[str, Any], path: str | Path = "checkpoint") -> None:
    """Load weights into `model`, naming any architecture, latent size or likelihood mismatch."""
    differences = config_differences(checkpoint["config"], model.plain_config())
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


def load_model(path: str | Path, checkpoint: dict[str, Any] | None = None) -> BetaVAE:
    """Rebuild a trained model from a checkpoint file or run folder (or its loaded `checkpoint`), in eval mode."""
    checkpoint = load_checkpoint(path) if checkpoint is None else checkpoint
    model = build_model(checkpoint["config"])
    load_model_state(model, checkpoint, path)
    return model.eval()


# ---------------------------------------------------------------------------------------------- run folders
def lock(folder: Path, wait: bool = False) -> int:
    """An exclusive OS lock on folder/.lock, a regular file opened without following links (released when the
    process ends); it records our pid and host. CheckpointError naming the holder when another process has it."""
    path = folder / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o666)
    except OSError as error:
        raise CheckpointError(f"{path}: cannot open the run's lock file ({error.strerror}); remove it if it is "
                              f"a link or a folder") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise CheckpointError(f"{path}: the run's lock is not a regular file; remove it")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
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
    """Hold `folder` for writing a run (nothing when None): created if missing, locked, stale temporary files
    removed. A run already there is refused unless `checkpoint` continues it (at the same epoch) or `overwrite`
    moves it aside to FOLDER.old-TIMESTAMP. If nothing was saved, the folders this call made go, if empty."""
    if folder is None:
        yield
        return
    folder = Path(folder)
    created = [p for p in [folder, *folder.parents] if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    fd = lock(folder)
    try:
        for stale in folder.glob(".*.tmp"):
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
            (folder / LOCK).unlink(missing_ok=True)
            for path in created:  # innermost first; a folder someone else wrote into stays
                try:
                    path.rmdir()
                except OSError:
                    break
        os.close(fd)

