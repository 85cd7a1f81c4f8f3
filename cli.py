"""Settings and the command line: a dataclass field with its doc (`setting`), range checks, options generated from
a settings dataclass, one-line errors."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
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


def setting(default: Any, doc: str, **argparse_options: Any) -> Any:
    """A dataclass field with its one-line doc (the --help text) and extra argparse options (e.g. choices)."""
    return dataclasses.field(default=default, metadata={"doc": doc, **argparse_options})


def check_range(
    name: str, value: Any, low: float, high: float = float("inf"), strict: bool = False, integer: bool = False
) -> None:
    """ValueError unless low <= value < high (low < value with strict), finite, and an int if `integer`."""
    kind_ok = (
        isinstance(value, int) and not isinstance(value, bool)
        if integer
        else isinstance(value, (int, float)) and not isinstance(value, bool)
    )
    if not kind_ok or not ((low < value) if strict else (low <= value)) or not value < high:
        what = f"an integer below {high:.0f}" if integer else "finite"
        raise ValueError(f"{name} must be {'>' if strict else '>='} {low:g} ({what}), got {value!r}")


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


ISA_VARIABLE = "ONEDNN_MAX_CPU_ISA"  # caps the CPU kernels oneDNN (PyTorch's convolutions) may use
ISAS = (
    "ALL",
    "DEFAULT",
    "SSE41",
    "AVX",
    "AVX2",
    "AVX2_VNNI",
    "AVX2_VNNI_2",
    "AVX512_CORE",
    "AVX512_CORE_VNNI",
    "AVX512_CORE_BF16",
    "AVX10_1_512",
    "AVX512_CORE_FP16",
    "AVX10_1_512_AMX",
    "AVX512_CORE_AMX",
    "AVX10_1_512_AMX_FP16",
    "AVX512_CORE_AMX_FP16",
    "AVX10_2_512",
    "AVX10_2_512_AMX_2",
)  # oneDNN's names


def onednn_problem() -> str | None:
    """Why ONEDNN_MAX_CPU_ISA is set to a value oneDNN does not know (it would ignore it silently), or None."""
    isa = os.environ.get(ISA_VARIABLE, "ALL")
    return None if isa in ISAS else f"{ISA_VARIABLE}={isa[:40]!r} is not one of oneDNN's: {', '.join(ISAS)}"


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
