"""bench.py: FLOP and matmul-shape counts, the conventional script, the benchmark hygiene (interleaving, spread,
verdicts), the targets' arithmetic, the whole-run command lines and bad input."""
import io
import json
import sys

import pytest
import torch

import bench
import train
from models import FCVAE, ModelConfig


def test_step_flops_matches_the_hand_count_and_the_linear_shapes():
    # Linear layers (in, out): encoder 16->4, 4->4 (mu and logvar of 2 dims); decoder 2->4, 4->16.
    model = FCVAE(latent_dim=2, hidden=(4,), image_shape=(1, 4, 4))
    batch, products = 8, [16 * 4, 4 * 4, 2 * 4, 4 * 16]
    forward = sum(2 * batch * p for p in products)
    backward = sum(4 * batch * p for p in products) - 2 * batch * products[0]  # no gradient for the data
    assert bench.step_flops(model, batch) == forward + backward
    assert all(p.grad is None for p in model.parameters())
    shapes = bench.linear_shapes(model, batch)
    assert sum(2 * m * k * n for m, k, n in shapes) == forward + backward
    assert len(shapes) == 3 * len(products) - 1 and shapes[0] == (batch, 16, 4)  # no input gradient for the data


def test_matmul_gflops_counts_the_flops_of_its_shapes(monkeypatch):
    clock = iter(range(100))
    monkeypatch.setattr(bench.time, "perf_counter", lambda: float(next(clock)))  # every pass takes 1 s
    assert bench.matmul_gflops([(4, 8, 2), (3, 3, 3)], repeats=3) == pytest.approx((2 * 64 + 2 * 27) / 1e9)


@pytest.fixture(scope="module")
def torchvision_root(tmp_path_factory):
    return bench.torchvision_root(tmp_path_factory.mktemp("tv"))


def test_conventional_loader_yields_the_images_of_data_py(torchvision_root, fmnist):
    loader = bench.conventional().loader(str(torchvision_root), True, bench.BATCH_SIZE, 300)
    images = torch.cat([x for x, _ in loader])
    assert images.shape == (300, 1, 28, 28) and images.dtype == torch.float32
    reference = fmnist.train_images[:300]
    assert torch.equal(torch.unique(images.flatten(1), dim=0), torch.unique(reference.flatten(1), dim=0))
    assert not torch.equal(images, reference)  # shuffled


def test_conventional_script_trains_and_prints_its_test_loss(torchvision_root, capsys):
    loss = bench.conventional().main(["--root", str(torchvision_root), "--epochs", "1", "--train-limit", "256",
                                      "--test-limit", "256"])
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last == {"test_loss": loss} and 300 < loss < 600  # an untrained 784-400-20 VAE is at ~540 nats


@pytest.mark.parametrize("loop", bench.LOOPS)
def test_configurations_train_and_scale_short_epochs(loop, torchvision_root):
    model, images, one_epoch = bench.configuration("fc", loop, steps=2, root=torchvision_root)
    before = [p.detach().clone() for p in model.parameters()]
    one_epoch(1)
    assert images == 2 * bench.BATCH_SIZE
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_interleave_alternates_the_compared_loops():
    assert bench.interleave(("A", "B"), 2) == [(0, "A"), (0, "B"), (1, "A"), (1, "B")]


def test_spread_and_verdicts():
    stats = bench.spread_stats([10.0, 12.0, 11.0])
    assert stats == {"median": 11.0, "min": 10.0, "max": 12.0, "spread": pytest.approx(2 / 11)}
    assert bench.spread_stats([10.0])["spread"] is None
    assert bench.verdict(True, busy=False, spreads=(0.1, 0.02)) == "yes" and bench.verdict(False) == "NO"
    assert bench.verdict(True, busy=True, spreads=(0.1,)) == "unreliable: machine busy"
    assert bench.verdict(False, busy=False, spreads=(0.1, 0.35)) == "unreliable: spread 35 %"
    assert bench.verdict(True, spreads=(0.1, None)) == "unreliable: measured once"
    assert bench.verdict("parallel", spreads=(0.05,)) == "parallel"


def test_measured_quietly_flags_a_busy_machine(monkeypatch):
    monkeypatch.setattr(bench.time, "sleep", lambda seconds: None)
    cores = iter([0.05, 0.5])
    monkeypatch.setattr(bench, "other_cores", lambda since: next(cores))
    assert bench.measured_quietly(lambda: {"x": 1}) == {"x": 1, "load": {"before": 0.05, "during": 0.5, "busy": True}}


