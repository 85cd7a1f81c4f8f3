"""Time training against its floor and against its peer, with targets (docs/performance.md explains them).

    python -m lab.bench                      # every part, full settings -> results/bench.md and .json
    python -m lab.bench --quick              # smoke settings -> runs/bench/ (so is any partial run; --out DIR)
    python -m lab.bench --parts whole-run    # only some parts: epochs, whole-run, sweep

Every timing comes from fresh processes of real files, compared ones interleaved (A B A B), with the load of
other processes measured before and during each part: a timing target gets no outcome when the machine was busy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import torch

from cli import OneLineParser
from data import DataError
from files import write_json, write_text
from lab.bench_report import BATCH_SIZE, BUSY_CORES, PLANS, SWEEP, markdown, summarise, targets
from lab.bench_worker import LOOPS, TRAIN_IMAGES
from lab.conventional import EXAMPLES, last_epoch, torchvision_root

PARTS, MODEL_NAMES = ("epochs", "whole-run", "sweep"), ("fc", "cnn")
REPEATS, RUNS = 4, 3  # timed epochs per loop; whole runs (and sweep rounds) of each kind
QUICK = {"repeats": 1, "runs": 1, "steps": 40, "train_limit": 2000}
LOAD_SECONDS = 1.0  # the load is sampled this long before each part
ROOT = Path(__file__).resolve().parents[1]
RESULTS, SCRATCH = ROOT / "results", ROOT / "runs" / "bench"


# ---------------------------------------------------------------------------------------------- hygiene
def interleave(names: tuple[str, ...], rounds: int) -> list[tuple[int, str]]:
    """The order compared things run in: A B A B ..., as (round, name)."""
    return [(r, name) for r in range(rounds) for name in names]


def cpu_now() -> tuple[float, float, float]:
    """(clock, CPU seconds all processes have used, CPU seconds this process and its waited-for children used)."""
    times, ours = psutil.cpu_times(), psutil.Process().cpu_times()
    busy = sum(times) - times.idle - sum(getattr(times, name, 0.0) for name in ("iowait", "guest", "guest_nice"))
    return time.perf_counter(), busy, ours.user + ours.system + ours.children_user + ours.children_system


def other_cores(since: tuple[float, float, float]) -> float:
    """Cores that other processes (or the hypervisor: steal) kept busy on average since `since`."""
    now = cpu_now()
    return max(0.0, (now[1] - since[1]) - (now[2] - since[2])) / (now[0] - since[0])


def with_load(part: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run a part with the load of other processes measured for LOAD_SECONDS before it and throughout it."""
    since = cpu_now()
    time.sleep(LOAD_SECONDS)
    before = other_cores(since)
    since = cpu_now()
    result = part()
    during = other_cores(since)
    return {**result, "load": {"before": before, "during": during, "busy": max(before, during) > BUSY_CORES}}


# ---------------------------------------------------------------------------------------------- processes
def options(settings: dict[str, Any]) -> list[str]:
    return [f"--{key.replace('_', '-')}={value}" for key, value in settings.items() if value is not None]


