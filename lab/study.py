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
from config import ModelConfig
from data import CLASS_NAMES
from evaluate import summary
from files import WriteError
from lab import figures
from lab.parts import (BUDGET_SHARE, COMPARISONS, DEFAULT, DESIGN_PARTS, DIVERSITY, DIVERSITY_SANITY, PARTS,
                       SEEDS, WIDTHS)
from lab.records import RECORDS_DIR, load_records, load_run_folders
from lab.tables import committed_rows, write_part

RESULTS_DIR, IMG_DIR = Path("results"), Path("img")


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
            "per_class": record["eval"]["mse_per_class"], "run": record["name"],
            "recon_epoch10": epochs[9]["test"]["recon"] if len(epochs) >= 10 else None}


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


def design_tables(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The CNN design screen (seed 0, within the budget, best first) and its two best designs over seeds beside the
    two defaults, smallest first, each with the study's verdicts on recon and MSE against both defaults; and the
    budget (a share of the default FC's parameters)."""
    screen, finals = DESIGN_PARTS["cnn-designs"], DESIGN_PARTS["cnn-best"]
    fc = [r["parameters"] for r in rows if r["model"] == "fc" and r["default_architecture"]]
    budget = int(BUDGET_SHARE * fc[0]) if fc else 0
    screened = [r for r in selected(rows, screen) if r["parameters"] <= budget and r["recon_epoch10"] is not None]
    designs = sorted(grouped(screened, screen["group"], screen["columns"]), key=lambda row: row["recon_epoch10"][0])
    names = {model: architecture({"model": model}) for model in ("fc", "cnn")}
    chosen = [row["architecture"] for row in designs[:2]] + list(names.values())
    best = sorted(grouped([r for r in selected(rows, finals) if r["architecture"] in chosen], finals["group"],
                          finals["columns"]), key=lambda row: (row["model"], row["parameters"][0]))
    defaults = {model: next((r for r in best if r["architecture"] == name), None) for model, name in names.items()}
    best = [{**row, **{f"{column}_vs_default_{model}": "-" if default is None or default is row else
                       verdict(row[column], default[column], "lower", "higher")
                       for model, default in defaults.items() for column in ("recon", "mse")}} for row in best]
    return {"cnn-designs": designs, "cnn-best": best, "budget": budget}


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
        designs = design_tables(rows)
        for name, part in DESIGN_PARTS.items():
            print(write_part(name, designs[name], part["title"].format(budget=designs["budget"]), part["commands"],
                             results_dir, args.force))
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
