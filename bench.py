"""Benchmark one training epoch of this project's loop against the conventional DataLoader loop.

    python bench.py                    # the full benchmark: 7 to 8 minutes expected on a quiet 2-core machine
    python bench.py --quick            # a smoke run (about 1 minute): short epochs scaled to 60,000 images
    python bench.py --run-notebooks    # re-execute both notebooks with papermill to time them (about 10 min more)

Writes results/bench.json and results/bench.md and prints the table. Each configuration runs in a fresh
subprocess (so its peak resident memory is its own) with the same thread count and trains from the same
seed: a warm-up epoch, then the timed epochs (4 for the project and plain loops, so that both train the 5
epochs of the learning-curve check; 3 for the slower DataLoader loop). The table shows the median of the
timed epochs and the test loss after the last one. The configurations, for each model (fc, cnn):
- project:    train.py as users run it: fit's setup (prepare_training) and its step (train_epoch) on the
              in-memory tensors of data.py.
- plain:      the same step code with the setup from before issue 5 (plain torch.optim.Adam, default memory
              layout), in fp32 eager mode: the reference learning curve for "learning curve kept".
- dataloader: the conventional loop, DataLoader(FashionMNIST(transform=ToTensor()), batch_size=128,
              shuffle=True), with the same model, loss (beta_vae_loss) and optimizer (Adam, lr 1e-3).
Matmul throughput counts the FLOPs of the matrix products and convolutions of one step as PyTorch's
FlopCounterMode does; for a Linear(in, out) at batch B that is 2*B*in*out forward and 4*B*in*out backward
(weight and input gradients), but 2*B*in*out for the first layer, whose input (the data) needs no gradient.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from cli import OneLineParser
from data import COUNTS, FILES, DataError, find_data_dir, find_file, load_fashion_mnist
from models import DATA_RANGE, BetaVAE, ModelConfig, beta_vae_loss, build_model
from train import TrainConfig, dataset_loss, prepare_training, train_epoch

DEFAULTS = TrainConfig()
BATCH_SIZE, BETA, LR, SEED = DEFAULTS.batch_size, DEFAULTS.beta, DEFAULTS.lr, DEFAULTS.seed

# ---------------------------------------------------------------------------------------------- configuration
MODEL_NAMES = ("fc", "cnn")
LOOPS = ("project", "plain", "dataloader")
REPEATS = {"project": 4, "plain": 4, "dataloader": 3}  # timed epochs, after one warm-up epoch
QUICK_REPEATS = 1         # --quick: one timed epoch ...
QUICK_STEPS = 40          # ... of 40 steps, scaled to a full epoch
MM_SIZE = 2048            # the square fp32 torch.mm that gives the reference throughput
MM_REPEATS = 10
CURVE_TOLERANCE = 0.5     # nats: project vs plain test loss after the last epoch
TARGET_SPEEDUP = {"fc": 3.0, "cnn": 2.0}
TARGET_MM_FRACTION = 0.60  # fc training GFLOP/s over torch.mm GFLOP/s
TARGET_PEAK_MB = 1536
BUSY_CORES = 0.2          # other processes keeping more cores than this busy make the times unreliable
TRAIN_IMAGES = COUNTS["train"]
NOTEBOOKS = {"fc": "Fully_Connected_VAE.ipynb", "cnn": "CNN_VAE.ipynb"}
ROOT = Path(__file__).resolve().parent


# ---------------------------------------------------------------------------------------------- measurements
def new_model(name: str) -> BetaVAE:
    """The model train.py builds by default, initialised from SEED."""
    return build_model(ModelConfig(model=name), seed=SEED)


def step_flops(model: BetaVAE, batch_size: int = BATCH_SIZE) -> int:
    """Matmul and convolution FLOPs of one training step (forward and backward) of `model`."""
    low, high = DATA_RANGE[model.likelihood]
    x = low + (high - low) * torch.rand(batch_size, *model.image_shape)
    with FlopCounterMode(display=False) as counter:
        beta_vae_loss(model(x), x, BETA, model.likelihood).total.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def matmul_gflops(size: int = MM_SIZE, repeats: int = MM_REPEATS) -> float:
    """Median fp32 throughput of torch.mm on two random size x size matrices, in GFLOP/s."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)  # warm-up
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        torch.mm(a, b)
        seconds.append(time.perf_counter() - started)
    return 2 * size ** 3 / statistics.median(seconds) / 1e9


