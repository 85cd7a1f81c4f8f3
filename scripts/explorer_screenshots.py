"""Screenshots of the explorer's web pages (docs/explorer/*.html) for docs/screenshots/: each page at 1280x800 (the
screen) and 390x844 (a phone; the whole page, which wraps to one column), after a click on a test image's point.

    .venv/bin/python scripts/explorer_screenshots.py [--pages docs/explorer/fc.html ...] [--out docs/screenshots]

Needs Playwright for Python (lab/requirements.txt) and a system Chromium at /usr/bin/chromium; it downloads no
browser, and the pages are opened from file:// with every other request blocked.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORTS = ((1280, 800), (390, 844))
CLICKED = 0  # the test image whose point is clicked (an ankle boot)
MAX_BYTES = 300_000


def shrink(path: Path) -> None:
    """Keep a PNG under MAX_BYTES with a 256-colour palette."""
    if path.stat().st_size > MAX_BYTES:
        Image.open(path).convert("RGB").quantize(256).save(path, optimize=True)


def screenshot(browser, page_path: Path, width: int, height: int, out: Path) -> None:
    page = browser.new_page(viewport={"width": width, "height": height})
    blocked = []
    page.route(
        "**/*",
        lambda route: (
            route.continue_()
            if route.request.url.startswith("file://")
            else (blocked.append(route.request.url), route.abort())
        ),
    )
    page.goto(page_path.resolve().as_uri())
    page.wait_for_function("window.explorer !== undefined")
    page.evaluate("explorer.ready")
    page.evaluate(f"""() => {{
        const box = document.getElementById("scatter");
        const curve = box.data.findIndex(trace => trace.customdata && trace.customdata.includes({CLICKED}));
        box.emit("plotly_click", {{points: [{{curveNumber: curve, customdata: {CLICKED}}}]}}); }}""")
    page.wait_for_timeout(1000)  # the marker moves on the next animation frame
    page.screenshot(path=str(out), full_page=width < 600)
    page.close()
    if blocked:
        raise SystemExit(f"{page_path} asked the network for {blocked}")
    shrink(out)
    print(f"{out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}  {out.stat().st_size // 1000} kB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pages", nargs="+", type=Path, default=[ROOT / "docs/explorer/fc.html", ROOT / "docs/explorer/cnn.html"]
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        for page_path in args.pages:
            for width, height in VIEWPORTS:
                out = args.out / f"explorer-{page_path.stem}-{width}x{height}.png"
                screenshot(browser, page_path, width, height, out)
        browser.close()


if __name__ == "__main__":
    main()
