"""lab.bench, lab.bench_worker, lab.bench_report and lab.conventional: FLOP counting and the replayed matmul rate,
the floors, x of floor and x vs peer, the load gate, the targets, where results go, the process plumbing (with
the processes faked) and the conventional script run as a file."""

import gzip
import json
import os
import subprocess
import sys
from collections import namedtuple
from itertools import count
from pathlib import Path

import pytest
import torch

import train
from config import TrainConfig
from data import Dataset
from lab import bench, bench_report, bench_worker, conventional
from models import FCVAE, ModelConfig, build_model

ROOT = bench.ROOT


# ---------------------------------------------------------------------------------------------- FLOPs and floors
def test_a_linear_step_and_its_replay_count_the_hand_counted_flops(monkeypatch):
    # Linear layers (in, out): encoder 16->4, 4->4 (mu and logvar of 2 dims); decoder 2->4, 4->16.
    model = FCVAE(latent_dim=2, hidden=(4,), image_shape=(1, 4, 4))
    batch, products = 8, [16 * 4, 4 * 4, 2 * 4, 4 * 16]
    # each layer: 2*B*in*out forward, 4*B*in*out backward, less the first's input gradient (none for the data)
    flops, calls = bench_worker.step_ops(model, batch)
    assert flops == sum(6 * batch * p for p in products) - 2 * batch * products[0]
    assert [m for m, _ in calls] == [m for m in model.modules() if isinstance(m, torch.nn.Linear)]  # in step order
    assert [(a.shape, a.requires_grad) for _, (a,) in calls] == [((8, 16), False)] + [((8, w), True) for w in (4, 2, 4)]
    clock = count()
    monkeypatch.setattr(bench_worker.time, "perf_counter", lambda: float(next(clock)))  # each layer's replay: 1 s
    assert bench_worker.replay_seconds(calls, repeats=3) == len(calls)  # each layer timed alone, summed
    assert all(p.grad is None for p in model.parameters())  # neither the step nor the replay leaves gradients


def test_the_replay_covers_a_convolutional_step_and_keeps_its_memory_layout():
    model = build_model(ModelConfig(model="cnn", channels=(4, 8), latent_dim=2), seed=0)
    train.prepare_training(model, 1e-3)  # channels_last convolutions, as training runs them
    flops, calls = bench_worker.step_ops(model, 4)
    assert {type(m) for m, _ in calls} == {torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear}
    (first,), (second,) = calls[0][1], calls[1][1]  # the second convolution's input: the first one's output
    assert second.is_contiguous(memory_format=torch.channels_last) and not second.is_contiguous()
    assert second.requires_grad and not first.requires_grad
    with torch.utils.flop_counter.FlopCounterMode(display=False) as counter:
        bench_worker.replay(calls)
    assert counter.get_total_flops() == flops  # the layers are all of the step's counted work


def test_floors_are_imports_plus_data_plus_the_replayed_layers_at_their_best(monkeypatch):
    model = FCVAE(latent_dim=2, hidden=(4,), image_shape=(1, 4, 4))
    monkeypatch.setattr(bench_worker, "replay_seconds", lambda calls: 0.5)  # a step's layers at their best
    config = TrainConfig(batch_size=8, epochs=3, train_limit=40)
    floor = bench_worker.compute_floor(model, config, images=120)
    assert floor["compute_seconds"] == pytest.approx(0.5 * 120 / 8)
    assert floor["mm_gflops"] == pytest.approx(floor["flops_per_step"] / 0.5 / 1e9)
    images = torch.rand(50, 1, 4, 4)
    monkeypatch.setattr(
        bench_worker,
        "load_dataset",
        lambda name: Dataset(
            name, images, torch.zeros(50, dtype=torch.long), images, torch.zeros(50, dtype=torch.long), ("a",)
        ),
    )
    monkeypatch.setattr(bench_worker, "build_model", lambda config, seed: model)
    seen = []
    monkeypatch.setattr(
        bench_worker,
        "compute_floor",
        lambda model, config, images: (
            seen.append(images) or {"flops_per_step": 10, "mm_gflops": 2.0, "compute_seconds": 4.0}
        ),
    )
    whole = bench_worker.whole_run_floor(bench_worker.IMPORTED - 3.0, ModelConfig(), config)
    assert seen == [40 * 3]  # the first train_limit images, every epoch
    assert whole["import_seconds"] == pytest.approx(3.0)
    assert whole["floor_seconds"] == pytest.approx(3.0 + whole["data_seconds"] + 4.0)


