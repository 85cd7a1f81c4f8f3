"""The explorer's web page without a browser: one self-contained file that loads nothing from the network, with the
run's config, checkpoint sha256 and decoder weights embedded; a shapes run's page; where it may be written (a new
file or a page written before, nothing else); hostile run names; models whose outputs are not finite; refusals and
command-line errors in one line. (lab/tests/test_explorer_page.py opens the pages in Chromium and checks the decoder
that runs there.)"""

import os
import re
import stat

import pytest
import torch
from torch import nn

import explorer
import webpage
from checkpoint import CHECKPOINT, load_checkpoint, save_checkpoint
from files import sha256
from likelihoods import LIKELIHOODS
from models import CNNVAE, FCVAE, ModelConfig, build_model

NETWORK_LOADS = re.compile(  # an address the browser would fetch: src=, href=, <link>, CSS @import and url()
    r"""(src|href|action)\s*=\s*["']?\s*(https?:)?//|<link\b|@import|url\(\s*["']?(https?:)?//""", re.I
)


def run_with(tmp_path, model, name="run", train_config=None):
    """A run folder holding `model`'s checkpoint."""
    (tmp_path / name).mkdir()
    save_checkpoint(tmp_path / name / CHECKPOINT, model, train_config=train_config)
    return tmp_path / name


def cli(args, capsys):
    """(exit status, stderr) of `python explorer.py ARGS`."""
    try:
        code = explorer.main([str(arg) for arg in args])
    except SystemExit as exit_info:
        code = exit_info.code
    return code, capsys.readouterr().err


def test_the_command_writes_one_self_contained_page_with_the_run_embedded(tmp_path, capsys):
    model = build_model({"model": "cnn", "channels": [4, 6]}, seed=0).eval()
    run = run_with(tmp_path, model)
    out = tmp_path / "pages" / "cnn.html"
    assert cli([run, "--html", out, "--points", 40], capsys) == (0, "")
    assert [path.name for path in out.parent.iterdir()] == ["cnn.html"]
    html = out.read_text()
    assert not NETWORK_LOADS.search(html), NETWORK_LOADS.search(html)
    assert "<script src" not in html and html.count("<script") == 3
    data = webpage.embedded_data(html)
    assert data["sha256"] == sha256(run / CHECKPOINT) and re.fullmatch(r"[0-9a-f]{64}", data["sha256"])
    assert data["config"] == model.plain_config() and data["points"]["count"] == 40 and data["test_images"] == 10000
    weights = webpage.embedded_weights(data)
    assert weights.keys() == model.decoder.state_dict().keys()
    assert all(torch.equal(weights[key], value) for key, value in model.decoder.state_dict().items())
    assert out.stat().st_size < 3e6  # plotly.js gzipped (~2 MB in base64) and a small decoder


def test_the_layer_plan_names_every_weight_the_forward_pass_reads():
    model = FCVAE(hidden=(8, 4), norm="batch", activation="silu")
    plan = webpage.layer_plan(model.decoder)
    assert [layer["op"] for layer in plan] == [
        "linear",
        "batchnorm",
        "silu",
        "linear",
        "batchnorm",
        "silu",
        "linear",
        "reshape",
    ]
    named = {layer[key] for layer in plan for key in ("weight", "bias", "mean", "var") if layer.get(key)}
    assert named == {key for key in model.decoder.state_dict() if not key.endswith("num_batches_tracked")}
    convolutions = [
        layer
        for layer in webpage.layer_plan(CNNVAE(channels=(4, 4, 4), kernel_size=5).decoder)
        if layer["op"].startswith("conv")
    ]
    assert [(layer["op"], layer["kernel"], layer["stride"], layer["output_padding"]) for layer in convolutions] == [
        ("conv", 3, 1, 0),
        ("convT", 5, 2, 1),
        ("convT", 5, 2, 1),
    ]


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda model: build_model({"latent_dim": 2, "hidden": [8]}), "latent_dim must be >= 3"),
        (lambda model: model.decoder.append(nn.Dropout()) and model, "cannot run the decoder's layer 4 (Dropout)"),
        (lambda model: model.decoder.insert(1, nn.ELU(alpha=0.5)) and model, "cannot run the decoder's layer 1 (ELU)"),
        (lambda model: model.decoder.append(nn.Sequential(nn.ReLU())) and model, "decoder's layer 4 (Sequential)"),
    ],
)
def test_a_model_the_page_cannot_run_is_refused_in_one_line(tmp_path, capsys, change, words):
    model = change(FCVAE(hidden=(8,)))
    with pytest.raises(webpage.PageError, match=re.escape(words)) as refusal:
        webpage.check_model(model)
    assert "\n" not in str(refusal.value)
    if model.latent_dim == 2:  # a checkpoint holds a config, so only a config can be refused from the command line
        code, err = cli([run_with(tmp_path, model), "--html", tmp_path / "x.html"], capsys)
        assert code == 1 and err.count("\n") == 1 and words in err and not (tmp_path / "x.html").exists()


