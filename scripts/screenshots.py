"""Screenshots of the notebooks for docs/screenshots/: the latent explorer live in JupyterLab (1280x800 with the
file browser open, 1600x900; after a slider move and after a click on a point) and the static HTML exports
(nbconvert) of the committed notebooks and of a quick run processed as `make run` does.

    .venv/bin/python scripts/screenshots.py [--notebook Fully_Connected_VAE.ipynb] [--out docs/screenshots]

Needs Playwright for Python (`.venv/bin/pip install playwright`, not in requirements.txt) and a system Chromium
(`apt-get install chromium`); it does not download browsers. Everything executed runs in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import nbformat
from PIL import Image
from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
QUICK = {"epochs": 2, "train_limit": 5000}
MAX_BYTES = 300_000
CHROMIUM_FLAGS = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"]  # WebGL


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shrink(path: Path) -> None:
    """Keep a PNG under MAX_BYTES: a 256-colour palette, then halving the size if still needed."""
    image = Image.open(path).convert("RGB")
    while path.stat().st_size > MAX_BYTES:
        image.quantize(256).save(path, optimize=True)
        if path.stat().st_size > MAX_BYTES:
            image = image.resize((image.width * 3 // 4, image.height * 3 // 4), Image.LANCZOS)


def shot(target, path: Path, **options) -> None:
    """A screenshot of a page or an element, kept small; its path printed."""
    target.screenshot(path=str(path), **options)
    shrink(path)
    print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}  {path.stat().st_size // 1000} kB")


def quick_run(notebook: str, folder: Path) -> Path:
    """The notebook executed by papermill on the quick settings, then stripped of its widget state as `make run`
    strips it: what GitHub and nbconvert will show once `make run` refreshed the committed notebook."""
    out = folder / f"quick-{notebook}"
    parameters = {**QUICK, "run_dir": str(folder / "run-static"), "progress": False}
    subprocess.run(
        [
            PYTHON,
            "-m",
            "papermill",
            str(ROOT / notebook),
            str(out),
            "-y",
            json.dumps(parameters),
            "-k",
            "python3",
            "--cwd",
            str(ROOT),
            "--no-progress-bar",
        ],
        check=True,
    )
    nb = nbformat.read(out, 4)
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, out)
    return out


def to_html(notebook: Path, folder: Path) -> Path:
    subprocess.run(
        [PYTHON, "-m", "jupyter", "nbconvert", "--to", "html", "--output-dir", str(folder), str(notebook)],
        check=True,
        capture_output=True,
    )
    return folder / f"{notebook.stem}.html"


def html_shots(page: Page, html: Path, prefix: str, out: Path) -> None:
    """The training cell and the explorer cell of an nbconvert export."""
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(html.as_uri())
    cells = page.locator(".jp-Cell")
    training = cells.filter(has_text="history = fit(").first
    shot(training, out / f"{prefix}-training.png")
    explorer = cells.filter(has_text="LatentExplorer(model").last
    explorer.scroll_into_view_if_needed()
    shot(explorer, out / f"{prefix}-explorer.png")


def start_lab(folder: Path, port: int) -> subprocess.Popen:
    """JupyterLab on `folder` without token, news or a saved workspace; the kernels import the repo's modules."""
    settings = folder / "lab-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false", "checkForUpdates": false}')
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
        "JUPYTERLAB_SETTINGS_DIR": str(folder / "lab-settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(folder / "ws"),
    }
    lab = subprocess.Popen(
        [
            str(Path(PYTHON).parent / "jupyter"),
            "lab",
            "--no-browser",
            f"--port={port}",
            "--IdentityProvider.token=",
            "--ServerApp.password=",
            f"--ServerApp.root_dir={folder}",
            "--ServerApp.disable_check_xsrf=True",
            *(["--allow-root"] if os.geteuid() == 0 else []),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(folder / "lab.log", "w"),
    )
    for _ in range(120):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=2)
            return lab
        except OSError:
            time.sleep(1)
    lab.terminate()
    raise RuntimeError(f"JupyterLab did not start; see {folder / 'lab.log'}")


def decoded_src(page: Page, index: int = 0) -> str:
    """The src of the explorer's image number `index` (0: decoded z, 1: the clicked test image)."""
    return page.locator(".widget-box img").nth(index).get_attribute("src") or ""


def click_a_point(page: Page, figure) -> bool:
    """Hover over the scatter on a grid, from its middle outwards, until plotly shows a point's label; press
    there and wait for the explorer to show that test image (its label starts "test image"). plotly's 3-d
    scene reports a click from a frame drawn while the button is down: hold it a moment."""
    box = figure.bounding_box()
    middle_x, middle_y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    grid = [(dx, dy) for dx in range(-160, 161, 12) for dy in range(-160, 161, 12)]
    label = page.locator(".widget-box .widget-html").nth(1)
    for dx, dy in sorted(grid, key=lambda d: d[0] ** 2 + d[1] ** 2)[:200]:
        page.mouse.move(middle_x + dx, middle_y + dy)
        page.wait_for_timeout(250)
        if page.locator(".hovertext").count():
            page.mouse.down()
            page.wait_for_timeout(300)
            page.mouse.up()
            for _ in range(12):
                page.wait_for_timeout(250)
                if label.inner_text().startswith("test image"):
                    return True
    return False


