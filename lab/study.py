"""The study: the original write-up's claims, settled from the runs' records with mean ± std over seeds.

    python -m lab.study              # every table -> results/study-*.md and .csv, and the study's figures in img/
    python -m lab.study --runs-dir runs/sweep   # from run folders instead of the committed records

Each table names at its top the sweep commands that train and evaluate its runs (finished runs are reused). A
difference is called only when two means differ by more than twice the larger standard deviation, with at least
two seeds on each side. A committed table is never replaced by one with fewer rows or seeds (--force does). A
record that is not evidence (lab/records.py), or a table of runs evaluated with other classifier weights, is named and
nothing is written (exit 1).
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import plots
from cli import OneLineParser
from evaluate import summary
from fashion_mnist import CLASS_NAMES
from files import WriteError
from lab import figures
from lab.parts import (
    BETA_STEPS,
    BUDGET_SHARE,
    COMPARISONS,
    DEFAULT,
    DESIGN_PARTS,
    DIVERSITY,
    DIVERSITY_SANITY,
    PARTS,
    SEEDS,
    WIDTHS,
)
from lab.records import CLASSIFIER_SHA256, RECORDS_DIR, RecordError, load_records, load_run_folders
from lab.tables import write_part
from models import FAMILIES, FCVAE, ModelConfig

RESULTS_DIR, IMG_DIR = Path("results"), Path("img")
EXACT = {
    "mean": lambda v: statistics.fmean(v.dropna()) if v.count() else np.nan,  # pandas' own mean and std
    "std": lambda v: statistics.stdev(v.dropna()) if v.count() > 1 else np.nan,
}  # differ in the last digit
PLOTTED = {
    "latent-dims": figures.plot_latent_dims,
    "capacity-gamma": figures.plot_rate_distortion,
    "betas": figures.plot_betas,
    "likelihoods": figures.plot_likelihoods,
    "frontier": figures.plot_frontier,
}


def architecture(config: dict[str, Any]) -> str:
    """A run's architecture in a few words: "512x256", "32x32 k4", "24x24 k4 decoder 40x40 batch elu"."""
    c = ModelConfig.from_dict({k: v for k, v in config.items() if k in ModelConfig.__dataclass_fields__})
    widths = c.family.widths  # the first: the layers' widths
    words = ["x".join(map(str, getattr(c, widths[0])))]
    words += [f"k{c.kernel_size}"] * ("kernel_size" in widths)
    words += ["decoder " + "x".join(map(str, c.decoder_channels))] if c.decoder_channels else []
    off_default = ((c.norm, ModelConfig.norm), (c.activation, ModelConfig.activation))
    return " ".join(words + [v for v, d in off_default if v != d])


def run_row(record: dict[str, Any]) -> dict[str, Any] | None:
    """A record's settings and summary row, its architecture and whether that is the family's default; None for
    runs on part of the training set or not trained to their epochs."""
    config, epochs, evaluation = record["config"], record["epochs"], record["eval"]
    if config.get("train_limit") or len(epochs) < config["epochs"]:
        return None
    name = architecture(config)
    default = name == architecture({"model": config["model"]}) and config.get("latent_dim") == ModelConfig.latent_dim
    unused = {"gamma": None, "capacity_epochs": None} if config.get("capacity") is None else {}  # only B uses them
    return {
        **config,
        **unused,
        **summary(evaluation),
        "architecture": name,
        "default_architecture": default,
        **{f"class {c}": v for c, v in evaluation["mse_per_class"].items()},
        "run": record["name"],
        "classifier": evaluation.get("classifier_sha256", CLASSIFIER_SHA256),
        "recon_epoch10": epochs[9]["test"]["recon"] if len(epochs) >= 10 else None,
    }


