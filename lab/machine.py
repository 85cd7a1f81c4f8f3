"""What a sweep takes from the machine it runs on: its cores and the worker processes it forks, oneDNN's kernels
(ONEDNN_MAX_CPU_ISA), and the CPU model and ISA that run records name."""

from __future__ import annotations

import multiprocessing
import os
import platform
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from cli import ISA_VARIABLE, onednn_problem

WORKERS_PER_CORE = 2  # more workers than this per core, or than points left, are not started


def cores() -> int:
    """The cores this process may use: OMP_NUM_THREADS if set, else its CPU affinity."""
    return int(os.environ.get("OMP_NUM_THREADS") or len(os.sched_getaffinity(0)))


def available_workers(asked: int, left: int) -> int:
    """--workers, at most the points left (at least 1) and WORKERS_PER_CORE per core; says so when it is fewer."""
    workers = min(asked, max(1, left), WORKERS_PER_CORE * cores())
    if workers < asked:
        print(
            f"sweep: --workers {asked}: starting {workers} ({left} points left, at most {WORKERS_PER_CORE} per "
            f"core on {cores()} cores)",
            file=sys.stderr,
        )
    return workers


def worker(main: Callable[[list[str]], int], argv: list[str], number: int) -> None:
    """A forked worker process: exits with main's status, skipping the exit handlers it shares with its parent."""
    try:
        code = main([*argv, "--worker", str(number)])  # argv ends in the --workers actually started
    except SystemExit as error:
        code = error.code if isinstance(error.code, int) else 1
    sys.stdout.flush(), sys.stderr.flush()
    os._exit(code)


def supervise(main: Callable[[list[str]], int], argv: list[str], workers: int) -> int:
    """Run worker processes (forked: the imports are done) to their end; report those killed by a signal (their
    trials are retried by the others or by the caller); the largest exit status of the others, or 0."""
    sys.stdout.flush(), sys.stderr.flush()
    argv = [*argv, "--workers", str(workers)]
    fork = multiprocessing.get_context("fork")
    processes = [fork.Process(target=worker, args=(main, argv, i)) for i in range(workers)]
    for process in processes:
        process.start()
    for process in processes:  # Ctrl-C reaches them too: each saves, fails its trial and ends
        process.join()
    for process in (p for p in processes if p.exitcode < 0):
        print(
            f"sweep: worker {process.pid} was killed by {signal.Signals(-process.exitcode).name}; its trial is retried",
            file=sys.stderr,
            flush=True,
        )
    return max(0, *(p.exitcode for p in processes))


def onednn_isa() -> str | None:
    """Pin oneDNN to AVX2 kernels unless ONEDNN_MAX_CPU_ISA is set (AVX-512 ones give CNN runs other numbers);
    why not, when it is set to a value oneDNN does not know (it would ignore it)."""
    os.environ.setdefault(ISA_VARIABLE, "AVX2")
    return onednn_problem()


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux), else what the platform says."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor() or platform.machine()


def machine() -> dict[str, str]:
    """The CPU and the oneDNN ISA limit this process runs with (ALL: none), for run records."""
    return {"cpu": cpu_model(), "onednn_max_cpu_isa": os.environ.get(ISA_VARIABLE, "ALL")}