def test_the_command_reports_a_missing_run_or_a_bad_option_in_one_line(tmp_path, capsys):
    code, err = cli([tmp_path / "nothing", "--html", tmp_path / "x.html"], capsys)
    assert code == 1 and err.count("\n") == 1 and "nothing" in err and "no checkpoint" in err
    for args in ([tmp_path / "nothing"], [tmp_path, "--html", tmp_path / "x.html", "--points", 0]):
        code, err = cli(args, capsys)
        assert code == 2 and err.count("\n") == 1 and not err.startswith("usage:")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", LIKELIHOODS)
def test_the_layer_plan_ends_with_the_likelihoods_output_steps_and_the_script_names_no_likelihood(name):
    model = FCVAE(hidden=(8,), likelihood=name)
    plan = webpage.check_model(model)
    steps = list(model.likelihood.output_steps)
    assert plan[-len(steps) :] == steps and plan[: -len(steps)] == webpage.layer_plan(model.decoder)
    assert {step["op"] for step in steps} <= {"sigmoid", "tanh", "affine", "continuous_bernoulli_mean"}
    script = webpage.SCRIPT.read_text()
    assert not re.search(rf"\b{name}\b", script), f"the page's JavaScript names the likelihood {name}"


def test_a_shapes_run_gives_a_page_with_ten_sliders_and_its_factors(tmp_path, capsys):
    model = build_model(ModelConfig(latent_dim=10, hidden=(16,)), seed=0)
    run = run_with(tmp_path, model, train_config={"dataset": "shapes"})
    assert cli([run, "--html", tmp_path / "shapes.html", "--points", 300], capsys) == (0, "")
    data = webpage.embedded_data((tmp_path / "shapes.html").read_text())
    assert data["config"]["latent_dim"] == 10 and len(data["low"]) == len(data["start"]) == 10
    assert len(data["dims"]) == 3 and data["class_names"] == ["square", "ellipse", "heart"]
    assert [c["name"] for c in data["colourings"]] == ["class (shape)", "scale", "orientation", "x", "y"]
    assert data["points"]["colourings"].keys() == {"class", "scale", "orientation", "x", "y"}
    assert all(len(mean) == 10 for mean in data["class_means"]) and data["about"]["dataset"] == "shapes"


@pytest.fixture
def tiny_run(tmp_path):
    return run_with(tmp_path, FCVAE(hidden=(8,)))


def refused(capsys, run, out, words):
    """`explorer.py RUN --html OUT` refuses OUT in one line naming it, with exit status 2."""
    code, err = cli([run, "--html", out], capsys)
    assert code == 2 and err.count("\n") == 1 and words in err and not err.startswith("usage"), (code, err)
    assert "written only to a new file or over a page explorer.py wrote" in err


def test_the_page_replaces_no_checkpoint_folder_or_other_file(tmp_path, tiny_run, capsys):
    checkpoint = tiny_run / CHECKPOINT
    before = checkpoint.read_bytes()
    refused(capsys, tiny_run, checkpoint, f"--html {checkpoint} is a checkpoint")
    assert checkpoint.read_bytes() == before and load_checkpoint(tiny_run)["epoch"] == 0  # still a checkpoint
    refused(capsys, tiny_run, tmp_path, f"--html {tmp_path} is a folder")
    refused(capsys, tiny_run, "", "--html '' is not a file name")
    notes = tmp_path / "notes.html"
    notes.write_text("<html>my notes</html>")
    refused(capsys, tiny_run, notes, "is a file explorer.py did not write")
    assert notes.read_text() == "<html>my notes</html>"
    (tmp_path / "link.html").symlink_to(notes)
    refused(capsys, tiny_run, tmp_path / "link.html", "is a symbolic link")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["link.html", "notes.html", "run"]