def selected(runs: pd.DataFrame, part: dict[str, Any]) -> pd.DataFrame:
    """The runs a part uses: its `where` settings (a tuple: any of) and, if given, its architectures."""
    where = {**part["where"], "architecture": tuple(part.get("architectures", runs.architecture))}
    settings = runs.reindex(columns=[*where])  # a setting no run has: None
    keep = [
        settings[k].isin(v) | settings[k].isna() & (None in v)
        for k, v in ((k, v if isinstance(v, tuple) else (v,)) for k, v in where.items())
    ]
    return runs[np.logical_and.reduce(keep)]


def grouped(runs: pd.DataFrame, keys: list[str], columns: list[str]) -> pd.DataFrame:
    """One row per setting of `keys`: seeds, and each column's mean and std over them (statistics' exact ones); a
    RecordError if the runs were evaluated with different classifier weights."""
    if runs.classifier.nunique() > 1:
        raise RecordError(
            "one table takes runs evaluated with different classifier weights: "
            + "; ".join(
                f"{sha[:12]} ({len(group)}: {', '.join(group.run[:3])}{', ...' * (len(group) > 3)})"
                for sha, group in runs.groupby("classifier")
            )
        )
    stats = {f"{c}_{s}": (c, f) for c in columns for s, f in EXACT.items()}
    return (
        runs.reindex(columns=keys + columns)
        .groupby(keys, dropna=False)
        .agg(seeds=(keys[0], "size"), **stats)
        .reset_index()
    )


def verdict(a: tuple, b: tuple, a_lower: str, b_lower: str) -> Any:
    """The study's rule on (mean, std) of numbers or columns: a call only when both have a std (>= 2 seeds) and the
    means differ by more than twice the larger."""
    called = np.abs(a[0] - b[0]) > 2 * np.maximum(a[1], b[1])
    return np.where(called, np.where(a[0] < b[0], a_lower, b_lower), "no difference called").tolist()


def stat(table: pd.DataFrame, name: str, suffix: str = "") -> tuple[pd.Series, pd.Series]:
    return table[f"{name}_mean{suffix}"], table[f"{name}_std{suffix}"]


def seeds(table: pd.DataFrame, a: str, b: str) -> pd.Series:  # "3/2": the seeds of A and of B
    return table[f"seeds{a}"].astype(str) + "/" + table[f"seeds{b}"].astype(str)


def comparison_rows(
    table: pd.DataFrame, field: str, a: Any, b: Any, columns: list[str], sides: tuple[str, str] | None = None
) -> pd.DataFrame:
    """A vs B (rows that differ only in `field`) on every column, with the study's verdict; each side's columns
    named after its value (or `sides`)."""
    same = [k for k in table.columns[: list(table.columns).index("seeds")] if k != field]
    pairs = table[table[field] == a].merge(table[table[field] == b], on=same, suffixes=("_a", "_b"))
    rows = [
        pairs[same].assign(
            metric=c,
            **{f"{v}_{s}": pairs[f"{c}_{s}_{x}"] for v, x in zip(sides or (a, b), "ab") for s in ("mean", "std")},
            seeds=seeds(pairs, "_a", "_b"),
            verdict=verdict(stat(pairs, c, "_a"), stat(pairs, c, "_b"), f"{b} higher", f"{a} higher"),
        )
        for c in columns
    ]
    return pd.concat(rows).sort_index(kind="stable")  # each pair's metrics together


def beta_steps(table: pd.DataFrame) -> pd.DataFrame:
    """The beta sweep (bernoulli), each step to the next lower beta on recon, MSE, kNN accuracy and KL: both sides,
    the difference (to minus from) and the study's verdict, "not called (one seed)" where a side has no std."""
    bernoulli = table[table.likelihood == "bernoulli"]
    steps = pd.concat(
        [
            comparison_rows(bernoulli, "beta", a, b, ["recon", "mse", "knn_accuracy", "kl"], ("from", "to")).assign(
                step=f"{a:g} → {b:g}"
            )
            for a, b in zip(BETA_STEPS, BETA_STEPS[1:])
        ]
    )
    steps = steps.sort_values("model", kind="stable")  # each family's steps together, from the highest beta
    one_seed = steps.from_std.isna() | steps.to_std.isna()
    return steps.assign(
        to_minus_from=steps.to_mean - steps.from_mean, verdict=steps.verdict.mask(one_seed, "not called (one seed)")
    )[
        [
            "model",
            "likelihood",
            "step",
            "metric",
            "from_mean",
            "from_std",
            "to_mean",
            "to_std",
            "to_minus_from",
            "seeds",
            "verdict",
        ]
    ]