def test_whole_run_commands_are_pytorch_examples_configuration(tmp_path):
    commands = bench.whole_run_commands(tmp_path, tmp_path / "tv", run=1, train_limit=None)
    args, model_config, config, _ = train.parse_args(commands["train.py"][2:])
    assert commands["train.py"][1].endswith("train.py") and args.no_progress and args.out == str(tmp_path / "run1")
    assert model_config == ModelConfig(model="fc", hidden=(400,), latent_dim=20)
    assert (config.beta, config.epochs, config.batch_size, config.lr, config.train_limit) == (1, 2, 128, 1e-3, None)
    script = commands["conventional"]
    assert script[1] == str(tmp_path / "conventional_vae.py")
    assert {"--epochs=2", "--hidden=400", "--latent-dim=20", "--beta=1", "--batch-size=128", "--lr=0.001"} <= set(script)
    limited = bench.whole_run_commands(tmp_path, tmp_path / "tv", run=2, train_limit=500)
    assert "--train-limit=500" in limited["train.py"] and "--train-limit=500" in limited["conventional"]


def test_sweep_plans_split_two_cores_two_ways(tmp_path):
    sequential = bench.sweep_plan(bench.SWEEP_PLANS[0], tmp_path, None)
    parallel = bench.sweep_plan(bench.SWEEP_PLANS[1], tmp_path, None)
    assert [len(stage) for stage in sequential] == [1, 1] and [len(stage) for stage in parallel] == [2]
    assert [env["OMP_NUM_THREADS"] for stage in sequential for _, env in stage] == ["2", "2"]
    assert [env["OMP_NUM_THREADS"] for _, env in parallel[0]] == ["1", "1"]
    outs = {command[-2] if command[-1].startswith("--train-limit") else command[-1] for command, _ in parallel[0]}
    assert len(outs) == 2 and all(f"--train-limit={bench.SWEEP_IMAGES}" in command for command, _ in parallel[0])


def test_run_stages_times_processes_and_reports_failures():
    sleep = [sys.executable, "-c", "import time; time.sleep(0.3); print('done')"]
    seconds, results = bench.run_stages([[(sleep, bench.child_env(1)), (sleep, bench.child_env(1))]])
    assert 0.3 <= seconds < 0.6 + 5 and [r["stdout"] for r in results] == ["done", "done"]  # both at once
    seconds_in_turn, _ = bench.run_stages([[(sleep, bench.child_env(1))], [(sleep, bench.child_env(1))]])
    assert seconds_in_turn >= 0.6 and results[0]["peak_rss_mb"] > 0
    with pytest.raises(RuntimeError, match="boom"):
        bench.run_stages([[([sys.executable, "-c", "raise SystemExit('boom')"], bench.child_env(1))]])


def epoch_run(model, loop, seconds, test_loss, spread=0.05, images=60000):
    return {"model": model, "loop": loop, "epochs": 5, "images_per_epoch": images, "median_seconds": seconds,
            "epoch_seconds": [seconds] * 5, "spread": spread, "median_cpu_seconds": seconds, "peak_rss_mb": 900.0,
            "test_loss": test_loss}


def epoch_part(busy=False, fc_spread=0.05):
    runs = [epoch_run("fc", "project", 2.0, 250.0, fc_spread), epoch_run("fc", "plain", 3.0, 250.4),
            epoch_run("fc", "dataloader", 7.0, 251.0), epoch_run("cnn", "project", 10.0, 260.0),
            epoch_run("cnn", "plain", 12.0, 260.6), epoch_run("cnn", "dataloader", 29.0, 262.0)]
    mm = {"median": 100.0, "min": 99.0, "max": 101.0, "spread": 0.02}
    runs[0]["mm"] = {"square": mm, "shapes": {**mm, "median": 300.0}}
    runs[3]["mm"] = {"square": mm}
    bench.summarise_epochs(runs, {"fc": 6 * 10 ** 8, "cnn": 10 ** 9})
    return {"runs": runs, "load": {"before": 0.0, "during": 0.5 if busy else 0.01, "busy": busy}}


def test_epoch_targets_are_computed_from_the_runs():
    part = epoch_part()
    targets = {what: (measured, met) for what, measured, _, met in bench.epoch_targets(part)}
    assert targets["fc epoch vs DataLoader loop"] == ("3.50x", "yes")
    assert targets["cnn epoch vs DataLoader loop"] == ("2.90x", "NO")  # the CNN goal is 3x
    gflops = 6e8 * 60000 / 128 / 2.0 / 1e9  # 140.6 GFLOP/s: 141 % of mm 2048, 47 % of mm at the model's shapes
    assert part["runs"][0]["gflops"] == pytest.approx(gflops)
    assert targets["fc training throughput / torch.mm 2048^2"] == ("141 %", "yes")
    assert targets["fc training throughput / torch.mm at the model's own shapes"] == ("47 %", "NO")
    assert targets["fc test loss after 5 epochs, project vs plain fp32"][1] == "yes"
    assert targets["cnn test loss after 5 epochs, project vs plain fp32"][1] == "NO"  # 0.6 nats apart
    table = "\n".join(bench.epoch_markdown(part))
    assert "| fc | project | 2.00 (2.00-2.00) | 30,000 |" in table and "| 141 | 47 |" in table


