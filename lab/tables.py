"""The lab's tables on disk: STEM.csv (a metric's mean and std over seeds as NAME_mean and NAME_std) and STEM.md (a
header, then the table with 'mean ± std' cells); the study's never replace a committed table by one with fewer rows
or seeds (unless forced)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import DataRow, TableFormat

from files import write_text
from lab.protocol import Protocol

MARKDOWN = TableFormat(
    lineabove=None,
    linebelowheader=lambda widths, _: "|" + "---|" * len(widths),
    linebelow=None,
    linebetweenrows=None,
    headerrow=DataRow("|", "|", "|"),
    datarow=DataRow("|", "|", "|"),
    padding=1,
    with_header_hide=None,
)  # GitHub's pipe table, unpadded (stralign=None)


def pair(mean: float, std: float) -> str:
    """A markdown cell 'mean ± std' (no std: one seed; a count as 1,069,590; nothing: '-')."""
    if pd.isna(mean):
        return "-"
    if float(mean).is_integer() and not std > 0:
        return f"{int(mean):,}"
    digits = ".4f" if abs(mean) < 1 else ".2f"
    return f"{mean:{digits}}" + (f" ± {std:{digits}}" if pd.notna(std) else "")


def markdown(table: pd.DataFrame) -> str:
    """The table in markdown: each NAME_mean and NAME_std as one column NAME, other numbers to 4 significant digits."""
    cells = {}
    for column in table:
        name = column.removesuffix("_mean")
        if name != column and f"{name}_std" in table:
            cells[name] = list(map(pair, table[column], table[f"{name}_std"]))
        elif not (column.endswith("_std") and f"{column.removesuffix('_std')}_mean" in table):
            cells[column] = [
                f"{v:.4g}" if isinstance(v, float) and pd.notna(v) else str(None if pd.isna(v) else v)
                for v in table[column]
            ]
    return pd.DataFrame(cells).to_markdown(index=False, tablefmt=MARKDOWN, stralign=None, disable_numparse=True) + "\n"


def write_table(rows: pd.DataFrame | list[dict[str, Any]], stem: Path, header: str = "") -> list[Path]:
    """rows -> STEM.csv and STEM.md (`header`, then the table); the two paths."""
    table = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows, dtype=object)  # dicts: 3 stays 3 beside None
    stem.parent.mkdir(parents=True, exist_ok=True)
    write_text(stem.with_suffix(".csv"), table.to_csv(index=False, lineterminator="\r\n"))
    write_text(stem.with_suffix(".md"), header + markdown(table))
    return [stem.with_suffix(".csv"), stem.with_suffix(".md")]


def read_table(stem: Path) -> list[dict[str, str]]:
    """The rows of STEM.csv as written by write_table, as text ([] if none)."""
    try:
        return pd.read_csv(stem.with_suffix(".csv"), dtype=str, keep_default_na=False).to_dict("records")
    except (OSError, ValueError):
        return []


def write_part(
    name: str,
    table: pd.DataFrame,
    title: str,
    commands: list[str],
    results_dir: Path,
    force: bool,
    protocol: Protocol | None = None,
) -> str:
    """results/study-NAME.md and .csv (a header with the commands of its runs and the protocol they follow, if
    given), unless that would replace a committed table with fewer rows or seeds."""
    stem = results_dir / f"study-{name}"
    (rows, seeds), (kept_rows, kept_seeds) = [
        (len(t), t.get("seeds", pd.Series(1, t.index)).astype(str).str.split("/").explode().astype(int).sum())
        for t in (table, pd.DataFrame(read_table(stem)))
    ]  # seeds: "3" or "3/2"
    if table.empty and not kept_rows:
        return f"{stem}.md: no run of it yet, nothing written"
    if table.empty or not force and (rows < kept_rows or seeds < kept_seeds):
        return (
            f"{stem}.md: kept ({kept_rows} rows, {kept_seeds} seeds committed; the records give {rows} rows, "
            f"{seeds} seeds: --force replaces it)"
        )
    listed = "".join(f"    {command}\n" for command in commands)
    before = [read_table(stem), stem.with_suffix(".md").read_text() if stem.with_suffix(".md").exists() else None]
    write_table(
        table,
        stem,
        f"# Study: {title}\n\nMade by `python -m lab.study` from the run records of:\n\n{listed}"
        + (f"\nProtocol: {protocol}; `lab.study` leaves out runs made otherwise.\n" if protocol else "")
        + "\nmean ± standard deviation over seeds\n\n",
    )
    after = [read_table(stem), stem.with_suffix(".md").read_text()]
    old, new = ({tuple(row.items()) for row in rows} for rows in (before[0], after[0]))
    differ = max(len(new - old), len(old - new))  # rows changed, added or gone, wherever they stand
    return f"{stem}.md: {len(table)} rows, " + (
        "unchanged" if after == before else f"CHANGED: {differ} rows differ" if differ else "CHANGED: its header only"
    )
