"""Can each factor of the shapes dataset (shapes.py) be read from the pixels? A small CNN with one head per factor,
trained on a random 80 % of the images and scored on the other 20 %; and a figure of each factor varied alone.

    python -m lab.shapes_probe   # -> results/shapes-probe.md and .csv, img/shapes_factors.png (minutes on one core)
"""

from __future__ import annotations

import math
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import plots
from cli import OneLineParser
from data import batches
from lab.machine import cpu_model
from lab.tables import write_table
from shapes import FACTORS, ROTATIONAL_SYMMETRY, SHAPE_NAMES, generate, load_shapes

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "shapes-probe"
FIGURE = ROOT / "img" / "shapes_factors.png"
SEED = 0
TEST_FRACTION = 0.2
EPOCHS = 4
BATCH_SIZE = 128
LR = 2e-3
SIZES = tuple(len(factor.values) for factor in FACTORS)
ORIENTATION = [factor.name for factor in FACTORS].index("orientation")
PLURALS = {"square": "squares", "ellipse": "ellipses", "heart": "hearts"}


class Probe(nn.Module):
    """Three 3x3 convolutions (16, 32, 64 channels, strides 1, 2, 2, batch norm, ReLU); a linear head per factor on
    a 128-unit layer over the flattened map (where) beside the map's global maximum per channel (what)."""

    def __init__(self) -> None:
        super().__init__()
        self.convolutions = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        )  # fmt: skip
        self.where = nn.Sequential(nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU())
        self.heads = nn.ModuleList(nn.Linear(128 + 64, size) for size in SIZES)

    def forward(self, x: Tensor) -> list[Tensor]:
        maps = self.convolutions(x)
        features = torch.cat([self.where(maps), maps.amax((2, 3))], 1)
        return [head(features) for head in self.heads]


def to_input(images: np.ndarray) -> Tensor:
    return torch.from_numpy(images).unsqueeze(1).float().div_(255)


def train_probe(images: Tensor, factors: Tensor, epochs: int, seed: int, log: Callable[[str], None] = print) -> Probe:
    """Adam with cosine learning-rate decay on the sum of the heads' cross-entropies, reproducibly from `seed`."""
    torch.manual_seed(seed)
    probe = Probe()
    optimizer = torch.optim.Adam(probe.parameters(), lr=LR)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * math.ceil(len(images) / BATCH_SIZE))
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(1, epochs + 1):
        started, total = time.perf_counter(), 0.0
        for index in batches(torch.arange(len(images)), BATCH_SIZE, generator):
            logits = probe(images[index])
            loss = sum(F.cross_entropy(logit, factors[index, i]) for i, logit in enumerate(logits))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(index)
        log(f"epoch {epoch}/{epochs}  loss {total / len(images):.4f}  {time.perf_counter() - started:.0f} s")
    return probe.eval()


@torch.no_grad()
def predict(probe: Probe, images: Tensor) -> np.ndarray:
    """The most likely value index of each factor, (N, factors)."""
    chunks = [torch.stack([logit.argmax(1) for logit in probe(chunk)], 1) for chunk in images.split(4096)]
    return torch.cat(chunks).numpy()


