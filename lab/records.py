"""Run records: the small, committed trace of a finished, evaluated run (its settings, its per-epoch losses and
its evaluation), one JSON file per run under results/runs/. The sweep writes one as each run is evaluated;
study.py reads them, so a fresh clone regenerates every table without the run folders (which hold the weights
and are not in git)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from files import write_json
from lab import record_schema
from lab.machine import machine
from lab.protocol import facts, smaller
from lab.search import run_name
from runs import EVAL_FILE, METRICS

RECORDS_DIR = Path("results/runs")
# assets/fmnist_classifier.pt, the only classifier weights ever committed (6c935a6): those that evaluated the records
# made before eval.json named its weights (091343c)
CLASSIFIER_SHA256 = "6be48de167f08ed58eef901ea5e617a0ec72a257e2b1453b2d9c5f80ba292de7"


class RecordError(Exception):
    """A run record or run folder is unreadable or inconsistent; the message names the file."""


class SmallerRun(RecordError):
    """A run with fewer epochs or a smaller evaluation than the record it would replace; the message names both."""


def check_record(record: Any, where: Path) -> dict[str, Any]:
    """`record` if it is a complete record (lab/record_schema.py, and the evaluation of its last epoch); else
    RecordError naming `where`."""
    why = record_schema.problem(record)
    if why is None and record["eval"]["epoch"] != len(record["epochs"]):
        why = "eval: not the evaluation of the last epoch"
    if why:
        raise RecordError(f"{where}: {why}")
    return record


def read_json(path: Path) -> Any:
    """The JSON in `path`; RecordError naming it when it cannot be read (a number beyond Python's 4300 digits, or
    nesting too deep for the parser, included)."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise RecordError(f"{path}: unreadable ({str(error).split(': value has')[0]})") from None
    except RecursionError:
        raise RecordError(f"{path}: unreadable (nested too deeply)") from None


def record_of(run_dir: Path) -> dict[str, Any]:
    """The record of a finished, evaluated run folder; RecordError if it has none (yet)."""
    metrics, evaluation = read_json(run_dir / METRICS), read_json(run_dir / EVAL_FILE)
    if not isinstance(metrics, dict) or not isinstance(evaluation, dict):
        raise RecordError(f"{run_dir}: metrics.json or eval.json is not a JSON object")
    epochs = [e for e in metrics.get("epochs") or [] if isinstance(e, dict)]
    record = {
        "name": run_dir.name,
        "config": metrics.get("config"),
        "parameters": metrics.get("parameters"),
        "epochs": [{k: v for k, v in e.items() if k != "seconds"} for e in epochs],
        "seconds": sum(e["seconds"] for e in epochs if type(e.get("seconds")) in (int, float)),
        "eval": {k: v for k, v in evaluation.items() if k not in ("run", "seconds")},
    }
    return check_record(record, run_dir)


def write_record(run_dir: Path, records_dir: Path = RECORDS_DIR, replace: bool = False) -> str:
    """Write the record of `run_dir` as records_dir/NAME.json (indented JSON: diffs stay small), with the machine
    that writes it (CPU model, oneDNN ISA limit). SmallerRun, and nothing written, where that would replace a record
    with more epochs or a fuller evaluation, unless `replace`. Returns a note when it replaces a record with other
    numbers (git diff shows them), else ''."""
    path = Path(records_dir) / f"{run_dir.name}.json"
    record = {**record_of(run_dir), "machine": machine()}
    try:
        before = check_record(read_json(path), path) if path.exists() else None
    except RecordError:
        before = {}
    less = smaller(facts(record), facts(before)) if before else []
    if less and not replace:
        raise SmallerRun(f"{path}: not replaced by a smaller run ({', '.join(less)}); --replace-records replaces it")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, record)
    if less:
        return f"{path}: replaced a record made with more ({', '.join(less)}), as --replace-records asked"
    if before is None or {**before, "seconds": 0, "machine": 0} == {**record, "seconds": 0, "machine": 0}:
        return ""
    if not before:
        return f"{path}: replaced a damaged record (git diff {path} shows it)"
    common = min(len(before["epochs"]), len(record["epochs"]))
    if common and before["epochs"][:common] == record["epochs"][:common] and common < len(record["epochs"]):
        return f"{path}: extended its record from {common} to {len(record['epochs'])} epochs"
    return f"{path}: replaced a record with other numbers (git diff {path} shows them)"


def disagreements(record: dict[str, Any], name: str) -> list[str]:
    """Where a record's name (file or folder), its settings and its evaluation's settings disagree."""
    config, evaluation = record["config"], record["eval"]
    try:
        named = run_name({k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})
    except (ValueError, TypeError) as error:
        named = f"no run ({error})"
    inside = "" if record["name"] == name else f" ({record['name']} inside)"
    why = [] if name == record["name"] == named else [f"named {name}{inside}, but its settings are those of {named}"]
    claims = {**evaluation.get("config", {}), **{k: evaluation[k] for k in ("beta", "train_images") if k in evaluation}}
    differ = [k for k, v in claims.items() if config.get(k) != v]
    differ += ["parameters"] * (evaluation.get("parameters", record["parameters"]) != record["parameters"])
    return why + [f"its evaluation's settings differ: {', '.join(differ)}"] * bool(differ)


def evidence(sources: list[tuple[Path, Callable[[], dict[str, Any]]]]) -> tuple[list[dict[str, Any]], list[str]]:
    """The records of (where, load) pairs, and one line per source that is not evidence: unreadable, incomplete,
    not finite, named otherwise than its settings, or the same run (settings and seed) as another."""
    records, problems, seen = [], [], {}
    for where, load in sources:
        try:
            record = load()
        except RecordError as error:
            problems.append(str(error))
            continue
        why = disagreements(record, where.name.removesuffix(".json"))
        identity = json.dumps({k: v for k, v in record["config"].items() if k != "epochs"}, sort_keys=True)
        why += [f"the same run (settings and seed) as {seen[identity]}"] if identity in seen else []
        seen.setdefault(identity, where)
        if why:
            problems.append(f"{where}: {'; '.join(why)}")
        else:
            records.append(record)
    return records, problems


def load_records(records_dir: Path = RECORDS_DIR) -> tuple[list[dict[str, Any]], list[str]]:
    """Every record in `records_dir`, and one line per file that is not evidence (and why)."""
    return evidence(
        [
            (path, lambda path=path: check_record(read_json(path), path))
            for path in sorted(Path(records_dir).glob("*.json"))
        ]
    )


def load_run_folders(runs_dir: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The records of the evaluated run folders in `runs_dir`, and one line per folder that is not evidence."""
    return evidence(
        [
            (folder, lambda folder=folder: record_of(folder))
            for folder in sorted(Path(runs_dir).glob("*/"))
            if (folder / METRICS).exists() and (folder / EVAL_FILE).exists()
        ]
    )
