"""Command-line plumbing shared by the scripts: one-line errors, and options generated from a settings dataclass
(config.py)."""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from typing import Any


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports bad input in one line (and exit status 2), without the usage block."""

    def error(self, message: str) -> typing.NoReturn:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def add_options(parser: argparse.ArgumentParser, settings_class: type, skip: tuple[str, ...] = ()) -> None:
    """One --option per field of `settings_class`; an option not given is absent from the namespace."""
    hints = typing.get_type_hints(settings_class)
    for field in dataclasses.fields(settings_class):
        if field.name in skip:
            continue
        kind, nargs = hints[field.name], None
        if typing.get_origin(kind) is tuple:
            kind, nargs = typing.get_args(kind)[0], "+"
        elif typing.get_origin(kind) in (typing.Union, types.UnionType):
            kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
        options = {key: value for key, value in field.metadata.items() if key != "doc"}
        doc = field.metadata.get("doc", "")
        default = " ".join(map(str, field.default)) if isinstance(field.default, tuple) else field.default
        if "default" not in doc and default not in (None, ""):  # a doc that names its default says it once
            doc += f" (default {default})"
        parser.add_argument(
            f"--{field.name.replace('_', '-')}",
            type=finite(kind),
            nargs=nargs,
            default=argparse.SUPPRESS,
            help=doc,
            **options,
        )


def finite(kind: type) -> Any:
    """argparse type for `kind`; floats must be finite (inf and nan would end up as invalid JSON)."""
    if kind is not float:
        return kind

    def parse(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        return value

    parse.__name__ = "float"
    return parse


def option_error(error: Exception) -> str:
    """A settings error ('batch_size must be ...') worded for the command line ('--batch-size must be ...')."""
    name, _, rest = str(error).partition(" ")
    return f"--{name.replace('_', '-')} {rest}" if name.isidentifier() and name.islower() else str(error)


def unavailable(device: str) -> str | None:
    """Why torch cannot train on `device` here (cpu, cpu:0, cuda, cuda:1, mps), or None."""
    import torch

    try:
        kind = torch.device(device).type
    except RuntimeError:
        return f"{device!r} is not a device name (cpu, cuda, cuda:1, mps)"
    if (
        kind == "cpu"
        or (kind == "cuda" and torch.cuda.is_available())
        or (kind == "mps" and torch.backends.mps.is_available())
    ):
        return None
    return f"{device} is not available on this machine"


def given(namespace: argparse.Namespace, settings_class: type) -> dict[str, Any]:
    """The fields of `settings_class` that were given on the command line, tuples as tuples."""
    names = {field.name for field in dataclasses.fields(settings_class)}
    return {
        key: tuple(value) if isinstance(value, list) else value
        for key, value in vars(namespace).items()
        if key in names
    }
