"""The study: the original write-up's claims, settled from the runs' eval.json with mean ± std over seeds.

    python study.py                 # every table -> results/study-*.md and .csv; img/betas.png,
                                    # likelihoods.png and frontier.png
    python study.py --runs-dir DIR  # runs elsewhere (default runs/sweep)

The runs come from sweep.py: each table names, at its top, the sweep commands that train and evaluate its
runs (finished runs are reused, so rerunning a command only adds what is missing). Only runs trained to
their configured epochs and evaluated are counted. A difference is called only when the two means differ
by more than twice the larger standard deviation, with at least two seeds on each side.
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

import plots
from cli import OneLineParser
from data import CLASS_NAMES
from evaluate import CLASS_KEYS, EVAL_FILE, summary
from sweep import write_table

RUNS_DIR, RESULTS_DIR = Path("runs/sweep"), Path("results")
SHARED = "--epochs 20 --no-progress"
HEADLINE = ["recon", "kl", "mse", "knn_accuracy", "fd_prior", "fd_aggregate", "precision_prior", "recall_prior",
            "precision_aggregate", "recall_aggregate"]
PARTS: dict[str, dict[str, Any]] = {
    "betas": {
        "title": "beta sweep, seed 0, 20 epochs (0.0021 = 128 / 60,000: the original's KL scaled by dataset size; its "
                 "seeds 1 and 2 are in study-dataset-scaled.md)",
        "commands": [f"python sweep.py --study betas --model fc --likelihood bernoulli gaussian "
                     f"--betas 0.0021 0.01 0.1 0.5 1 2 4 {SHARED}",
                     f"python sweep.py --study betas-cnn --model cnn --likelihood bernoulli gaussian "
                     f"--betas 0.0021 0.01 0.1 0.5 1 2 4 {SHARED}"],
        "where": {"seed": 0, "capacity": None, "likelihood": ("bernoulli", "gaussian"),
                  "default_architecture": True},
        "group": ["model", "likelihood", "beta"],
        "columns": ["recon", "kl", "mse", "knn_accuracy", "active_units", "fd_prior", "fd_aggregate",
                    "precision_prior", "recall_prior"]},
    "likelihoods": {
        "title": "likelihoods compared on common scales (MSE in [0, 1], kNN, FD, precision/recall) and by "
                 "normalised NLL where it exists (nats/image on [0, 1] pixels; bernoulli's is not a density)",
        "commands": [f"python sweep.py --study likelihoods-fc --model fc --likelihood bernoulli gaussian "
                     f"continuous_bernoulli sigma --betas 0.1 1 {SHARED}",
                     f"python sweep.py --study likelihood-seeds-fc --model fc --likelihood continuous_bernoulli "
                     f"sigma --betas 0.1 --seeds 1 2 {SHARED}",
                     f"python sweep.py --study likelihoods-cnn --model cnn --likelihood gaussian continuous_bernoulli "
                     f"sigma --betas 0.1 {SHARED}",
                     f"python sweep.py --study likelihoods-cnn-beta1 --model cnn --likelihood continuous_bernoulli "
                     f"sigma --betas 1 {SHARED}  (bernoulli and gaussian at beta 1: the CNN beta sweep's)",
                     f"python sweep.py --study likelihood-seeds-cnn --model cnn --likelihood gaussian "
                     f"continuous_bernoulli sigma --betas 0.1 --seeds 1 2 {SHARED}"],
        "where": {"capacity": None, "beta": (0.1, 1.0), "default_architecture": True},
        "group": ["model", "likelihood", "beta"],
        "columns": ["mse", "nll", "knn_accuracy", "fd_prior", "fd_aggregate", "precision_prior", "recall_prior",
                    "precision_aggregate", "recall_aggregate", "recon_accuracy"]},
    "seeds": {
        "title": "headline configurations over seeds (default architectures, beta 0.1)",
        "commands": [f"python sweep.py --study seeds --model fc cnn --likelihood bernoulli --betas 0.1 "
                     f"--seeds 0 1 2 {SHARED}",
                     f"python sweep.py --study seeds-gaussian --model fc --likelihood gaussian --betas 0.1 "
                     f"--seeds 0 1 2 {SHARED}",
                     "and the likelihood runs at beta 0.1 (the commands at the top of study-likelihoods.md)"],
        "where": {"beta": 0.1, "capacity": None, "default_architecture": True},
        "group": ["model", "likelihood", "beta"],
        "columns": HEADLINE + ["parameters"]},
    "capacity": {
        "title": "capacity-controlled training (beta-VAE B, gamma 100, C reached over 10 epochs): KL reached vs "
                 "target C",
        "commands": [f"python sweep.py --study capacity-fc --model fc --betas 0.1 --set capacity=2,5,10,20 {SHARED}",
                     f"python sweep.py --study capacity-cnn --model cnn --betas 0.1 --set capacity=5,10 {SHARED}"],
        "where": {"seed": 0, "default_architecture": True}, "group": ["model", "likelihood", "capacity"],
        "require": "capacity",
        "columns": ["kl", "recon", "mse", "fd_aggregate", "precision_aggregate", "recall_aggregate"]},
}
SCALED_BETA = 0.0021  # 128 / 60,000: the original's KL scaled by dataset size
PARTS["dataset-scaled"] = {
    "title": "the original's KL scaled by dataset size (beta 128 / 60,000) against beta 0.1 (bernoulli, default "
             "architectures, over seeds)",
    "commands": [*PARTS["betas"]["commands"], PARTS["seeds"]["commands"][0],
                 f"python sweep.py --study dataset-scaled --model fc cnn --likelihood bernoulli --betas {SCALED_BETA} "
                 f"--seeds 1 2 {SHARED}"],
    "where": {"beta": (SCALED_BETA, 0.1), "likelihood": "bernoulli", "capacity": None, "default_architecture": True},
    "group": ["model", "likelihood", "beta"], "columns": HEADLINE}
# A vs B on every metric with the study's verdict: (name, the part whose rows it pairs, field, A, B, metrics)
COMPARISONS = [("fc-vs-cnn", "seeds", "model", "fc", "cnn", HEADLINE),
               ("bernoulli-vs-gaussian", "seeds", "likelihood", "bernoulli", "gaussian", HEADLINE[2:]),
               ("dataset-scaled-verdicts", "dataset-scaled", "beta", SCALED_BETA, 0.1, HEADLINE)]
# the architectures: a frontier of sizes per family, and CNN designs within 5 % of the default FC's parameters
BUDGET = 53_479  # 5 % of the default FC's 1,069,590 parameters
HEADLINE_SETTINGS = {"beta": 0.1, "likelihood": "bernoulli", "capacity": None, "latent_dim": 3}
DESIGN = "python sweep.py --study cnn-design-{} --model cnn --betas 0.1 --epochs 10 --no-progress --set {}"
DESIGNS = {"channels": "channels=32x32,16x48,48x24,24x24x24", "batch": "norm=batch", "elu": "activation=elu",
           "k3": "channels=40x40 --set kernel_size=3", "k5": "channels=24x28 --set kernel_size=5",
           "decoder": "channels=24x24 --set decoder_channels=40x40",
           "decoder3": "channels=20x20x20 --set decoder_channels=32x32x32"}
FINALIST = "python sweep.py --study cnn-best-{} --model cnn --betas 0.1 --seeds 0 1 2 " + SHARED + " --set {}"
FRONTIER = {"fc": ["8", "32x16", "128x64", "512x256"], "cnn": ["12x12 k4", "32x32 k4", "64x80 k4", "160x192 k4"]}
ARCHITECTURE_PARTS: dict[str, dict[str, Any]] = {
    "cnn-designs": {
        "title": f"CNN designs within 5 % of the default FC's parameters (at most {BUDGET:,}), bernoulli, beta 0.1, "
                 "seed 0: test reconstruction (nats/image) after 10 epochs, best first",
        "commands": [DESIGN.format(name, grid) for name, grid in DESIGNS.items()]
        + ["and any other run within the budget at 10 epochs or more (e.g. the frontier's 12x12)"],
        "where": {**HEADLINE_SETTINGS, "model": "cnn", "seed": 0}, "most_parameters": BUDGET,
        "group": ["architecture"], "columns": ["parameters", "recon_epoch10"]},
    "cnn-best": {
        "title": "the two best CNN designs at 20 epochs over seeds, beside the default FC and CNN (bernoulli, "
                 "beta 0.1), with the study's verdicts on reconstruction and MSE against both defaults",
        "commands": [FINALIST.format(name, DESIGNS[name]) for name in ("decoder3", "k5")]
        + PARTS["seeds"]["commands"][:1],
        "where": {**HEADLINE_SETTINGS, "epochs": 20}, "group": ["model", "architecture"],
        "columns": ["recon", "mse", "kl", "knn_accuracy", "fd_prior", "fd_aggregate", "precision_prior",
                    "recall_prior", "parameters"]},
    "frontier": {
        "title": "parameters vs reconstruction: each family at about 12 k, 50 k, 200 k and 1 M parameters "
                 "(bernoulli, beta 0.1, 20 epochs; the defaults over 3 seeds, the 1 M CNN over 2, the others one "
                 "seed). The CNN at 1 M (160x192) costs about 20 times the default CNN's compute: about 200 s per "
                 "epoch on the 2-core CPU",
        "commands": [f"python sweep.py --study frontier-fc --model fc --betas 0.1 --set hidden=8,32x16,128x64 {SHARED}",
                     f"python sweep.py --study frontier-cnn --model cnn --betas 0.1 --set channels=64x80,12x12 "
                     f"{SHARED}",
                     f"python sweep.py --study frontier-cnn-1m --model cnn --betas 0.1 --set channels=160x192 "
                     f"--seeds 0 1 --workers 1 {SHARED}", *PARTS["seeds"]["commands"][:1]],
        "where": {**HEADLINE_SETTINGS, "epochs": 20}, "group": ["model", "architecture"],
        "columns": ["parameters", "recon", "mse"]},
}


def architecture(config: dict[str, Any]) -> str:
    """A run's architecture in a few words: "512x256", "32x32 k4", "24x24 k4 decoder 40x40 batch elu"."""
    if config["model"] == "fc":
        words = ["x".join(map(str, config.get("hidden", [512, 256])))]
    else:
        words = ["x".join(map(str, config.get("channels", [32, 32]))), f"k{config.get('kernel_size', 4)}"]
        if config.get("decoder_channels"):
            words.append("decoder " + "x".join(map(str, config["decoder_channels"])))
    return " ".join(words + [config[key] for key in ("norm", "activation") if key in config])