def test_an_epoch_is_timed_after_a_warm_up_and_scaled_to_60000_images(monkeypatch):
    epochs_run = []
    monkeypatch.setattr(bench_worker, "epoch_runner", lambda model, loop, config, root, sizes: epochs_run.append)
    monkeypatch.setattr(
        bench_worker,
        "compute_floor",
        lambda model, config, images: {"flops_per_step": 1, "mm_gflops": 1.0, "compute_seconds": images / 1000},
    )
    clock = count()
    monkeypatch.setattr(bench_worker.time, "perf_counter", lambda: float(next(clock)))  # the timed epoch: 1 s
    result = bench_worker.epoch(ModelConfig(), "project", steps=2, root=None, warmup=3)
    assert epochs_run == [3 * 128, 2 * 128] and result["timed_images"] == 256
    assert result["seconds"] == pytest.approx(60000 / 256) and result["floor_seconds"] == pytest.approx(60.0)


@pytest.fixture(scope="module")
def tv_root(tmp_path_factory):
    return conventional.torchvision_root(tmp_path_factory.mktemp("tv"))


@pytest.mark.parametrize("loop", bench_worker.LOOPS)
def test_each_loop_trains_the_model(loop, tv_root, small_fmnist, monkeypatch):
    monkeypatch.setattr(bench_worker, "load_dataset", lambda name: small_fmnist)
    model = build_model(ModelConfig(), seed=0)
    before = [p.detach().clone() for p in model.parameters()]
    bench_worker.epoch_runner(model, loop, TrainConfig(), tv_root, (128,))(128)
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


# ---------------------------------------------------------------------------------------------- the conventional script
def test_torchvision_root_links_plain_files_and_decompresses_gzipped_ones(tmp_path, monkeypatch):
    names = [name for pair in conventional.FILES.values() for name in pair]
    for kind in ("plain", "gz"):
        source = tmp_path / kind
        source.mkdir()
        for name in names:
            (source / (name + (".gz" if kind == "gz" else ""))).write_bytes(
                gzip.compress(name.encode()) if kind == "gz" else name.encode()
            )
        monkeypatch.setattr(conventional, "find_data_dir", lambda download, source=source: source)
        raw = conventional.torchvision_root(tmp_path / f"root-{kind}") / "FashionMNIST" / "raw"
        assert all((raw / name).read_bytes() == name.encode() for name in names)
        assert all((raw / name).is_symlink() == (kind == "plain") for name in names)


def test_conventional_loader_yields_the_images_of_data_py(tv_root, fmnist):
    images = torch.cat([x for x, _ in conventional.loader(tv_root, True, 128, 300)])
    assert images.shape == (300, 1, 28, 28) and images.dtype == torch.float32
    reference = fmnist.train_images[:300]
    assert torch.equal(torch.unique(images.flatten(1), dim=0), torch.unique(reference.flatten(1), dim=0))
    assert not torch.equal(images, reference)  # shuffled


def test_conventional_script_runs_a_tiny_epoch_as_a_file(tv_root):
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "OMP_NUM_THREADS": "1"}  # run by itself
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "lab" / "conventional.py"),
            "--epochs",
            "1",
            "--train-limit",
            "256",
            "--test-limit",
            "256",
            "--root",
            str(tv_root),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT / "lab",
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    last = bench.last_epoch(done.stdout)
    assert last["epoch"] == 1 and last["train_s"] > 0 and last["test_s"] > 0
    assert 400 < last["test_loss"] < 600  # an untrained 784-400-20 VAE starts at about 540 nats