def accuracy_rows(predicted: np.ndarray, true: np.ndarray) -> list[dict]:
    """One row per factor, and one per shape for orientation; 'modulo symmetry' counts an orientation right when it
    is a whole number of the shape's symmetry periods away."""
    steps = SIZES[ORIENTATION]
    period = np.array([steps // ROTATIONAL_SYMMETRY[name] for name in SHAPE_NAMES])[true[:, 0]]
    folded = (predicted[:, ORIENTATION] - true[:, ORIENTATION]) % period == 0
    rows = []
    for i, factor in enumerate(FACTORS):
        right = predicted[:, i] == true[:, i]
        modulo = folded if i == ORIENTATION else right
        rows.append({"factor": factor.name, "values": str(SIZES[i]), "chance": 1 / SIZES[i],
                     "probe accuracy": right.mean(), "accuracy modulo symmetry": modulo.mean()})  # fmt: skip
        if i != ORIENTATION:
            continue
        for index, name in enumerate(SHAPE_NAMES):
            mine = true[:, 0] == index
            distinct = steps // ROTATIONAL_SYMMETRY[name]
            rows.append({"factor": f"orientation, {PLURALS[name]}", "values": f"{steps} ({distinct} distinct)",
                         "chance": 1 / steps, "probe accuracy": right[mine].mean(),
                         "accuracy modulo symmetry": folded[mine].mean()})  # fmt: skip
    return rows


def timed(call: Callable[[], object], repeats: int = 5) -> float:
    """The median wall time of `call` in seconds."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def machine() -> str:
    """The CPU's model name and count, from lscpu (else /proc/cpuinfo)."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        text = ""
    fields = {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in text.splitlines())}
    return f"{fields.get('Model name') or cpu_model()} ({fields.get('CPU(s)', '?')} CPUs, lscpu)"


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="lab.shapes_probe", description="Probe each factor of the shapes dataset from its pixels.")
    p.add_argument("--epochs", type=int, default=EPOCHS)
    p.add_argument("--seed", type=int, default=SEED)
    args = p.parse_args(argv)
    if args.epochs < 1:
        p.error(f"--epochs must be >= 1, got {args.epochs}")
    started = time.perf_counter()
    generate_seconds = timed(generate)
    images, factors = load_shapes()
    load_seconds = timed(load_shapes)  # from the cache: silent
    plots.save(plots.plot_shape_factors(images), FIGURE.name, folder=FIGURE.parent)
    order = np.random.default_rng(args.seed).permutation(len(images))
    train, test = np.split(order, [round((1 - TEST_FRACTION) * len(images))])
    x, y = to_input(images), torch.from_numpy(factors)
    probe = train_probe(x[train], y[train], args.epochs, args.seed)
    rows = accuracy_rows(predict(probe, x[test]), factors[test])
    parameters = sum(p.numel() for p in probe.parameters())
    model = " ".join(Probe.__doc__.split()).rstrip(".")
    header = (
        "# Shapes dataset: can each factor be read from the pixels?\n\n"
        f"Made by `python -m lab.shapes_probe --epochs {args.epochs} --seed {args.seed}` in "
        f"{time.perf_counter() - started:.0f} s on {machine()}, {torch.get_num_threads()} torch thread(s), torch "
        f"{torch.__version__}.\n\n"
        f"- Data: shapes.generate(), {len(images):,} images. generate() takes {generate_seconds:.2f} s, "
        f"load_shapes() from its cache {load_seconds:.2f} s (medians of 5 calls).\n"
        f"- Split: a random permutation (numpy default_rng({args.seed})): {len(train):,} training images, "
        f"{len(test):,} test images; the accuracies are on the test images.\n"
        f"- Model: one CNN, a probe per factor sharing its convolutions. {model}; {parameters:,} parameters. "
        f"Trained on the sum of the heads' cross-entropies: Adam, lr {LR} with cosine decay, batch {BATCH_SIZE}, "
        f"{args.epochs} epochs, seed {args.seed}.\n"
        "- Chance is 1 / values. An orientation counts right modulo symmetry when it is a whole number of the "
        "shape's symmetry periods away (90 degrees for squares, 180 for ellipses, 360 for hearts); chance modulo "
        "symmetry is then 0.2 on squares and 0.1 on ellipses. Unfolded, a square's or an ellipse's orientation is "
        "a guess among equal images: at most 0.25 and 0.5 on average, and less here, since the copies of a test "
        "image in the training set carry the other labels.\n\n"
    )
    for path in write_table(rows, RESULTS, header):
        print(path.relative_to(ROOT))
    print(FIGURE.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
