"""Evaluate a trained beta-VAE on its dataset's test images; writes RUN/eval.json.

    python evaluate.py runs/NAME            # prints a table, writes runs/NAME/eval.json
    python evaluate.py runs/NAME --k 1000   # more importance samples (options: config.EvalConfig)
    python evaluate.py runs/NAME --disentanglement   # only MIG, FactorVAE score, DCI (shapes): printed, quick

The numbers (docs/metrics.md says more): elbo (recon, KL, total at beta 1) and loss (at the run's beta); the IWAE
bound and nll on [0, 1] pixels; KL per dimension, active units, kNN accuracy of the posterior means; MSE overall and
per class. For a dataset with a classifier (Fashion-MNIST): the sample quality of quality.py. For a dataset with
known factors (shapes): the disentanglement metrics of disentanglement.py, on every training image.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict
from typing import Any

from torch import Tensor

import metrics
import quality
from checkpoint import CheckpointError
from classifier import Classifier, ClassifierError, load_classifier
from cli import OneLineParser, add_options, given, option_error, unavailable
from config import EvalConfig
from data import DataError, Dataset, load_dataset
from disentanglement import disentanglement
from files import WriteError, unwritable
from models import BetaVAE, count_parameters, map_batches
from objectives import dataset_loss, kl_per_dimension
from runs import RunFolder
from samplers import posterior_means


def check_data_sizes(train_images: int, test_images: int) -> None:
    """ValueError unless there are enough images for the k-NN balls and the kNN classifier."""
    least = metrics.DC_NEIGHBOURS + 1
    if test_images < least or train_images < max(least, metrics.NEIGHBOURS):
        raise ValueError(
            f"evaluation needs >= {least} test and training images (k-NN balls), got {test_images} and {train_images}"
        )


def check_inputs(data: Dataset) -> None:
    """ValueError, before any work, unless the data is large enough for every metric."""
    check_data_sizes(len(data.train_images), len(data.test_images))
    if data.classifier_weights is not None:
        quality.check_quality_inputs(data)


def disentanglement_of(model: BetaVAE, data: Dataset, train_means: Tensor | None = None, seed: int = 0) -> dict:
    """MIG, FactorVAE score and DCI of the posterior means of every training image against its known factors;
    ValueError for a dataset without factors."""
    if not data.has_factors:
        raise ValueError(f"{data.name} has no known factors: disentanglement cannot be measured on it")
    means = posterior_means(model, data.train_images) if train_means is None else train_means
    scores = disentanglement(means.double().numpy(), data.train_factors.numpy(), seed=seed)
    return {"factor_names": list(data.factor_names), **scores}


def nonfinite(value: Any, name: str = "") -> list[str]:
    """The keys of the numbers in `value` (nested dicts and lists) that are NaN or infinite."""
    if isinstance(value, dict):
        return [key for k, v in value.items() for key in nonfinite(v, f"{name}.{k}" if name else str(k))]
    if isinstance(value, list):
        return [key for i, v in enumerate(value) for key in nonfinite(v, f"{name}[{i}]")]
    return [name] if isinstance(value, float) and not math.isfinite(value) else []


def evaluate(
    model: BetaVAE,
    data: Dataset,
    beta: float,
    config: EvalConfig = EvalConfig(),
    classifier: Classifier | None = None,
    reference: tuple[quality.Reference, dict] | None = None,
) -> dict[str, Any]:
    """Every metric of the module docstring, as plain data; ValueError when the model's outputs are not finite.
    `reference` (from quality.reference_features) saves recomputing the test images' features for every run."""
    started = time.perf_counter()
    check_inputs(data)
    test_x, test_y, batch, seed = data.test_images, data.test_labels, config.batch_size, config.seed
    elbo = dataset_loss(model, test_x, batch, seed)
    elbo["total"] = elbo["recon"] + elbo["kl"]
    iwae_x = test_x[: config.iwae_images]
    iwae_elbo = elbo if len(iwae_x) == len(test_x) else dataset_loss(model, iwae_x, batch, seed)
    result: dict[str, Any] = {
        "beta": beta,
        "elbo": elbo,
        "loss": elbo["recon"] + beta * elbo["kl"],  # same noise as the ELBO: only the weight on KL differs
        "iwae_nll": metrics.iwae_nll(model, iwae_x, config.k, batch, seed),
        "nll_normalised": model.likelihood.density,
        "iwae_elbo": iwae_elbo["recon"] + iwae_elbo["kl"],
        "iwae_images": len(iwae_x),
    }
    result["nll"] = model.likelihood.unit_range_nll(result["iwae_nll"], math.prod(model.image_shape))

    test_means, test_logvars = map_batches(model, model.encode, test_x, batch)
    train_means = posterior_means(model, data.train_images)
    recon = quality.reconstructions(model, test_x, batch)
    mse = (recon - test_x).pow(2).flatten(1).mean(1)
    result.update(
        {
            "kl_per_dim": kl_per_dimension(test_means, test_logvars).mean(0).tolist(),
            "mean_variance": test_means.var(0).tolist(),
            "active_units": metrics.active_units(test_means),
            "knn_accuracy": metrics.knn_accuracy(train_means, data.train_labels, test_means, test_y),
            "mse": mse.double().mean().item(),
            "mse_per_class": metrics.per_class(mse, test_y, data.class_names),
        }
    )
    if data.classifier_weights is not None:
        classifier = load_classifier(data.classifier_weights) if classifier is None else classifier
        result.update(quality.sample_quality(model, data, config, classifier, train_means, recon, reference))
    if data.has_factors:
        result["disentanglement"] = disentanglement_of(model, data, train_means, seed)
    result.update(
        {
            "parameters": count_parameters(model),
            **asdict(config),
            "dataset": data.name,
            "test_images": len(test_x),
            "train_images": len(data.train_images),
            "seconds": time.perf_counter() - started,
        }
    )
    if bad := nonfinite(result):
        raise ValueError(f"the model's outputs are not finite: NaN or infinite {', '.join(bad[:5])}")
    return result


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """One flat row of the main numbers (for tables): per-class columns mse_bag, ..., per-sampler ones fd_prior, ...
    and the sanity rows' coverage_real, ... (against the reconstructions: coverage_recon_real, ...); the
    disentanglement metrics by name (mig, factor_vae, dci_disentanglement, ...)."""
    row = {
        "recon": result["elbo"]["recon"],
        "kl": result["elbo"]["kl"],
        "elbo": result["elbo"]["total"],
        **{key: result[key] for key in ("loss", "iwae_nll", "nll", "nll_normalised", "iwae_elbo", "active_units")},
        "kl_per_dim": " ".join(f"{v:.2f}" for v in result["kl_per_dim"]),
        **{key: result[key] for key in ("knn_accuracy", "mse", "recon_accuracy", "parameters") if key in result},
    }
    keys = [name.split("/")[0].split()[-1].lower().replace("-", "") for name in result["mse_per_class"]]
    for metric in ("mse", "recon_accuracy") if "recon_accuracy" in result else ("mse",):
        row.update({f"{metric}_{key}": value for key, value in zip(keys, result[f"{metric}_per_class"].values())})
    for name, measures in {**result.get("samplers", {}), **result.get("sanity", {})}.items():
        row.update({f"{key}_{name}": value for key, value in measures.items()})
    for name, measures in result.get("sanity_recon", {}).items():
        row.update({f"{key}_recon_{name}": value for key, value in measures.items()})
    row.update({key: v for key, v in result.get("disentanglement", {}).items() if isinstance(v, (int, float))})
    row["eval_seconds"] = result.get("seconds")  # not in run records: it measures the machine, not the run
    return row