def torchvision_root(folder: Path) -> Path:
    """Lay out the Fashion-MNIST files found by data.py the way torchvision reads them (decompressed)."""
    source = find_data_dir(download=False)
    raw = folder / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in (name for pair in FILES.values() for name in pair):
        path = find_file(source, name)
        (raw / name).write_bytes(gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes())
    return folder


def conventional_loader(root: Path, images: int) -> torch.utils.data.DataLoader:
    """The DataLoader of the usual tutorial: per-image PIL -> ToTensor, batch 128, shuffled (first `images`)."""
    from torchvision.datasets import FashionMNIST
    from torchvision.transforms import ToTensor
    dataset = FashionMNIST(str(root), train=True, transform=ToTensor())
    if images < len(dataset):
        dataset = torch.utils.data.Subset(dataset, range(images))
    return torch.utils.data.DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=True)


def dataloader_epoch(model: BetaVAE, optimizer: torch.optim.Optimizer, loader: torch.utils.data.DataLoader) -> float:
    """One epoch of the conventional loop; the mean training loss, accumulated with .item() as tutorials do."""
    model.train()
    total = 0.0
    for x, _ in loader:
        terms = beta_vae_loss(model(x), x, BETA, model.likelihood)
        optimizer.zero_grad()
        terms.total.backward()
        optimizer.step()
        total += terms.total.item() * len(x)
    return total / len(loader.dataset)


def run_configuration(name: str, loop: str, repeats: int, steps: int | None, root: Path) -> dict[str, Any]:
    """Train one configuration for 1 + `repeats` epochs in this process: epoch times, peak RSS, test loss."""
    model = new_model(name)
    images = TRAIN_IMAGES if steps is None else min(TRAIN_IMAGES, steps * BATCH_SIZE)
    if loop == "dataloader":
        optimizer = torch.optim.Adam(model.parameters(), lr=LR)
        loader = conventional_loader(root, images)
        def one_epoch(epoch: int) -> None:
            dataloader_epoch(model, optimizer, loader)
    else:
        train_x = load_fashion_mnist().train_images[:images]
        optimizer = prepare_training(model, LR) if loop == "project" else torch.optim.Adam(model.parameters(), lr=LR)
        generator = torch.Generator().manual_seed(SEED)  # as fit seeds it
        def one_epoch(epoch: int) -> None:
            train_epoch(model, optimizer, train_x, DEFAULTS, generator, epoch=epoch)
    wall, cpu = [], []
    for epoch in range(1, repeats + 2):
        started_wall, started_cpu = time.perf_counter(), time.process_time()
        one_epoch(epoch)
        wall.append((time.perf_counter() - started_wall) * TRAIN_IMAGES / images)
        cpu.append((time.process_time() - started_cpu) * TRAIN_IMAGES / images)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux
    test_loss = dataset_loss(model, load_fashion_mnist().test_images, BETA)["total"]
    return {"model": name, "loop": loop, "epochs": repeats + 1, "images_per_epoch": images,
            "epoch_seconds": wall, "cpu_seconds": cpu, "median_seconds": statistics.median(wall[1:]),
            "median_cpu_seconds": statistics.median(cpu[1:]), "peak_rss_mb": peak_mb, "test_loss": test_loss}


def run_in_subprocess(name: str, loop: str, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """run_configuration in a fresh Python process (a clean peak RSS); its result comes back as JSON."""
    repeats = args.repeats or REPEATS[loop]
    command = [sys.executable, str(ROOT / "bench.py"), "--worker", f"{name}:{loop}", "--repeats", str(repeats),
               "--threads", str(args.threads), "--tv-root", str(root)] + (["--steps", str(args.steps)] if args.steps else [])
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{name} {loop} failed: {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def notebook_seconds(name: str, execute: bool) -> tuple[float | None, str]:
    """Wall time of one run of a notebook: papermill's recorded duration, or a fresh run when `execute`."""
    path = ROOT / NOTEBOOKS[name]
    if not path.is_file():
        return None, "notebook missing"
    if execute:  # default settings, but the run folder and figures go to a temporary folder
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "papermill", str(path), str(Path(folder) / path.name),
                                   "--cwd", str(ROOT), "-p", "run_dir", str(Path(folder) / "run"),
                                   "-p", "save_figures", "False"], capture_output=True, text=True)
            seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"papermill {path.name} failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
        return seconds, "executed now with papermill"
    duration = json.loads(path.read_text()).get("metadata", {}).get("papermill", {}).get("duration")
    return (float(duration), "papermill metadata") if duration else (None, "not executed with papermill yet")


