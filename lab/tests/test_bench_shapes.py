"""lab.bench_shapes: every part of the shapes dataset is timed and written, and bad options are one line."""

import json

import pytest

from lab import bench_shapes


def test_a_smoke_run_times_every_part_and_writes_both_files(tmp_path, capsys):
    assert bench_shapes.main(["--repeats", "1", "--train-limit", "2000", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "bench-shapes.json").read_text())["results"]
    assert list(results) == ["generate", "load cache", "fc epoch", "cnn epoch", "metrics"]
    assert all(row["seconds"] > 0 and row["cpu_seconds"] >= 0 and row["other_cores"] >= 0 for row in results.values())
    assert results["cnn epoch"]["peak_rss_mb"] > 100
    markdown = (tmp_path / "bench-shapes.md").read_text()
    assert markdown.count("\n| ") == 6 and "lab.bench_shapes --repeats 1" in markdown
    assert markdown in capsys.readouterr().out


@pytest.mark.parametrize("args", [["--repeats", "0"], ["--train-limit", "100"]])
def test_bad_options_are_one_line(args, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench_shapes.main([*args, "--out", str(tmp_path)])
    assert exit_info.value.code == 2 and capsys.readouterr().err.count("\n") == 1 and not list(tmp_path.iterdir())
