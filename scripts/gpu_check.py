"""The GPU check: what a lent GPU machine must show, in one command (docs/performance.md#the-gpu-check).

    python scripts/gpu_check.py               # on a GPU machine: cuda against cpu, then the timings and the suite
    python scripts/gpu_check.py --dry-run     # on any CPU: every step but the suite and the 20-epoch runs, cpu
                                              # against cpu on tiny settings (tests/test_gpu_check.py runs this)

What it runs, in this order (agreement tolerance: --tolerance nats per image):
  1. agreement: train.py --device DEVICE against --device REFERENCE (cuda against cpu) for each model, --epochs 2 on
     the first --train-limit 5,000 training images; every per-epoch loss of metrics.json (train and test: recon, KL,
     total) is compared. These runs, parts 2 and 3 set NVIDIA_TF32_OVERRIDE=0 (plain float32 on the GPU).
  2. resume across devices: 1 epoch on DEVICE, resumed to --epochs on REFERENCE, and the reverse; each against the
     uninterrupted runs of part 1.
  3. evaluate.py --device DEVICE against REFERENCE on the DEVICE-trained checkpoint (quick limits): every number of
     eval.json, within 0.01 + 0.2 % of the larger value.
  4. timed, alone: each notebook model (train.py --model fc / cnn, beta 0.1, --full-epochs 20 on all 60,000 images)
     on DEVICE, with torch's defaults.
  5. timed, alone: pytorch/examples' VAE on DEVICE, train.py (lab.conventional.EXAMPLES) against lab/conventional.py,
     interleaved A B A B (lab.bench's whole-run part, on the GPU). Needs torchvision; left out, and said, without it.
  6. the core suite (python -m pytest -q tests). A test file that imports a module this Python lacks (at its top, or
     through a project module) is left out, and a test that fails only with ModuleNotFoundError for such a module
     counts as skipped; both are printed with the module's name.
Everything printed also goes to OUT/gpu_check.txt when --out or $OUT is set, with each run's metrics.json and
eval.json. The last lines are a summary to paste into docs/performance.md. Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOSS_KEYS = ("recon", "kl", "total")
MISSING_ENV = "GPU_CHECK_MISSING"  # the modules the suite's plugin (this file, -p gpu_check) tolerates
QUICK_EVAL = ["--eval-limit", "1000", "--samples", "1000", "--iwae-images", "200", "--k", "10"]
TINY_EVAL = ["--eval-limit", "200", "--samples", "200", "--iwae-images", "50", "--k", "2", "--train-limit", "1000"]
EVAL_ATOL, EVAL_RTOL = 0.01, 0.002
NOT_COMPARED = {"seconds"}  # eval.json keys that are not results


# ---------------------------------------------------------------------------------------------- the suite's plugin
@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A test that fails only because a module named in $GPU_CHECK_MISSING cannot be imported counts as skipped: it
    raised ModuleNotFoundError for that module, or its failure says so (a script it ran printed "No module named
    'plotly'"), and then the reason quotes that line."""
    report = yield
    missing = set(filter(None, os.environ.get(MISSING_ENV, "").split(",")))
    if not report.failed or not missing:
        return report
    error = call.excinfo.value if call.excinfo is not None else None
    if isinstance(error, ModuleNotFoundError) and (error.name or "").split(".")[0] in missing:
        reason = f"needs {error.name.split('.')[0]}, not installed here (ModuleNotFoundError)"
    else:
        text = report.longreprtext
        named = {m.split(".")[0] for m in re.findall(r"No module named '([\w.]+)'", text)} & missing
        if not named:
            return report
        quoted = next(line for line in text.splitlines() if "No module named" in line).strip()[:200]
        reason = f"needs {', '.join(sorted(named))}, not installed here (its failure says so: {quoted})"
    report.outcome, report.longrepr = "skipped", (str(item.path), (item.location[1] or 0) + 1, reason + " [gpu_check]")
    return report


