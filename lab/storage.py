"""A sweep's storage: a journal file (a last line cut short by a crash is repaired) or a database (RDBStorage with
Optuna's heartbeat), one-line errors for a storage that cannot be used or a database that went away mid-sweep."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import threading
from datetime import datetime
from pathlib import Path

import optuna
import sqlalchemy.exc
from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

STALE_BEATS, MAX_RETRY = 3, 3  # database: a trial silent for 3 heartbeats is failed and retried, 3 times at most
LOST = "the database went away{}: finished epochs and evaluations are saved; run the same command again to continue"


class StorageError(Exception):
    """The study's storage cannot be used; the message says why in one line."""


def check_journal(path: Path) -> str | None:
    """Drop a last line a crash cut short or garbled (after a backup copy; under the journal's lock): what was done.
    StorageError when an earlier line is damaged."""
    if not path.is_file() or path.stat().st_size == 0:
        return None
    journal_lock = JournalFileSymlinkLock(str(path))
    journal_lock.acquire()
    try:
        data = path.read_bytes()
        *lines, tail = data.split(b"\n")  # tail: after the last newline, b"" unless cut short
        bad = [i for i, line in enumerate(lines) if not is_record(line)]
        if bad and bad != [len(lines) - 1]:
            raise StorageError(
                f"{path}: line {bad[0] + 1} is not an Optuna journal record (a damaged file); "
                f"restore a backup, or start a new study with another --storage file"
            )
        keep = len(data) - len(tail) - (len(lines[-1]) + 1 if bad else 0)
        if keep == len(data):
            return None
        shutil.copy2(path, backup := path.with_name(f"{path.name}.bak-{datetime.now():%Y%m%d-%H%M%S}"))
        os.truncate(path, keep)
        return f"{path}: dropped its last line, cut short or garbled by a crash (the file as it was: {backup})"
    finally:
        journal_lock.release()


def is_record(line: bytes) -> bool:
    try:
        return isinstance(entry := json.loads(line), dict) and "op_code" in entry
    except ValueError:
        return False


def open_storage(storage: str, heartbeat: int) -> optuna.storages.BaseStorage:
    """A database URL (RDBStorage with Optuna's heartbeat and retry callback) or a journal file."""
    if "://" not in storage:
        if not Path(storage).parent.is_dir():
            raise StorageError(f"folder {Path(storage).parent} does not exist")
        try:
            return JournalStorage(JournalFileBackend(storage))
        except OSError as error:
            raise StorageError(f"cannot write {storage} ({error.strerror})") from None
    try:
        url = sqlalchemy.engine.make_url(storage)
    except (sqlalchemy.exc.ArgumentError, ValueError) as error:
        port = re.search(r"invalid literal for int\(\) with base 10: (.*)", str(error))
        raise StorageError(
            f"not a database URL ({f'its port {port[1]} is not a number' if port else 'SQLAlchemy cannot read it'}): "
            "KIND[+DRIVER]://USER:PASSWORD@HOST:PORT/DATABASE, or a journal file's path"
        ) from None
    if url.get_backend_name() == "sqlite" and not Path(url.database or ":memory:").parent.is_dir():
        raise StorageError(f"folder {Path(url.database).parent} does not exist")
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        raise StorageError("an in-memory database is not shared between workers: give a file, sqlite:///PATH")
    try:
        return RDBStorage(
            storage,
            heartbeat_interval=heartbeat,
            grace_period=STALE_BEATS * heartbeat,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY),
        )
    except ImportError as error:
        raise StorageError(f"its database driver is not installed ({error.__cause__ or error}){other(url)}") from None
    except sqlalchemy.exc.NoSuchModuleError:
        raise StorageError(f"unknown database kind {url.drivername!r} (postgresql, mysql, sqlite, ...)") from None
    except (sqlalchemy.exc.SQLAlchemyError, OSError, ValueError) as error:
        raise StorageError(one_line(error)) from None


def other(url: sqlalchemy.engine.URL) -> str:
    """A database URL with a driver that is installed, when SQLAlchemy's default for the kind is not: '; ...'."""
    if url.get_backend_name() == "postgresql" and url.drivername != "postgresql+psycopg2":
        if importlib.util.find_spec("psycopg2"):
            return "; psycopg2 is (lab/requirements.txt): write postgresql+psycopg2://..."
    return ""


def one_line(error: BaseException) -> str:
    """The first line of an error (a database error's own message, without SQLAlchemy's additions)."""
    text = str(getattr(error, "orig", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def shown(storage: str) -> str:
    """A --storage value for messages, a database password hidden."""
    return re.sub(r"(://[^/:@]*:)[^/@]*@", r"\1***@", storage)


def lost_database(error: BaseException | None) -> BaseException | None:
    """The lost database connection behind `error` (Optuna may raise another while handling it), or None."""
    while error is not None and not isinstance(error, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)):
        error = error.__context__
    return error


def quiet_heartbeat(hook: threading.ExceptHookArgs) -> None:
    """threading.excepthook: Optuna's heartbeat thread dies quietly on a database error (the main thread says it)."""
    if lost_database(hook.exc_value) is None:
        threading.__excepthook__(hook)