def test_timing_targets_get_no_verdict_from_a_busy_machine_or_a_wide_spread():
    busy = {what: met for what, _, _, met in bench.epoch_targets(epoch_part(busy=True))}
    assert busy["fc epoch vs DataLoader loop"] == "unreliable: machine busy"
    assert busy["fc peak resident memory"] == "yes"  # not a timing
    noisy = {what: met for what, _, _, met in bench.epoch_targets(epoch_part(fc_spread=0.3))}
    assert noisy["fc epoch vs DataLoader loop"] == "unreliable: spread 30 %"
    assert noisy["cnn epoch vs DataLoader loop"] == "NO"


def whole_run_part(busy=False):
    seconds = {"train.py": [5.0, 6.0, 5.5], "conventional": [24.0, 25.0, 26.0]}
    stats = {kind: bench.spread_stats(values) for kind, values in seconds.items()}
    return {"seconds": seconds, "stats": stats, "test_loss": {"train.py": 254.0, "conventional": 254.4},
            "ratio": 25.0 / 5.5, "command": "train.py --model=fc", "load": {"before": 0, "during": 0, "busy": busy}}


def test_whole_run_and_sweep_targets():
    (what, measured, goal, met), (_, loss, _, loss_met) = bench.whole_run_targets(whole_run_part())
    assert measured.startswith("4.55x (25.0 s (24.0-26.0) / 5.5 s (5.0-6.0))") and met == "yes"
    assert loss.startswith("0.40 nats") and loss_met == "yes"
    assert bench.whole_run_targets(whole_run_part(busy=True))[0][3] == "unreliable: machine busy"
    seconds = {bench.SWEEP_PLANS[0]: [20.0, 20.5], bench.SWEEP_PLANS[1]: [15.0, 15.2]}
    sweep = {"seconds": seconds, "stats": {p: bench.spread_stats(v) for p, v in seconds.items()}, "images": 10000,
             "load": {"before": 0, "during": 0, "busy": False}}
    assert bench.sweep_targets(sweep)[0][3] == bench.SWEEP_PLANS[1]


def test_markdown_shows_every_part_and_the_time_budget():
    costs = {"train_images": 60000, "startup": {"interpreter start": 0.05, "import torch": 1.5, "import train (the project)": 0.3},
             "probe": {"decode the IDX files and write the cache (first run)": 0.9, "read the decoded cache": 0.05,
                       "load the data (cached, into tensors)": 0.2, "first step": 0.05, "later step (median)": 0.004,
                       "test pass (10,000 images)": 0.3, "checkpoint and metrics.json": 0.02},
             "load": {"before": 0, "during": 0, "busy": False}}
    budget = bench.time_budget(costs)
    assert budget["938 training steps (later-step median)"] == pytest.approx(0.004 * 2 * 469)
    assert budget["first step, over a later one"] == pytest.approx(0.046)
    result = {"environment": {"threads": 2, "torch": "x", "cpu": "y", "cuda": False, "date": "today"},
              "command": "python bench.py", "epochs": epoch_part(), "whole_run": whole_run_part(), "fixed_costs": costs,
              "notebooks": {"seconds": {"fc": (95.0, "papermill metadata")}, "load": {"busy": False}}}
    result["targets"] = bench.targets(result)
    table = bench.markdown(result)
    assert "| import torch | 1.50 |" in table and "CUDA available: False" in table
    assert "| Fully_Connected_VAE.ipynb end to end (papermill metadata) | 95 s | <= 120 s | yes |" in table


@pytest.mark.parametrize("argv", [["--repeats", "0"], ["--steps", "1000"], ["--models", "rnn"], ["--threads", "-1"],
                                  ["--parts", "gpu"], ["--runs", "0"], ["--train-limit", "70000"]])
def test_bad_input_is_one_line(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.parse_args(argv)
    assert exit_info.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_worker_answers_epoch_mm_and_finish(torchvision_root, monkeypatch, capsys):
    monkeypatch.setattr(bench, "MM_SIZE", 64)
    monkeypatch.setattr(bench.sys, "stdin", io.StringIO("epoch\nmm\nfinish\nepoch\n"))
    bench.serve("fc", "project", steps=1, root=torchvision_root)
    epoch, mm, finish = map(json.loads, capsys.readouterr().out.strip().splitlines())  # nothing after finish
    assert epoch["wall"] > 0 and epoch["cpu"] > 0 and mm["square"] > 0 and mm["shapes"] > 0
    assert finish["epochs"] == 1 and finish["images_per_epoch"] == bench.BATCH_SIZE and finish["peak_rss_mb"] > 0
