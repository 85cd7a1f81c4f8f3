"""Benchmarks with their targets: the training epoch, the whole run as a user times it, the matmul limit, sweeps.

    python bench.py                          # everything: 10 to 12 minutes expected on a quiet 2-core machine
    python bench.py --parts whole-run        # only some parts: epochs, whole-run, sweep
    python bench.py --quick                  # a smoke run of every part (a few minutes; no verdicts worth quoting)
    python bench.py --run-notebooks          # also re-execute both notebooks with papermill to time them

Writes results/bench.json and results/bench.md and prints the table. The parts:
- epochs:    one training epoch of each model in three loops, each in its own long-lived process, interleaved
             epoch by epoch (a warm-up round, then REPEATS timed rounds): project (fit's setup and step on the
             in-memory tensors of data.py), plain (the same step, plain Adam, default memory layout: the reference
             learning curve) and dataloader (the conventional DataLoader(FashionMNIST, ToTensor) loop of
             CONVENTIONAL). Between rounds the project process times fp32 torch.mm at 2048^2 and, for fc, at the
             model's own matmul shapes (the products of one step, replayed back to back).
- whole-run: whole processes end to end, start-up included, interleaved A B A B: A is `python train.py` for
             pytorch/examples' VAE (784-400-20, beta 1, batch 128, Adam 1e-3, 2 epochs, a test pass after each);
             B is CONVENTIONAL, the same model and loss in the pytorch/examples style. Then a probe process
             measures A's fixed costs once (interpreter, imports, data loading, first step, test pass, checkpoint).
- sweep:     two short runs (fc defaults, 2 epochs on 10,000 images) one after the other at 2 threads, or as two
             processes at once at 1 thread each: the wall time of each plan.
Every comparison reports median and spread (min-max); the load of other processes is measured before and during
each part, and a target gets no verdict ("unreliable") when the machine was busy or the spread too wide.
Matmul throughput counts the FLOPs of the matrix products and convolutions of one step as PyTorch's
FlopCounterMode does; for a Linear(in, out) at batch B that is 2*B*in*out forward and 4*B*in*out backward
(weight and input gradients), but 2*B*in*out for the first layer, whose input (the data) needs no gradient.
"""
from __future__ import annotations

import argparse
import functools
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
import types
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from checkpoint import atomic_write, save_checkpoint, write_json, write_metrics
from cli import OneLineParser
from data import COUNTS, FILES, DataError, find_data_dir, find_file, load_fashion_mnist, read_idx_cached
from models import DATA_RANGE, BetaVAE, FCVAE, ModelConfig, beta_vae_loss, build_model
from train import TrainConfig, dataset_loss, prepare_training, train_epoch

DEFAULTS = TrainConfig()
BATCH_SIZE, BETA, LR, SEED = DEFAULTS.batch_size, DEFAULTS.beta, DEFAULTS.lr, DEFAULTS.seed

# ---------------------------------------------------------------------------------------------- configuration
PARTS = ("epochs", "whole-run", "sweep")
MODEL_NAMES = ("fc", "cnn")
LOOPS = ("project", "plain", "dataloader")
REPEATS = 4               # timed epochs (rounds) per loop, after one warm-up round
QUICK_STEPS = 40          # --quick: epochs of 40 steps, scaled to a full epoch ...
QUICK_LIMIT = 2000        # ... and whole runs and sweeps on 2,000 training images, one run each
MM_SIZE = 2048            # the square fp32 torch.mm that gives the reference throughput
MM_REPEATS = 10
CURVE_TOLERANCE = 0.5     # nats: project vs plain test loss after the last epoch; train.py vs the script
TARGET_SPEEDUP = {"fc": 3.0, "cnn": 3.0}  # epoch time, DataLoader loop over project loop
TARGET_MM_FRACTION = 0.60  # fc training GFLOP/s over torch.mm GFLOP/s
TARGET_PEAK_MB = 1536
TARGET_WHOLE_RUN = 4.0    # whole-run wall time, conventional script over train.py
TARGET_NOTEBOOK_SECONDS = {"fc": 120, "cnn": 240}
BUSY_CORES = 0.2          # other processes keeping more cores than this busy make the times unreliable
MAX_SPREAD = 0.20         # (max - min) / median of repeated timings above this: no verdict
WHOLE_RUNS = 3            # whole runs of each kind, interleaved
EXAMPLES = {"model": "fc", "hidden": 400, "latent_dim": 20, "beta": 1, "epochs": 2, "batch_size": 128, "lr": 1e-3}
SWEEP_RUNS, SWEEP_IMAGES, SWEEP_EPOCHS = 2, 10000, 2
TRAIN_IMAGES = COUNTS["train"]
NOTEBOOKS = {"fc": "Fully_Connected_VAE.ipynb", "cnn": "CNN_VAE.ipynb"}
ROOT = Path(__file__).resolve().parent