def load_runs(runs_dir: Path) -> list[dict[str, Any]]:
    """Settings and summary row of every finished, evaluated run folder on the whole training set, with its
    architecture, whether that is the default one, and the test reconstruction after 10 epochs."""
    runs = []
    for folder in sorted(runs_dir.glob("*/")):
        try:
            metrics = json.loads((folder / "metrics.json").read_text())
            result = json.loads((folder / EVAL_FILE).read_text())
            row = summary(result)
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not evaluated yet, or evaluated by an older evaluate.py
        config, epochs = metrics["config"], metrics["epochs"]
        if len(epochs) < config["epochs"] or result.get("epoch") != len(epochs) or config.get("train_limit"):
            continue
        name = architecture(config)
        default = name in ("512x256", "32x32 k4") and config.get("latent_dim") == 3
        early = epochs[9].get("test", {}).get("recon") if len(epochs) >= 10 else None
        runs.append({**config, **row, "per_class": result["mse_per_class"], "run": folder.name, "architecture": name,
                     "default_architecture": default, "recon_epoch10": early})
    return runs


def selected(runs: list[dict[str, Any]], part: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs a part uses: its `where` settings (a tuple: any of), a non-None `require` field, and at most
    `most_parameters`."""
    def keep(run: dict[str, Any]) -> bool:
        for key, wanted in part["where"].items():
            if (run.get(key) not in wanted) if isinstance(wanted, tuple) else (run.get(key) != wanted):
                return False
        if run.get("parameters", 0) > part.get("most_parameters", float("inf")):
            return False
        return part.get("require") is None or run.get(part["require"]) is not None
    return [run for run in runs if keep(run)]


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for one value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def grouped(runs: list[dict[str, Any]], keys: list[str], columns: list[str]) -> list[dict[str, Any]]:
    """One row per setting of `keys`: n (seeds) and mean ± std of every column."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(tuple(run.get(k) for k in keys), []).append(run)
    rows = []
    for key in sorted(groups, key=lambda k: tuple((v is None, v if not isinstance(v, str) else 0, str(v)) for v in k)):
        members = groups[key]
        row = {**dict(zip(keys, key)), "seeds": len(members)}
        for column in columns:
            values = [m[column] for m in members if isinstance(m.get(column), (int, float))]
            row[column] = mean_std(values) if values else (float("nan"), None)
        rows.append(row)
    return rows


def differs(a: tuple[float, float | None], b: tuple[float, float | None]) -> bool:
    """The study's rule: means more than twice the larger standard deviation apart, both over >= 2 seeds."""
    if a[1] is None or b[1] is None:
        return False
    return abs(a[0] - b[0]) > 2 * max(a[1], b[1])


def verdict(a: tuple[float, float | None], b: tuple[float, float | None], a_lower: str, b_lower: str) -> str:
    """The study's verdict on A vs B: `a_lower` or `b_lower` when the rule calls the difference."""
    if not differs(a, b):
        return "no difference called"
    return a_lower if a[0] < b[0] else b_lower


def flatten(row: dict[str, Any]) -> dict[str, Any]:
    """A row with each (mean, std) cell split into NAME_mean and NAME_std columns."""
    flat: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, tuple):
            flat[f"{key}_mean"], flat[f"{key}_std"] = value
        else:
            flat[key] = value
    return flat