# ---------------------------------------------------------------------------------------------- load, outcomes, report
def test_other_cores_leave_out_this_process_and_guest_time(monkeypatch):
    Times = namedtuple("Times", "user nice system idle iowait irq softirq steal guest guest_nice")
    Ours = namedtuple("Ours", "user system children_user children_system")
    samples = [
        (0.0, Times(10, 0, 5, 100, 3, 0, 0, 1, 4, 0), Ours(1, 1, 0, 0)),
        (2.0, Times(16, 0, 7, 101, 9, 0, 0, 2, 6, 0), Ours(2, 1, 1, 1)),
    ]
    now = {"i": 0}
    monkeypatch.setattr(bench.psutil, "Process", type("Process", (), {"cpu_times": lambda self: samples[now["i"]][2]}))
    monkeypatch.setattr(bench.psutil, "cpu_times", lambda: samples[now["i"]][1])
    monkeypatch.setattr(bench.time, "perf_counter", lambda: samples[now["i"]][0])
    since = bench.cpu_now()
    now["i"] = 1
    # every process: +6 user (the guest time is in it: not counted twice) +2 system +1 steal = 9 CPU seconds;
    # this process and its children: +3; so others kept 6 CPU seconds busy in 2 s
    assert bench.other_cores(since) == pytest.approx(3.0)


def test_the_load_gate_refuses_an_outcome_when_the_machine_was_busy(monkeypatch):
    monkeypatch.setattr(bench.time, "sleep", lambda seconds: None)
    cores = iter([0.05, 0.5, 0.05, 0.1])
    monkeypatch.setattr(bench, "other_cores", lambda since: next(cores))
    assert bench.with_load(lambda: {"x": 1}) == {"x": 1, "load": {"before": 0.05, "during": 0.5, "busy": True}}
    assert bench.with_load(lambda: {})["load"]["busy"] is False
    outcome = bench_report.outcome
    assert outcome(True, busy=True, spreads=(0.01,)) == "unreliable: machine busy"
    assert outcome(True, spreads=(0.1, 0.35)) == "unreliable: spread 35 %"
    assert outcome(True, spreads=(0.1, None)) == "unreliable: measured once"
    assert outcome(True, spreads=(0.1,)) == "yes" and outcome(False) == "NO" and outcome("plan B") == "plan B"


def floor_row(compute):
    return {
        "import_seconds": 2.0,
        "data_seconds": 0.5,
        "flops_per_step": 4e8,
        "mm_gflops": 100.0,
        "compute_seconds": compute,
        "floor_seconds": 2.5 + compute,
    }


def synthetic(busy=False):
    load = {"before": 0.0, "during": 0.5 if busy else 0.01, "busy": busy}
    times = {
        "fc": {"project": [2.0, 2.1, 1.9], "plain": [3.0] * 3, "dataloader": [7.0, 7.1, 6.9]},
        "cnn": {"project": [10.0] * 3, "plain": [12.0] * 3, "dataloader": [29.0] * 3},
    }
    # each loop's floor: 1 s (fc) or 5 s (cnn) with its first epoch, twice that with the others
    runs = [
        {
            "model": model,
            "loop": loop,
            "epochs": [
                {
                    "seconds": s,
                    "timed_images": 60000,
                    "flops_per_step": 7e8,
                    "floor_seconds": (1.0 if model == "fc" else 5.0) * (1 + (i > 0)),
                    "peak_rss_mb": 900.0,
                }
                for i, s in enumerate(seconds)
            ],
        }
        for model, loops in times.items()
        for loop, seconds in loops.items()
    ]
    return {
        "environment": bench.environment(2),
        "command": "python -m lab.bench",
        "epochs": {"runs": runs, "load": load},
        "whole_run": {
            "seconds": {"train.py": [10.0, 11.0, 12.0], "conventional": [44.0, 45.0, 46.0]},
            "test_loss": {"train.py": 254.0, "conventional": 254.4},
            "command": "python train.py",
            "train_limit": None,
            "floors": [floor_row(c) for c in (4.0, 4.2, 4.4)],
            "load": load,
        },
        "sweep": {
            "seconds": {bench.PLANS[0]: [20.0, 20.5, 21.0], bench.PLANS[1]: [15.0, 15.1, 15.2]},
            "floors": [floor_row(3.0)],
            "images": 10000,
            "load": load,
        },
    }


