"""Beta sweep: one run per beta (trained, resumed or reused), each evaluated, then a table and figures.

    python sweep.py --model cnn --betas 0.01 0.1 0.5 1 2 4 --epochs 20 [--likelihood gaussian] [--latent-dim 3]

Runs:    runs/sweep/{model}-{likelihood}-z{latent_dim}-beta{beta:g}/  (complete: reused; incomplete: resumed)
         each with eval.json (reused while newer than the checkpoint and the classifier, with the same settings)
Table:   results/sweep-{model}-{likelihood}-z{latent_dim}.csv and .md
Figures: img/sweep-{model}-{likelihood}-rate_distortion.png, -knn.png, -fd.png
An interrupted sweep continues where it stopped when the same command is run again.
"""
from __future__ import annotations

import csv
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import plots
from checkpoint import CHECKPOINT, CheckpointError, config_differences, load_checkpoint
from classifier import WEIGHTS, ClassifierError, load_classifier
from cli import OneLineParser
from data import DataError, FashionMNISTData, load_fashion_mnist
from evaluate import (IWAE_IMAGES, K, SAMPLER_NAMES, SAMPLES, check_positive, eval_path, evaluate_run,
                      reference_features, summary, with_test_limit)
from models import LIKELIHOODS, MODELS, ModelConfig, build_model, count_parameters
from train import TrainConfig, TrainingError, fit

BETAS = (0.01, 0.1, 0.5, 1.0, 2.0, 4.0)
RUNS_DIR = Path("runs/sweep")
RESULTS_DIR = Path("results")
IMG_DIR = Path("img")
DEFAULTS = TrainConfig()


def run_name(model: str, likelihood: str, latent_dim: int, beta: float) -> str:
    return f"{model}-{likelihood}-z{latent_dim}-beta{beta:g}"


def train_run(run_dir: Path, model_config: ModelConfig, config: TrainConfig, data: FashionMNISTData,
              progress: bool = True) -> str:
    """Bring the run in `run_dir` to config.epochs epochs: "reused" (already there), "resumed" or "trained"."""
    if (run_dir / CHECKPOINT).exists():
        checkpoint = load_checkpoint(run_dir)
        saved = {**checkpoint["config"], **checkpoint["train_config"]}
        wanted = {**model_config.as_dict(), **asdict(config)}
        differences = config_differences(saved, {k: v for k, v in wanted.items() if k != "epochs"})
        if differences:
            raise CheckpointError(f"{run_dir} holds a different run: {'; '.join(differences)} (saved vs wanted)")
        if checkpoint["epoch"] >= config.epochs:
            return "reused"
        fit(build_model(checkpoint["config"]), data, config, out_dir=run_dir, checkpoint=checkpoint,
            progress=progress)
        return "resumed"
    fit(build_model(model_config, seed=config.seed), data, config, out_dir=run_dir, progress=progress)
    return "trained"