# ---------------------------------------------------------------------------------------------- report
def summarise(runs: list[dict[str, Any]], flops: dict[str, int], mm: float) -> dict[str, Any]:
    """Add images/s, speed-ups and GFLOP/s to each run; the targets, met or missed."""
    by = {(run["model"], run["loop"]): run for run in runs}
    for run in runs:
        conventional = by.get((run["model"], "dataloader"))
        run["images_per_second"] = TRAIN_IMAGES / run["median_seconds"]
        run["speedup_vs_dataloader"] = conventional["median_seconds"] / run["median_seconds"] if conventional else None
        run["gflops"] = flops[run["model"]] * TRAIN_IMAGES / BATCH_SIZE / run["median_seconds"] / 1e9
        run["fraction_of_mm"] = run["gflops"] / mm
    targets = []
    for name in sorted({run["model"] for run in runs}, key=MODEL_NAMES.index):
        project, plain = by.get((name, "project")), by.get((name, "plain"))
        if project and project["speedup_vs_dataloader"] is not None:
            targets.append((f"{name} epoch vs DataLoader loop", f"{project['speedup_vs_dataloader']:.2f}x",
                            f">= {TARGET_SPEEDUP[name]:g}x", project["speedup_vs_dataloader"] >= TARGET_SPEEDUP[name]))
        if project and name == "fc":
            targets.append(("fc training throughput / torch.mm", f"{100 * project['fraction_of_mm']:.0f} %",
                            f">= {100 * TARGET_MM_FRACTION:.0f} %", project["fraction_of_mm"] >= TARGET_MM_FRACTION))
        if project:
            targets.append((f"{name} peak resident memory", f"{project['peak_rss_mb']:.0f} MB",
                            f"< {TARGET_PEAK_MB} MB", project["peak_rss_mb"] < TARGET_PEAK_MB))
        if project and plain and project["images_per_epoch"] == TRAIN_IMAGES:
            gap = abs(project["test_loss"] - plain["test_loss"])
            targets.append((f"{name} test loss after {project['epochs']} epochs, project vs plain fp32",
                            f"{gap:.3f} nats", f"<= {CURVE_TOLERANCE} nats", gap <= CURVE_TOLERANCE))
    return {"targets": [dict(zip(("what", "measured", "target", "met"), row)) for row in targets]}


def markdown(result: dict[str, Any]) -> str:
    """The results as a markdown table, the targets and the notebook times."""
    env, runs = result["environment"], result["runs"]
    counts = {run["loop"]: run["epochs"] - 1 for run in runs}
    repeats = (", ".join(f"{loop} {n}" for loop, n in counts.items()) if len(set(counts.values())) > 1
               else str(runs[0]["epochs"] - 1))
    timed = (f"median of the timed full epochs ({repeats})" if runs[0]["images_per_epoch"] == TRAIN_IMAGES else
             f"median of the timed epochs ({repeats}) of {runs[0]['images_per_epoch'] // BATCH_SIZE} steps each, "
             f"scaled to {TRAIN_IMAGES:,} images")
    others = env["other_cores"]
    busy = (f"{others:.2f} cores kept busy by other processes during the run"
            + (" (a busy machine: the times are not reliable)" if others > BUSY_CORES else "")
            if others is not None else "no /proc/stat to tell how busy the machine was")
    lines = [f"One training epoch ({TRAIN_IMAGES:,} images, batch {BATCH_SIZE}, Adam): {timed}, after a warm-up "
             f"epoch; torch threads: {env['threads']}; torch {env['torch']}, {env['cpu']}; {busy}; fp32 torch.mm {MM_SIZE}: "
             f"{result['mm_gflops']:.1f} GFLOP/s.", "",
             "| model | loop | epoch s | images/s | CPU s | peak RSS MB | GFLOP/s | % of mm | test loss | vs DataLoader |",
             "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for run in runs:
        speedup = f"{run['speedup_vs_dataloader']:.2f}x" if run["speedup_vs_dataloader"] is not None else "-"
        lines.append(f"| {run['model']} | {run['loop']} | {run['median_seconds']:.2f} | {run['images_per_second']:,.0f} "
                     f"| {run['median_cpu_seconds']:.2f} | {run['peak_rss_mb']:.0f} | {run['gflops']:.1f} "
                     f"| {100 * run['fraction_of_mm']:.0f} | {run['test_loss']:.2f} | {speedup} |")
    lines += ["", "| target | measured | goal | met |", "|---|--:|--:|---|"]
    lines += [f"| {t['what']} | {t['measured']} | {t['target']} | {'yes' if t['met'] else 'NO'} |" for t in result["targets"]]
    lines += ["", "Wall time of one run of each notebook with its default settings:", ""]
    for name, (seconds, source) in result["notebooks"].items():
        shown = f"{seconds:.0f} s" if seconds is not None else "n/a"
        lines.append(f"- {NOTEBOOKS[name]}: {shown} ({source})")
    return "\n".join(lines) + "\n"


def environment(threads: int) -> dict[str, Any]:
    """What the numbers depend on: versions, CPU, threads, and how busy the machine is (1-minute load average)."""
    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
             if line.startswith("model name")] if cpuinfo.exists() else []
    cpu = f"{names[0] if names else platform.processor()} ({os.cpu_count()} CPUs, " \
          f"{torch.backends.cpu.get_cpu_capability()})"
    return {"torch": torch.__version__, "python": platform.python_version(), "cpu": cpu, "threads": threads,
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}


