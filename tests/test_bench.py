"""bench.py: the FLOP count, the conventional loader's data, the targets' arithmetic and bad input."""
import pytest
import torch

import bench
from models import FCVAE


def test_step_flops_matches_the_hand_count():
    # Linear layers (in, out): encoder 16->4, 4->4 (mu and logvar of 2 dims); decoder 2->4, 4->16.
    model = FCVAE(latent_dim=2, hidden=(4,), image_shape=(1, 4, 4))
    batch, products = 8, [16 * 4, 4 * 4, 2 * 4, 4 * 16]
    forward = sum(2 * batch * p for p in products)
    backward = sum(4 * batch * p for p in products) - 2 * batch * products[0]  # no gradient for the data
    assert bench.step_flops(model, batch) == forward + backward
    assert all(p.grad is None for p in model.parameters())


@pytest.fixture(scope="module")
def torchvision_root(tmp_path_factory):
    return bench.torchvision_root(tmp_path_factory.mktemp("tv"))


def test_conventional_loader_yields_the_images_of_data_py(torchvision_root, fmnist):
    loader = bench.conventional_loader(torchvision_root, 300)
    images = torch.cat([x for x, _ in loader])
    assert images.shape == (300, 1, 28, 28) and images.dtype == torch.float32
    reference = fmnist.train_images[:300]
    assert torch.equal(torch.unique(images.flatten(1), dim=0), torch.unique(reference.flatten(1), dim=0))
    assert not torch.equal(images, reference)  # shuffled


@pytest.mark.parametrize("loop", bench.LOOPS)
def test_run_configuration_scales_short_epochs(loop, torchvision_root):
    run = bench.run_configuration("fc", loop, repeats=1, steps=2, root=torchvision_root)
    assert run["epochs"] == 2 and run["images_per_epoch"] == 2 * bench.BATCH_SIZE
    assert len(run["epoch_seconds"]) == 2 and run["median_seconds"] == run["epoch_seconds"][1]
    assert run["peak_rss_mb"] > 0 and 0 < run["test_loss"] < 1000


def fake_run(model, loop, seconds, test_loss, images=60000):
    return {"model": model, "loop": loop, "epochs": 5, "images_per_epoch": images, "median_seconds": seconds,
            "median_cpu_seconds": seconds, "peak_rss_mb": 900.0, "test_loss": test_loss}


def test_targets_are_computed_from_the_runs():
    runs = [fake_run("fc", "project", 2.0, 250.0), fake_run("fc", "plain", 3.0, 250.4),
            fake_run("fc", "dataloader", 7.0, 251.0), fake_run("cnn", "project", 10.0, 260.0),
            fake_run("cnn", "plain", 12.0, 260.6), fake_run("cnn", "dataloader", 19.0, 262.0)]
    flops = {"fc": 6 * 10 ** 8, "cnn": 10 ** 9}
    targets = {t["what"]: t for t in bench.summarise(runs, flops, mm=100.0)["targets"]}
    assert targets["fc epoch vs DataLoader loop"]["measured"] == "3.50x" and targets["fc epoch vs DataLoader loop"]["met"]
    assert targets["cnn epoch vs DataLoader loop"]["measured"] == "1.90x" and not targets["cnn epoch vs DataLoader loop"]["met"]
    gflops = 6e8 * 60000 / 128 / 2.0 / 1e9  # 140.6 GFLOP/s against 100: 141 %
    assert runs[0]["gflops"] == pytest.approx(gflops) and targets["fc training throughput / torch.mm"]["met"]
    assert targets["fc test loss after 5 epochs, project vs plain fp32"]["met"]
    assert not targets["cnn test loss after 5 epochs, project vs plain fp32"]["met"]  # 0.6 nats apart
    result = {"environment": {"threads": 2, "torch": "x", "cpu": "y", "other_cores": 0.05},
              "runs": runs, "mm_gflops": 100.0, "targets": list(targets.values()), "notebooks": {"fc": (95.0, "papermill")}}
    table = bench.markdown(result)
    assert "| fc | project | 2.00 | 30,000 |" in table and "| NO |" in table and "95 s (papermill)" in table


@pytest.mark.parametrize("argv", [["--repeats", "0"], ["--steps", "1000"], ["--models", "rnn"], ["--threads", "-1"]])
def test_bad_input_is_one_line(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.parse_args(argv)
    assert exit_info.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
