"""Screenshots of the latent explorer at 1280x800 for docs/screenshots/, each checked on the way: an executed
notebook's HTML export (nbconvert) opened offline, scrolled to the explorer's static picture; and a small notebook
that shows the explorer of a trained run live in JupyterLab, after a slider drag and after "go to class mean".

    .venv/bin/python scripts/explorer_shots.py --notebook /tmp/fc-quick.ipynb --run runs/notebook-fc

The notebook and run come from the quick look (`papermill -p epochs 2 -p train_limit 5000 ...`). Needs Playwright for
Python and a system Chromium; it downloads no browser, and the export's page may load nothing but files.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter
from playwright.sync_api import Page, sync_playwright
from screenshots import ROOT, click_a_point, drag_slider, free_port, report, shot, start_lab

FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
]  # WebGL on CPU
EXPLORER = ".widget-box"
CELLS = [
    "import sys\nsys.path.insert(0, {root!r})\nfrom runs import RunFolder\n"
    "from data import load_dataset\nfrom explorer import LatentExplorer\n"
    "from samplers import posterior_means",
    "run = RunFolder({run!r})\nmodel = run.model()\ndata = load_dataset(run.train_config.dataset)\n"
    "test_means = posterior_means(model, data.test_images)",
    "LatentExplorer(model, test_means, data.test_labels, data.class_names, data.test_images)",
]


def export_shot(page: Page, notebook: Path, folder: Path, out: Path) -> dict[str, bool]:
    """The notebook as nbconvert's HTML export, opened from file:// with every other request blocked, scrolled to
    the explorer cell's picture."""
    html = folder / "export.html"
    html.write_text(HTMLExporter().from_notebook_node(nbformat.read(notebook, 4))[0])
    blocked = []
    page.route(
        "**/*",
        lambda route: (
            route.continue_()
            if route.request.url.startswith("file:")
            else blocked.append(route.request.url) or route.abort()
        ),
    )
    page.goto(html.as_uri())
    picture = page.locator(".jp-Cell").filter(has_text="LatentExplorer(model").last.locator("img")
    picture.evaluate("img => img.scrollIntoView({block: 'center'})")
    page.wait_for_timeout(1000)
    shot(page, out / "export-explorer-1280x800.png")
    page.unroute("**/*")
    print(f"blocked {len(blocked)} requests: {sorted({url.split('/')[2] for url in blocked})}")
    return {"the export shows the explorer's picture": picture.evaluate("img => img.naturalWidth") > 300}


def caption(page: Page, index: int) -> str:
    """The caption above image `index` (0: decoded z, 1: the clicked test image)."""
    return page.locator(f"{EXPLORER} .widget-html").nth(index).inner_text()


def lab_shots(page: Page, folder: Path, run: Path, out: Path) -> dict[str, bool]:
    """The small notebook run in JupyterLab (file browser open, as Lab starts), then driven as `explore` says."""
    notebook = folder / "explorer.ipynb"
    cells = [nbformat.v4.new_code_cell(source.format(root=str(ROOT), run=str(run.resolve()))) for source in CELLS]
    kernel = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    nbformat.write(nbformat.v4.new_notebook(cells=cells, metadata=kernel), notebook)
    port = free_port()
    lab = start_lab(folder, port)
    try:
        page.goto(f"http://127.0.0.1:{port}/lab/tree/{notebook.name}")
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=300_000)
        page.wait_for_timeout(3000)
        if page.locator(".jp-Dialog").count():  # "Select Kernel", even with a kernelspec: take the one offered
            page.get_by_role("button", name="Select", exact=True).click()
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        page.wait_for_function(
            f"() => !!document.querySelector('{EXPLORER} .js-plotly-plot')?._fullLayout", timeout=120_000
        )
        page.locator(".jp-CodeCell").last.evaluate("cell => cell.scrollIntoView({block: 'start'})")
        page.wait_for_timeout(2500)
        return explore(page, out)
    except Exception:
        page.screenshot(path=str(folder / "failed.png"))
        print(f"the page as it failed: {folder / 'failed.png'}; JupyterLab's log: {folder / 'lab.log'}")
        raise
    finally:
        lab.terminate()
        lab.wait(timeout=30)


def explore(page: Page, out: Path) -> dict[str, bool]:
    """Drag z1 by 90 px and type 0.5 into z2's value (a screenshot), click a point, then pick a class and go to
    its mean (a screenshot)."""
    values = page.locator(f"{EXPLORER} .widget-readout")
    value = lambda n: float(values.nth(n).inner_text().replace("\u2212", "-"))  # noqa: E731  (a typographic minus)
    title, modebar = (page.locator(f"{EXPLORER} {css}").first.bounding_box() for css in (".gtitle", ".modebar"))
    controls = page.locator(f"{EXPLORER} .widget-slider").first.bounding_box()
    checks = {
        "the title clears the modebar": title["x"] + title["width"] <= modebar["x"]
        or title["y"] + title["height"] <= modebar["y"],
        "the sliders sit beside the scatter": controls["x"] > modebar["x"] and controls["y"] < modebar["y"] + 200,
    }
    handle = page.locator(f"{EXPLORER} .noUi-handle").first
    low, high = (float(handle.get_attribute(f"aria-value{end}")) for end in ("min", "max"))
    before = value(0)
    drag_slider(page, 90)
    after = value(0)
    track = page.locator(f"{EXPLORER} .noUi-target").first.bounding_box()["width"]
    print(f"a 90 px drag of z1 on {track:.0f} px of track (range {low:.2f} to {high:.2f}): {before:.3f} -> {after:.3f}")
    checks["a 90 px drag moves z1 by its share of the track"] = abs(after - before - 90 / track * (high - low)) < 0.2
    values.nth(1).click()
    page.keyboard.press("Control+a")
    page.keyboard.type("0.5")
    page.keyboard.press("Enter")
    page.wait_for_timeout(1500)
    checks["a value typed in moves z2"] = value(1) == 0.5
    shot(page, out / "lab-explorer-slider.png")
    checks["a click on a point shows its test image"] = click_a_point(page, page.locator(f"{EXPLORER} .js-plotly-plot"))
    page.mouse.move(5, 400)  # away from the hover label
    page.locator(f"{EXPLORER} select").select_option(label="Sneaker")
    page.get_by_role("button", name="go to class mean").click()
    page.wait_for_timeout(2000)
    shot(page, out / "lab-explorer-class-mean.png")
    checks["the captions follow the class mean"] = "class mean of Sneaker" in caption(
        page, 0
    ) and "test image" not in caption(page, 1)
    print(f"captions: {caption(page, 0)!r}, {caption(page, 1)!r}")
    return checks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebook", type=Path, default=Path("/tmp/fc-quick.ipynb"), help="an executed notebook")
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "notebook-fc", help="a trained run folder")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="explorer-shots-"))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800}, device_scale_factor=1)
        checks = export_shot(page, args.notebook, folder, args.out)
        checks |= lab_shots(page, folder, args.run, args.out)
        browser.close()
    shutil.rmtree(folder, ignore_errors=True)
    return report(checks)


if __name__ == "__main__":
    sys.exit(main())