def cached_eval(run_dir: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The run's eval.json when it is newer than the checkpoint and the classifier, and made with `settings`."""
    path = eval_path(run_dir)
    if not path.exists() or path.stat().st_mtime <= max(p.stat().st_mtime for p in (run_dir / CHECKPOINT, WEIGHTS)):
        return None
    try:
        result = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return result if all(result.get(key) == value for key, value in settings.items()) else None


def write_table(rows: list[dict[str, Any]], stem: Path) -> None:
    """rows -> STEM.csv and STEM.md."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    with open(stem.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    cell = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(cell(v) for v in row.values()) + " |" for row in rows]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="sweep.py", description="Train, evaluate and tabulate one beta-VAE run per beta.")
    p.add_argument("--model", choices=sorted(MODELS), required=True)
    p.add_argument("--betas", type=float, nargs="+", default=list(BETAS), help="(default 0.01 0.1 0.5 1 2 4)")
    p.add_argument("--epochs", type=int, default=DEFAULTS.epochs, help=f"(default {DEFAULTS.epochs})")
    p.add_argument("--likelihood", choices=LIKELIHOODS, default=ModelConfig.likelihood)
    p.add_argument("--latent-dim", type=int, default=ModelConfig.latent_dim)
    p.add_argument("--k", type=int, default=K, help=f"IWAE importance samples (default {K})")
    p.add_argument("--iwae-images", type=int, default=IWAE_IMAGES,
                   help=f"IWAE on the first N test images (default {IWAE_IMAGES}; 10000: all)")
    p.add_argument("--samples", type=int, default=SAMPLES, help=f"generated images per sampler (default {SAMPLES})")
    p.add_argument("--train-limit", type=int, help="train on the first N training images only (quick checks)")
    p.add_argument("--eval-limit", type=int, help="evaluate on the first N test images only (quick checks)")
    p.add_argument("--runs-dir", default=str(RUNS_DIR), help=f"(default {RUNS_DIR})")
    p.add_argument("--results-dir", default=str(RESULTS_DIR), help=f"(default {RESULTS_DIR})")
    p.add_argument("--img-dir", default=str(IMG_DIR), help=f"(default {IMG_DIR})")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    check_positive(p, args, "epochs", "latent_dim", "k", "iwae_images", "samples", "train_limit", "eval_limit")
    if any(not beta >= 0 for beta in args.betas):
        p.error(f"--betas must be >= 0, got {args.betas}")
    try:
        classifier = load_classifier()
        data = load_fashion_mnist(args.likelihood, limit=args.train_limit)
    except (ClassifierError, DataError) as error:
        p.error(str(error))
    eval_data = with_test_limit(data, args.eval_limit)
    model_config = ModelConfig(model=args.model, latent_dim=args.latent_dim, likelihood=args.likelihood)
    settings = {"k": args.k, "samples": args.samples, "test_images": len(eval_data.test_images),
                "train_images": len(data.train_images),
                "iwae_images": min(args.iwae_images, len(eval_data.test_images))}
    parameters = count_parameters(build_model(model_config))
    started = time.perf_counter()
    rows, reference = [], None
    try:
        for beta in sorted(set(args.betas)):
            run_dir = Path(args.runs_dir) / run_name(args.model, args.likelihood, args.latent_dim, beta)
            config = TrainConfig(beta=beta, epochs=args.epochs, train_limit=args.train_limit)
            action = train_run(run_dir, model_config, config, data, not args.no_progress)
            result = cached_eval(run_dir, settings)
            if result is None:
                reference = reference_features(classifier, eval_data) if reference is None else reference
                result = evaluate_run(run_dir, eval_data, args.k, args.iwae_images, args.samples, classifier,
                                      reference)
                action += f", evaluated in {result['seconds']:.0f} s"
            else:
                action += ", cached evaluation"
            print(f"{run_dir}: {action}", flush=True)
            rows.append({"beta": beta, "epochs": result["epoch"], "parameters": parameters, **summary(result)})
    except CheckpointError as error:
        p.error(str(error))
    except TrainingError as error:
        print(f"sweep.py: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; finished epochs and evaluations are saved: run the same command again to continue",
              file=sys.stderr)
        return 130
    name = f"{args.model}-{args.likelihood}"
    stem = Path(args.results_dir) / f"sweep-{name}-z{args.latent_dim}"
    write_table(rows, stem)
    figures = []
    for kind, figure in plots.plot_sweep(rows, SAMPLER_NAMES).items():
        plots.save(figure, f"sweep-{name}-{kind}.png", folder=Path(args.img_dir))
        figures.append(Path(args.img_dir) / f"sweep-{name}-{kind}.png")
    print(f"done in {time.perf_counter() - started:.0f} s: {stem}.csv, {stem}.md, " + ", ".join(map(str, figures)))
    print(stem.with_suffix(".md").read_text(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
