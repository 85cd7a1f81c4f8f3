"""lab.bench's arithmetic and report: statistics of repeated timings, floors, x of floor and x vs peer, the
targets and their outcomes, and the markdown of results/bench.md."""

from __future__ import annotations

import statistics
from typing import Any

from lab.bench_worker import TRAIN_IMAGES

BATCH_SIZE = 128
SWEEP = {"epochs": 2, "train_limit": 10000}  # each of the sweep's two runs: fc defaults
PLANS = ("one after the other, all threads", "two at once, 1 thread each")
TARGET_SPEEDUP = 3.0  # epoch: DataLoader loop / project loop
TARGET_OF_FLOOR = {"fc": 1 / 0.6}  # epoch / its floor: the step at >= 60 % of its own products' rate
TARGET_PEAK_MB = 1536
TARGET_WHOLE_RUN = 4.0  # whole run: conventional script / train.py
LOSS_TOLERANCE = 0.5  # nats: test loss after the whole run, train.py vs the conventional script
BUSY_CORES = 0.2  # other processes keeping more cores busy than this: no outcome for timing targets
MAX_SPREAD = 0.20  # (max - min) / median of repeated timings above this: no outcome


def spread_stats(values: list[float]) -> dict[str, float | None]:
    """Median, min, max and relative spread (max - min) / median (None for one value)."""
    median = statistics.median(values)
    spread = (max(values) - min(values)) / median if len(values) > 1 and median else None
    return {"median": median, "min": min(values), "max": max(values), "spread": spread}


def outcome(met: bool | str, busy: bool = False, spreads: tuple[float | None, ...] = ()) -> str:
    """'yes'/'NO' (or `met` itself when a string), unless the machine was busy, or a timing it rests on was
    measured once or spread too wide: then 'unreliable: why'."""
    if busy:
        return "unreliable: machine busy"
    if None in spreads:
        return "unreliable: measured once"
    if spreads and max(spreads) > MAX_SPREAD:
        return f"unreliable: spread {100 * max(spreads):.0f} %"
    return met if isinstance(met, str) else "yes" if met else "NO"


# ---------------------------------------------------------------------------------------------- floors and targets
def median_of(rows: list[dict[str, Any]], key: str) -> float:
    return statistics.median(row[key] for row in rows)


def summarise(result: dict[str, Any]) -> None:
    """Add to each part's timings their statistics, floor (the lowest of the repeats' floors: noise on a shared
    machine only adds time), x of floor and x vs peer (the peer's median over this one's: above 1, faster)."""
    if "epochs" in result:
        by = {(run["model"], run["loop"]): run for run in result["epochs"]["runs"]}
        for run in by.values():
            run["stats"] = spread_stats([e["seconds"] for e in run["epochs"]])
            run["floor"] = min(e["floor_seconds"] for e in run["epochs"])  # noise only adds time: the lowest
            run["gflops"] = (
                median_of(run["epochs"], "flops_per_step") * TRAIN_IMAGES / BATCH_SIZE / run["stats"]["median"] / 1e9
            )
            run["peak_rss_mb"] = max(e["peak_rss_mb"] for e in run["epochs"])
        for run in by.values():
            run["of_floor"] = run["stats"]["median"] / run["floor"]
            run["vs_peer"] = by[(run["model"], "dataloader")]["stats"]["median"] / run["stats"]["median"]
    for key, peers, runs in (("whole_run", ("train.py", "conventional"), 1), ("sweep", PLANS, 2)):
        if key in result:
            part = result[key]
            floors = part["floors"]
            part["floor"] = dict(min(floors, key=lambda floor: floor["floor_seconds"]))  # the lowest, as above
            # the sweep's floor: both runs' steps, one start-up and data load (two at once overlap them)
            part["floor"]["floor_seconds"] += (runs - 1) * part["floor"]["compute_seconds"]
            part["stats"] = {kind: spread_stats(part["seconds"][kind]) for kind in peers}
            for kind, peer in zip(peers, reversed(peers)):
                part["stats"][kind]["of_floor"] = part["stats"][kind]["median"] / part["floor"]["floor_seconds"]
                part["stats"][kind]["vs_peer"] = part["stats"][peer]["median"] / part["stats"][kind]["median"]