CONVENTIONAL = '''"""pytorch/examples' VAE recipe on Fashion-MNIST: DataLoader(ToTensor) batches, Adam, a test pass after
every epoch; the model and loss of this project (models.py). The last line printed is the test loss as JSON."""
import argparse
import json

import torch
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms

from models import ModelConfig, beta_vae_loss, build_model


def loader(root, train, batch_size=128, limit=None):
    dataset = datasets.FashionMNIST(root, train=train, transform=transforms.ToTensor())
    if limit is not None and limit < len(dataset):
        dataset = Subset(dataset, range(limit))
    return DataLoader(dataset, batch_size=batch_size, shuffle=train)


def train_epoch(model, optimizer, loader, beta):
    model.train()
    total = 0.0
    for x, _ in loader:
        loss = beta_vae_loss(model(x), x, beta, model.likelihood).total
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item() * len(x)
    return total / len(loader.dataset)


@torch.no_grad()
def test_loss(model, loader, beta):
    model.eval()
    total = sum(beta_vae_loss(model(x, sample=True), x, beta, model.likelihood).total.item() * len(x)
                for x, _ in loader)
    return total / len(loader.dataset)


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--root", required=True)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--hidden", type=int, default=400)
    p.add_argument("--latent-dim", type=int, default=20)
    p.add_argument("--beta", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--train-limit", type=int)
    p.add_argument("--test-limit", type=int)
    args = p.parse_args(argv)
    torch.manual_seed(0)
    model = build_model(ModelConfig(model="fc", hidden=(args.hidden,), latent_dim=args.latent_dim), seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    train_loader = loader(args.root, True, args.batch_size, args.train_limit)
    test_loader = loader(args.root, False, args.batch_size, args.test_limit)
    for epoch in range(1, args.epochs + 1):
        train = train_epoch(model, optimizer, train_loader, args.beta)
        test = test_loss(model, test_loader, args.beta)
        print(f"epoch {epoch}: train {train:.2f}, test {test:.2f}", flush=True)
    print(json.dumps({"test_loss": test}))
    return test


if __name__ == "__main__":
    main()
'''


@functools.cache
def conventional() -> types.ModuleType:
    """CONVENTIONAL as a module, for the in-process DataLoader loop of the epoch benchmark."""
    module = types.ModuleType("conventional_vae")
    exec(compile(CONVENTIONAL, "conventional_vae.py", "exec"), module.__dict__)
    return module


# ---------------------------------------------------------------------------------------------- hygiene
def interleave(names: tuple[str, ...] | list[str], rounds: int) -> list[tuple[int, str]]:
    """The order in which compared loops run: A B A B ..., as (round, name)."""
    return [(r, name) for r in range(rounds) for name in names]


def spread_stats(values: list[float]) -> dict[str, float | None]:
    """Median, min, max and relative spread (max - min) / median of repeated measurements (None for one)."""
    median = statistics.median(values)
    spread = (max(values) - min(values)) / median if len(values) > 1 and median else None
    return {"median": median, "min": min(values), "max": max(values), "spread": spread}


def verdict(met: bool | str, busy: bool = False, spreads: tuple[float | None, ...] = ()) -> str:
    """'yes'/'NO' (or the answer `met` when a string), unless the machine was busy, or one of the timings
    it rests on was measured only once or spread too wide."""
    if busy:
        return "unreliable: machine busy"
    if None in spreads:
        return "unreliable: measured once"
    if spreads and max(spreads) > MAX_SPREAD:
        return f"unreliable: spread {100 * max(spreads):.0f} %"
    return met if isinstance(met, str) else "yes" if met else "NO"


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


