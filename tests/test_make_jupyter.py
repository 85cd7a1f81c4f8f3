"""`make jupyter`: JupyterLab from the venv with the repository's settings, where autosave is off, and --allow-root
when run as root. (scripts/jupyter_autosave_check.py checks in a browser that an open notebook stays as committed.)"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OVERRIDES = ROOT / "jupyterlab-settings" / "overrides.json"


@pytest.mark.skipif(shutil.which("make") is None, reason="no make on this machine")
@pytest.mark.parametrize("notebook", ["Fully_Connected_VAE.ipynb", "CNN_VAE.ipynb"])
def test_make_jupyter_starts_lab_with_the_repository_s_settings(notebook):
    # --no-print-directory: under `make test` this make is a sub-make, which would print "Leaving directory" last
    args = ["make", "--no-print-directory", "-n", "-o", "setup", "jupyter", "PYTHON=.venv/bin/python"]
    done = subprocess.run(
        args + ([f"NOTEBOOK={notebook}"] if notebook != "Fully_Connected_VAE.ipynb" else []),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    command = done.stdout.strip().splitlines()[-1]
    assert command.startswith(".venv/bin/python -m jupyterlab ")
    assert f'--LabApp.app_settings_dir="{ROOT}/jupyterlab-settings"' in command
    assert ("--allow-root" in command) == (os.geteuid() == 0)  # JupyterLab refuses root without it
    assert command.endswith(f'"{notebook}"') and (ROOT / notebook).is_file()


def test_the_settings_turn_off_a_setting_that_jupyterlab_has_and_defaults_on():
    from jupyterlab.commands import get_app_dir

    overrides = json.loads(OVERRIDES.read_text())
    assert overrides == {"@jupyterlab/docmanager-extension:plugin": {"autosave": False}}
    schema = Path(get_app_dir()) / "schemas" / "@jupyterlab" / "docmanager-extension" / "plugin.json"
    autosave = json.loads(schema.read_text())["properties"]["autosave"]
    assert autosave["type"] == "boolean" and autosave["default"] is True  # a renamed setting would fail here
