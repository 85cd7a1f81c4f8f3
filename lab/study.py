"""The study: the original write-up's claims, settled from the runs' records with mean ± std over seeds.

    python -m lab.study              # every table -> results/study-*.md and .csv, and the study's figures in img/
    python -m lab.study --runs-dir runs/sweep   # from run folders instead of the committed records

Each table names at its top the sweep commands that train and evaluate its runs (finished runs are reused) and the
protocol they follow (lab/protocol.py): a run made otherwise is left out, a line each. A difference is called only
when two means differ by more than twice the larger standard deviation, with at least two seeds on each side. A
committed table is never replaced by one with fewer rows or seeds (--force does). A record that is not evidence
(lab/records.py), or a table of runs evaluated with other classifier weights, is named and nothing is written
(exit 1). The tables themselves: lab/study_tables.py.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

import plots
from cli import OneLineParser
from files import WriteError, unwritable
from lab import figures, study_factors
from lab.records import RECORDS_DIR, RecordError, load_records, load_run_folders
from lab.study_rows import left_out_lines, run_row
from lab.study_tables import study_tables
from lab.tables import write_part

RESULTS_DIR, IMG_DIR = Path("results"), Path("img")
PLOTTED = {  # table: (its figure's file in img/, how it is drawn)
    "latent-dims": ("latent_dims.png", figures.plot_latent_dims),
    "capacity-gamma": ("capacity_gamma.png", figures.plot_rate_distortion),
    "betas": ("betas.png", figures.plot_betas),
    "likelihoods": ("likelihoods.png", figures.plot_likelihoods),
    "frontier": ("frontier.png", figures.plot_frontier),
    "shapes": ("shapes_scores.png", study_factors.plot_scores),
}


def unwritable_folder(folder: Path) -> str | None:
    """Why no file can be written in `folder` (made later if missing), or None: it, or the nearest folder above it,
    must take a new folder (tried and removed at once: root ignores permissions, not a read-only mount)."""
    if why := unwritable(folder):
        return why
    existing = folder
    while not existing.exists():
        existing = existing.parent
    try:
        os.rmdir(tempfile.mkdtemp(dir=existing))
    except OSError as error:
        return f"{folder} is not writable ({error.strerror})"
    return None


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
    for option in ("results_dir",) if args.no_figures else ("results_dir", "img_dir"):
        if why := unwritable_folder(getattr(args, option)):
            p.error(f"--{option.replace('_', '-')} {why}")
    records, problems = load_run_folders(source) if args.runs_dir else load_records(source)
    runs = pd.DataFrame(map(run_row, records))
    try:
        tables, left_out = study_tables(runs) if len(runs) and not problems else ({}, {})
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
    where = {r["name"]: str(source / (r["name"] if args.runs_dir else f"{r['name']}.json")) for r in records}
    print(*left_out_lines(left_out, where), sep="\n") if left_out else None
    try:
        for name, (table, title, commands, protocol) in tables.items():
            print(write_part(name, table, title, commands, args.results_dir, args.force, protocol))
        for name, (png, plot) in PLOTTED.items() if tables and not args.no_figures else ():
            csv = args.results_dir / f"study-{name}.csv"
            if csv.exists():  # written from the records or kept: the figure draws the table on disk
                plots.save(plot(figure_rows(pd.read_csv(csv, dtype={"architecture": str}))), png, folder=args.img_dir)
                print(args.img_dir / png)
    except (WriteError, OSError) as error:
        p.error(str(error))
    return 0


if __name__ == "__main__":
    sys.exit(main())