# ---------------------------------------------------------------------------------------------- what the suite needs
def imported_modules(path: Path, top_level_only: bool) -> set[str]:
    """The top-level names of the modules `path` imports: at module level only, or anywhere."""
    tree, names = ast.parse(path.read_text(encoding="utf-8")), set()
    nodes = ast.walk(tree) if top_level_only is False else iter_module_level(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def iter_module_level(tree: ast.Module):
    """The statements that run when the module is imported: its body and the blocks of its if and with statements;
    not function or class bodies, nor try blocks (an import guarded there does not fail the module)."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, (ast.If, ast.With)):
            stack += [child for child in ast.iter_child_nodes(node) if isinstance(child, ast.stmt)]


def project_files(tests: Path) -> dict[str, Path]:
    """Module name -> file, for the repository's own modules (top level and the test folder's helpers)."""
    return {p.stem: p for p in [*ROOT.glob("*.py"), *tests.glob("*.py")]} | {"lab": ROOT / "lab" / "__init__.py"}


def missing_modules(tests: Path) -> set[str]:
    """Third-party modules that the tests or the project modules import anywhere and this Python cannot find."""
    own = project_files(tests)
    names = set().union(*(imported_modules(path, top_level_only=False) for path in own.values() if path.exists()))
    return {
        name
        for name in names - set(own) - set(sys.stdlib_module_names) - {"__future__"}
        if importlib.util.find_spec(name) is None
    }


def needs_at_import(path: Path, missing: set[str], own: dict[str, Path], seen: set[Path] | None = None) -> set[str]:
    """The missing modules that importing `path` imports, itself or through the project modules it imports."""
    seen = (seen or set()) | {path}
    names = imported_modules(path, top_level_only=True)
    found = names & missing
    for name in names & set(own):
        if own[name].exists() and own[name] not in seen:
            found |= needs_at_import(own[name], missing, own, seen)
    return found


def left_out(tests: Path, missing: set[str]) -> dict[str, set[str]]:
    """Test file (relative to the repository) -> the missing modules it needs as soon as it is imported."""
    own = project_files(tests)
    result = {}
    for path in sorted(tests.glob("test_*.py")):
        if needs := needs_at_import(path, missing, own):
            result[str(path.relative_to(ROOT))] = needs
    return result


# ---------------------------------------------------------------------------------------------- comparing numbers
def epoch_losses(metrics: dict) -> dict[str, float]:
    """'epoch 1 train recon' -> value, for every epoch of a metrics.json."""
    return {
        f"epoch {e['epoch']} {part} {key}": float(e[part][key])
        for e in metrics["epochs"]
        for part in ("train", "test")
        for key in LOSS_KEYS
    }


def numbers(tree, prefix: str = "") -> dict[str, float]:
    """Every number of a JSON tree, by its path (booleans, strings and NOT_COMPARED keys left out)."""
    if isinstance(tree, dict):
        return {
            k: v
            for key, value in tree.items()
            if key not in NOT_COMPARED
            for k, v in numbers(value, f"{prefix}{key}.").items()
        }
    if isinstance(tree, list):
        return {k: v for i, value in enumerate(tree) for k, v in numbers(value, f"{prefix}{i}.").items()}
    if isinstance(tree, (int, float)) and not isinstance(tree, bool):
        return {prefix.rstrip("."): float(tree)}
    return {}


def largest_gap(a: dict[str, float], b: dict[str, float], scale=None) -> tuple[float, str]:
    """The largest |a - b| over the keys of a and b (divided by scale(a, b) when given), and its key; infinite when
    the keys differ."""
    if set(a) != set(b):
        return float("inf"), f"different keys: {sorted(set(a) ^ set(b))[:5]}"
    gaps = {key: abs(a[key] - b[key]) / (scale(a[key], b[key]) if scale else 1.0) for key in a}
    key = max(gaps, key=gaps.get) if gaps else ""
    return (gaps[key], key) if gaps and gaps[key] > 0 else (0.0, "all equal")


def eval_scale(x: float, y: float) -> float:
    """An eval.json gap in units of its tolerance: within it when <= 1."""
    return EVAL_ATOL + EVAL_RTOL * max(abs(x), abs(y))


# ---------------------------------------------------------------------------------------------- running things
class Log:
    """print, and the same line into OUT/gpu_check.txt when there is an OUT."""

    def __init__(self, out: Path | None):
        self.file = (out / "gpu_check.txt").open("w", encoding="utf-8") if out else None

    def __call__(self, text: str = "") -> None:
        print(text, flush=True)
        if self.file:
            self.file.write(text + "\n")
            self.file.flush()


def run(log: Log, command: list[str], env: dict[str, str] | None = None, timeout: float | None = None):
    """Run `command` in the repository; (exit status, wall seconds, stdout and stderr). Logs the command, its time
    and its last line (all of its output's tail when it fails)."""
    started = time.perf_counter()
    try:
        done = subprocess.run(
            command,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        code, output = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as stop:
        code, output = 124, f"{stop.stdout or ''}{stop.stderr or ''}\ntimed out after {timeout} s"
        output = output if isinstance(output, str) else output.decode(errors="replace")
    seconds = time.perf_counter() - started
    shown = " ".join(str(word) for word in command).replace(sys.executable, "python").replace(f"{ROOT}/", "")
    tail = output.strip().splitlines()[-1:] if code == 0 else output.strip().splitlines()[-25:]
    log(f"$ {shown}   [{seconds:.1f} s, exit {code}]")
    for line in tail:
        log(f"    {line}")
    return code, seconds, output


def train(model: str, device: str, out: Path, epochs: int, limit: int | None, resume: bool = False) -> list[str]:
    command = [sys.executable, str(ROOT / "train.py")]
    if resume:
        return [*command, "--resume", str(out), "--epochs", str(epochs), "--device", device, "--no-progress"]
    limit_args = ["--train-limit", str(limit)] if limit else []
    return [*command, "--model", model, "--epochs", str(epochs), *limit_args, "--device", device, "--no-progress"] + [
        "--out",
        str(out),
    ]


def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def keep(out: Path | None, source: Path, name: str) -> None:
    """Copy a run's metrics.json / eval.json under OUT/runs/NAME/."""
    if out and source.exists():
        (out / "runs" / name).mkdir(parents=True, exist_ok=True)
        shutil.copy(source, out / "runs" / name / source.name)


def environment(args: argparse.Namespace) -> list[str]:
    import torch

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        "unknown CPU",
    )
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return [
        f"device: {gpu}",
        f"torch: {torch.__version__} (CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()})",
        f"python: {sys.version.split()[0]}; CPU: {cpu}, {os.cpu_count()} CPUs "
        f"({torch.backends.cpu.get_cpu_capability()})",
        f"commit: {commit.stdout.strip() or 'unknown (no git)'}; date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"checking: {args.device} against {args.reference}; models {' '.join(args.models)}; "
        f"{args.epochs} epochs on {args.train_limit:,} images; tolerance {args.tolerance} nats per image",
    ]


# ---------------------------------------------------------------------------------------------- the parts
def agreement_and_resume(args, log: Log, work: Path, rows: list, failures: list) -> dict[str, Path]:
    """Parts 1 and 2; the DEVICE-trained run folder of each model."""
    a, b, n = args.device, args.reference, args.epochs
    strict = {"NVIDIA_TF32_OVERRIDE": "0", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(args.threads))}
    same = {"B": "A", "BA": "AB"} if a == b else {}  # one device against itself: the same command is one run
    chains = {}
    for model in args.models:
        for name, device in (("A", a), ("B", b)):
            chains[f"{model} {name}"] = [train(model, device, work / f"{model}-{name}", n, args.train_limit)]
        for name, (first, second) in (("AB", (a, b)), ("BA", (b, a))):
            out = work / f"{model}-{name}"
            chains[f"{model} {name}"] = [
                train(model, first, out, 1, args.train_limit),
                train(model, second, out, n, args.train_limit, resume=True),
            ]
    chains = {key: commands for key, commands in chains.items() if key.split()[1] not in same}

    def chain(commands: list[list[str]]) -> int:
        """Run the commands one after the other; the first non-zero exit status (or 0)."""
        for command in commands:
            if code := run(log, command, strict)[0]:
                return code
        return 0

    log(f"== 1, 2: agreement and resume ({len(chains)} chains, {args.jobs} at a time, {strict})")
    with ThreadPoolExecutor(args.jobs) as pool:
        codes = dict(zip(chains, pool.map(chain, chains.values())))
    for model in args.models:
        runs = {name: read_json(work / f"{model}-{name}" / "metrics.json") for name in ("A", "AB", "B", "BA")}
        for name, metrics in runs.items():
            if name in same:
                runs[name] = runs[same[name]]
                continue
            keep(args.out, work / f"{model}-{name}" / "metrics.json", f"{model}-{name}")
            if codes[f"{model} {name}"] or metrics is None or len(metrics["epochs"]) != n:
                failures.append(f"{model}: run {name} failed")
                runs[name] = None
        if runs["A"] and runs["B"]:
            la, lb = epoch_losses(runs["A"]), epoch_losses(runs["B"])
            log(f"-- {model}: per-epoch losses, {a} vs {b} (nats per image)")
            for key in la:
                log(f"   {key:<22} {la[key]:14.6f} {lb[key]:14.6f}   difference {abs(la[key] - lb[key]):.3g}")
            check = f"{model}: train.py {a} vs {b}, {n} epochs on {args.train_limit:,} images"
            verdict(args, rows, failures, check, *largest_gap(la, lb))
        for name, (first, second) in (("AB", (a, b)), ("BA", (b, a))):
            if name not in same and runs[name] and runs["A"] and runs["B"]:
                resumed = epoch_losses(runs[name])
                gap, where, against = max(largest_gap(resumed, epoch_losses(runs[u])) + (u,) for u in ("A", "B"))
                log(f"-- {model}: 1 epoch on {first}, resumed on {second} to epoch {n}: largest gap {gap:.3g}")
                log(f"   ({where}, against the uninterrupted {a if against == 'A' else b} run)")
                check = f"{model}: 1 epoch on {first}, resumed on {second}, vs uninterrupted {a} and {b}"
                verdict(args, rows, failures, check, gap, where)
    return {model: work / f"{model}-A" for model in args.models}


