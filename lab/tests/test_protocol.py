"""Records follow a protocol (lab/protocol.py): a quick sweep replaces no committed record unasked, and the study
leaves a quick run out of every table whose protocol it does not follow, a line each ("Trust, round five", case 1:
`lab.sweep --model fc --betas 2 --epochs 1 --eval-limit 100` replaced the committed 20-epoch record, exit 0, and
`lab.study` put its numbers into the 20-epoch tables)."""

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest

from lab import records, study, sweep
from lab.protocol import FULL

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "results" / "runs"
RECORD = "fc-bernoulli-z3-beta2.json"  # a committed 20-epoch record
QUICK = ["--model", "fc", "--betas", "2", "--epochs", "1", "--eval-limit", "100"]  # case 1, exactly
LINE = "not replaced by a smaller run (epochs 1 < 20, eval on 100 test images < 10,000); --replace-records replaces it"


def folders(root):
    return [f"--{kind}-dir={root / kind}" for kind in ("runs", "results", "img", "records")] + ["--no-progress"]


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """Case 1's sweep over a results folder that holds the committed record: its exit status, stdout and stderr."""
    root = tmp_path_factory.mktemp("quick")
    (root / "records").mkdir()
    shutil.copy(COMMITTED / RECORD, root / "records")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = sweep.main(QUICK + folders(root))
    return root, code, out.getvalue(), err.getvalue()


def test_a_quick_sweep_leaves_a_committed_record_as_it_is_says_so_in_one_line_and_fails(quick):
    root, code, out, err = quick
    assert code == 1 and "Traceback" not in out + err
    assert (root / "records" / RECORD).read_bytes() == (COMMITTED / RECORD).read_bytes()
    assert err.splitlines()[-1] == f"sweep: {root / 'records' / RECORD}: {LINE}"
    assert err.count(RECORD) == 1 and "replaced" not in out
    assert json.loads((root / "runs" / RECORD.removesuffix(".json") / "eval.json").read_text())["test_images"] == 100


def test_the_same_command_with_replace_records_replaces_it_and_says_so(quick, tmp_path, capsys):
    shutil.copytree(quick[0], tmp_path, dirs_exist_ok=True)
    assert sweep.main(QUICK + folders(tmp_path)) == 1  # again: refused again (its trial was retried)
    assert capsys.readouterr().err.splitlines()[-1].endswith(LINE)
    assert sweep.main(QUICK + folders(tmp_path) + ["--replace-records"]) == 0
    assert (
        f"{tmp_path / 'records' / RECORD}: replaced a record made with more (epochs 1 < 20, eval on 100 test images "
        "< 10,000), as --replace-records asked" in capsys.readouterr().out.splitlines()
    )
    assert len(json.loads((tmp_path / "records" / RECORD).read_text())["epochs"]) == 1


def test_the_study_leaves_a_quick_run_out_of_every_table_it_does_not_fit_a_line_each(quick, tmp_path, capsys):
    results, runs = tmp_path / "results", tmp_path / "results" / "runs"
    shutil.copytree(ROOT / "results", results)
    note = records.write_record(quick[0] / "runs" / RECORD.removesuffix(".json"), runs, replace=True)
    assert "replaced a record made with more" in note  # the quick record where the committed one was
    before = {p.name: p.read_bytes() for p in results.glob("study-*")}
    args = ["--records-dir", str(runs), "--results-dir", str(results), "--no-figures"]
    assert study.main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        f"{runs / RECORD}: left out of study-betas, study-betas-verdicts (epochs 1 < 20, eval on 100 test images "
        "< 10,000)"
    )
    assert f"{results / 'study-betas.md'}: kept (28 rows, 60 seeds committed; the records give 28 rows, 59 " in out[5]
    assert {p.name: p.read_bytes() for p in results.glob("study-*")} == before  # no table changed
    assert study.main([*args, "--force"]) == 0  # the study's tables without it: FC beta 2 on its two other seeds
    row = next(r for r in (results / "study-betas.csv").read_text().splitlines() if r.startswith("fc,bernoulli,2.0,"))
    assert row.split(",")[3] == "2" and "177.4" not in (results / "study-betas.md").read_text()


def test_each_table_states_its_protocol_in_its_header():
    header = (ROOT / "results" / "study-seeds.md").read_text().split("| model")[0]
    assert f"Protocol: {FULL}; `lab.study` leaves out runs made otherwise." in header
    assert (
        "Protocol: 10 epochs or more on all 60,000 training images"
        in (ROOT / "results/study-cnn-designs.md").read_text()
    )
