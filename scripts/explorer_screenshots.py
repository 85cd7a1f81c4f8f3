"""Screenshots of the explorer's web pages (docs/explorer/*.html) for docs/screenshots/: each page at 1280x800 (the
screen), after a click on a test image's point, and 390x844 (a phone, touch: one column), after a tap on a point of
the scatter at the bottom of the column (the screen as the phone shows it then: the pictures stay in view).

    .venv/bin/python scripts/explorer_screenshots.py [--pages docs/explorer/fc.html ...] [--out docs/screenshots]
    .venv/bin/python scripts/explorer_screenshots.py --pages /tmp/shapes.html --colour-by x --name page-shapes

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


def tap_a_point(page) -> None:
    """Taps over the middle of the scatter, scrolled into view, until one lands on a point (as a thumb would)."""
    page.locator("#scatter").scroll_into_view_if_needed()
    box = page.locator("#scatter").bounding_box()
    steps = sorted(((i / 20, j / 20) for i in range(-5, 6) for j in range(-5, 6)), key=lambda d: d[0] ** 2 + d[1] ** 2)
    for dx, dy in steps:
        page.touchscreen.tap(box["x"] + (0.5 + dx) * box["width"], box["y"] + (0.5 + dy) * box["height"])
        page.wait_for_timeout(100)
        if page.text_content("#picked-label").startswith("test image"):
            return
    raise SystemExit("no tap on the scatter's middle landed on a point")


def click_point(page, index: int) -> None:
    """The scatter's click on test image `index`'s point, as plotly reports one."""
    page.evaluate(f"""() => {{
        const box = document.getElementById("scatter");
        const curve = box.data.findIndex(trace => trace.customdata && trace.customdata.includes({index}));
        box.emit("plotly_click", {{points: [{{curveNumber: curve, customdata: {index}}}]}}); }}""")


def screenshot(browser, page_path: Path, width: int, height: int, out: Path, colour_by: str | None) -> None:
    phone = {"has_touch": True, "is_mobile": True} if width < 600 else {}
    page = browser.new_page(viewport={"width": width, "height": height}, **phone)
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
    if colour_by:
        page.select_option("#colour-by", colour_by)
    if phone:
        tap_a_point(page)
    else:
        click_point(page, CLICKED)
    page.wait_for_timeout(1000)  # the marker moves on the next animation frame
    page.screenshot(path=str(out))
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
    parser.add_argument("--colour-by", help="colour the points by this (class, or a factor such as x) on the screen")
    parser.add_argument("--name", help="the screenshots' names: explorer-NAME-WxH.png (default: the page's name)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        for page_path in args.pages:
            for width, height in VIEWPORTS:
                out = args.out / f"explorer-{args.name or page_path.stem}-{width}x{height}.png"
                screenshot(browser, page_path, width, height, out, args.colour_by if width > 600 else None)
        browser.close()


if __name__ == "__main__":
    main()