def sanity_rows(runs: pd.DataFrame) -> pd.DataFrame:
    """Per diversity measure, its value for the sanity sets (the same for every run; the model's own for the
    measures against reconstructions, averaged) and whether it passes the blur test: blurred test images (or, against
    reconstructions, reconstructions of training images) above one-class images."""
    means = grouped(runs.assign(all=0), ["all"], [f"{m}_{n}" for m in DIVERSITY for n in DIVERSITY_SANITY]).iloc[0]
    table = pd.DataFrame(
        {
            "measure": DIVERSITY,
            **{
                f"{n}_{s}": [means[f"{m}_{n}_{s}"] for m in DIVERSITY]
                for n in DIVERSITY_SANITY
                for s in ("mean", "std")
            },
        }
    )
    diverse = table.real_mean.where(table.measure.str.endswith("_recon"), table.blurred_mean)
    passes = (diverse > table.one_class_mean) != (table.measure == "unsure")  # unsure: lower is more diverse
    return table.assign(**{"blur test": np.where(table.measure == "unsure", "-", np.where(passes, "passes", "fails"))})


def family_gaps(table: pd.DataFrame) -> pd.DataFrame:
    """Latent width: per size (about 50 k, about 200 k) and latent_dim, CNN minus FC on recon and MSE, with verdicts."""
    sizes = pd.DataFrame({"size": ["about 50 k", "about 200 k"], "fc": WIDTHS["fc"], "cnn": WIDTHS["cnn"]})
    pairs = sizes.merge(table.add_suffix("_fc"), left_on="fc", right_on="architecture_fc").merge(
        table.add_suffix("_cnn"), left_on=["cnn", "latent_dim_fc"], right_on=["architecture_cnn", "latent_dim_cnn"]
    )
    return (
        pairs[["size", "latent_dim_fc", "fc", "cnn"]]
        .rename(columns={"latent_dim_fc": "latent_dim"})
        .assign(
            seeds=seeds(pairs, "_fc", "_cnn"),
            **{f"{m}_cnn_minus_fc": pairs[f"{m}_mean_cnn"] - pairs[f"{m}_mean_fc"] for m in ("recon", "mse")},
            **{
                f"{m}_verdict": verdict(stat(pairs, m, "_cnn"), stat(pairs, m, "_fc"), "CNN lower", "FC lower")
                for m in ("recon", "mse")
            },
        )
    )


def rate_matched(table: pd.DataFrame) -> pd.DataFrame:
    """Capacity: each B run (per gamma) beside beta-VAE H at the same test KL, H's recon interpolated linearly in KL
    between the two H runs (betas) whose KL brackets B's (its std: the larger of theirs), with the study's verdict;
    "-" where no H pair brackets it."""
    b = table[table.capacity.notna()].reset_index(drop=True)
    h = table[table.capacity.isna()].sort_values("kl_mean")[["model", "kl_mean", "recon_mean", "recon_std"]]
    lo, hi = (
        pd.merge_asof(
            b[["model", "kl_mean"]].reset_index().sort_values("kl_mean"),
            h.assign(h_kl=h.kl_mean),
            on="kl_mean",
            by="model",
            direction=way,
        )
        .set_index("index")
        .sort_index()
        for way in ("backward", "forward")
    )
    recon = lo.recon_mean + (hi.recon_mean - lo.recon_mean) * (b.kl_mean - lo.h_kl) / (hi.h_kl - lo.h_kl)
    recon = recon.where(lo.h_kl != hi.h_kl, lo.recon_mean)  # B's KL on an H run's
    matched = b[["model", "gamma", "seeds", "kl_mean", "kl_std", "recon_mean", "recon_std"]].assign(
        h_recon_same_kl_mean=recon,
        h_recon_same_kl_std=np.maximum(lo.recon_std, hi.recon_std).where(recon.notna()),
        b_minus_h_mean=b.recon_mean - recon,
        b_minus_h_std=np.nan,
    )
    return matched.assign(
        verdict=np.where(
            recon.isna(), "-", verdict(stat(matched, "recon"), stat(matched, "h_recon_same_kl"), "B lower", "H lower")
        )
    )