def headline(result: dict[str, Any]) -> list[str]:
    """The numbers a reader looks at first, one line each, with units (eval.json holds every metric)."""
    row = summary(result)
    normalised = "" if row["nll_normalised"] else "; bernoulli: not a density of grey pixels"
    lines = [
        ("reconstruction", f"{row['recon']:.2f} nats/image", "-log p(x|z), z drawn from q(z|x)"),
        ("KL", f"{row['kl']:.2f} nats/image", f"beta {result['beta']:g} weighs it in the loss"),
        ("IWAE NLL", f"{row['iwae_nll']:.2f} nats/image", f"k = {result['k']}{normalised}"),
        ("MSE", f"{row['mse']:.4f}", "per pixel, pixels in [0, 1]"),
        ("kNN accuracy", f"{row['knn_accuracy']:.3f}", f"{metrics.NEIGHBOURS}-NN class of test codes: separation"),
        ("active units", f"{row['active_units']} of {len(result['kl_per_dim'])}", "latent dimensions in use"),
    ]
    if "samplers" in result:
        samplers = " / ".join(result["samplers"])
        lines += [
            ("recon accuracy", f"{row['recon_accuracy']:.3f}", "reconstructions the classifier labels correctly"),
            (
                "FD",
                " / ".join(f"{row[f'fd_{name}']:.1f}" for name in result["samplers"]),
                f"{samplers} samples: Frechet distance to the test images (lower: closer)",
            ),
            ("precision prior", f"{row['precision_prior']:.3f}", "prior samples near a test image (realism)"),
            ("recall prior", f"{row['recall_prior']:.3f}", "test images near a prior sample (variety)"),
            ("coverage prior", f"{row['coverage_prior']:.3f}", "test images with a prior sample in their ball"),
        ]
    if "disentanglement" in result:
        lines += disentanglement_lines(result["disentanglement"])
    lines.append(("seconds", f"{row['eval_seconds']:.0f}", "the evaluation's own time"))
    return aligned(lines)


