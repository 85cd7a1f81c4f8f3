"""The study: the original write-up's claims, settled from the runs' records with mean ± std over seeds.

    python -m lab.study              # every table -> results/study-*.md and .csv, and the study's figures in img/
    python -m lab.study --runs-dir runs/sweep   # from run folders instead of the committed records

Each table names at its top the sweep commands that train and evaluate its runs (finished runs are reused). A
difference is called only when two means differ by more than twice the larger standard deviation, with at least
two seeds on each side. A committed table is never replaced by one with fewer rows or seeds (--force does).
"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Any

import plots
from cli import OneLineParser
from config import ModelConfig, TrainConfig
from data import CLASS_NAMES
from evaluate import summary
from files import WriteError
from lab import figures
from lab.records import RECORDS_DIR, load_records, load_run_folders
from lab.tables import committed_rows, write_part

RESULTS_DIR, IMG_DIR = Path("results"), Path("img")
SWEEP, SHARED = "python -m lab.sweep", f"--epochs {TrainConfig.epochs} --no-progress"
HEADLINE = ["recon", "kl", "mse", "knn_accuracy", "fd_prior", "fd_aggregate", "precision_prior", "recall_prior",
            "precision_aggregate", "recall_aggregate"]
SCALED_BETA = 0.0021  # 128 / 60,000: the original's KL scaled by dataset size
DEFAULT = {"beta": TrainConfig.beta, "likelihood": ModelConfig.likelihood, "capacity": None,
           "latent_dim": ModelConfig.latent_dim, "default_architecture": True}
SEEDS = f"{SWEEP} --study seeds --model fc cnn --betas {TrainConfig.beta} --seeds 0 1 2 {SHARED}"
# the diversity measures of claim (b): each on the prior samples, and its sanity rows
DIVERSITY = ["coverage", "density", "recall", "class_entropy", "unsure", "coverage_recon", "recall_recon"]
DIVERSITY_SANITY = ("real", "one_class", "blurred", "noise")
GAMMAS, CAPACITY, H_BETAS = (1, 3, 10, 30, 100), 10.0, (0.1, 0.5, 1.0)  # H_BETAS: beta-VAE H near KL = CAPACITY
BEST_GAMMA = {"fc": 1, "cnn": 10}  # the lowest test reconstruction of each family's one-seed screen: 3 seeds there
FRONTIER = {"fc": ["8", "32x16", "128x64", "512x256"], "cnn": ["12x12 k4", "32x32 k4", "64x80 k4", "160x192 k4"]}
WIDTHS = {"fc": ("32x16", "128x64"), "cnn": ("32x32 k4", "64x80 k4")}  # about 50 k and 200 k parameters
PARTS: dict[str, dict[str, Any]] = {
    "seeds": {"title": "headline configurations over seeds (default architectures, beta 0.1)",
              "commands": [SEEDS, f"{SWEEP} --study likelihood-seeds --model fc cnn --likelihood gaussian "
                                  f"continuous_bernoulli sigma --betas 0.1 --seeds 0 1 2 {SHARED}"],
              "where": {k: v for k, v in DEFAULT.items() if k != "likelihood"},
              "group": ["model", "likelihood", "beta"], "columns": HEADLINE + ["parameters"]},
    "diversity": {"title": "claim (b), diversity: the prior samples' coverage, density, recall and class mix "
                           "against the test images, and coverage/recall against the model's own reconstructions "
                           "(bernoulli, beta 0.1, default architectures)", "commands": [SEEDS],
                  "where": DEFAULT, "group": ["model", "likelihood", "beta"],
                  "columns": [f"{m}_{s}" for s in ("prior", "aggregate") for m in DIVERSITY]},
    "latent-dims": {"title": "latent width vs quality: each family at about 50 k and 200 k parameters, latent_dim 2-16 "
                             "(bernoulli, beta 0.1, 20 epochs)",
                    "commands": [f"{SWEEP} --study latent-dims-{m} --model {m} --betas 0.1 --latent-dim 2 3 5 8 16 "
                                 f"--set {'hidden' if m == 'fc' else 'channels'}="
                                 f"{','.join(w.split()[0] for w in WIDTHS[m])} {SHARED}" for m in WIDTHS] + [
                        f"{SWEEP} --study latent-dims-seeds --model fc cnn --betas 0.1 --latent-dim 3 8 --set "
                        f"hidden={WIDTHS['fc'][0]} --seeds 1 2 {SHARED}", SEEDS],
                    "where": {k: v for k, v in DEFAULT.items() if k not in ("latent_dim", "default_architecture")},
                    "architectures": [w for m in WIDTHS for w in WIDTHS[m]],
                    "group": ["model", "architecture", "latent_dim"],
                    "columns": ["parameters", "recon", "mse", "knn_accuracy", "fd_prior", "fd_aggregate", "kl"]},
    "capacity-gamma": {"title": f"beta-VAE B (capacity C = {CAPACITY:g} reached over 10 epochs) for gamma "
                                f"{', '.join(map(str, GAMMAS))}, beside beta-VAE H at the betas that reach about the "
                                f"same test KL", "commands": [
        f"{SWEEP} --study capacity-gamma --model fc cnn --betas 0.1 --set capacity={CAPACITY:g} --set gamma="
        f"{','.join(map(str, GAMMAS))} {SHARED}", f"{SWEEP} --study h-rate --model fc cnn --betas 0.5 1 {SHARED}",
        *[f"{SWEEP} --study capacity-seeds-{m} --model {m} --betas 0.1 --set capacity={CAPACITY:g} --set gamma={g} "
          f"--seeds 1 2 {SHARED}" for m, g in BEST_GAMMA.items()],
        f"{SWEEP} --study h-rate-seeds --model fc cnn --betas 0.5 --seeds 1 2 {SHARED}", SEEDS],
        "where": {**{k: v for k, v in DEFAULT.items() if k != "capacity"}, "beta": H_BETAS},
        "group": ["model", "capacity", "gamma", "beta"],
        "columns": ["kl", "recon", "mse", "knn_accuracy", "fd_aggregate", "coverage_aggregate"]},
}
LIKELIHOOD_NAMES = ("bernoulli", "gaussian", "continuous_bernoulli", "sigma")
PARTS.update({  # the earlier parts: their committed tables stay until records with as many runs replace them
    "betas": {"title": "beta sweep, seed 0, 20 epochs (0.0021 = 128 / 60,000: the original's KL scaled by dataset "
                       "size)", "commands": [f"{SWEEP} --study betas --model fc cnn --likelihood bernoulli gaussian "
                                             f"--betas 0.0021 0.01 0.1 0.5 1 2 4 {SHARED}"],
              "where": {"seed": 0, "capacity": None, "likelihood": ("bernoulli", "gaussian"), "default_architecture":
                        True}, "group": ["model", "likelihood", "beta"],
              "columns": ["recon", "kl", "mse", "knn_accuracy", "active_units", "fd_prior", "fd_aggregate",
                          "precision_prior", "recall_prior"]},
    "likelihoods": {"title": "likelihoods compared on common scales (MSE in [0, 1], kNN, FD, precision/recall) and by "
                             "normalised NLL where it exists (nats/image on [0, 1] pixels; bernoulli's is not a density)",
                    "commands": [f"{SWEEP} --study likelihoods --model fc cnn --likelihood {' '.join(LIKELIHOOD_NAMES)}"
                                 f" --betas 0.1 1 {SHARED}"],
                    "where": {"capacity": None, "beta": (0.1, 1.0), "default_architecture": True},
                    "group": ["model", "likelihood", "beta"],
                    "columns": ["mse", "nll", "knn_accuracy", "fd_prior", "fd_aggregate", "precision_prior",
                                "recall_prior", "precision_aggregate", "recall_aggregate", "recon_accuracy"]},
    "dataset-scaled": {"title": "the original's KL scaled by dataset size (beta 128 / 60,000) against beta 0.1 "
                                "(bernoulli, default architectures, over seeds)",
                       "commands": [SEEDS, f"{SWEEP} --study dataset-scaled --model fc cnn --betas {SCALED_BETA} "
                                           f"--seeds 0 1 2 {SHARED}"],
                       "where": {**DEFAULT, "beta": (SCALED_BETA, 0.1)}, "group": ["model", "likelihood", "beta"],
                       "columns": HEADLINE},
    "frontier": {"title": "parameters vs reconstruction: each family at about 12 k, 50 k, 200 k and 1 M parameters "
                          "(bernoulli, beta 0.1, 20 epochs)",
                 "commands": [f"{SWEEP} --study frontier-fc --model fc --betas 0.1 --set hidden=8,32x16,128x64 {SHARED}",
                              f"{SWEEP} --study frontier-cnn --model cnn --betas 0.1 --set channels=12x12,64x80,160x192 "
                              f"{SHARED}", SEEDS],
                 "where": {k: v for k, v in DEFAULT.items() if k != "default_architecture"},
                 "architectures": FRONTIER["fc"] + FRONTIER["cnn"], "group": ["model", "architecture"],
                 "columns": ["parameters", "recon", "mse"]},
})
# A vs B on every metric with the study's verdict: (name, part whose rows it pairs, field, A, B, metrics)
COMPARISONS = [("fc-vs-cnn", "seeds", "model", "fc", "cnn", HEADLINE),
               ("bernoulli-vs-gaussian", "seeds", "likelihood", "bernoulli", "gaussian", HEADLINE[2:]),
               ("dataset-scaled-verdicts", "dataset-scaled", "beta", SCALED_BETA, 0.1, HEADLINE),
               ("diversity-verdicts", "diversity", "model", "fc", "cnn", PARTS["diversity"]["columns"])]


def architecture(config: dict[str, Any]) -> str:
    """A run's architecture in a few words: "512x256", "32x32 k4", "24x24 k4 decoder 40x40 batch elu"."""
    c = ModelConfig.from_dict({k: v for k, v in config.items() if k in ModelConfig.__dataclass_fields__})
    words = ["x".join(map(str, c.hidden if c.model == "fc" else c.channels))] + [f"k{c.kernel_size}"] * (c.model == "cnn")
    words += ["decoder " + "x".join(map(str, c.decoder_channels))] if c.decoder_channels else []
    return " ".join(words + [v for v, d in ((c.norm, ModelConfig.norm), (c.activation, ModelConfig.activation)) if v != d])