def verdict(args, rows: list, failures: list, check: str, gap: float, where: str) -> None:
    ok = gap <= args.tolerance
    rows.append((check, f"largest difference {gap:.2g} nats ({where})", "agree" if ok else "DIFFER"))
    if not ok:
        failures.append(f"{check}: {gap:.3g} nats > {args.tolerance}")


def evaluate_part(args, log: Log, work: Path, trained: dict[str, Path], rows: list, failures: list) -> None:
    log(f"== 3: evaluate.py {args.device} vs {args.reference} on the {args.device}-trained checkpoints")
    limits = TINY_EVAL if args.dry_run else QUICK_EVAL
    strict = {"NVIDIA_TF32_OVERRIDE": "0"}
    jobs = [
        (model, device)
        for model, run_dir in trained.items()
        if (run_dir / "checkpoint.pt").exists()
        for device in dict.fromkeys((args.device, args.reference))  # one device against itself: one run
    ]

    def evaluate(job: tuple[str, str]) -> dict | None:
        model, device = job
        copy = work / f"{model}-eval-{device}"
        shutil.copytree(trained[model], copy)
        command = [sys.executable, str(ROOT / "evaluate.py"), str(copy), *limits, "--device", device]
        code, _, _ = run(log, command, strict)
        keep(args.out, copy / "eval.json", f"{model}-eval-{device}")
        return read_json(copy / "eval.json") if code == 0 else None

    with ThreadPoolExecutor(args.jobs) as pool:
        results = dict(zip(jobs, pool.map(evaluate, jobs)))
    for model in trained:
        ea, eb = (results.get((model, device)) for device in (args.device, args.reference))
        if ea is None or eb is None:
            failures.append(f"{model}: evaluate.py failed")
            continue
        ea, eb = numbers(ea), numbers(eb)
        gap, where = largest_gap(ea, eb, eval_scale)
        value = f" ({ea[where]:.6g} vs {eb[where]:.6g})" if where in ea else ""
        log(f"-- {model}: {len(ea)} numbers; the largest gap is {gap:.2f} of its tolerance: {where}{value}")
        check = f"{model}: evaluate.py {args.device} vs {args.reference} ({' '.join(limits)})"
        rows.append((check, f"{len(ea)} numbers; largest gap: {where}{value}", "agree" if gap <= 1 else "DIFFER"))
        if gap > 1:
            failures.append(f"{check}: {where}{value}")


