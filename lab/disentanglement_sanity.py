"""The disentanglement metrics (disentanglement.py) on constructed codes whose answer is known, on a factor grid the
size of the coming shapes dataset: 3 x 6 x 20 x 14 x 14 = 70,560 rows (shape, scale, orientation, x, y), every
combination once, codes of 10 coordinates.

    OMP_NUM_THREADS=1 python -m lab.disentanglement_sanity     # -> results/disentanglement-sanity.md and .csv

Each case is the 5 factors scaled to unit variance (or a mix of them) and 5 more coordinates; 'seconds' and
'cpu_seconds' are the wall and CPU time of disentanglement.disentanglement on the case (all metrics). Seeds are
fixed: the same table every run, but the seconds.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from disentanglement import disentanglement
from lab.machine import cpu_model
from lab.tables import write_table

SIZES = (3, 6, 20, 14, 14)
STEM = Path("results") / "disentanglement-sanity"
COMMAND = "OMP_NUM_THREADS=1 python -m lab.disentanglement_sanity"
COLUMNS = ("mig", "factor_vae", "dci_disentanglement", "dci_completeness", "dci_informativeness")


def factor_grid(sizes: tuple[int, ...] = SIZES) -> np.ndarray:
    """Every combination of factor values once, (prod(sizes), len(sizes)) value indices."""
    return np.stack(np.meshgrid(*map(np.arange, sizes), indexing="ij"), -1).reshape(-1, len(sizes))


def cases(factors: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """The constructed codes, (N, 10) each, by case name."""
    rng = np.random.default_rng(seed)
    scaled = (factors - factors.mean(0)) / factors.std(0)

    def noise(columns: int, scale: float = 1.0) -> np.ndarray:
        return scale * rng.normal(size=(len(factors), columns))

    rotation = np.linalg.qr(rng.normal(size=(5, 5)))[0]
    return {
        "factors + 5 noise": np.hstack([scaled, noise(5)]),
        "factors + 5 dead": np.hstack([scaled, np.zeros((len(factors), 5))]),
        "factors with noise sd 0.5 + 5 noise": np.hstack([scaled + noise(5, 0.5), noise(5)]),
        "orientation copied + 4 noise": np.hstack([scaled, scaled[:, 2:3], noise(4)]),
        "rotated factors + 5 noise": np.hstack([scaled @ rotation, noise(5)]),
        "pure noise": noise(10),
    }


def sanity_rows(seed: int = 0) -> list[dict]:
    """One row per case: the five headline metrics, and the wall and CPU seconds all metrics took."""
    factors, rows = factor_grid(), []
    for name, codes in cases(factors, seed).items():
        started, cpu_started = time.perf_counter(), time.process_time()
        scores = disentanglement(codes, factors, seed)
        seconds = {"seconds": time.perf_counter() - started, "cpu_seconds": time.process_time() - cpu_started}
        rows.append({"case": name, **{key: scores[key] for key in COLUMNS}, **seconds})
        print(f"{name}: " + ", ".join(f"{key} {value:.4f}" for key, value in rows[-1].items() if key != "case"))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lab.disentanglement_sanity", description=__doc__.split("\n\n")[0])
    parser.parse_args(argv)
    load = os.getloadavg()[0]
    rows = sanity_rows()
    wall, cpu = sum(row["seconds"] for row in rows), sum(row["cpu_seconds"] for row in rows)
    header = (
        "# Disentanglement metrics on constructed codes\n\n"
        f"Made by `{COMMAND}` (disentanglement.py, seed 0) on a {' x '.join(map(str, SIZES))} factor grid "
        f"(shape, scale, orientation, x, y: {len(factor_grid()):,} rows, every combination once), codes of 10 "
        "coordinates: the 5 factors scaled to unit variance (or mixed as the case says), then noise N(0, 1) or dead "
        "(constant) coordinates. FactorVAE chance: 0.2. DCI informativeness is the mean test accuracy (chance: "
        f"{np.mean([1 / size for size in SIZES]):.4f}).\n\n"
        "seconds, cpu_seconds: wall and CPU time of all metrics for one case (the CPU time is what it costs one core; "
        f"the wall time also waits for the shared cores), OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"
        f", on {cpu_model()}, a 2-core machine shared with other work (load average {load:.1f} at the start); "
        f"{wall:.1f} s wall, {cpu:.1f} s CPU for the {len(rows)} cases.\n\n"
    )
    for path in write_table(rows, STEM, header):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