def measured_quietly(part: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one part of the benchmark with the load of other processes measured 1 s before and during it."""
    before = cpu_sample()
    time.sleep(1.0)
    load = {"before": other_cores(before)}
    started = cpu_sample()
    result = part()
    load["during"] = other_cores(started)
    load["busy"] = any(cores is not None and cores > BUSY_CORES for cores in load.values())
    return {**result, "load": load}


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


def linear_shapes(model: BetaVAE, batch_size: int = BATCH_SIZE) -> list[tuple[int, int, int]]:
    """(m, k, n) of the matrix products of one training step of `model`'s Linear layers: the forward product,
    the weight gradient and (except for the first layer) the input gradient."""
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    shapes = []
    for i, layer in enumerate(layers):
        n_in, n_out = layer.in_features, layer.out_features
        shapes += [(batch_size, n_in, n_out), (n_out, batch_size, n_in)] + ([(batch_size, n_out, n_in)] if i else [])
    return shapes


def matmul_gflops(shapes: list[tuple[int, int, int]], repeats: int = MM_REPEATS) -> float:
    """Median fp32 throughput in GFLOP/s of torch.mm on random contiguous matrices of these (m, k, n) shapes,
    run back to back."""
    pairs = [(torch.randn(m, k), torch.randn(k, n)) for m, k, n in shapes]
    flops = sum(2 * m * k * n for m, k, n in shapes)
    seconds = []
    for _ in range(repeats + 1):  # the first pass warms up
        started = time.perf_counter()
        for a, b in pairs:
            torch.mm(a, b)
        seconds.append(time.perf_counter() - started)
    return flops / statistics.median(seconds[1:]) / 1e9


def torchvision_root(folder: Path) -> Path:
    """Lay out the Fashion-MNIST files found by data.py the way torchvision reads them (decompressed)."""
    source = find_data_dir(download=False)
    raw = folder / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in (name for pair in FILES.values() for name in pair):
        path = find_file(source, name)
        (raw / name).write_bytes(gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes())
    return folder


# ---------------------------------------------------------------------------------------------- epochs
def configuration(name: str, loop: str, steps: int | None, root: Path) -> tuple[BetaVAE, int, Callable[[int], Any]]:
    """(model, images per epoch, one_epoch(epoch)) of one loop of the epoch benchmark."""
    model = new_model(name)
    images = TRAIN_IMAGES if steps is None else min(TRAIN_IMAGES, steps * BATCH_SIZE)
    if loop == "dataloader":
        optimizer = torch.optim.Adam(model.parameters(), lr=LR)
        loader = conventional().loader(str(root), True, BATCH_SIZE, images)
        return model, images, lambda epoch: conventional().train_epoch(model, optimizer, loader, BETA)
    train_x = load_fashion_mnist().train_images[:images]
    optimizer = prepare_training(model, LR) if loop == "project" else torch.optim.Adam(model.parameters(), lr=LR)
    generator = torch.Generator().manual_seed(SEED)  # as fit seeds it
    return model, images, lambda epoch: train_epoch(model, optimizer, train_x, DEFAULTS, generator, epoch=epoch)


def serve(name: str, loop: str, steps: int | None, root: Path) -> None:
    """Worker process: answer 'epoch', 'mm' and 'finish' requests from stdin with one JSON line each."""
    model, images, one_epoch = configuration(name, loop, steps, root)
    epoch = 0
    for request in sys.stdin:
        if request.strip() == "epoch":
            epoch += 1
            started_wall, started_cpu = time.perf_counter(), time.process_time()
            one_epoch(epoch)
            scale = TRAIN_IMAGES / images
            reply = {"wall": (time.perf_counter() - started_wall) * scale,
                     "cpu": (time.process_time() - started_cpu) * scale}
        elif request.strip() == "mm":
            reply = {"square": matmul_gflops([(MM_SIZE, MM_SIZE, MM_SIZE)]),
                     "shapes": matmul_gflops(linear_shapes(model)) if isinstance(model, FCVAE) else None}
        else:
            reply = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # kB on Linux
                     "test_loss": dataset_loss(model, load_fashion_mnist().test_images, BETA)["total"],
                     "images_per_epoch": images, "epochs": epoch}
        print(json.dumps(reply), flush=True)
        if request.strip() == "finish":
            return


class Worker:
    """One loop of the epoch benchmark in its own process (its own peak memory), one request at a time."""

    def __init__(self, name: str, loop: str, args: argparse.Namespace, root: Path) -> None:
        self.name, self.loop, self.stderr = name, loop, tempfile.TemporaryFile("w+")
        command = [sys.executable, str(ROOT / "bench.py"), "--worker", f"{name}:{loop}", "--threads",
                   str(args.threads), "--tv-root", str(root)] + (["--steps", str(args.steps)] if args.steps else [])
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self.stderr, text=True, cwd=ROOT)

    def ask(self, request: str) -> dict[str, Any]:
        try:
            self.process.stdin.write(request + "\n")
            self.process.stdin.flush()
            line = self.process.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            self.process.wait()
            self.stderr.seek(0)
            raise RuntimeError(f"{self.name} {self.loop} failed: {(self.stderr.read().strip().splitlines() or ['?'])[-1]}")
        return json.loads(line)

    def close(self) -> None:
        self.process.kill()
        self.process.wait()
        self.stderr.close()


def epoch_benchmark(name: str, args: argparse.Namespace, root: Path) -> list[dict[str, Any]]:
    """The three loops of one model, epoch by epoch in turn (round 0 warms up), torch.mm timed in the project
    process after each round; one result per loop."""
    workers = {loop: Worker(name, loop, args, root) for loop in LOOPS}
    wall: dict[str, list[float]] = {loop: [] for loop in LOOPS}
    cpu: dict[str, list[float]] = {loop: [] for loop in LOOPS}
    mm: list[dict[str, float]] = []
    try:
        for round_, loop in interleave(LOOPS, args.repeats + 1):
            reply = workers[loop].ask("epoch")
            wall[loop].append(reply["wall"]), cpu[loop].append(reply["cpu"])
            if loop == LOOPS[-1] and round_ > 0:
                mm.append(workers["project"].ask("mm"))
        finals = {loop: workers[loop].ask("finish") for loop in LOOPS}
    finally:
        for worker in workers.values():
            worker.close()
    runs = []
    for loop in LOOPS:
        stats = spread_stats(wall[loop][1:])
        runs.append({"model": name, "loop": loop, **finals[loop], "epoch_seconds": wall[loop], "cpu_seconds": cpu[loop],
                     "median_seconds": stats["median"], "spread": stats["spread"],
                     "median_cpu_seconds": statistics.median(cpu[loop][1:])})
        print(f"{name} {loop}: {stats['median']:.2f} s per epoch", file=sys.stderr, flush=True)
    runs[0]["mm"] = {kind: spread_stats([m[kind] for m in mm]) for kind in ("square", "shapes") if mm[0][kind]}
    return runs


# ---------------------------------------------------------------------------------------------- whole processes
def run_stages(stages: list[list[tuple[list[str], dict[str, str]]]]) -> tuple[float, list[dict[str, Any]]]:
    """Run stages one after another, the (command, environment) pairs of a stage at once; the wall seconds
    of it all and, per process, its exit status, peak RSS (MB) and last lines of stdout and stderr."""
    started, results = time.perf_counter(), []
    for stage in stages:
        outputs = [(tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")) for _ in stage]
        processes = [subprocess.Popen(command, stdout=out, stderr=err, env=env, cwd=ROOT, text=True)
                     for (command, env), (out, err) in zip(stage, outputs)]
        for process, (out, err) in zip(processes, outputs):
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
            last = []
            for stream in (out, err):
                stream.seek(0)
                last.append((stream.read().strip().splitlines() or [""])[-1])
                stream.close()
            results.append({"returncode": process.returncode, "peak_rss_mb": usage.ru_maxrss / 1024,
                            "stdout": last[0], "stderr": last[1]})
    seconds = time.perf_counter() - started
    for result, command in zip(results, (command for stage in stages for command, _ in stage)):
        if result["returncode"] != 0:
            raise RuntimeError(f"{Path(command[1]).name} failed: {result['stderr'] or result['stdout']}")
    return seconds, results


def child_env(threads: int) -> dict[str, str]:
    """The environment of a timed process: this one's, with `threads` torch threads and the project importable."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": path}


def train_command(out: Path, settings: dict[str, Any], train_limit: int | None = None) -> list[str]:
    """`python train.py` with these settings (ModelConfig and TrainConfig fields) into run folder `out`."""
    options = [f"--{key.replace('_', '-')}={value:g}" if isinstance(value, float) else f"--{key.replace('_', '-')}={value}"
               for key, value in settings.items()]  # 0.001, not 0.0010000000000000002
    return [sys.executable, str(ROOT / "train.py"), *options, "--no-progress", f"--out={out}"] + (
        [f"--train-limit={train_limit}"] if train_limit else [])


def whole_run_commands(folder: Path, root: Path, run: int, train_limit: int | None) -> dict[str, list[str]]:
    """The two whole runs compared: train.py (A) and the conventional script (B), for pytorch/examples' VAE."""
    script = folder / "conventional_vae.py"  # CONVENTIONAL, written there by whole_run
    settings = {key: EXAMPLES[key] for key in ("epochs", "hidden", "latent_dim", "beta", "batch_size", "lr")}
    conventional_options = [f"--{key.replace('_', '-')}={value}" for key, value in settings.items()]
    return {"train.py": train_command(folder / f"run{run}", {"model": EXAMPLES["model"], **settings}, train_limit),
            "conventional": [sys.executable, str(script), f"--root={root}", *conventional_options]
                            + ([f"--train-limit={train_limit}"] if train_limit else [])}


def whole_run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """A B A B ... whole processes: wall seconds and test loss of each, their ratio of medians."""
    load_fashion_mnist()  # the decoded cache exists, as on a user's second run
    seconds: dict[str, list[float]] = {"train.py": [], "conventional": []}
    losses: dict[str, list[float]] = {"train.py": [], "conventional": []}
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "conventional_vae.py").write_text(CONVENTIONAL)
        for run, kind in interleave(tuple(seconds), args.runs):
            command = whole_run_commands(Path(folder), root, run, args.train_limit)[kind]
            wall, (result,) = run_stages([[(command, child_env(args.threads))]])
            seconds[kind].append(wall)
            losses[kind].append(json.loads((Path(folder) / f"run{run}" / "metrics.json").read_text())["epochs"][-1]
                                ["test"]["total"] if kind == "train.py" else json.loads(result["stdout"])["test_loss"])
            print(f"whole run {kind}: {wall:.1f} s", file=sys.stderr, flush=True)
    stats = {kind: spread_stats(values) for kind, values in seconds.items()}
    return {"seconds": seconds, "stats": stats, "test_loss": {k: statistics.median(v) for k, v in losses.items()},
            "ratio": stats["conventional"]["median"] / stats["train.py"]["median"],
            "command": " ".join(["train.py", *whole_run_commands(Path("TMP"), root, 0, args.train_limit)["train.py"][2:]])}


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def probe(steps: int = 20) -> dict[str, float]:
    """Worker process: the fixed costs of train.py after its imports, in seconds, for pytorch/examples' VAE."""
    paths = [find_file(find_data_dir(download=False), name) for pair in FILES.values() for name in pair]
    costs = {}
    with tempfile.TemporaryDirectory() as cache:
        costs["decode the IDX files and write the cache (first run)"] = timed(
            lambda: [read_idx_cached(path, Path(cache)) for path in paths])
        costs["read the decoded cache"] = timed(lambda: [read_idx_cached(path, Path(cache)) for path in paths])
    started = time.perf_counter()
    data = load_fashion_mnist()
    costs["load the data (cached, into tensors)"] = time.perf_counter() - started
    config = TrainConfig(beta=EXAMPLES["beta"], epochs=EXAMPLES["epochs"])
    model = build_model(ModelConfig(model="fc", hidden=(EXAMPLES["hidden"],), latent_dim=EXAMPLES["latent_dim"]), SEED)
    optimizer, generator = prepare_training(model, config.lr), torch.Generator().manual_seed(SEED)
    one_epoch = lambda x: train_epoch(model, optimizer, x, config, generator)  # noqa: E731
    costs["first step"] = timed(lambda: one_epoch(data.train_images[:BATCH_SIZE]))
    costs["later step (median)"] = statistics.median(timed(lambda: one_epoch(data.train_images[:BATCH_SIZE]))
                                                     for _ in range(steps))
    costs["test pass (10,000 images)"] = timed(lambda: dataset_loss(model, data.test_images, config.beta))
    with tempfile.TemporaryDirectory() as folder:
        def save() -> None:
            save_checkpoint(Path(folder) / "checkpoint.pt", model, optimizer)
            write_metrics(Path(folder), model, {}, [])
        costs["checkpoint and metrics.json"] = timed(save)
    return costs


