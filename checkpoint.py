"""The checkpoint file format: save, load safely, verify. Run folders are in runs.py.

A checkpoint (checkpoint.pt) holds the model weights, optimizer and RNG states, the model and training settings as
plain data, the per-epoch history, and a sha256 digest of all of it. One without a digest (written before digests,
or resumed from such a one) still loads: it is unverified, and runs.RunFolder says so.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import pickle
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from config import TrainConfig
from files import atomic_write
from models import IMAGE_SHAPE, BetaVAE, build_model

CHECKPOINT = "checkpoint.pt"  # its name in a run folder
MAX_UNPACKED = 4 * 2**30  # bytes a file's zip entries may declare in all (and at most 2x the file + 1 MiB)
CONTENT = ("format", "config", "train_config", "epoch", "history", "model_state", "optimizer_state", "rng")
DIGEST = "digest"  # sha256 of every other field (content_digest); None: unverified
FORMAT = 3  # 3: one digest over the whole content
FORMATS = {3: DIGEST, 2: "tensor_sha256"}  # each format's digest field; 2's covers the tensors only: unverified
ADAM_STATE = ("step", "exp_avg", "exp_avg_sq")


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
    verified: bool = True,
) -> None:
    """Save model and training state; the settings travel as plain data (loadable with weights_only). Its digest is
    left out (None) when not `verified`: a run resumed from an unverified checkpoint stays unverified.
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
    state[DIGEST] = content_digest(state) if verified else None
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write(Path(path), lambda f: f.write(buffer.getbuffer()))


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
    """Load a checkpoint file (or a run folder's) safely, its tensors onto `map_location` (torch.load's), and verify
    it (its digest, when it has one); CheckpointError for unsafe, corrupt, altered, foreign or inconsistent files."""
    path = Path(path) / CHECKPOINT if Path(path).is_dir() else Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint there")
    checkpoint = load_tensors(path, map_location=map_location)
    check_checkpoint(checkpoint, path)
    checkpoint.pop("tensor_sha256", None)  # format 2's: not a digest of the whole
    checkpoint.setdefault(DIGEST, None)
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
        type(checkpoint["format"]) is int and checkpoint["format"] in FORMATS,  # type first: no tensor ==
        "format",
        f"version {checkpoint['format']!r} is not one this code reads ({', '.join(map(str, FORMATS))})",
    )
    fields = set(checkpoint) - {FORMATS[checkpoint["format"]]}  # the digest may be missing: unverified
    need(fields == set(CONTENT), ", ".join(sorted(fields ^ set(CONTENT))), "missing or unknown")
    need(
        checkpoint.get(DIGEST) is None or checkpoint[DIGEST] == judged(DIGEST, lambda: content_digest(checkpoint)),
        DIGEST,
        "the content does not match the digest saved with it (the file was changed or damaged)",
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
        all(torch.isfinite(v).all() for v in checkpoint["model_state"].values() if v.is_floating_point()),
        "model_state",
        "holds non-finite weights (NaN or infinite)",
    )
    need(
        isinstance(train_config, dict)
        and plain(train_config)
        and type(train_config.get("train_images", 1)) is int
        and train_config.get("train_images", 1) >= 1,
        "train_config",
        "not a dict of plain settings",
    )
    lr = judged("train_config", lambda: TrainConfig.from_dict(train_config)).lr
    epoch, history = checkpoint["epoch"], checkpoint["history"]
    need(type(epoch) is int and epoch >= 0, "epoch", f"{epoch!r} is not a non-negative integer")
    need(isinstance(history, list) and len(history) == epoch, "history", f"not a list of {epoch} epochs")

    def numbers(part: Any, keys: tuple[str, ...]) -> bool:
        return isinstance(part, dict) and all(type(part.get(k)) in (int, float) for k in keys)

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
    for key, value in checkpoint["rng"].items():  # any map_location: CPU states
        judged(f"rng.{key}", lambda value=value: torch.Generator().set_state(value.cpu()))


def content_digest(checkpoint: dict[str, Any]) -> str:
    """sha256 over every field but the digest, in the file's order: each tensor's name, dtype, shape and bytes,
    each other value's name and JSON."""
    digest = hashlib.sha256()

    def add(value: Any, name: str) -> None:
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().contiguous()
            digest.update(f"{name} {value.dtype} {tuple(value.shape)}\n".encode())
            digest.update(value.reshape(-1).view(torch.uint8).numpy())
        elif isinstance(value, (dict, list, tuple)):
            digest.update(f"{name} {type(value).__name__} {len(value)}\n".encode())
            for key, item in value.items() if isinstance(value, dict) else enumerate(value):
                add(item, f"{name}.{key}")
        else:
            digest.update(f"{name} {json.dumps(value)}\n".encode())

    for field in CONTENT:
        add(checkpoint.get(field), field)
    return digest.hexdigest()


def config_differences(saved: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """'key saved vs wanted' for every key of `wanted` whose value differs from the saved one."""

    def normal(value: Any) -> Any:
        return list(value) if isinstance(value, tuple) else value

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


def model_of(checkpoint: dict[str, Any], path: str | Path = "checkpoint") -> BetaVAE:
    """The trained model of a loaded checkpoint, in eval mode."""
    model = build_model(checkpoint["config"])
    load_model_state(model, checkpoint, path)
    return model.eval()