def per_class_rows(runs: pd.DataFrame) -> pd.DataFrame:
    """Per-class reconstruction MSE of FC vs CNN (over seeds), with the study's verdict."""
    stats = (
        grouped(runs, ["model"], [f"class {c}" for c in CLASS_NAMES])
        .set_index("model")
        .reindex(["fc", "cnn"])
        .fillna({"seeds": 0})
    )
    table = pd.DataFrame(
        {
            "class": CLASS_NAMES,
            **{
                f"{m}_mse_{s}": [stats.at[m, f"class {c}_{s}"] for c in CLASS_NAMES]
                for m in ("fc", "cnn")
                for s in ("mean", "std")
            },
        }
    )
    return table.assign(
        seeds=f"{stats.seeds.fc:.0f}/{stats.seeds.cnn:.0f}",
        verdict=verdict(stat(table, "cnn_mse"), stat(table, "fc_mse"), "CNN lower", "FC lower"),
    )


def design_tables(runs: pd.DataFrame) -> dict[str, Any]:
    """The CNN design screen (seed 0, within the budget, best first) and its two best designs over seeds beside the
    two defaults, smallest first, each with the study's verdicts on recon and MSE against both defaults; and the
    budget (a share of the default FC's parameters)."""
    screen, finals = DESIGN_PARTS["cnn-designs"], DESIGN_PARTS["cnn-best"]
    fc = runs.parameters[(runs.model == FCVAE.family) & runs.default_architecture]
    budget = int(BUDGET_SHARE * fc.iloc[0]) if len(fc) else 0
    screened = selected(runs, screen)
    screened = screened[(screened.parameters <= budget) & screened.recon_epoch10.notna()]
    designs = grouped(screened, screen["group"], screen["columns"]).sort_values("recon_epoch10_mean", kind="stable")
    names = {model: architecture({"model": model}) for model in FAMILIES}
    best = grouped(
        selected(runs, {**finals, "architectures": [*designs.architecture[:2], *names.values()]}),
        finals["group"],
        finals["columns"],
    ).sort_values(["model", "parameters_mean"], kind="stable")
    for model, name in names.items():
        default = best[best.architecture == name]
        for column in ("recon", "mse"):
            vs = (
                verdict(stat(best, column), [v.iloc[0] for v in stat(default, column)], "lower", "higher")
                if len(default)
                else "-"
            )
            best[f"{column}_vs_default_{model}"] = np.where(best.architecture == name, "-", vs)
    return {"cnn-designs": designs, "cnn-best": best, "budget": budget}


