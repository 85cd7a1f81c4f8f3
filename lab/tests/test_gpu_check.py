"""scripts/gpu_check.py, on the CPU: its dry run (cpu against cpu, tiny settings) prints the summary it promises,
and the parts a dry run cannot reach on a CPU are checked by themselves: the tolerance verdicts, which test files
the suite leaves out for a missing module, and the pytest plugin that counts a missing-module failure as a skip.
The dry run took 31 s of CPU time and 64 s of wall time here (2 cores, load average 5 from other jobs)."""

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_check.py"
spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
gpu_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_check)


def test_the_dry_run_prints_the_summary_and_writes_it_under_out(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("OUT", None)
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    for line in (
        "device: ",
        "torch: ",
        "==== summary (for docs/performance.md) ====",
        "| check | result | verdict |",
        "| fc: train.py cpu vs cpu, 2 epochs on 500 images | largest difference 0 nats (all equal) | agree |",
        "| fc: 1 epoch on cpu, resumed on cpu, vs uninterrupted cpu and cpu |",
        "| fc: evaluate.py cpu vs cpu (",
        # lab/conventional.py needs torchvision (in requirements.txt; a lent GPU machine may lack it)
        "| pytorch/examples' VAE, 1 epoch(s), cpu: train.py vs lab/conventional.py"
        if importlib.util.find_spec("torchvision")
        else "| pytorch/examples' VAE: train.py vs lab/conventional.py | left out: no torchvision | - |",
        "GPU CHECK: PASS",
    ):
        assert line in out, line
    assert out.strip().splitlines()[-1] == "GPU CHECK: PASS"
    assert (tmp_path / "gpu_check.txt").read_text() == out
    assert (tmp_path / "runs" / "fc-A" / "metrics.json").is_file()
    assert (tmp_path / "runs" / "fc-eval-cpu" / "eval.json").is_file()
    assert "core suite" not in out and "20 epochs" not in out  # a dry run leaves both out


def test_losses_beyond_the_tolerance_fail_the_check():
    metrics = {"epochs": [{"epoch": 1, "train": {"recon": 300.0, "kl": 10.0, "total": 301.0}, "test": {}}]}
    metrics["epochs"][0]["test"] = dict(metrics["epochs"][0]["train"])
    other = {"epochs": [{**metrics["epochs"][0], "test": {"recon": 300.6, "kl": 10.0, "total": 301.6}}]}
    gap, where = gpu_check.largest_gap(gpu_check.epoch_losses(metrics), gpu_check.epoch_losses(other))
    assert round(gap, 6) == 0.6 and where in ("epoch 1 test recon", "epoch 1 test total")
    args, rows, failures = argparse.Namespace(tolerance=0.5), [], []
    gpu_check.verdict(args, rows, failures, "fc: cuda vs cpu", gap, where)
    assert rows[0][2] == "DIFFER" and failures == ["fc: cuda vs cpu: 0.6 nats > 0.5"]
    gpu_check.verdict(argparse.Namespace(tolerance=1.0), rows, failures, "fc: cuda vs cpu", gap, where)
    assert rows[1][2] == "agree" and len(failures) == 1
    assert gpu_check.largest_gap({"a": 1.0}, {"b": 1.0})[0] == float("inf")  # a missing epoch is no agreement


def test_eval_numbers_are_compared_within_a_hundredth_plus_a_fifth_of_a_percent():
    a = gpu_check.numbers({"knn_accuracy": 0.571, "fd": {"prior": 600.0}, "seconds": 7, "run": "x", "ok": True})
    assert a == {"knn_accuracy": 0.571, "fd.prior": 600.0}  # the time, strings and booleans are not compared
    near = {"knn_accuracy": 0.572, "fd.prior": 601.0}  # one test image of 1,000 flips; FD 0.17 %
    assert gpu_check.largest_gap(a, near, gpu_check.eval_scale)[0] <= 1
    far = {"knn_accuracy": 0.571, "fd.prior": 606.0}  # FD 1 % apart
    assert gpu_check.largest_gap(a, far, gpu_check.eval_scale) > (1, "")


def test_test_files_that_import_a_missing_module_are_left_out_with_its_name(tmp_path, monkeypatch):
    (tmp_path / "helper.py").write_text("import os\nimport fancy_missing_mod\n")
    (tmp_path / "test_direct.py").write_text("import fancy_missing_mod.sub\n")
    (tmp_path / "test_through_helper.py").write_text("import pytest\nfrom helper import thing\n")
    (tmp_path / "test_inside_a_test.py").write_text("def test_x():\n    import fancy_missing_mod\n")
    (tmp_path / "test_guarded.py").write_text("try:\n    import fancy_missing_mod\nexcept ImportError:\n    pass\n")
    (tmp_path / "test_plain.py").write_text("import torch\nimport helper_not_here_either as h\n")
    missing = gpu_check.missing_modules(tmp_path)
    assert {"fancy_missing_mod", "helper_not_here_either"} <= missing and "torch" not in missing
    monkeypatch.setattr(gpu_check, "ROOT", tmp_path.parent)  # paths are shown relative to the repository
    left = gpu_check.left_out(tmp_path, {"fancy_missing_mod"})
    name = tmp_path.name
    assert left == {
        f"{name}/test_direct.py": {"fancy_missing_mod"},
        f"{name}/test_through_helper.py": {"fancy_missing_mod"},
    }


def test_the_plugin_counts_only_a_missing_module_s_failure_as_skipped(tmp_path):
    (tmp_path / "test_p.py").write_text(
        "def test_needs_missing():\n    import fancy_missing_mod\n\n"
        "def test_runs_a_script_that_needs_missing():\n    import subprocess, sys\n"
        "    done = subprocess.run([sys.executable, '-c', 'import fancy_missing_mod'], capture_output=True)\n"
        "    assert done.returncode == 0, done.stderr.decode()\n\n"
        "def test_needs_another():\n    import another_missing_mod\n\n"
        "def test_fails():\n    assert False\n\n"
        "def test_passes():\n    pass\n"
    )
    env = {**os.environ, "GPU_CHECK_MISSING": "fancy_missing_mod", "PYTHONPATH": str(ROOT / "scripts")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "gpu_check", "-p", "no:cacheprovider", "test_p.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 1
    assert "2 failed, 1 passed, 2 skipped" in done.stdout
    assert "needs fancy_missing_mod, not installed here (ModuleNotFoundError)" in done.stdout
    assert "No module named 'fancy_missing_mod'" in done.stdout  # the script's failure, quoted as the reason
    assert "test_fails" in done.stdout and "another_missing_mod" in done.stdout  # real failures stay failures