def test_the_page_replaces_no_device_or_fifo(tmp_path, tiny_run, capsys):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    refused(capsys, tiny_run, fifo, f"--html {fifo} is a FIFO (named pipe)")
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    if os.geteuid() == 0:  # a /dev/null of our own: were it replaced, nothing of the system's would be
        device = tmp_path / "null"
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    else:  # only root could replace the system's
        device = "/dev/null"
    refused(capsys, tiny_run, device, f"--html {device} is a device")
    assert stat.S_ISCHR(os.lstat(device).st_mode)


def test_a_page_written_before_is_replaced_atomically(tmp_path, tiny_run, capsys):
    out = tmp_path / "page.html"
    assert cli([tiny_run, "--html", out, "--points", 20], capsys) == (0, "")
    first = out.stat().st_ino
    assert webpage.MARKER in out.read_bytes()[:1024]
    assert cli([tiny_run, "--html", out, "--points", 30], capsys) == (0, "")
    assert out.stat().st_ino != first and webpage.embedded_data(out.read_text())["points"]["count"] == 30
    assert sorted(path.name for path in tmp_path.iterdir()) == ["page.html", "run"]  # no temporary file left


HOSTILE = ["<!--<script", "<!--<script>", "<b onmouseover=x>&amp;<i", "]]>\u2028<\\ '\""]  # folder names: no '/'


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_run_name_stays_text_in_the_embedded_data(tmp_path, capsys, name):
    run = run_with(tmp_path, FCVAE(hidden=(8,)), name=name)
    out = tmp_path / "page.html"
    assert cli([run, "--html", out, "--points", 20], capsys) == (0, "")
    page = out.read_text()
    block = re.search(r'<script id="explorer-data" type="application/json">(.*?)</script>', page, re.S)[1]
    assert not set(block) & set("<>&") and block.isascii()
    assert webpage.embedded_data(page)["about"]["run"] == name


def test_nan_weights_are_refused_in_one_line(tmp_path, capsys):
    model = FCVAE(hidden=(8,))
    model.decoder[0].weight.data[0, 0] = float("nan")
    run = run_with(tmp_path, model)
    code, err = cli([run, "--html", tmp_path / "x.html"], capsys)
    assert code == 1 and err.count("\n") == 1 and "non-finite weights" in err and not (tmp_path / "x.html").exists()


def test_finite_weights_with_outputs_that_are_not_finite_are_refused_in_one_line(tmp_path, capsys):
    """A batch norm with a negative running variance: finite weights (the checkpoint loads), NaN pictures."""
    model = FCVAE(hidden=(8,), norm="batch").eval()
    model.decoder[1].running_var.fill_(-1.0)
    run = run_with(tmp_path, model)
    code, err = cli([run, "--html", tmp_path / "x.html"], capsys)
    assert code == 1 and err.count("\n") == 1 and "decoder gives non-finite pixels" in err
    assert not (tmp_path / "x.html").exists()


def test_a_large_page_is_said_in_one_line_before_it_is_written(tmp_path, tiny_run, capsys, monkeypatch):
    monkeypatch.setattr(webpage, "LARGE", 1_000_000)  # a tiny model's page is about 2 MB: over it
    said_before_writing, write = [], webpage.write_text

    def spy(path, text):
        said_before_writing.append(capsys.readouterr().err)
        write(path, text)

    monkeypatch.setattr(webpage, "write_text", spy)
    assert cli([tiny_run, "--html", tmp_path / "x.html", "--points", 20], capsys) == (0, "")
    [said] = said_before_writing
    assert said.count("\n") == 1 and "x.html: the page is 2.0 MB (GitHub warns above 50 MB" in said
    assert (tmp_path / "x.html").exists()