def timed_runs(args, log: Log, work: Path, rows: list, failures: list) -> None:
    log(f"== 4: the notebook models, {args.full_epochs} epochs on all 60,000 images, {args.device}, timed alone")
    for model in args.models:
        out = work / f"{model}-full"
        code, seconds, _ = run(log, train(model, args.device, out, args.full_epochs, None))
        metrics = read_json(out / "metrics.json")
        keep(args.out, out / "metrics.json", f"{model}-full")
        if code or metrics is None:
            failures.append(f"{model}: the {args.full_epochs}-epoch run failed")
            continue
        epochs = [e["seconds"] for e in metrics["epochs"]]
        later = statistics.median(epochs[1:]) if len(epochs) > 1 else epochs[0]
        rows.append(
            (
                f"{model}: train.py --model {model} --epochs {args.full_epochs} --device {args.device} (60,000 images)",
                f"{seconds:.1f} s in all; an epoch {later:.2f} s (median; the first {epochs[0]:.2f} s); "
                f"test total {metrics['epochs'][-1]['test']['total']:.2f}",
                "timed",
            )
        )


def examples_part(args, log: Log, work: Path, rows: list, failures: list) -> None:
    log(f"== 5: pytorch/examples' VAE on {args.device}: train.py against lab/conventional.py, interleaved")
    try:
        from lab.conventional import EXAMPLES, last_epoch, torchvision_root
    except ModuleNotFoundError as error:
        log(f"left out: lab/conventional.py needs {error.name}, not installed here")
        rows.append(("pytorch/examples' VAE: train.py vs lab/conventional.py", f"left out: no {error.name}", "-"))
        return
    settings = {**EXAMPLES, "epochs": args.examples_epochs}
    limit = ["--train-limit", str(args.examples_limit)] if args.examples_limit else []
    root = torchvision_root(work / "torchvision")
    seconds, losses = {"train.py": [], "conventional": []}, {"train.py": [], "conventional": []}
    for r in range(args.runs):
        out = work / f"examples-{r}"
        ours = [sys.executable, str(ROOT / "train.py")] + [f"--{k.replace('_', '-')}={v}" for k, v in settings.items()]
        ours += [*limit, "--device", args.device, "--no-progress", "--out", str(out)]
        theirs = [sys.executable, str(ROOT / "lab" / "conventional.py"), f"--root={root}"]
        theirs += [f"--epochs={settings['epochs']}", *limit, "--device", args.device]
        for kind, command in (("train.py", ours), ("conventional", theirs)):
            code, wall, output = run(log, command)
            if code:
                failures.append(f"pytorch/examples' VAE: {kind} failed")
                return
            seconds[kind].append(wall)
            losses[kind].append(
                read_json(out / "metrics.json")["epochs"][-1]["test"]["total"]
                if kind == "train.py"
                else last_epoch(output)["test_loss"]
            )
    ours_s, theirs_s = (statistics.median(seconds[k]) for k in ("train.py", "conventional"))
    rows.append(
        (
            f"pytorch/examples' VAE, {settings['epochs']} epoch(s), {args.device}: train.py vs lab/conventional.py "
            f"(whole processes, median of {args.runs})",
            f"{ours_s:.1f} s vs {theirs_s:.1f} s (conventional / train.py: {theirs_s / ours_s:.2f}x); test loss "
            f"{statistics.median(losses['train.py']):.2f} vs {statistics.median(losses['conventional']):.2f}",
            "timed",
        )
    )