def targets(result: dict[str, Any]) -> list[dict[str, str]]:
    """Every target of the parts that ran: what, measured, goal and outcome."""
    rows = []
    if "epochs" in result:
        busy, by = result["epochs"]["load"]["busy"], {(r["model"], r["loop"]): r for r in result["epochs"]["runs"]}
        for name in dict.fromkeys(model for model, _ in by):
            project, loader = by[(name, "project")], by[(name, "dataloader")]
            spreads = (project["stats"]["spread"], loader["stats"]["spread"])
            rows.append(
                (
                    f"{name} epoch: DataLoader loop / project loop",
                    f"{project['vs_peer']:.2f}x",
                    f">= {TARGET_SPEEDUP:g}x",
                    outcome(project["vs_peer"] >= TARGET_SPEEDUP, busy, spreads),
                )
            )
            if name in TARGET_OF_FLOOR:
                rows.append(
                    (
                        f"{name} epoch: project loop / its floor",
                        f"{project['of_floor']:.2f}x",
                        f"<= {TARGET_OF_FLOOR[name]:.2f}x",
                        outcome(project["of_floor"] <= TARGET_OF_FLOOR[name], busy, spreads[:1]),
                    )
                )
            rows.append(
                (
                    f"{name} peak resident memory, project loop",
                    f"{project['peak_rss_mb']:.0f} MB",
                    f"< {TARGET_PEAK_MB} MB",
                    outcome(project["peak_rss_mb"] < TARGET_PEAK_MB),
                )
            )
    if "whole_run" in result:
        part = result["whole_run"]
        stats, losses = part["stats"], part["test_loss"]
        gap = abs(losses["train.py"] - losses["conventional"])
        rows += [
            (
                "whole run: conventional script / train.py",
                f"{stats['train.py']['vs_peer']:.2f}x",
                f">= {TARGET_WHOLE_RUN:g}x",
                outcome(
                    stats["train.py"]["vs_peer"] >= TARGET_WHOLE_RUN,
                    part["load"]["busy"],
                    tuple(s["spread"] for s in stats.values()),
                ),
            ),
            (
                "whole run: test loss, train.py vs conventional script",
                f"{gap:.2f} nats ({losses['train.py']:.2f} vs {losses['conventional']:.2f})",
                f"<= {LOSS_TOLERANCE} nats",
                outcome(gap <= LOSS_TOLERANCE)
                if part["train_limit"] is None
                else f"unreliable: trained on {part['train_limit']:,} images",
            ),
        ]
    if "sweep" in result:
        stats = result["sweep"]["stats"]
        rows.append(
            (
                f"sweep: two fc runs of {SWEEP['epochs']} epochs on {result['sweep']['images']:,} images",
                "; ".join(f"{plan}: {s['median']:.1f} s" for plan, s in stats.items()),
                "the faster plan",
                outcome(
                    min(stats, key=lambda plan: stats[plan]["median"]),
                    result["sweep"]["load"]["busy"],
                    tuple(s["spread"] for s in stats.values()),
                ),
            )
        )
    return [dict(zip(("what", "measured", "goal", "met"), row)) for row in rows]


# ---------------------------------------------------------------------------------------------- report
def seconds_range(stats: dict[str, Any]) -> str:
    return f"{stats['median']:.2f} ({stats['min']:.2f}-{stats['max']:.2f})"


def load_text(load: dict[str, Any]) -> str:
    return f"other processes kept {load['before']:.2f} cores busy before and {load['during']:.2f} during" + (
        " (busy: no outcome for these timings)" if load["busy"] else ""
    )