STARTUP = {"interpreter start": "pass", "import torch": "import torch", "import train (the project)": "import torch, train"}


def fixed_costs(args: argparse.Namespace) -> dict[str, float]:
    """Where the whole run's fixed time goes: process start-up and imports (medians of whole processes, each
    minus the one before), then the probe's in-process timings."""
    walls: dict[str, list[float]] = {name: [] for name in STARTUP}
    for _, name in interleave(tuple(STARTUP), max(args.runs, 3)):
        walls[name].append(run_stages([[([sys.executable, "-c", STARTUP[name]], child_env(args.threads))]])[0])
    medians = [statistics.median(walls[name]) for name in STARTUP]
    costs = {name: medians[i] - (medians[i - 1] if i else 0.0) for i, name in enumerate(STARTUP)}
    command = [sys.executable, str(ROOT / "bench.py"), "--worker", "probe", "--threads", str(args.threads)]
    probe_result = run_stages([[(command, child_env(args.threads))]])[1][0]
    return {"startup": costs, "train_images": args.train_limit or TRAIN_IMAGES, "probe": json.loads(probe_result["stdout"])}


def time_budget(costs: dict[str, Any]) -> dict[str, float]:
    """The fixed costs and the steps of train.py's whole run for pytorch/examples' VAE, estimated part by part."""
    probe, epochs = costs["probe"], EXAMPLES["epochs"]
    steps = epochs * -(-costs["train_images"] // BATCH_SIZE)
    return {**costs["startup"], "load the data (cached, into tensors)": probe["load the data (cached, into tensors)"],
            "first step, over a later one": probe["first step"] - probe["later step (median)"],
            f"{steps:.0f} training steps (later-step median)": steps * probe["later step (median)"],
            f"{epochs} test passes": epochs * probe["test pass (10,000 images)"],
            f"{epochs + 1} checkpoints and metrics.json": (epochs + 1) * probe["checkpoint and metrics.json"]}


SWEEP_PLANS = ("one after the other, 2 threads", "two at once, 1 thread each")


def sweep_plan(plan: str, folder: Path, train_limit: int | None) -> list[list[tuple[list[str], dict[str, str]]]]:
    """Two short fc runs as run_stages stages: one after the other at 2 threads, or both at once at 1 thread."""
    def run(i: int, threads: int) -> tuple[list[str], dict[str, str]]:
        return train_command(folder / f"run{i}", {"epochs": SWEEP_EPOCHS}, train_limit or SWEEP_IMAGES), child_env(threads)
    return [[run(0, 2)], [run(1, 2)]] if plan == SWEEP_PLANS[0] else [[run(0, 1), run(1, 1)]]


def sweep(args: argparse.Namespace) -> dict[str, Any]:
    """Wall time of each sweep plan, the plans interleaved."""
    seconds: dict[str, list[float]] = {plan: [] for plan in SWEEP_PLANS}
    for _, plan in interleave(SWEEP_PLANS, args.runs):
        with tempfile.TemporaryDirectory() as folder:
            seconds[plan].append(run_stages(sweep_plan(plan, Path(folder), args.train_limit))[0])
            print(f"sweep {plan}: {seconds[plan][-1]:.1f} s", file=sys.stderr, flush=True)
    return {"seconds": seconds, "stats": {plan: spread_stats(values) for plan, values in seconds.items()},
            "images": args.train_limit or SWEEP_IMAGES}


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
    return (float(duration), "papermill metadata, an earlier run") if duration else (None, "not executed with papermill yet")


# ---------------------------------------------------------------------------------------------- report
def summarise_epochs(runs: list[dict[str, Any]], flops: dict[str, int]) -> None:
    """Add images/s, speed-ups, GFLOP/s and fractions of torch.mm to each run of the epoch benchmark."""
    by = {(run["model"], run["loop"]): run for run in runs}
    for run in runs:
        conventional, project = by.get((run["model"], "dataloader")), by[(run["model"], "project")]
        run["images_per_second"] = TRAIN_IMAGES / run["median_seconds"]
        run["speedup_vs_dataloader"] = conventional["median_seconds"] / run["median_seconds"] if conventional else None
        run["gflops"] = flops[run["model"]] * TRAIN_IMAGES / BATCH_SIZE / run["median_seconds"] / 1e9
        run["fraction_of_mm"] = {kind: run["gflops"] / stats["median"] for kind, stats in project.get("mm", {}).items()}


def seconds_range(stats: dict[str, float]) -> str:
    return f"{stats['median']:.1f} s ({stats['min']:.1f}-{stats['max']:.1f})"


def epoch_targets(part: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    busy, runs = part["load"]["busy"], part["runs"]
    by = {(run["model"], run["loop"]): run for run in runs}
    rows = []
    for name in sorted({run["model"] for run in runs}, key=MODEL_NAMES.index):
        project, plain, loader = by[(name, "project")], by[(name, "plain")], by[(name, "dataloader")]
        speedup = project["speedup_vs_dataloader"]
        rows.append((f"{name} epoch vs DataLoader loop", f"{speedup:.2f}x", f">= {TARGET_SPEEDUP[name]:g}x",
                     verdict(speedup >= TARGET_SPEEDUP[name], busy, (project["spread"], loader["spread"]))))
        for kind, fraction in project["fraction_of_mm"].items() if name == "fc" else ():
            what = f"torch.mm {MM_SIZE}^2" if kind == "square" else "torch.mm at the model's own shapes"
            rows.append((f"fc training throughput / {what}", f"{100 * fraction:.0f} %",
                         f">= {100 * TARGET_MM_FRACTION:.0f} %", verdict(fraction >= TARGET_MM_FRACTION, busy,
                                                                         (project["spread"], project["mm"][kind]["spread"]))))
        rows.append((f"{name} peak resident memory", f"{project['peak_rss_mb']:.0f} MB", f"< {TARGET_PEAK_MB} MB",
                     verdict(project["peak_rss_mb"] < TARGET_PEAK_MB)))
        if project["images_per_epoch"] == TRAIN_IMAGES:
            gap = abs(project["test_loss"] - plain["test_loss"])
            rows.append((f"{name} test loss after {project['epochs']} epochs, project vs plain fp32",
                         f"{gap:.3f} nats", f"<= {CURVE_TOLERANCE} nats", verdict(gap <= CURVE_TOLERANCE)))
    return rows


def whole_run_targets(part: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    stats, losses = part["stats"], part["test_loss"]
    spreads = tuple(s["spread"] for s in stats.values())
    gap = abs(losses["train.py"] - losses["conventional"])
    return [("whole run, conventional script / train.py (wall, start-up included)",
             f"{part['ratio']:.2f}x ({seconds_range(stats['conventional'])} / {seconds_range(stats['train.py'])})",
             f">= {TARGET_WHOLE_RUN:g}x", verdict(part["ratio"] >= TARGET_WHOLE_RUN, part["load"]["busy"], spreads)),
            ("whole run, test loss train.py vs conventional script",
             f"{gap:.2f} nats ({losses['train.py']:.2f} vs {losses['conventional']:.2f})",
             f"<= {CURVE_TOLERANCE} nats", verdict(gap <= CURVE_TOLERANCE))]


def sweep_targets(part: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    stats = part["stats"]
    faster = min(stats, key=lambda plan: stats[plan]["median"])
    measured = "; ".join(f"{plan}: {seconds_range(s)}" for plan, s in stats.items())
    return [(f"sweep: two fc runs of {SWEEP_EPOCHS} epochs on {part['images']:,} images", measured, "the faster plan",
             verdict(faster, part["load"]["busy"], tuple(s["spread"] for s in stats.values())))]


def notebook_targets(part: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    rows = []
    for name, (seconds, source) in part["seconds"].items():
        if seconds is not None:
            busy = part["load"]["busy"] and source.startswith("executed")
            rows.append((f"{NOTEBOOKS[name]} end to end ({source})", f"{seconds:.0f} s",
                         f"<= {TARGET_NOTEBOOK_SECONDS[name]} s", verdict(seconds <= TARGET_NOTEBOOK_SECONDS[name], busy)))
    return rows


def targets(result: dict[str, Any]) -> list[dict[str, str]]:
    """Every target of the parts that ran: what, measured, goal, and the verdict (or why there is none)."""
    rows = []
    for key, part_targets in (("epochs", epoch_targets), ("whole_run", whole_run_targets),
                              ("sweep", sweep_targets), ("notebooks", notebook_targets)):
        if key in result:
            rows += part_targets(result[key])
    return [dict(zip(("what", "measured", "goal", "met"), row)) for row in rows]


def load_text(load: dict[str, Any]) -> str:
    if load["during"] is None:
        return "no /proc/stat to tell how busy the machine was"
    return (f"other processes kept {load['before']:.2f} cores busy before and {load['during']:.2f} during"
            + (" (busy: no verdicts from these times)" if load["busy"] else ""))


def epoch_markdown(part: dict[str, Any]) -> list[str]:
    runs = part["runs"]
    timed_ = ("full epochs" if runs[0]["images_per_epoch"] == TRAIN_IMAGES else
              f"epochs of {runs[0]['images_per_epoch'] // BATCH_SIZE} steps scaled to {TRAIN_IMAGES:,} images")
    mm = "; ".join(f"{run['model']}: torch.mm " + ", ".join(
        f"{'2048^2' if kind == 'square' else 'model shapes'} {s['median']:.1f} GFLOP/s ({s['min']:.1f}-{s['max']:.1f})"
        for kind, s in run["mm"].items()) for run in runs if "mm" in run)
    lines = [f"### One training epoch ({TRAIN_IMAGES:,} images, batch {BATCH_SIZE}, Adam)", "",
             f"Loops interleaved epoch by epoch, each in its own process; median (min-max) of {runs[0]['epochs'] - 1} "
             f"timed {timed_} after a warm-up round; {load_text(part['load'])}. In the project process, between "
             f"rounds: {mm}.", "",
             "| model | loop | epoch s (min-max) | images/s | CPU s | peak RSS MB | GFLOP/s | % of mm 2048 | "
             "% of mm shapes | test loss | vs DataLoader |", "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for run in runs:
        fraction = {kind: f"{100 * f:.0f}" for kind, f in run["fraction_of_mm"].items()}
        lines.append(f"| {run['model']} | {run['loop']} | {run['median_seconds']:.2f} ({min(run['epoch_seconds'][1:]):.2f}-"
                     f"{max(run['epoch_seconds'][1:]):.2f}) | {run['images_per_second']:,.0f} | {run['median_cpu_seconds']:.2f} "
                     f"| {run['peak_rss_mb']:.0f} | {run['gflops']:.1f} | {fraction.get('square', '-')} "
                     f"| {fraction.get('shapes', '-')} | {run['test_loss']:.2f} | {run['speedup_vs_dataloader']:.2f}x |")
    return lines


def whole_run_markdown(part: dict[str, Any], costs: dict[str, Any] | None) -> list[str]:
    lines = ["### Whole run, as a user times it", "",
             f"`python {part['command']}` against CONVENTIONAL in bench.py (DataLoader + ToTensor, the same model and "
             f"loss), whole processes interleaved A B A B; {load_text(part['load'])}.", "",
             "| run | wall s, each run | median (min-max) | test loss |", "|---|---|--:|--:|"]
    for kind, values in part["seconds"].items():
        lines.append(f"| {kind} | {', '.join(f'{v:.1f}' for v in values)} | {seconds_range(part['stats'][kind])} "
                     f"| {part['test_loss'][kind]:.2f} |")
    if costs:
        probe, budget = costs["probe"], time_budget(costs)
        lines += ["", f"Where train.py's time goes (a separate probe; {load_text(costs['load'])}; the data files: "
                      f"decoded without cache {probe['decode the IDX files and write the cache (first run)']:.2f} s, "
                      f"read from the cache {probe['read the decoded cache']:.2f} s):", "",
                  "| cost | seconds |", "|---|--:|"]
        lines += [f"| {name} | {seconds:.2f} |" for name, seconds in budget.items()]
        lines.append(f"| sum (whole run measured: {part['stats']['train.py']['median']:.1f}) | {sum(budget.values()):.1f} |")
    return lines


def sweep_markdown(part: dict[str, Any]) -> list[str]:
    return ["### Sweep throughput", "", f"Two train.py runs (fc defaults, {SWEEP_EPOCHS} epochs on {part['images']:,} "
            f"images) per plan, plans interleaved; {load_text(part['load'])}.", "", "| plan | wall s, each | median (min-max) |",
            "|---|---|--:|"] + [f"| {plan} | {', '.join(f'{v:.1f}' for v in part['seconds'][plan])} | {seconds_range(s)} |"
                                for plan, s in part["stats"].items()]


def markdown(result: dict[str, Any]) -> str:
    """The results as markdown: environment, one section per part, the targets."""
    env = result["environment"]
    lines = [f"`{result['command']}` on {env['date']}: torch {env['torch']}, {env['cpu']}, torch threads "
             f"{env['threads']}, CUDA available: {env['cuda']}.", ""]
    if "epochs" in result:
        lines += epoch_markdown(result["epochs"]) + [""]
    if "whole_run" in result:
        lines += whole_run_markdown(result["whole_run"], result.get("fixed_costs")) + [""]
    if "sweep" in result:
        lines += sweep_markdown(result["sweep"]) + [""]
    lines += ["### Targets", "", f"No verdict where other processes kept more than {BUSY_CORES} cores busy or "
              f"repeated timings spread by more than {100 * MAX_SPREAD:.0f} % of their median.", "",
              "| target | measured | goal | met |", "|---|--:|--:|---|"]
    lines += [f"| {t['what']} | {t['measured']} | {t['goal']} | {t['met']} |" for t in result["targets"]]
    return "\n".join(lines) + "\n"


def environment(threads: int) -> dict[str, Any]:
    """What the numbers depend on: versions, CPU, threads, CUDA."""
    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
             if line.startswith("model name")] if cpuinfo.exists() else []
    cpu = f"{names[0] if names else platform.processor()} ({os.cpu_count()} CPUs, " \
          f"{torch.backends.cpu.get_cpu_capability()})"
    return {"torch": torch.__version__, "python": platform.python_version(), "cpu": cpu, "threads": threads,
            "cuda": torch.cuda.is_available(), "date": time.strftime("%Y-%m-%d %H:%M:%S")}


# ---------------------------------------------------------------------------------------------- command line
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = OneLineParser(prog="bench.py", description="Time training against its targets (see the module docstring).")
    p.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="what to run (default: all)")
    p.add_argument("--repeats", type=int, default=REPEATS, help=f"timed epochs per loop (default {REPEATS})")
    p.add_argument("--steps", type=int, help="time this many steps per epoch, scaled to a full epoch (default: full)")
    p.add_argument("--runs", type=int, default=WHOLE_RUNS, help=f"whole runs of each kind and sweep rounds "
                                                                f"(default {WHOLE_RUNS})")
    p.add_argument("--train-limit", type=int, help="whole runs and sweeps on this many training images (default: "
                                                   f"all for whole runs, {SWEEP_IMAGES:,} for sweeps)")
    p.add_argument("--quick", action="store_true", help=f"smoke run: 1 timed epoch of {QUICK_STEPS} steps, one run "
                                                        f"of each kind on {QUICK_LIMIT:,} images")
    p.add_argument("--models", nargs="+", choices=MODEL_NAMES, default=list(MODEL_NAMES), help="(default: both)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(),
                   help=f"torch threads (default {torch.get_num_threads()})")
    p.add_argument("--run-notebooks", action="store_true", help="re-execute the notebooks instead of reading "
                                                                "their papermill metadata (adds their run time)")
    p.add_argument("--out", default="results", help="folder for bench.json and bench.md (default results)")
    p.add_argument("--worker", help=argparse.SUPPRESS)   # MODEL:LOOP or probe, run by the parent in a fresh process
    p.add_argument("--tv-root", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.repeats, args.runs = 1, 1
        args.steps, args.train_limit = args.steps or QUICK_STEPS, args.train_limit or QUICK_LIMIT
    for name in ("repeats", "steps", "threads", "runs", "train_limit"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    for name, high in (("steps", TRAIN_IMAGES // BATCH_SIZE), ("train_limit", TRAIN_IMAGES)):
        if (getattr(args, name) or 0) > high:
            p.error(f"--{name.replace('_', '-')} must be <= {high}, got {getattr(args, name)}")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        p.error(f"--out {args.out} is a file, not a folder")
    return args


def run_parts(args: argparse.Namespace) -> dict[str, Any]:
    """The parts asked for, each with the load measured around it."""
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        root = torchvision_root(Path(folder)) if {"epochs", "whole-run"} & set(args.parts) else Path(folder)
        if "epochs" in args.parts:
            result["epochs"] = measured_quietly(lambda: {"runs": [run for name in args.models
                                                                  for run in epoch_benchmark(name, args, root)]})
            summarise_epochs(result["epochs"]["runs"], {name: step_flops(new_model(name)) for name in args.models})
        if "whole-run" in args.parts:
            result["whole_run"] = measured_quietly(lambda: whole_run(args, root))
            result["fixed_costs"] = measured_quietly(lambda: fixed_costs(args))
    if "sweep" in args.parts:
        result["sweep"] = measured_quietly(lambda: sweep(args))
    result["notebooks"] = measured_quietly(lambda: {"seconds": {name: notebook_seconds(name, args.run_notebooks)
                                                                for name in args.models}})
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.worker == "probe":
        print(json.dumps(probe()))
        return 0
    if args.worker:
        name, loop = args.worker.split(":")
        serve(name, loop, args.steps, Path(args.tv_root))
        return 0
    result = {"environment": environment(args.threads),
              "command": " ".join(["python", "bench.py", *(sys.argv[1:] if argv is None else argv)])}
    try:
        result.update(run_parts(args))
    except (DataError, RuntimeError) as error:
        print(f"bench.py: error: {error}", file=sys.stderr)
        return 1
    result["targets"] = targets(result)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "bench.json", result)
    atomic_write(out / "bench.md", lambda f: f.write(markdown(result).encode()))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
