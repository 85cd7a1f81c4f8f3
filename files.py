"""Writing files safely: atomic writes and JSON. Imports nothing of the project."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

NAME_MAX = 255  # bytes of one file or folder name (Linux, macOS)


class WriteError(Exception):
    """A file could not be written (disk full, no permission, not a folder); the previous file is intact."""


def atomic_write(path: Path, write: Callable[[Any], None]) -> None:
    """Write through a temporary file in the same folder, then os.replace: the old file survives a crash.
    The file honours the umask. WriteError, naming the file, when the disk is full or the folder unwritable."""
    path, tmp = Path(path), None
    existed = path.exists()
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
            intact = f"; the previous {path.name} is intact" if existed else ""
            raise WriteError(f"no space left on device while writing {path}{intact}") from None
        if isinstance(error, OSError):
            raise WriteError(f"cannot write {path}: {error.strerror or error}") from None
        raise


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def write_json(path: Path, data: Any) -> None:
    """Atomically write `data` as indented JSON (no NaN or Infinity: they are not JSON)."""
    write_text(path, json.dumps(data, indent=1, allow_nan=False))


KINDS = {  # what may sit at a path besides a regular file, as stat names it
    stat.S_IFDIR: "folder",
    stat.S_IFLNK: "symbolic link",
    stat.S_IFCHR: "device",
    stat.S_IFBLK: "device",
    stat.S_IFIFO: "FIFO (named pipe)",
    stat.S_IFSOCK: "socket",
}


def kind_of(path: str | Path) -> str | None:
    """What is at `path`, a link not followed: None (nothing), "file" (a regular one) or one of KINDS' values."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    return "file" if stat.S_ISREG(mode) else KINDS.get(stat.S_IFMT(mode), "special file")


def first_bytes(path: str | Path, size: int = 1024) -> bytes:
    """The first `size` bytes of a regular file, opened without following a link or waiting on a FIFO (OSError)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        return os.read(fd, size)
    finally:
        os.close(fd)


def sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes: which checkpoint or classifier weights a result came from."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def unwritable(folder: str | Path) -> str | None:
    """Why files cannot be written in `folder` (which may not exist yet), or None; creates nothing."""
    if str(folder) == "":  # before Path(), which makes '' the current folder
        return "'' is not a folder name"
    folder = existing = Path(folder)
    if any(len(part.encode()) > NAME_MAX for part in folder.parts):
        return f"{str(folder)[:60]}...: a name in it is longer than {NAME_MAX} bytes"
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"{folder} is not writable ({existing} is a file)"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{folder} is not writable (no write permission on {existing})"
    return None