def test_each_timing_is_reported_against_its_floor_and_its_peer():
    result = synthetic()
    bench_report.summarise(result)
    whole, sweep = result["whole_run"], result["sweep"]
    assert whole["floor"]["floor_seconds"] == pytest.approx(2.0 + 0.5 + 4.0)  # the lowest of the three
    assert whole["stats"]["train.py"]["of_floor"] == pytest.approx(11.0 / 6.5)
    assert whole["stats"]["train.py"]["vs_peer"] == pytest.approx(45.0 / 11.0)
    assert whole["stats"]["conventional"]["vs_peer"] == pytest.approx(11.0 / 45.0)
    assert sweep["floor"]["floor_seconds"] == pytest.approx(2.5 + 2 * 3.0)  # both runs' steps, one start-up
    assert sweep["stats"][bench.PLANS[1]]["of_floor"] == pytest.approx(15.1 / 8.5)
    fc_project = result["epochs"]["runs"][0]
    assert (fc_project["of_floor"], fc_project["vs_peer"]) == (pytest.approx(2.0), pytest.approx(3.5))
    assert fc_project["gflops"] == pytest.approx(7e8 * 60000 / 128 / 2.0 / 1e9)
    met = {t["what"]: (t["measured"], t["met"]) for t in bench_report.targets(result)}
    assert met["fc epoch: DataLoader loop / project loop"] == ("3.50x", "yes")
    assert met["cnn epoch: DataLoader loop / project loop"] == ("2.90x", "NO")
    assert met["fc epoch: project loop / its floor"] == ("2.00x", "NO")  # goal <= 1.67x
    assert met["whole run: conventional script / train.py"] == ("4.09x", "yes")
    assert met["whole run: test loss, train.py vs conventional script"][1] == "yes"
    assert met["sweep: two fc runs of 2 epochs on 10,000 images"][1] == bench.PLANS[1]
    result["targets"] = bench_report.targets(result)
    text = bench_report.markdown(result)
    assert "| fc | project | 2.00 (1.90-2.10) | 1.00 | 2.00x | 3.50x | 164.1 | 900 |" in text
    assert "| train.py | 10.0, 11.0, 12.0 | 11.00 (10.00-12.00) | 1.69x | 4.09x | 254.00 |" in text


def test_a_busy_machine_gets_no_outcome_for_timings_only():
    result = synthetic(busy=True)
    bench_report.summarise(result)
    met = {t["what"]: t["met"] for t in bench_report.targets(result)}
    assert {
        met[what]
        for what in (
            "fc epoch: DataLoader loop / project loop",
            "whole run: conventional script / train.py",
            "sweep: two fc runs of 2 epochs on 10,000 images",
        )
    } == {"unreliable: machine busy"}
    assert met["fc peak resident memory, project loop"] == "yes"  # not a timing
    result["whole_run"]["train_limit"] = 2000  # a smoke run's losses are not the converged ones compared
    assert bench_report.targets(result)[-2]["met"] == "unreliable: trained on 2,000 images"


def test_environment_names_the_cpu_and_any_gpu(monkeypatch):
    env = bench.environment(2)
    assert env["device"] == "cpu" and env["cpu"] and env["gpu"] is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: "Some GPU")
    assert bench.environment(2)["gpu"] == "Some GPU"


# ---------------------------------------------------------------------------------------------- command line, outputs
def test_quick_leaves_the_committed_results_untouched(tmp_path, monkeypatch):
    results, scratch = tmp_path / "results", tmp_path / "scratch"
    results.mkdir()
    (results / "bench.md").write_text("measured")
    monkeypatch.setattr(bench, "RESULTS", results)
    monkeypatch.setattr(bench, "SCRATCH", scratch)
    parts = {key: value for key, value in synthetic().items() if key in ("whole_run", "sweep")}
    monkeypatch.setattr(bench, "run_parts", lambda args: json.loads(json.dumps(parts)))
    assert bench.main(["--quick"]) == 0 and bench.main(["--parts", "sweep"]) == 0
    assert (results / "bench.md").read_text() == "measured" and not (results / "bench.json").exists()
    assert "Whole run" in (scratch / "bench.md").read_text() and (scratch / "bench.json").exists()
    assert bench.main(["--quick", "--out", str(tmp_path / "elsewhere")]) == 0
    assert (tmp_path / "elsewhere" / "bench.json").exists()
    assert bench.main([]) == 0 and (results / "bench.md").read_text() != "measured"  # a full run replaces it


