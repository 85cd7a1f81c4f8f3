"""Does `make jupyter` leave the committed notebook alone? A browser check (minutes; not a test).

    python scripts/jupyter_autosave_check.py                 # control run, then make jupyter for 160 s
    python scripts/jupyter_autosave_check.py --wait 30       # shorter (the default autosave interval is 120 s)

1. Control: a copy of the notebook in runs/autosave-check/ (not tracked), opened in JupyterLab through the same make
   target with a settings folder that turns autosave on every 10 s. An edit is typed into its first code cell; the
   copy must change on disk within --control-wait seconds. This shows that the check can see an autosave.
2. The check: `make jupyter` as a user starts it (the repository's jupyterlab-settings/, autosave off), with the
   tracked notebook. The same edit is typed, the tab stays open --wait seconds, and then the notebook's bytes and
   `git status --porcelain` must be what they were before. A screenshot is saved (--screenshot).
Chromium is Debian's (/usr/bin/chromium), driven by Playwright; JupyterLab runs headless on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
EDIT = "# an edit typed in the browser: it must not reach the disk unless saved\n"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def git_status() -> str:
    return subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout


def start(notebook: str, port: int, token: str, settings: Path | None) -> subprocess.Popen:
    """`make jupyter` headless on `port`, in a session of its own (stopped by its id); PYTHON: this Python."""
    args = f"--no-browser --port {port} --ServerApp.ip=127.0.0.1 --IdentityProvider.token={token}"
    command = ["make", "-o", "setup", "jupyter", f"PYTHON={sys.executable}", f"NOTEBOOK={notebook}"]
    command += [f"JUPYTER_ARGS={args}"] + ([f"JUPYTER_SETTINGS={settings}"] if settings else [])
    print("$", " ".join(command), flush=True)
    log = open(ROOT / "runs" / "autosave-check" / f"jupyter-{port}.log", "w")
    server = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    for _ in range(240):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2):
                return server
        except OSError:
            if server.poll() is not None:
                raise SystemExit(f"JupyterLab exited ({server.returncode}); see {log.name}") from None
            time.sleep(0.5)
    stop(server)
    raise SystemExit(f"JupyterLab did not answer on port {port} within 120 s; see {log.name}")


def stop(server: subprocess.Popen) -> None:
    """SIGTERM to the session make started (make and its JupyterLab), then wait."""
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def open_and_edit(browser, port: int, token: str, notebook: str):
    """Open the notebook in a new page, type EDIT at the top of its first code cell; the page, once the tab shows
    the document as changed (unsaved)."""
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    # jupyter lab DIR/NAME.ipynb serves DIR (its root) and opens NAME.ipynb in it
    page.goto(f"http://127.0.0.1:{port}/lab/tree/{Path(notebook).name}?token={token}")
    editor = page.locator(".jp-NotebookPanel .jp-CodeCell .cm-content").first
    editor.wait_for(timeout=120_000)
    editor.click()
    page.keyboard.press("Control+Home")
    page.keyboard.type(EDIT)
    page.locator(".lm-TabBar-tab.jp-mod-current.jp-mod-dirty").wait_for(timeout=30_000)
    return page


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--notebook", default="Fully_Connected_VAE.ipynb")
    p.add_argument("--wait", type=float, default=160, help="seconds with the tab open (default 160)")
    p.add_argument("--control-wait", type=float, default=45, help="seconds for the control's autosave (0: no control)")
    p.add_argument("--port", type=int, default=8890)
    p.add_argument("--screenshot", type=Path, default=ROOT / "runs" / "autosave-check" / "lab-autosave-off.png")
    args = p.parse_args(argv)
    folder = ROOT / "runs" / "autosave-check"
    folder.mkdir(parents=True, exist_ok=True)
    token, tracked = secrets.token_hex(16), ROOT / args.notebook
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"]
        )
        if args.control_wait:
            copy = folder / "control.ipynb"
            shutil.copy(tracked, copy)
            settings = folder / "settings-autosave-10s"
            settings.mkdir(exist_ok=True)
            overrides = {"@jupyterlab/docmanager-extension:plugin": {"autosave": True, "autosaveInterval": 10}}
            (settings / "overrides.json").write_text(json.dumps(overrides))
            before = digest(copy)
            server = start(str(copy.relative_to(ROOT)), args.port, token, settings)
            try:
                page = open_and_edit(browser, args.port, token, str(copy.relative_to(ROOT)))
                deadline = time.time() + args.control_wait
                while digest(copy) == before and time.time() < deadline:
                    time.sleep(1)
                saved = digest(copy) != before
                page.close()
            finally:
                stop(server)
            print(f"control (autosave on, every 10 s): the copy {'changed' if saved else 'did NOT change'}", flush=True)
            if not saved or EDIT.strip() not in copy.read_text():
                print("FAIL: the control saw no autosave, so this check could not see one either")
                return 1
        status, before = git_status(), digest(tracked)
        server = start(args.notebook, args.port + 1, token, None)
        try:
            page = open_and_edit(browser, args.port + 1, token, args.notebook)
            print(f"make jupyter: {args.notebook} open with an unsaved edit; waiting {args.wait:.0f} s", flush=True)
            page.wait_for_timeout(args.wait * 1000)
            page.screenshot(path=str(args.screenshot))
            dirty = page.locator(".lm-TabBar-tab.jp-mod-current.jp-mod-dirty").count() == 1
            page.close()
        finally:
            stop(server)
        browser.close()
    same_bytes, same_status = digest(tracked) == before, git_status() == status
    print(
        f"after {args.wait:.0f} s: the tab still shows unsaved changes: {dirty}; {args.notebook} unchanged on disk: "
        f"{same_bytes}; git status unchanged: {same_status}; screenshot: {args.screenshot}"
    )
    if not (dirty and same_bytes and same_status):
        print("FAIL")
        print(git_status())
        return 1
    print("PASS: with the tab open and an unsaved edit, nothing tracked changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