def aligned(lines: list[tuple[str, str, str]]) -> list[str]:
    """Headline lines (name, value, what it says) as printed: names left, values right, in columns."""
    return [f"  {name:<16}{value:>18}   {why}" for name, value, why in lines]


def disentanglement_lines(scores: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The disentanglement metrics as headline lines (name, value, what it says)."""
    chance = f"majority-vote accuracy; chance {scores['factor_vae_chance']:.2f}"
    note = [("note", "", scores["note"])] if scores.get("note") else []  # e.g. fewer coordinates than factors
    return note + [
        ("MIG", f"{scores['mig']:.3f}", "mutual information gap: 1 when each factor has one coordinate of its own"),
        ("FactorVAE score", f"{scores['factor_vae']:.3f}", chance),
        ("DCI disentangle", f"{scores['dci_disentanglement']:.3f}", "each coordinate explains one factor"),
        ("DCI completeness", f"{scores['dci_completeness']:.3f}", "each factor is explained by one coordinate"),
        ("DCI informative", f"{scores['dci_informativeness']:.3f}", "factors predicted from the codes (accuracy)"),
    ]


def evaluate_run(
    run: RunFolder,
    data: Dataset,
    config: EvalConfig = EvalConfig(),
    classifier: Classifier | None = None,
    reference: tuple[quality.Reference, dict] | None = None,
    device: str = "cpu",
) -> dict:
    """Evaluate a run folder on `data` (the model on `device`, batch by batch) and write its eval.json, keyed by
    the checkpoint's epoch, file sha256 and digest (None: unverified)."""
    model = run.model().to(device)
    result = evaluate(model, data, run.train_config.beta, config, classifier, reference)
    result = {
        "run": str(run.path),
        "epoch": run.epoch,
        "checkpoint_sha256": run.sha256(),
        "checkpoint_digest": run.checkpoint["digest"],
        "checkpoint_verified": run.verified,
        "config": model.plain_config(),
        **result,
    }
    run.write_eval(result)
    return result


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="evaluate.py", description="Evaluate a trained beta-VAE run; writes RUN/eval.json.")
    p.add_argument("run", help="run folder (runs/NAME)")
    add_options(p, EvalConfig)
    p.add_argument("--train-limit", type=int, help="use only the first N training images (quick checks)")
    p.add_argument("--data-dir", help="fashion-mnist: the folder of its four IDX files (default: found automatically)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or mps: where the model runs")
    p.add_argument("--disentanglement", action="store_true", help="only the disentanglement metrics, printed")
    args = p.parse_args(argv)
    if unavailable(args.device):
        p.error(f"--device {unavailable(args.device)}")
    try:
        config = EvalConfig(**given(args, EvalConfig))
        if args.train_limit is not None and args.train_limit < 1:
            raise ValueError(f"train_limit must be >= 1, got {args.train_limit}")
    except ValueError as error:
        p.error(option_error(error))
    run = RunFolder(args.run)
    if unwritable(run.path):
        p.error(f"cannot save {run.eval_file.name}: {unwritable(run.path)}")
    try:
        if writer := run.writer():
            print(f"note: {run.path} is being trained by {writer}: this evaluates its epoch {run.epoch} checkpoint")
        data = load_dataset(run.train_config.dataset, args.data_dir, args.train_limit).limited(test=config.eval_limit)
        if args.disentanglement:
            scores = disentanglement_of(run.model().to(args.device), data, seed=config.seed)
            print(f"{run.path} (epoch {run.epoch}), on {len(data.train_images):,} images of {data.name}:")
            print("\n".join(aligned(disentanglement_lines(scores))))
            return 0
        result = evaluate_run(run, data, config, device=args.device)
    except (CheckpointError, ClassifierError, DataError, ValueError, WriteError) as error:
        p.error(str(error))
    model_config = result["config"]
    print(
        f"{run.path} (epoch {result['epoch']}, {model_config['model']}, {model_config['likelihood']}, "
        f"beta {result['beta']:g}), on {result['test_images']:,} test images of {data.name}:"
    )
    print("\n".join(headline(result)))
    print(f"every metric: {run.eval_file} (docs/metrics.md explains each key)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