def suite(args, log: Log, rows: list, failures: list) -> None:
    tests = ROOT / "tests"
    missing = missing_modules(tests)
    files = left_out(tests, missing)
    log(f"== 6: the core suite; modules this Python lacks: {', '.join(sorted(missing)) or 'none'}")
    for path, needs in files.items():
        log(f"left out: {path} (imports {', '.join(sorted(needs))})")
    workers = ["-n", str(min(8, os.cpu_count() or 1))] if importlib.util.find_spec("xdist") else []
    command = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "gpu_check", *workers, "tests"]
    command += [f"--ignore={path}" for path in files]
    env = {
        MISSING_ENV: ",".join(sorted(missing)),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "scripts"), os.environ.get("PYTHONPATH")])),
        "OMP_NUM_THREADS": "1",
    }
    code, seconds, output = run(log, command, env, timeout=args.suite_timeout)
    for line in output.splitlines():
        log(f"  | {line}")
    last = next((line for line in reversed(output.splitlines()) if re.search(r"\d+ (passed|failed)", line)), "")
    left = f"; left out {len(files)} files ({', '.join(files)})" if files else ""
    rows.append(("core suite: python -m pytest -q tests", f"{last.strip('= ')}{left}", "pass" if code == 0 else "FAIL"))
    if code:
        failures.append(f"core suite: exit {code}")


