"""lab.bench's measurements inside one fresh process; each prints its result as one JSON line on stdout.

    python -m lab.bench_worker epoch --model cnn --loop dataloader [--steps 40]
    python -m lab.bench_worker floor --t0 "$(date +%s.%N)" --hidden 400 --latent-dim 20 --beta 1 --epochs 2

epoch: a warm-up, then one timed training epoch (60,000 images; --steps: that many steps, scaled to an epoch) of a
model in one loop, and the epoch's floor. floor: the floor of a whole `python train.py` run with these settings.
A floor is the time of the unavoidable work alone: the training steps' matrix products and convolutions at their
best, each linear and convolutional layer replayed alone in this process, forward and backward, on the inputs
forward hooks kept from one step, repeatedly and hot in cache (its FLOPs: FlopCounterMode on that step); the whole
run's floor adds the start-up and imports (since --t0, the parent's clock when it started this process) and loading
the data.
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from cli import OneLineParser, add_options, given
from config import TrainConfig
from data import load_dataset
from fashion_mnist import COUNTS
from models import BetaVAE, ModelConfig, build_model
from objectives import objective
from train import prepare_training, train_epoch

IMPORTED = time.time()  # train.py's imports are done: the rest is the benchmark's own

from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from lab import conventional  # noqa: E402

LOOPS = ("project", "plain", "dataloader")
WARMUP_STEPS = 20
REPLAYS = 10
TRAIN_IMAGES = COUNTS["train"]


LAYERS = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)  # where a step's matrix products and convolutions are
Call = tuple[nn.Module, tuple[Any, ...]]  # a layer and a copy of the inputs it had in the step


def step_ops(model: BetaVAE, batch_size: int, beta: float = 1.0) -> tuple[int, list[Call]]:
    """The FLOPs of one training step's forward and backward (FlopCounterMode), and each linear and convolutional
    layer's call in it: the layer and a copy of its inputs (same memory layout, requiring grad as they did);
    the gradients are cleared afterwards."""
    x = torch.rand(batch_size, *model.image_shape, generator=torch.Generator().manual_seed(0))
    calls: list[Call] = []

    def copy(a: Any) -> Any:  # clone keeps the layout (preserve_format)
        return a.detach().clone().requires_grad_(a.requires_grad) if isinstance(a, torch.Tensor) else a

    def keep(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        calls.append((module, tuple(copy(a) for a in args)))

    hooks = [m.register_forward_hook(keep) for m in model.modules() if isinstance(m, LAYERS)]
    try:
        with FlopCounterMode(display=False) as counter:
            objective(TrainConfig(beta=beta), len(x)).loss(model(x), x, model.likelihood, 0.0).total.backward()
    finally:
        for hook in hooks:
            hook.remove()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops(), calls


def clear_grads(calls: list[Call]) -> None:
    for module, args in calls:
        for t in (*args, *module.parameters()):
            if isinstance(t, torch.Tensor):
                t.grad = None


def replay(calls: list[Call], grads: list[torch.Tensor] | None = None) -> list[torch.Tensor]:
    """Each layer alone, back to back: its forward, then its backward from the output gradient (`grads`, default
    ones) into its parameters and any input that required grad in the step (their .grad cleared first, as a step
    starts with none). The output gradients used."""
    used = []
    for i, (module, args) in enumerate(calls):
        clear_grads([(module, args)])
        out = module(*args)
        grad = torch.ones_like(out) if grads is None else grads[i]
        out.backward(grad)
        used.append(grad)
    return used


def replay_seconds(calls: list[Call], repeats: int = REPLAYS) -> float:
    """Seconds of one step's layer calls at their best: each layer alone, replayed `repeats` times in a row after a
    warm-up (hot in cache), its median; summed over the layers."""
    total = 0.0
    for call in calls:
        grads = replay([call])  # the warm-up
        seconds = []
        for _ in range(repeats):
            started = time.perf_counter()
            replay([call], grads)
            seconds.append(time.perf_counter() - started)
        total += statistics.median(seconds)
    clear_grads(calls)  # the model is left as the step left it
    return total


def compute_floor(model: BetaVAE, config: TrainConfig, images: int) -> dict[str, float]:
    """FLOPs per step, the rate of the step's layer calls at their best and the seconds `images` training images
    take at that rate."""
    flops, calls = step_ops(model, config.batch_size, config.beta)
    seconds = replay_seconds(calls)
    return {
        "flops_per_step": flops,
        "mm_gflops": flops / seconds / 1e9,
        "compute_seconds": seconds * images / config.batch_size,
    }


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def epoch_runner(
    model: BetaVAE, loop: str, config: TrainConfig, root: Path, sizes: tuple[int, ...]
) -> Callable[[int], Any]:
    """one_epoch(images), for `images` in `sizes`: an epoch over the first `images` training images in `loop`'s
    way (project: fit's setup and step on data.py's tensors; plain: the same step, plain Adam, default memory
    layout; dataloader: lab.conventional's DataLoader loop). Data and loaders are set up here, not timed."""
    if loop == "dataloader":
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        goal = objective(config, TRAIN_IMAGES)

        def loss(m: BetaVAE, x: torch.Tensor) -> torch.Tensor:
            return goal.loss(m(x), x, m.likelihood, 0.0).total

        loaders = {n: conventional.loader(root, True, config.batch_size, n) for n in sizes}
        return lambda images: conventional.train_epoch(model, optimizer, loaders[images], loss, per_batch_mean=True)
    train_x = load_dataset(config.dataset).train_images
    optimizer = (
        prepare_training(model, config.lr) if loop == "project" else torch.optim.Adam(model.parameters(), lr=config.lr)
    )
    generator = torch.Generator().manual_seed(config.seed)  # as fit seeds it
    goal = objective(config, len(train_x))
    return lambda images: train_epoch(model, optimizer, train_x[:images], goal, config, generator)


def epoch(
    model_config: ModelConfig,
    loop: str,
    steps: int | None,
    root: Path,
    warmup: int = WARMUP_STEPS,
    config: TrainConfig = TrainConfig(),
) -> dict[str, Any]:
    """Seconds (wall and CPU) of one epoch after `warmup` steps, scaled to 60,000 images, its floor, and this
    process's peak memory."""
    model = build_model(model_config, seed=config.seed)
    images = TRAIN_IMAGES if steps is None else min(TRAIN_IMAGES, steps * config.batch_size)
    one_epoch = epoch_runner(model, loop, config, root, (warmup * config.batch_size, images))
    one_epoch(warmup * config.batch_size)
    wall, cpu = time.perf_counter(), time.process_time()
    one_epoch(images)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    scale = TRAIN_IMAGES / images
    floor = compute_floor(model, config, TRAIN_IMAGES)
    return {
        "seconds": wall * scale,
        "cpu_seconds": cpu * scale,
        "timed_images": images,
        **floor,
        "floor_seconds": floor["compute_seconds"],
        "peak_rss_mb": peak_rss_mb(),
    }


def whole_run_floor(t0: float, model_config: ModelConfig, config: TrainConfig) -> dict[str, float]:
    """The floor of `python train.py` with these settings: start-up and imports (since t0), data, compute."""
    started = time.perf_counter()
    data = load_dataset(config.dataset)
    costs = {"import_seconds": IMPORTED - t0, "data_seconds": time.perf_counter() - started}
    model = build_model(model_config, seed=config.seed)
    prepare_training(model, config.lr)
    images = len(data.train_images[: config.train_limit]) * config.epochs
    costs.update(compute_floor(model, config, images))
    return {**costs, "floor_seconds": costs["import_seconds"] + costs["data_seconds"] + costs["compute_seconds"]}


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="lab.bench_worker", description="One measurement of lab.bench (see the docstring).")
    p.add_argument("part", choices=("epoch", "floor"))
    add_options(p, ModelConfig)
    add_options(p, TrainConfig)
    p.add_argument("--loop", choices=LOOPS, default="project", help="epoch: the training loop (default project)")
    p.add_argument("--steps", type=int, help="epoch: time this many steps, scaled to 60,000 images (default all)")
    p.add_argument("--root", type=Path, help="epoch: a folder laid out by lab.conventional.torchvision_root")
    p.add_argument("--t0", type=float, help="floor: the parent's time.time() when it started this process")
    args = p.parse_args(argv)
    try:
        model_config, config = ModelConfig(**given(args, ModelConfig)), TrainConfig(**given(args, TrainConfig))
    except ValueError as error:
        p.error(str(error))
    if args.part == "floor":
        result = whole_run_floor(args.t0 if args.t0 is not None else IMPORTED, model_config, config)
    else:
        with tempfile.TemporaryDirectory() as folder:
            if args.root is None and args.loop == "dataloader":
                args.root = conventional.torchvision_root(Path(folder))
            result = epoch(model_config, args.loop, args.steps, args.root, config=config)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