def comparison_rows(rows: list[dict[str, Any]], field: str, a: Any, b: Any, columns: list[str]) -> list[dict]:
    """A vs B (rows that differ only in `field`) on every column, with the study's verdict."""
    out = []
    for row_a in (r for r in rows if r[field] == a):
        same = {k: v for k, v in row_a.items() if not isinstance(v, tuple) and k not in (field, "seeds")}
        for row_b in (r for r in rows if r[field] == b and all(r.get(k) == v for k, v in same.items())):
            for column in columns:
                out.append({**same, "metric": column, str(a): row_a[column], str(b): row_b[column],
                            "seeds": f"{row_a['seeds']}/{row_b['seeds']}",
                            "verdict": verdict(row_a[column], row_b[column], f"{b} higher", f"{a} higher")})
    return out


def cell(value: Any) -> str:
    if isinstance(value, tuple):
        mean, std = value
        if float(mean).is_integer() and not std:  # a count, e.g. parameters
            return f"{int(mean):,}"
        digits = ".4f" if abs(mean) < 1 else ".2f"
        return f"{mean:{digits}}" + (f" ± {std:{digits}}" if std is not None else "")
    return f"{value:g}" if isinstance(value, float) else str(value)


def write_part(name: str, rows: list[dict[str, Any]], part: dict[str, Any], results_dir: Path) -> Path:
    """results/study-NAME.md (with the commands that made its runs) and .csv (mean and std columns)."""
    stem = results_dir / f"study-{name}"
    write_table([flatten(row) for row in rows] or [{"runs": 0}], stem)  # the csv; the markdown gets ± cells below
    header = [f"# Study: {part['title']}", "", "Made by `python study.py` from the runs of:", ""]
    header += [f"    {command}" for command in part["commands"]] + [""]
    if not rows:
        stem.with_suffix(".md").write_text("\n".join(header + ["No finished, evaluated runs yet."]) + "\n")
        return stem
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(cell(v) for v in row.values()) + " |" for row in rows]
    stem.with_suffix(".md").write_text("\n".join(header + ["mean ± standard deviation over seeds", ""] + lines) + "\n")
    return stem