# ---------------------------------------------------------------------------------------------- command line
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scripts/gpu_check.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="the device checked (default cuda)")
    p.add_argument("--reference", default="cpu", help="the device it is checked against (default cpu)")
    p.add_argument("--models", nargs="+", choices=("fc", "cnn"), default=["fc", "cnn"], help="(default: both)")
    p.add_argument("--epochs", type=int, default=2, help="epochs of the agreement runs (>= 2; default 2)")
    p.add_argument("--train-limit", type=int, default=5000, help="images of the agreement runs (default 5000)")
    p.add_argument("--full-epochs", type=int, default=20, help="epochs of the timed notebook-model runs (0: none)")
    p.add_argument("--examples-epochs", type=int, default=2, help="epochs of pytorch/examples' VAE (0: left out)")
    p.add_argument("--examples-limit", type=int, help="its training images (default all)")
    p.add_argument("--runs", type=int, default=2, help="timed runs of each of the two scripts (default 2)")
    p.add_argument("--tolerance", type=float, default=0.5, help="nats per image (default 0.5)")
    p.add_argument("--no-suite", action="store_true", help="leave out the core suite")
    p.add_argument("--suite-timeout", type=float, default=300, help="seconds (default 300)")
    p.add_argument(
        "--jobs",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="runs at once in parts 1 to 3 (the suite: one worker per core, at most 8)",
    )
    p.add_argument("--out", type=Path, default=os.environ.get("OUT") or None, help="folder for the log (default $OUT)")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="on a CPU: --device cpu, 2 epochs on 500 images, fc only unless --models says otherwise, tiny "
        "evaluation, pytorch/examples' VAE 1 epoch on 500 images and 1 run, no suite, no 20-epoch runs",
    )
    args = p.parse_args(argv)
    if args.dry_run:
        args.device, args.train_limit, args.full_epochs, args.no_suite = "cpu", 500, 0, True
        args.examples_epochs, args.examples_limit, args.runs = 1, 500, 1
        args.models = args.models if "--models" in (argv or sys.argv[1:]) else ["fc"]
    if args.epochs < 2:
        p.error("--epochs must be >= 2 (a resumed run needs an epoch after the first)")
    args.threads = max(1, (os.cpu_count() or 1) // args.jobs)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    log, rows, failures = Log(args.out), [], []
    sys.path.insert(0, str(ROOT))
    from fashion_mnist import DataError, find_data_dir

    try:
        log(f"data: {find_data_dir(download=False)}")
    except DataError as error:
        log(f"no Fashion-MNIST here: {error}")
        return 2
    header = environment(args)
    for line in header:
        log(line)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as folder:
        work = Path(folder)
        trained = agreement_and_resume(args, log, work, rows, failures)
        evaluate_part(args, log, work, trained, rows, failures)
        if args.full_epochs:
            timed_runs(args, log, work, rows, failures)
        if args.examples_epochs:
            examples_part(args, log, work, rows, failures)
    if not args.no_suite:
        suite(args, log, rows, failures)
    log()
    log("==== summary (for docs/performance.md) ====")
    log(f"{header[0]}; {header[1]}")
    log(f"{header[2]}; {header[3]}")
    log(f"`{' '.join(['python scripts/gpu_check.py', *(sys.argv[1:] if argv is None else argv)])}`")
    log(f"({header[4]}; {time.perf_counter() - started:.0f} s in all)")
    log()
    log("| check | result | verdict |")
    log("|---|---|---|")
    for row in rows:
        log("| " + " | ".join(row) + " |")
    log()
    log("GPU CHECK: PASS" if not failures else "GPU CHECK: FAIL: " + "; ".join(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
