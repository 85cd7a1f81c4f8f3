"""The study's tables on disk: written with their header, never replacing a committed table by one with fewer rows
or seeds (unless forced), and read back (for figures of the tables that were kept)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from files import read_table, write_table


def seeds_of(rows: list[dict[str, Any]]) -> int:  # seeds summed over rows ("3/2" counts 5; none given: 1)
    counts = [part for row in rows for part in str(row.get("seeds", 1)).split("/")]
    return sum(int(count) if count.isdigit() else 1 for count in counts)


def number_or_text(text: str) -> Any:
    if text in ("", "None"):
        return None
    try:
        return float(text)
    except ValueError:
        return text


def committed_rows(stem: Path) -> list[dict[str, Any]]:
    """A committed table's rows as the study made them: numbers as numbers, NAME_mean/NAME_std as (mean, std)."""
    rows = []
    for row in read_table(stem):
        plain = {k: v if k == "architecture" else number_or_text(v) for k, v in row.items() if not k.endswith(
            ("_mean", "_std"))}
        rows.append({**plain, **{k[:-5]: (number_or_text(v), number_or_text(row.get(k[:-5] + "_std", "")))
                                 for k, v in row.items() if k.endswith("_mean")}})
    return rows


def committed_size(stem: Path) -> tuple[int, int]:  # (rows, seeds) of a committed table; (0, 0) if none
    rows = read_table(stem)
    return len(rows), seeds_of(rows)


def write_part(name: str, rows: list[dict[str, Any]], title: str, commands: list[str], results_dir: Path,
               force: bool) -> str:
    """results/study-NAME.md and .csv, unless that would replace a committed table with fewer rows or seeds."""
    stem = results_dir / f"study-{name}"
    new = (len(rows), seeds_of(rows))
    old = committed_size(stem)
    if not rows or (not force and (new[0] < old[0] or new[1] < old[1])):
        return (f"{stem}.md: kept ({old[0]} rows, {old[1]} seeds committed; the records give {new[0]} rows, "
                f"{new[1]} seeds: --force replaces it)")
    header = "\n".join([f"# Study: {title}", "", "Made by `python -m lab.study` from the run records of:", "",
                        *[f"    {c}" for c in commands], "", "mean ± standard deviation over seeds", "", ""])
    write_table(rows, stem, header)
    return f"{stem}.md: {len(rows)} rows"
