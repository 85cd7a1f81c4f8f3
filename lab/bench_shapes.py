"""Speed and memory of the shapes dataset's parts: making the dataset (and reading its cache), one training epoch of
each family on it, and the disentanglement metrics of one run (docs/performance.md).

    OMP_NUM_THREADS=1 python -m lab.bench_shapes            # -> results/bench-shapes.md and .json

One process, one torch thread; each part is timed REPEATS times (the median is reported) with the CPU time the
other processes used meanwhile, so that a busy machine shows in the table instead of hiding in the numbers.
"""

from __future__ import annotations

import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import shapes
from cli import OneLineParser
from config import TrainConfig
from data import load_dataset
from disentanglement import disentanglement
from files import write_json, write_text
from lab.bench import cpu_now, other_cores
from lab.machine import machine
from models import FAMILIES, BetaVAE, ModelConfig, build_model
from objectives import objective
from samplers import posterior_means
from train import prepare_training, train_epoch

REPEATS = 3
RESULTS = Path(__file__).resolve().parents[1] / "results"


def timed(part: Callable[[], Any], repeats: int = REPEATS) -> dict[str, float]:
    """Median wall and CPU seconds of `part` over `repeats` calls, and the cores other processes kept busy."""
    walls, cpus, busy = [], [], []
    for _ in range(repeats):
        since, cpu = cpu_now(), time.process_time()
        part()
        walls.append(time.perf_counter() - since[0])
        cpus.append(time.process_time() - cpu)
        busy.append(other_cores(since))
    return {"seconds": statistics.median(walls), "cpu_seconds": statistics.median(cpus), "other_cores": max(busy)}


def one_epoch(model: BetaVAE, images: torch.Tensor, config: TrainConfig) -> Callable[[], Any]:
    """A call that trains `model` one epoch over `images` as fit does (its optimizer set up here, not timed)."""
    optimizer, generator = prepare_training(model, config.lr), torch.Generator().manual_seed(config.seed)
    goal = objective(config, len(images))
    return lambda: train_epoch(model, optimizer, images, goal, config, generator)


def measure(repeats: int = REPEATS, train_limit: int | None = None) -> dict[str, dict[str, float]]:
    """Every part's timing, and the process's peak memory after it (epochs and metrics on the first `train_limit`
    images: all by default)."""
    results, data = {}, load_dataset("shapes", limit=train_limit)
    results["generate"] = timed(shapes.generate, repeats)
    with tempfile.TemporaryDirectory() as cache:
        shapes.load_shapes(Path(cache), log=lambda line: None)  # made once: the timed calls read it
        results["load cache"] = timed(lambda: shapes.load_shapes(Path(cache), log=lambda line: None), repeats)
    config = TrainConfig(dataset="shapes", beta=4.0)
    for family in FAMILIES:
        model = build_model(ModelConfig(model=family, latent_dim=10), seed=0)
        results[f"{family} epoch"] = timed(one_epoch(model, data.train_images, config), repeats)
        results[f"{family} epoch"]["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    codes = posterior_means(model.eval(), data.train_images).double().numpy()
    factors = data.train_factors.numpy()
    results["metrics"] = timed(lambda: disentanglement(codes, factors), repeats)
    results["metrics"]["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return results


def table(results: dict[str, dict[str, float]], command: str) -> str:
    """results/bench-shapes.md: the machine, then a row per part."""
    about = machine()
    lines = [
        "# Benchmark: the shapes dataset's parts\n",
        f"Made by `{command}` on {about['cpu']} (oneDNN ISA limit {about['onednn_max_cpu_isa']}), torch "
        f"{torch.__version__}, {torch.get_num_threads()} thread(s), median of {REPEATS} calls. *other cores*: the CPU "
        "other processes used meanwhile (0 on a quiet machine; above 0.2 the numbers are slowed).\n",
        "| part | seconds | CPU seconds | other cores | peak memory (MB) |",
        "|---|---|---|---|---|",
    ]
    for name, row in results.items():
        memory = f"{row['peak_rss_mb']:,.0f}" if "peak_rss_mb" in row else "-"
        lines.append(
            f"| {name} | {row['seconds']:.2f} | {row['cpu_seconds']:.2f} | {row['other_cores']:.2f} | {memory} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="python -m lab.bench_shapes", description="Time the shapes dataset's parts.")
    p.add_argument("--repeats", type=int, default=REPEATS, help=f"timed calls per part (default {REPEATS})")
    p.add_argument("--out", type=Path, default=RESULTS, help="folder of bench-shapes.md and .json (default results)")
    p.add_argument("--train-limit", type=int, help="epochs and metrics on the first N images (a smoke run)")
    args = p.parse_args(argv)
    if args.repeats < 1 or (args.train_limit is not None and args.train_limit < 2000):
        p.error("--repeats must be >= 1 and --train-limit >= 2000 (the metrics' votes need that many)")
    results = measure(args.repeats, args.train_limit)
    command = "OMP_NUM_THREADS=1 python -m lab.bench_shapes" + "".join(f" {a}" for a in (argv or sys.argv[1:]))
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "bench-shapes.json", {"machine": machine(), "results": results})
    write_text(args.out / "bench-shapes.md", table(results, command))
    print(table(results, command), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