def show_explorer(page: Page) -> None:
    """Scroll the notebook so that the explorer's cell starts at the top, and let WebGL draw."""
    page.locator(".jp-CodeCell").filter(has_text="LatentExplorer(model").last.evaluate(
        "cell => cell.scrollIntoView({block: 'start'})"
    )
    page.wait_for_timeout(2500)


def drag_slider(page: Page, pixels: float = 90) -> None:
    """Drag the first slider's handle (z1) to the right."""
    box = page.locator(".widget-slider .noUi-handle").first.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + pixels, y, steps=10)
    page.mouse.up()
    page.wait_for_timeout(2000)


def lab_shots(page: Page, notebook: Path, port: int, out: Path, prefix: str) -> dict[str, bool]:
    """Run the notebook in JupyterLab (file browser open), then shoot the explorer at 1280x800, after a slider
    move, after a click on a point, at 1600x900 and in a narrow window (where the controls wrap under the
    scatter); the training cell too. Returns what was checked on the way."""
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"http://127.0.0.1:{port}/lab/tree/{notebook.name}")
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=300_000)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    figure = page.locator(".widget-box .js-plotly-plot").first
    figure.wait_for(state="attached", timeout=900_000)
    page.wait_for_function("() => !!document.querySelector('.widget-box .js-plotly-plot')._fullLayout", timeout=60_000)
    show_explorer(page)
    checks = {
        "file browser open": page.locator("#filebrowser").is_visible(),
        "no horizontal scrollbar at 1280x800": page.evaluate(
            "() => [...document.querySelectorAll('.jp-WindowedPanel-outer')].every(e => e.scrollWidth <= e.clientWidth)"
        ),
    }
    shot(page, out / f"{prefix}-lab-1280x800.png")
    before = decoded_src(page)
    drag_slider(page)
    checks["a slider move changes the decoded image"] = decoded_src(page) != before
    shot(page, out / f"{prefix}-lab-1280x800-slider.png")
    before = decoded_src(page), decoded_src(page, 1)
    checks["a click on a point reaches the kernel"] = click_a_point(page, figure)
    page.mouse.move(5, 400)  # away from the hover label
    page.wait_for_timeout(1500)
    checks["the click changes both images"] = decoded_src(page) != before[0] and decoded_src(page, 1) != before[1]
    shot(page, out / f"{prefix}-lab-1280x800-click.png")
    for width, height, name in ((1600, 900, "1600x900"), (1000, 800, "narrow-1000x800")):
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(1500)
        show_explorer(page)
        shot(page, out / f"{prefix}-lab-{name}.png")
    checks["no horizontal scrollbar at 1000x800"] = page.evaluate(
        "() => [...document.querySelectorAll('.jp-WindowedPanel-outer')].every(e => e.scrollWidth <= e.clientWidth)"
    )
    page.set_viewport_size({"width": 1280, "height": 800})
    training = page.locator(".jp-CodeCell").filter(has_text="history = fit(").first
    training.evaluate("cell => cell.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(1000)
    shot(training, out / f"{prefix}-lab-training.png")
    return checks


def report(checks: dict[str, bool]) -> int:
    """Print each check, ok or FAIL; the exit status: 0 if all passed."""
    for check, passed in checks.items():
        print(f"{'ok  ' if passed else 'FAIL'} {check}")
    return 0 if all(checks.values()) else 1


def committed_shots(page: Page, folder: Path, out: Path) -> None:
    """The HTML exports of both committed notebooks: their explorer and training cells."""
    for name in ("Fully_Connected_VAE.ipynb", "CNN_VAE.ipynb"):
        committed = "fc" if name.startswith("Fully") else "cnn"
        html_shots(page, to_html(ROOT / name, folder), f"{committed}-html-committed", out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebook", default="Fully_Connected_VAE.ipynb", help="the notebook run live in Lab")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument(
        "--committed-only",
        action="store_true",
        help="only the HTML exports of the committed notebooks (after make run)",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="screenshots-"))
    if args.committed_only:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_FLAGS)
            page = browser.new_page(device_scale_factor=1)
            committed_shots(page, folder, args.out)
            browser.close()
        shutil.rmtree(folder, ignore_errors=True)
        return 0
    prefix = "fc" if args.notebook.startswith("Fully") else "cnn"
    live = folder / args.notebook  # parameters injected, not executed: Lab runs it
    subprocess.run(
        [
            PYTHON,
            "-m",
            "papermill",
            str(ROOT / args.notebook),
            str(live),
            "--prepare-only",
            "-y",
            json.dumps({**QUICK, "run_dir": str(folder / "run-live")}),
            "-k",
            "python3",
        ],
        check=True,
    )
    nb = nbformat.read(live, 4)
    for cell in nb.cells:  # the committed outputs would show "model not found" until Lab runs the cell
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.write(nb, live)
    quick = quick_run(args.notebook, folder)
    port = free_port()
    lab = start_lab(folder, port)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_FLAGS)
            page = browser.new_page(device_scale_factor=1)
            checks = lab_shots(page, live, port, args.out, prefix)
            html_shots(page, to_html(quick, folder), f"{prefix}-html-after-make-run", args.out)
            committed_shots(page, folder, args.out)
            browser.close()
    finally:
        lab.terminate()
        lab.wait(timeout=30)
    shutil.rmtree(folder, ignore_errors=True)
    return report(checks)


if __name__ == "__main__":
    sys.exit(main())