def run_row(record: dict[str, Any]) -> dict[str, Any] | None:
    """A record's settings and summary row, its architecture and whether that is the family's default; None for
    runs on part of the training set or not trained to their epochs."""
    config, epochs = record["config"], record["epochs"]
    if config.get("train_limit") or len(epochs) < config["epochs"]:
        return None
    name = architecture(config)
    default = name == architecture({"model": config["model"]}) and config.get("latent_dim") == ModelConfig.latent_dim
    unused = {"gamma": None, "capacity_epochs": None} if config.get("capacity") is None else {}  # only B uses them
    return {**config, **unused, **summary(record["eval"]), "architecture": name, "default_architecture": default,
            "per_class": record["eval"]["mse_per_class"], "run": record["name"]}


def selected(rows: list[dict[str, Any]], part: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows a part uses: its `where` settings (a tuple: any of) and, if given, its architectures."""
    def keep(row: dict[str, Any]) -> bool:
        return all(row.get(k) in v if isinstance(v, tuple) else row.get(k) == v for k, v in part["where"].items()) \
            and row["architecture"] in part.get("architectures", [row["architecture"]])
    return [row for row in rows if keep(row)]


def mean_std(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None  # std None: one value


def grouped(rows: list[dict[str, Any]], keys: list[str], columns: list[str]) -> list[dict[str, Any]]:
    """One row per setting of `keys`: n (seeds) and mean ± std of every column."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(k) for k in keys), []).append(row)
    out = []
    for key in sorted(groups, key=lambda k: tuple((v is None, v if not isinstance(v, str) else 0, str(v)) for v in k)):
        members = groups[key]
        out.append({**dict(zip(keys, key)), "seeds": len(members)})
        for column in columns:
            values = [m[column] for m in members if isinstance(m.get(column), (int, float))]
            out[-1][column] = mean_std(values) if values else (float("nan"), None)
    return out


def verdict(a: tuple[float, float | None], b: tuple[float, float | None], a_lower: str, b_lower: str) -> str:
    """The study's rule: a call only when both have >= 2 seeds and the means differ by > 2x the larger std."""
    if a[1] is None or b[1] is None or not abs(a[0] - b[0]) > 2 * max(a[1], b[1]):
        return "no difference called"
    return a_lower if a[0] < b[0] else b_lower


def comparison_rows(rows: list[dict[str, Any]], field: str, a: Any, b: Any, columns: list[str]) -> list[dict]:
    """A vs B (rows that differ only in `field`) on every column, with the study's verdict."""
    out = []
    for row_a in (r for r in rows if r[field] == a):
        same = {k: v for k, v in row_a.items() if not isinstance(v, tuple) and k not in (field, "seeds")}
        for row_b in (r for r in rows if r[field] == b and all(r.get(k) == v for k, v in same.items())):
            out += [{**same, "metric": column, str(a): row_a[column], str(b): row_b[column],
                     "seeds": f"{row_a['seeds']}/{row_b['seeds']}",
                     "verdict": verdict(row_a[column], row_b[column], f"{b} higher", f"{a} higher")}
                    for column in columns]
    return out


def sanity_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per diversity measure, its value for the sanity sets (the same for every run; the model's own for the
    measures against reconstructions, averaged) and whether it passes the blur test: blurred test images (or, against
    reconstructions, reconstructions of training images) above one-class images."""
    out = []
    for measure in DIVERSITY:
        against_recon, base = measure.endswith("_recon"), measure.removesuffix("_recon")
        key = (lambda name: f"{base}_recon_{name}") if against_recon else (lambda name: f"{measure}_{name}")
        cells = {name: mean_std([r[key(name)] for r in rows]) for name in DIVERSITY_SANITY
                 if all(isinstance(r.get(key(name)), float) for r in rows)}
        diverse = cells.get("real" if against_recon else "blurred")
        lower_is_diverse = measure == "unsure"  # not a diversity measure: reported for the "not garments" half
        passes = diverse is not None and (diverse[0] > cells["one_class"][0]) != lower_is_diverse
        out.append({"measure": measure, **{name: cells.get(name, "-") for name in DIVERSITY_SANITY},
                    "blur test": "-" if lower_is_diverse else ("passes" if passes else "fails")})
    return out


def family_gaps(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Latent width: per size (about 50 k, about 200 k) and latent_dim, CNN minus FC on recon and MSE, with verdicts."""
    out = []
    for size, (fc_name, cnn_name) in enumerate(zip(*WIDTHS.values())):
        for dim in sorted({r["latent_dim"] for r in rows}):
            fc, cnn = (next((r for r in rows if r["architecture"] == n and r["latent_dim"] == dim), None)
                       for n in (fc_name, cnn_name))
            if fc and cnn:
                out.append({"size": ("about 50 k", "about 200 k")[size], "latent_dim": dim,
                            "fc": fc_name, "cnn": cnn_name, "seeds": f"{fc['seeds']}/{cnn['seeds']}",
                            **{f"{m}_cnn_minus_fc": cnn[m][0] - fc[m][0] for m in ("recon", "mse")},
                            **{f"{m}_verdict": verdict(cnn[m], fc[m], "CNN lower", "FC lower") for m in ("recon", "mse")}})
    return out


def rate_matched(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Capacity: each B run (per gamma) beside beta-VAE H at the same test KL, H's recon interpolated linearly in KL
    between the two H runs (betas) whose KL brackets B's (its std: the larger of theirs), with the study's verdict;
    "-" where no H pair brackets it."""
    out = []
    for model in sorted({r["model"] for r in rows}):
        h = sorted(((r["kl"][0], *r["recon"]) for r in rows if r["model"] == model and r["capacity"] is None),
                   key=lambda point: point[0])
        for b in (r for r in rows if r["model"] == model and r["capacity"] is not None):
            kl = b["kl"][0]
            lo, hi = next(((lo, hi) for lo, hi in zip(h, h[1:]) if lo[0] <= kl <= hi[0]), (None, None))
            h_recon = None if lo is None else (lo[1] + (hi[1] - lo[1]) * (kl - lo[0]) / (hi[0] - lo[0]),
                                               None if None in (lo[2], hi[2]) else max(lo[2], hi[2]))
            out.append({"model": model, "gamma": b["gamma"], "seeds": b["seeds"], "kl": b["kl"], "recon": b["recon"],
                        "h_recon_same_kl": "-" if h_recon is None else h_recon,
                        "b_minus_h": "-" if h_recon is None else (b["recon"][0] - h_recon[0], None),
                        "verdict": "-" if h_recon is None else verdict(b["recon"], h_recon, "B lower", "H lower")})
    return out


def per_class_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-class reconstruction MSE of FC vs CNN (default settings, over seeds), with the study's verdict."""
    by_model = {m: [r for r in selected(rows, {"where": DEFAULT}) if r["model"] == m] for m in ("fc", "cnn")}
    out = []
    for name in CLASS_NAMES:
        fc, cnn = (mean_std([r["per_class"][name] for r in by_model[m]]) if by_model[m] else (float("nan"), None)
                   for m in ("fc", "cnn"))
        out.append({"class": name, "fc_mse": fc, "cnn_mse": cnn,
                    "seeds": f"{len(by_model['fc'])}/{len(by_model['cnn'])}",
                    "verdict": verdict(cnn, fc, "CNN lower", "FC lower")})
    return out


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="lab.study", description="The study's tables and figures from the runs' records.")
    p.add_argument("--records-dir", default=str(RECORDS_DIR), help=f"(default {RECORDS_DIR})")
    p.add_argument("--runs-dir", help="read run folders here instead of the records")
    p.add_argument("--results-dir", default=str(RESULTS_DIR), help=f"(default {RESULTS_DIR})")
    p.add_argument("--img-dir", default=str(IMG_DIR), help=f"(default {IMG_DIR})")
    p.add_argument("--force", action="store_true", help="replace committed tables even by smaller ones")
    p.add_argument("--no-figures", action="store_true", help="the tables only (seconds)")
    args = p.parse_args(argv)
    source = Path(args.runs_dir or args.records_dir)
    if not source.is_dir():
        p.error(f"{source} is not a folder")
    records, skipped = load_run_folders(source) if args.runs_dir else load_records(source)
    print("".join(f"skipped {line}\n" for line in skipped), end="", file=sys.stderr)
    rows = [row for row in map(run_row, records) if row is not None]
    results_dir, img_dir = Path(args.results_dir), Path(args.img_dir)
    tables: dict[str, list[dict[str, Any]]] = {}
    written: dict[str, bool] = {}  # whether each part's table was (re)written from the records
    try:
        for name, part in PARTS.items():
            tables[name] = grouped(selected(rows, part), part["group"], part["columns"])
            line = write_part(name, tables[name], part["title"], part["commands"], results_dir, args.force)
            written[name] = "kept" not in line
            print(line)
        for name, source_part, field, a, b, columns in COMPARISONS:
            title = f"{a} vs {b}: {PARTS[source_part]['title']}, each metric with the study's verdict"
            print(write_part(name, comparison_rows(tables[source_part], field, a, b, columns), title,
                             PARTS[source_part]["commands"], results_dir, args.force))
        diversity = selected(rows, PARTS["diversity"])
        print(write_part("diversity-sanity", sanity_rows(diversity) if diversity else [], "the diversity measures on "
                         "the sanity sets, and whether each passes the blur test (blurred test images above one-class "
                         "images)", [SEEDS], results_dir, args.force))
        derived = (("latent-dims-verdicts", family_gaps, "latent-dims", "CNN minus FC at equal parameters, per latent_dim "
                    "(negative: the CNN reconstructs better)"), ("capacity-vs-h", rate_matched, "capacity-gamma",
                    "beta-VAE B against H at the same test KL (H's recon interpolated between the bracketing betas)"))
        for name, make, source_part, title in derived:
            print(write_part(name, make(tables[source_part]), title, PARTS[source_part]["commands"], results_dir,
                             args.force))
        print(write_part("per-class", per_class_rows(rows) if selected(rows, {"where": DEFAULT}) else [],
                         "per-class reconstruction MSE in [0, 1] pixels, FC vs CNN (bernoulli, beta 0.1)", [SEEDS],
                         results_dir, args.force))
        plotted = (("latent-dims", figures.plot_latent_dims), ("capacity-gamma", figures.plot_rate_distortion),
                   ("betas", figures.plot_betas), ("likelihoods", figures.plot_likelihoods),
                   ("frontier", figures.plot_frontier))
        for name, plot in plotted * (not args.no_figures):  # from the records, or the committed table they kept
            rows_of = tables[name] if written.get(name) else committed_rows(results_dir / f"study-{name}")
            if rows_of:
                plots.save(plot(rows_of), f"{name.replace('-', '_')}.png", folder=img_dir)
                print(img_dir / f"{name.replace('-', '_')}.png")
    except WriteError as error:
        p.error(str(error))
    return 0


if __name__ == "__main__":
    sys.exit(main())
