"""A run folder as one object: its files, its writer's lock, and its checkpoint, loaded and verified once.

    RUN/checkpoint.pt   weights, optimizer and RNG states, settings, history, digest (checkpoint.py)
    RUN/metrics.json    the settings, the parameter count and the per-epoch history
    RUN/eval.json       evaluate.py's numbers for the checkpoint's epoch
    RUN/.lock           held by the one process that writes the run (train.py, a notebook, a sweep worker)

Both checkpoint.pt and metrics.json are rewritten after every epoch. A run already in a folder is never replaced
silently: it is continued from its checkpoint, or moved aside to RUN.old-TIMESTAMP when asked to start over.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import stat
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from checkpoint import CHECKPOINT, DIGEST, CheckpointError, load_checkpoint, model_of, save_checkpoint
from config import TrainConfig
from files import sha256, write_json
from models import BetaVAE, count_parameters

METRICS, EVAL_FILE, LOCK = "metrics.json", "eval.json", ".lock"


def note(line: str) -> None:
    """A line for the person at the terminal, beside a command's output."""
    print(line, file=sys.stderr, flush=True)


def open_lock(path: Path, create: bool) -> int | None:
    """A lock file opened without following links; None when it does not exist and `create` is off."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | (os.O_CREAT if create else 0), 0o666)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise CheckpointError(
            f"{path}: cannot open the run's lock file ({error.strerror}); remove it if it is a link or a folder"
        ) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise CheckpointError(f"{path}: the run's lock is not a regular file; remove it")
    return fd


def lock(folder: Path, wait: bool = False, name: str = LOCK) -> int:
    """An exclusive OS lock on folder/NAME (released when the process ends), recording our pid and host; its file
    descriptor. CheckpointError naming the holder when another process has it."""
    fd = open_lock(folder / name, create=True)
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


class RunFolder:
    """The run in `path` (which may not exist yet). `checkpoint` is loaded and verified on first use and remembered;
    an unverified one (no digest) is said once through `log`."""

    def __init__(self, path: str | Path, log: Callable[[str], None] = note) -> None:
        path = Path(path)
        self.path = path.parent if path.name == CHECKPOINT and path.is_file() else path  # its checkpoint names it
        self.log = log
        self._checkpoint: dict[str, Any] | None = None
        self._loaded: tuple[int, int, int] | None = None  # the file's inode, size and mtime when it was loaded

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    @property
    def checkpoint_file(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def metrics_file(self) -> Path:
        return self.path / METRICS

    @property
    def eval_file(self) -> Path:
        return self.path / EVAL_FILE

    def exists(self) -> bool:
        """Whether the folder holds a checkpoint."""
        return self.checkpoint_file.exists()

    @property
    def checkpoint(self) -> dict[str, Any]:
        """The checkpoint, loaded safely and verified once (CheckpointError when missing, unsafe or altered)."""
        if self._checkpoint is None:
            self._loaded = self.file_state()
            self._checkpoint = load_checkpoint(self.checkpoint_file)
            if not self.verified and not self._warned:
                self._warned = True
                self.log(
                    f"{self.checkpoint_file}: unverified: it carries no digest (written before digests, or resumed "
                    f"from such a one), so a change to its content cannot be detected"
                )
        return self._checkpoint

    _warned = False  # the unverified line is said once

    def file_state(self) -> tuple[int, int, int] | None:
        """The checkpoint file's inode, size and modification time (None when missing): it changed if they did."""
        try:
            info = self.checkpoint_file.stat()
        except OSError:
            return None
        return info.st_ino, info.st_size, info.st_mtime_ns

    @property
    def epoch(self) -> int:
        return self.checkpoint["epoch"]

    @property
    def verified(self) -> bool:
        return self.checkpoint.get(DIGEST) is not None

    @property
    def train_config(self) -> TrainConfig:
        return TrainConfig.from_dict(self.checkpoint["train_config"])

    def trained(self) -> bool:
        """Whether the folder holds a checkpoint past epoch 0 (one at epoch 0 holds no training: a new run replaces
        it)."""
        return self.exists() and self.epoch > 0

    def model(self) -> BetaVAE:
        """The trained model, in eval mode."""
        return model_of(self.checkpoint, self.checkpoint_file)

    def sha256(self) -> str:
        """The checkpoint file's sha256: which file a result came from."""
        return sha256(self.checkpoint_file)

    def writer(self) -> str | None:
        """Who writes the run now ("pid N on HOST"), or None when no process holds its lock."""
        fd = open_lock(self.path / LOCK, create=False)
        if fd is None:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return None
        except BlockingIOError:
            return os.read(fd, 200).decode(errors="replace").strip() or "another process"
        finally:
            os.close(fd)

    @contextmanager
    def hold(self, continuing: dict[str, Any] | None = None, overwrite: bool = False) -> Iterator[RunFolder]:
        """Hold the folder for writing a run: created if missing, locked, our stale temporary files removed. A run
        already there (past epoch 0) is refused unless the checkpoint `continuing` continues it (at the same epoch)
        or `overwrite` moves it aside to RUN.old-TIMESTAMP. If nothing was saved, the folders made here go."""
        created = [p for p in [self.path, *self.path.parents] if not p.exists()]
        self.path.mkdir(parents=True, exist_ok=True)
        fd = lock(self.path)
        if self._loaded != self.file_state():
            self._checkpoint = None  # written since it was loaded: what is there now, under the lock
        try:
            for stale in (p for name in (CHECKPOINT, METRICS) for p in self.path.glob(f".{name}.*.tmp")):
                stale.unlink(missing_ok=True)  # ours only
            if self.exists() and continuing is not None:
                if self.epoch != continuing["epoch"]:
                    raise CheckpointError(
                        f"{self.path} holds epoch {self.epoch}, the checkpoint given is at epoch "
                        f"{continuing['epoch']}: load it again"
                    )
            elif self.exists() and overwrite:
                os.close(fd)
                fd = self.move_aside()
            elif self.trained():
                raise CheckpointError(
                    f"{self.path} already holds a run: pass checkpoint=RunFolder({str(self.path)!r}).checkpoint to "
                    f"continue it, or overwrite=True to start over (the old run is moved aside)"
                )
            yield self
        finally:
            if not self.exists():
                (self.path / LOCK).unlink(missing_ok=True)
                for path in created:  # innermost first; a folder someone else wrote into stays
                    try:
                        path.rmdir()
                    except OSError:
                        break
            os.close(fd)

    def move_aside(self) -> int:
        """Rename the run to RUN.old-TIMESTAMP (-2, -3, ... within one second), make the folder again and lock it."""
        stamp = f"{self.path}.old-{time.strftime('%Y%m%d-%H%M%S')}"
        aside = next(a for i in range(1, 10**6) if not (a := Path(stamp + (f"-{i}" if i > 1 else ""))).exists())
        self.path.rename(aside)
        self.path.mkdir()
        fd = lock(self.path)
        kept = sum(p.name.startswith(f"{self.path.name}.old-") for p in self.path.parent.iterdir())
        self.log(
            f"moved the previous run in {self.path} aside to {aside} ({kept} .old-* cop{'y' if kept == 1 else 'ies'} "
            f"of it now: delete those you do not need)"
        )
        return fd

    def save(
        self,
        model: BetaVAE,
        optimizer: torch.optim.Optimizer,
        train_record: dict[str, Any],
        history: list[dict],
        rng: dict[str, torch.Tensor],
        verified: bool = True,
    ) -> None:
        """checkpoint.pt and metrics.json at the history's last epoch (hold the folder first)."""
        save_checkpoint(
            self.checkpoint_file, model, optimizer, train_record, len(history), history, rng, verified=verified
        )
        metrics = {"config": {**model.plain_config(), **train_record}, "parameters": count_parameters(model)}
        write_json(self.metrics_file, {**metrics, "epochs": history})
        self._checkpoint = self._loaded = None

    def write_eval(self, result: dict[str, Any]) -> None:
        write_json(self.eval_file, result)

    def read_eval(self) -> dict[str, Any] | None:
        """eval.json, or None when missing or unreadable."""
        try:
            result = json.loads(self.eval_file.read_text())
        except (OSError, ValueError):
            return None
        return result if isinstance(result, dict) else None