def floor_text(floor: dict[str, float]) -> str:
    return (
        f"Floor {floor['floor_seconds']:.2f} s = start-up and imports {floor['import_seconds']:.2f} s + data "
        f"{floor['data_seconds']:.2f} s + {floor['flops_per_step'] / 1e9:.3f} GFLOP per step at "
        f"{floor['mm_gflops']:.1f} GFLOP/s (the lowest of the runs' floors; the step's own products, each "
        f"layer replayed alone at its best)"
    )


def markdown(result: dict[str, Any]) -> str:
    """The results as markdown: environment, one section per part, the targets."""
    env = result["environment"]
    lines = [
        f"`{result['command']}` on {env['date']}: {env['device']} ({env['cpu']}), GPU: {env['gpu'] or 'none'}, "
        f"torch {env['torch']}, {env['threads']} torch threads.",
        "",
        "x of floor: the time over its floor; x vs peer: the peer's time over this one (above 1: faster).",
        "",
    ]
    if "epochs" in result:
        part, first = result["epochs"], result["epochs"]["runs"][0]["epochs"][0]
        timed = (
            "full epochs"
            if first["timed_images"] == TRAIN_IMAGES
            else f"epochs of {first['timed_images'] // BATCH_SIZE} steps scaled to {TRAIN_IMAGES:,} images"
        )
        lines += [
            f"### One training epoch ({TRAIN_IMAGES:,} images, batch {BATCH_SIZE})",
            "",
            f"Median (min-max) of {len(part['runs'][0]['epochs'])} {timed}, each in a fresh process after a "
            f"warm-up, loops interleaved; {load_text(part['load'])}. Floor: the lowest of the epochs' floors, "
            f"the step's own products with each layer replayed alone at its best in the same process.",
            "",
            "| model | loop | epoch s | floor s | x of floor | x vs peer (DataLoader) | GFLOP/s | peak RSS MB |",
            "|---|---|--:|--:|--:|--:|--:|--:|",
        ]
        lines += [
            f"| {r['model']} | {r['loop']} | {seconds_range(r['stats'])} | {r['floor']:.2f} | {r['of_floor']:.2f}x "
            f"| {r['vs_peer']:.2f}x | {r['gflops']:.1f} | {r['peak_rss_mb']:.0f} |"
            for r in part["runs"]
        ]
        lines.append("")
    for key, title, peers in (
        ("whole_run", "Whole run, as a user times it", ("train.py", "conventional")),
        ("sweep", "Sweep: two runs on all cores", PLANS),
    ):
        if key not in result:
            continue
        part = result[key]
        what = (
            f"`{part['command']}` (A) against `python lab/conventional.py` (B), pytorch/examples' VAE, whole "
            f"processes A B A B"
            if key == "whole_run"
            else f"Two `train.py` runs (fc defaults, {SWEEP['epochs']} "
            f"epochs on {part['images']:,} images) per plan, plans interleaved; the floor counts both runs' steps"
        )
        lines += [
            f"### {title}",
            "",
            f"{what}; {load_text(part['load'])}. {floor_text(part['floor'])}.",
            "",
            "| run | wall s, each | median (min-max) | x of floor | x vs peer |"
            + (" test loss |" if key == "whole_run" else ""),
            "|---|---|--:|--:|--:|" + ("--:|" if key == "whole_run" else ""),
        ]
        for kind in peers:
            s = part["stats"][kind]
            lines.append(
                f"| {kind} | {', '.join(f'{v:.1f}' for v in part['seconds'][kind])} | {seconds_range(s)} "
                f"| {s['of_floor']:.2f}x | {s['vs_peer']:.2f}x |"
                + (f" {part['test_loss'][kind]:.2f} |" if key == "whole_run" else "")
            )
        lines.append("")
    lines += [
        "### Targets",
        "",
        f"No outcome for a timing where other processes kept more than {BUSY_CORES} cores "
        f"busy or repeated timings spread by more than {100 * MAX_SPREAD:.0f} % of their median.",
        "",
        "| target | measured | goal | met |",
        "|---|--:|--:|---|",
    ]
    lines += [f"| {t['what']} | {t['measured']} | {t['goal']} | {t['met']} |" for t in result["targets"]]
    return "\n".join(lines) + "\n"