def test_the_committed_report_is_what_the_committed_measurements_make():
    measured = json.loads((ROOT / "results" / "bench.json").read_text())
    assert bench_report.markdown(measured) == (ROOT / "results" / "bench.md").read_text()


@pytest.mark.parametrize(
    "argv",
    [
        ["--repeats", "0"],
        ["--steps", "1000"],
        ["--models", "rnn"],
        ["--threads", "-1"],
        ["--parts", "gpu"],
        ["--runs", "0"],
        ["--train-limit", "70000"],
    ],
)
def test_bad_input_is_one_line(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.parse_args(argv)
    assert exit_info.value.code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1


def test_whole_run_interleaves_the_runs_and_probes_and_reads_their_losses(tmp_path, monkeypatch):
    order, commands = [], []

    def fake_run(cmds, threads):
        (command,) = cmds
        commands.append(command)
        if command[1].endswith("train.py"):
            order.append("A")
            out = next(a.split("=", 1)[1] for a in command if a.startswith("--out="))
            Path(out).mkdir(parents=True)
            Path(out, "metrics.json").write_text(json.dumps({"epochs": [{"test": {"total": 254.5}}]}))
            return 10.0, [""]
        order.append("B")
        return 30.0, ["epoch=1 test_loss=260.0\nepoch=2 train_s=1 test_loss=255.0\n"]

    monkeypatch.setattr(bench, "run", fake_run)
    monkeypatch.setattr(bench, "worker", lambda part, threads, **settings: order.append(part) or floor_row(4.0))
    part = bench.whole_run(bench.parse_args(["--runs", "2"]), tmp_path / "tv")
    assert order == ["A", "B", "floor", "A", "B", "floor"]
    assert part["test_loss"] == {"train.py": 254.5, "conventional": 255.0}
    parsed, model_config, config, _ = train.parse_args(commands[0][2:])
    assert model_config == ModelConfig(model="fc", hidden=(400,), latent_dim=20) and parsed.no_progress
    assert (config.beta, config.epochs, config.batch_size, config.lr, config.train_limit) == (1, 2, 128, 1e-3, None)
    assert commands[1][1].endswith("lab/conventional.py") and "--epochs=2" in commands[1]


def test_sweep_plans_split_the_cores_two_ways(monkeypatch):
    calls = []
    monkeypatch.setattr(
        bench, "run", lambda cmds, threads: calls.append((len(cmds), threads)) or (5.0, [""] * len(cmds))
    )
    monkeypatch.setattr(bench, "worker", lambda part, threads, **settings: floor_row(settings["epochs"]))
    part = bench.sweep(bench.parse_args(["--runs", "1", "--threads", "2"]))
    assert calls == [(1, 2), (1, 2), (2, 1)]  # one after the other at 2 threads, then both at once at 1 thread each
    assert part["seconds"] == {bench.PLANS[0]: [10.0], bench.PLANS[1]: [5.0]} and part["images"] == 10000


def test_the_worker_accepts_what_bench_passes_it(monkeypatch, capsys):
    seen = []
    monkeypatch.setattr(bench, "run", lambda cmds, threads: seen.append(cmds[0]) or (1.0, ['{"ok": 1}\n']))
    monkeypatch.setattr(bench.time, "time", lambda: 1700000000.123456)
    assert bench.worker("floor", 1, **bench.EXAMPLES, train_limit=None) == {"ok": 1}
    monkeypatch.setattr(
        bench_worker, "whole_run_floor", lambda t0, m, c: {"t0": t0, "hidden": m.hidden, "beta": c.beta}
    )
    bench_worker.main(seen[0][3:])  # prints its result; --t0 keeps its microseconds
    assert json.loads(capsys.readouterr().out) == {"t0": 1700000000.123456, "hidden": [400], "beta": 1}


def test_interleave_alternates_the_compared_runs():
    assert bench.interleave(("A", "B"), 2) == [(0, "A"), (0, "B"), (1, "A"), (1, "B")]