def run(commands: list[list[str]], threads: int) -> tuple[float, list[str]]:
    """Start `commands` at once (repo root, `threads` torch threads each); the wall seconds until the last ends,
    and their stdouts. RuntimeError with the last line of stderr when one fails."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    started = time.perf_counter()
    processes = [
        subprocess.Popen(c, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for c in commands
    ]
    outputs = [process.communicate() for process in processes]
    seconds = time.perf_counter() - started
    for command, process, (_, err) in zip(commands, processes, outputs):
        if process.returncode:
            raise RuntimeError(f"{' '.join(command[1:3])} failed: {(err.strip().splitlines() or ['?'])[-1]}")
    return seconds, [out for out, _ in outputs]


def worker(part: str, threads: int, **settings: Any) -> dict[str, Any]:
    """One measurement of lab.bench_worker in a fresh process (a floor gets --t0: now)."""
    t0 = {"t0": repr(time.time())} if part == "floor" else {}
    _, (out,) = run([[sys.executable, "-m", "lab.bench_worker", part, *options({**settings, **t0})]], threads)
    return json.loads(out.strip().splitlines()[-1])


def train_command(out: Path, settings: dict[str, Any]) -> list[str]:
    return [sys.executable, str(ROOT / "train.py"), *options(settings), "--no-progress", f"--out={out}"]


# ---------------------------------------------------------------------------------------------- parts
def epochs(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Each model's loops, one fresh process per timed epoch, interleaved loop by loop."""
    runs = []
    for name in args.models:
        measured: dict[str, list[dict[str, Any]]] = {loop: [] for loop in LOOPS}
        for _, loop in interleave(LOOPS, args.repeats):
            measured[loop].append(worker("epoch", args.threads, model=name, loop=loop, steps=args.steps, root=root))
            print(f"epoch {name} {loop}: {measured[loop][-1]['seconds']:.2f} s", file=sys.stderr, flush=True)
        runs += [{"model": name, "loop": loop, "epochs": measured[loop]} for loop in LOOPS]
    return {"runs": runs}


def whole_run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """A B A B ... whole processes, train.py (A) and lab/conventional.py (B), a floor probe after each pair."""
    limit, seconds = args.train_limit, {"train.py": [], "conventional": []}
    losses: dict[str, list[float]] = {"train.py": [], "conventional": []}
    floors = []
    with tempfile.TemporaryDirectory() as folder:
        for r, kind in interleave(("train.py", "conventional", "floor"), args.runs):
            if kind == "floor":
                floors.append(worker("floor", args.threads, **EXAMPLES, train_limit=limit))
                continue
            conventional = [
                sys.executable,
                str(ROOT / "lab" / "conventional.py"),
                f"--root={root}",
                f"--epochs={EXAMPLES['epochs']}",
                *options({"train_limit": limit}),
            ]
            command = (
                train_command(Path(folder) / f"run{r}", {**EXAMPLES, "train_limit": limit})
                if kind == "train.py"
                else conventional
            )
            wall, (out,) = run([command], args.threads)
            seconds[kind].append(wall)
            losses[kind].append(
                json.loads((Path(folder) / f"run{r}" / "metrics.json").read_text())["epochs"][-1]["test"]["total"]
                if kind == "train.py"
                else last_epoch(out)["test_loss"]
            )
            print(f"whole run {kind}: {wall:.1f} s", file=sys.stderr, flush=True)
    return {
        "seconds": seconds,
        "test_loss": {k: statistics.median(v) for k, v in losses.items()},
        "floors": floors,
        "train_limit": limit,
        "command": " ".join(["python train.py", *options({**EXAMPLES, "train_limit": limit})]),
    }


def sweep(args: argparse.Namespace) -> dict[str, Any]:
    """The two plans of a two-run sweep, interleaved, a floor probe of one run after each pair of plans."""
    settings = {**SWEEP, "train_limit": args.train_limit or SWEEP["train_limit"]}
    seconds: dict[str, list[float]] = {plan: [] for plan in PLANS}
    floors = []
    for _, plan in interleave(PLANS + ("floor",), args.runs):
        if plan == "floor":
            floors.append(worker("floor", args.threads, **settings))
            continue
        with tempfile.TemporaryDirectory() as folder:
            commands = [train_command(Path(folder) / f"run{i}", settings) for i in range(2)]
            seconds[plan].append(
                sum(run([c], args.threads)[0] for c in commands) if plan == PLANS[0] else run(commands, 1)[0]
            )
        print(f"sweep {plan}: {seconds[plan][-1]:.1f} s", file=sys.stderr, flush=True)
    return {"seconds": seconds, "floors": floors, "images": settings["train_limit"]}