def cpu_sample() -> tuple[float, float, float] | None:
    """(wall clock, CPU seconds used by every process on the machine, CPU seconds used by this process and
    its finished children); None without /proc/stat."""
    stat = Path("/proc/stat")
    if not stat.exists():
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, stat.read_text().split()[1:9])
    ours = sum(getattr(resource.getrusage(who), field) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for field in ("ru_utime", "ru_stime"))
    return time.perf_counter(), (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK"), ours


def other_cores(since: tuple[float, float, float] | None) -> float | None:
    """How many cores other processes (or the hypervisor) kept busy on average since `since`."""
    now = cpu_sample()
    if since is None or now is None:
        return None
    return max(0.0, (now[1] - since[1]) - (now[2] - since[2])) / (now[0] - since[0])


# ---------------------------------------------------------------------------------------------- command line
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = OneLineParser(prog="bench.py", description="Time one training epoch: project loop vs DataLoader loop.")
    p.add_argument("--repeats", type=int, help="timed epochs after the warm-up epoch (default 4; 3 for the DataLoader)")
    p.add_argument("--steps", type=int, help="time this many steps per epoch, scaled to a full epoch (default: full)")
    p.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK_REPEATS} timed epoch of {QUICK_STEPS} steps")
    p.add_argument("--models", nargs="+", choices=MODEL_NAMES, default=list(MODEL_NAMES), help="(default: both)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(),
                   help=f"torch threads (default {torch.get_num_threads()})")
    p.add_argument("--run-notebooks", action="store_true", help="re-execute the notebooks instead of reading "
                                                                "their papermill metadata (adds their run time)")
    p.add_argument("--out", default="results", help="folder for bench.json and bench.md (default results)")
    p.add_argument("--worker", help=argparse.SUPPRESS)   # MODEL:LOOP, run by the parent in a fresh process
    p.add_argument("--tv-root", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.repeats, args.steps = QUICK_REPEATS, args.steps or QUICK_STEPS
    for name in ("repeats", "steps", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name} must be >= 1, got {value}")
    if args.steps is not None and args.steps * BATCH_SIZE > TRAIN_IMAGES:
        p.error(f"--steps must be <= {TRAIN_IMAGES // BATCH_SIZE} (one epoch), got {args.steps}")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        p.error(f"--out {args.out} is a file, not a folder")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.worker:
        name, loop = args.worker.split(":")
        print(json.dumps(run_configuration(name, loop, args.repeats, args.steps, Path(args.tv_root))))
        return 0
    env = environment(args.threads)
    before = cpu_sample()
    time.sleep(1.0)
    if (busy := other_cores(before)) is not None and busy > BUSY_CORES:
        print(f"bench.py: warning: other processes keep {busy:.1f} cores busy: the times will not be reliable",
              file=sys.stderr, flush=True)
    started = cpu_sample()
    try:
        with tempfile.TemporaryDirectory() as folder:
            root = torchvision_root(Path(folder))
            mm = matmul_gflops()
            runs = []
            for name in args.models:
                for loop in LOOPS:
                    runs.append(run_in_subprocess(name, loop, args, root))
                    print(f"{name} {loop}: {runs[-1]['median_seconds']:.2f} s per epoch", file=sys.stderr, flush=True)
        env["other_cores"] = other_cores(started)
        notebooks = {name: notebook_seconds(name, args.run_notebooks) for name in args.models}
    except (DataError, RuntimeError) as error:
        print(f"bench.py: error: {error}", file=sys.stderr)
        return 1
    flops = {name: step_flops(new_model(name)) for name in args.models}
    result = {"environment": env, "command": " ".join(["python", "bench.py", *(argv or sys.argv[1:])]),
              "mm_gflops": mm, "step_flops": flops, "runs": runs, "notebooks": notebooks}
    result.update(summarise(runs, flops, mm))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "bench.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