def study_tables(runs: pd.DataFrame) -> dict[str, tuple[pd.DataFrame, str, list[str]]]:
    """Every table of the study from the runs: name -> (table, title, the sweep commands of its runs)."""
    tables = {
        name: (grouped(selected(runs, part), part["group"], part["columns"]), part["title"], part["commands"])
        for name, part in PARTS.items()
    }
    for name, source, field, a, b, columns in COMPARISONS:
        tables[name] = (
            comparison_rows(tables[source][0], field, a, b, columns),
            f"{a} vs {b}: {PARTS[source]['title']}, each metric with the study's verdict",
            PARTS[source]["commands"],
        )
    for name, make, source, title in (
        (
            "latent-dims-verdicts",
            family_gaps,
            "latent-dims",
            "CNN minus FC at equal parameters, per latent_dim (negative: the CNN reconstructs better)",
        ),
        (
            "capacity-vs-h",
            rate_matched,
            "capacity-gamma",
            "beta-VAE B against H at the same test KL (H's recon interpolated between the bracketing betas)",
        ),
        (
            "betas-verdicts",
            beta_steps,
            "betas",
            "each step down the beta sweep "
            "(bernoulli) on recon, MSE, kNN accuracy and KL: the higher beta (from), the "
            "next lower (to), their difference and the study's verdict (not called where "
            "a side has one seed)",
        ),
    ):
        tables[name] = (make(tables[source][0]), title, PARTS[source]["commands"])
    designs = design_tables(runs)
    tables.update(
        {
            name: (designs[name], part["title"].format(budget=designs["budget"]), part["commands"])
            for name, part in DESIGN_PARTS.items()
        }
    )
    default = selected(runs, {"where": DEFAULT})
    for name, make, title in (
        (
            "diversity-sanity",
            sanity_rows,
            "the diversity measures on the sanity sets, and "
            "whether each passes the blur test (blurred test images above one-class images)",
        ),
        ("per-class", per_class_rows, "per-class reconstruction MSE in [0, 1] pixels, FC vs CNN (bernoulli, beta 0.1)"),
    ):
        tables[name] = (make(default) if len(default) else pd.DataFrame(), title, [SEEDS])
    return tables


def figure_rows(table: pd.DataFrame) -> list[dict[str, Any]]:
    """A table's rows as the figures take them: settings (None where empty) and (mean, std or None) per metric."""
    none = lambda value: None if pd.isna(value) else value  # noqa: E731
    return [
        {
            k.removesuffix("_mean"): (v, none(row[f"{k[:-5]}_std"])) if k.endswith("_mean") else none(v)
            for k, v in row.items()
            if not k.endswith("_std")
        }
        for row in table.to_dict("records")
    ]


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="lab.study", description="The study's tables and figures from the runs' records.")
    p.add_argument("--records-dir", type=Path, default=RECORDS_DIR, help=f"(default {RECORDS_DIR})")
    p.add_argument("--runs-dir", type=Path, help="read run folders here instead of the records")
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help=f"(default {RESULTS_DIR})")
    p.add_argument("--img-dir", type=Path, default=IMG_DIR, help=f"(default {IMG_DIR})")
    p.add_argument("--force", action="store_true", help="replace committed tables even by smaller ones")
    p.add_argument("--no-figures", action="store_true", help="the tables only (seconds)")
    args = p.parse_args(argv)
    source = args.runs_dir or args.records_dir
    if not source.is_dir():
        p.error(f"{source} is not a folder")
    records, problems = load_run_folders(source) if args.runs_dir else load_records(source)
    runs = pd.DataFrame([row for row in map(run_row, records) if row is not None])
    try:
        tables = study_tables(runs) if len(runs) and not problems else {}
    except RecordError as error:
        problems.append(str(error))
    if problems:
        print(
            *problems,
            f"lab.study: no table or figure written ({len(problems)} problems above)",
            sep="\n",
            file=sys.stderr,
        )
        return 1
    if not tables:
        print(f"{source}: no finished run: every committed table kept")
    try:
        for name, (table, title, commands) in tables.items():
            print(write_part(name, table, title, commands, args.results_dir, args.force))
        for name, plot in PLOTTED.items() if tables and not args.no_figures else ():
            csv, png = args.results_dir / f"study-{name}.csv", f"{name.replace('-', '_')}.png"
            if csv.exists():  # written from the records or kept: the figure draws the table on disk
                plots.save(plot(figure_rows(pd.read_csv(csv, dtype={"architecture": str}))), png, folder=args.img_dir)
                print(args.img_dir / png)
    except WriteError as error:
        p.error(str(error))
    return 0


if __name__ == "__main__":
    sys.exit(main())