def per_class_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-class reconstruction MSE of FC vs CNN (bernoulli, beta 0.1, over seeds), with the study's verdict."""
    rows = []
    by_model = {m: [r for r in runs if r["model"] == m and r["likelihood"] == "bernoulli" and r["beta"] == 0.1
                    and r.get("capacity") is None and r["default_architecture"]] for m in ("fc", "cnn")}
    for key, name in zip(CLASS_KEYS, CLASS_NAMES):
        fc, cnn = (mean_std([r[f"mse_{key}"] for r in by_model[m]]) if by_model[m] else (float("nan"), None)
                   for m in ("fc", "cnn"))
        rows.append({"class": name, "fc_mse": fc, "cnn_mse": cnn, "seeds": f"{len(by_model['fc'])}/{len(by_model['cnn'])}",
                     "verdict": verdict(cnn, fc, "CNN lower", "FC lower")})
    return rows


def arranged(runs: list[dict[str, Any]], name: str, architectures: list[str]) -> list[dict[str, Any]]:
    """An architecture part's rows for the given architectures, smallest first."""
    part = ARCHITECTURE_PARTS[name]
    rows = grouped([run for run in selected(runs, part) if run["architecture"] in architectures], part["group"],
                   part["columns"])
    return sorted(rows, key=lambda row: (row["model"], row["parameters"][0]))