def environment(threads: int) -> dict[str, Any]:
    """What the numbers depend on: the device the timings ran on (the CPU), any GPU, versions, threads."""
    cpuinfo = Path("/proc/cpuinfo")
    names = (
        [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        if cpuinfo.exists()
        else []
    )
    cpu = (
        f"{names[0] if names else platform.processor() or platform.machine()} ({os.cpu_count()} CPUs, "
        f"{torch.backends.cpu.get_cpu_capability()})"
    )
    return {
        "device": "cpu",
        "cpu": cpu,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.version.__version__,
        "python": platform.python_version(),
        "threads": threads,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


# ---------------------------------------------------------------------------------------------- command line
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = OneLineParser(prog="lab.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="what to run (default: all)")
    p.add_argument("--models", nargs="+", choices=MODEL_NAMES, default=list(MODEL_NAMES), help="(default: both)")
    p.add_argument("--repeats", type=int, default=REPEATS, help=f"timed epochs per loop (default {REPEATS})")
    p.add_argument("--runs", type=int, default=RUNS, help=f"whole runs of each kind, sweep rounds (default {RUNS})")
    p.add_argument("--steps", type=int, help="time this many steps per epoch, scaled to an epoch (default: all)")
    p.add_argument(
        "--train-limit",
        type=int,
        help="whole runs and sweeps on this many training images "
        f"(default: all for whole runs, {SWEEP['train_limit']:,} for sweeps)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=torch.get_num_threads(),
        help=f"torch threads (default {torch.get_num_threads()})",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke settings: epochs of {QUICK['steps']} steps, "
        f"{QUICK['train_limit']:,}-image runs, each measured once (checks the code, not the speed)",
    )
    p.add_argument(
        "--out",
        type=Path,
        help="folder for bench.md and bench.json (default: results/ for a complete "
        "run at the default settings, else runs/bench/)",
    )
    args = p.parse_args(argv)
    full = not args.quick and default_settings(p, args)
    if args.quick:
        args.repeats, args.runs, args.steps = QUICK["repeats"], QUICK["runs"], args.steps or QUICK["steps"]
        args.train_limit = args.train_limit or QUICK["train_limit"]
    for name, high in (
        ("repeats", 100),
        ("runs", 100),
        ("threads", 1024),
        ("steps", TRAIN_IMAGES // BATCH_SIZE),
        ("train_limit", TRAIN_IMAGES),
    ):
        value = getattr(args, name)
        if value is not None and not 1 <= value <= high:
            p.error(f"--{name.replace('_', '-')} must be between 1 and {high}, got {value}")
    args.out = args.out or (RESULTS if full else SCRATCH)
    if args.out.exists() and not args.out.is_dir():
        p.error(f"--out {args.out} is a file, not a folder")
    return args


def default_settings(parser: argparse.ArgumentParser, args: argparse.Namespace) -> bool:
    """Whether every measuring setting of `args` is its default (the complete run results/ holds)."""
    return all(
        getattr(args, name) == parser.get_default(name)
        for name in ("parts", "models", "repeats", "runs", "steps", "train_limit", "threads")
    )


def run_parts(args: argparse.Namespace) -> dict[str, Any]:
    """The parts asked for, each with the load measured around it."""
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        root = torchvision_root(Path(folder))  # set up once, outside every timing
        if "epochs" in args.parts:
            result["epochs"] = with_load(lambda: epochs(args, root))
        if "whole-run" in args.parts:
            result["whole_run"] = with_load(lambda: whole_run(args, root))
    if "sweep" in args.parts:
        result["sweep"] = with_load(lambda: sweep(args))
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = {
        "environment": environment(args.threads),
        "command": " ".join(["python -m lab.bench", *(sys.argv[1:] if argv is None else argv)]),
    }
    try:
        result.update(run_parts(args))
    except (DataError, RuntimeError) as error:
        print(f"lab.bench: error: {error}", file=sys.stderr)
        return 1
    summarise(result)
    result["targets"] = targets(result)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "bench.json", result)
    write_text(args.out / "bench.md", markdown(result))
    print(markdown(result) + f"\nwritten to {args.out}/bench.md and bench.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