def with_verdicts(row: dict[str, Any], references: dict[str, dict[str, Any] | None],
                  columns: tuple[str, ...] = ("recon", "mse")) -> dict[str, Any]:
    """The row with the study's verdict on each column against each named reference row ("-" for itself)."""
    return {**row, **{f"{column}_vs_{label}": "-" if reference is None or reference is row
                      else verdict(row[column], reference[column], "lower", "higher")
                      for label, reference in references.items() for column in columns}}


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="study.py", description="Tables of the study from the sweep's evaluated runs.")
    p.add_argument("--runs-dir", default=str(RUNS_DIR), help=f"(default {RUNS_DIR})")
    p.add_argument("--results-dir", default=str(RESULTS_DIR), help=f"(default {RESULTS_DIR})")
    p.add_argument("--img-dir", default=str(plots.IMG_DIR), help="(default img)")
    args = p.parse_args(argv)
    if not Path(args.runs_dir).is_dir():
        p.error(f"--runs-dir {args.runs_dir} is not a folder (make the runs with the sweep commands in study.py)")
    runs = load_runs(Path(args.runs_dir))
    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    tables = {}
    for name, part in PARTS.items():
        tables[name] = grouped(selected(runs, part), part["group"], part["columns"])
        print(f"{write_part(name, tables[name], part, results_dir)}.md: {len(tables[name])} rows")
    for name, source, field, a, b, columns in COMPARISONS:
        part = {"title": f"{a} vs {b}: {PARTS[source]['title']}, each metric with the study's verdict",
                "commands": PARTS[source]["commands"]}
        rows = comparison_rows(tables[source], field, a, b, columns)
        print(f"{write_part(name, rows, part, results_dir)}.md: {len(rows)} rows")
    designs = sorted(grouped(selected(runs, ARCHITECTURE_PARTS["cnn-designs"]), ["architecture"],
                             ARCHITECTURE_PARTS["cnn-designs"]["columns"]), key=lambda row: row["recon_epoch10"][0])
    best = [row["architecture"] for row in designs[:2]]
    print(f"{write_part('cnn-designs', designs, ARCHITECTURE_PARTS['cnn-designs'], results_dir)}.md: "
          f"{len(designs)} rows")
    finalists = arranged(runs, "cnn-best", best + ["32x32 k4", "512x256"])
    defaults = {f"default_{model}": next((row for row in finalists if row["architecture"] == name), None)
                for model, name in (("fc", "512x256"), ("cnn", "32x32 k4"))}
    finalists = [with_verdicts(row, defaults) for row in finalists]
    print(f"{write_part('cnn-best', finalists, ARCHITECTURE_PARTS['cnn-best'], results_dir)}.md: {len(finalists)} rows")
    rows = arranged(runs, "frontier", FRONTIER["fc"] + FRONTIER["cnn"])
    print(f"{write_part('frontier', rows, ARCHITECTURE_PARTS['frontier'], results_dir)}.md: {len(rows)} rows")
    if rows:
        marked = [row for row in finalists if row["architecture"] in best]
        plots.save(plots.plot_frontier(rows, marked), "frontier.png", folder=Path(args.img_dir))
    per_class = {"title": "per-class reconstruction MSE in [0, 1] pixels, FC vs CNN (bernoulli, beta 0.1)",
                 "commands": PARTS["seeds"]["commands"]}
    print(f"{write_part('per-class', per_class_rows(runs), per_class, results_dir)}.md")
    for name, plot in (("betas", plots.plot_betas), ("likelihoods", plots.plot_likelihoods)):
        if tables[name]:
            plots.save(plot(tables[name]), f"{name}.png", folder=Path(args.img_dir))
            print(f"{Path(args.img_dir) / name}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
