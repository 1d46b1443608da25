"""Screenshots of a real report at 800 and 1400 px in headless Chromium, and a check that the page never scrolls
sideways.

    python -m benchmarks.screenshot_report [--results DIR] [--paper all] [--out docs] [--height 3000]

1. ``DIR`` (default ``zeroloss-results/screenshot-tiny``) is filled by ``zeroloss reproduce PAPER --scale tiny
   --device cpu --out DIR`` unless it already holds results, whose report is then rebuilt with ``zeroloss report
   DIR`` (the current template, nothing re-run).
2. For each width, Chromium loads a copy of ``report.html`` with one added inline script that unfolds every
   ``<details>`` (specs, environment) and records the page's layout in the DOM (``--dump-dom``): the viewport width
   (``documentElement.clientWidth``), the page's scroll width, and the elements that stick out to the right outside
   a box that scrolls on its own. The report itself has no
   script; the copy is a measuring instrument only. The width check passes when scroll width = viewport width.
3. Then ``--screenshot`` of the report itself writes ``OUT/report-<width>.png`` (the top ``--height`` pixels),
   re-saved with a 64-colour palette (Pillow, which matplotlib installs) so the committed files stay small.

Chromium: Debian's ``chromium`` package (``apt-get install -y chromium``), run with ``--headless --no-sandbox
--disable-gpu`` and every background service off (no network access is needed or made: the page is a local file with
no external resources). ``tests/test_report.py`` runs :func:`measure_width` and :func:`screenshot` on a small report
when ``chromium`` is on PATH.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WIDTHS = (800, 1400)
#: Chromium flags: headless, no sandbox (root in a container), and no background networking or services.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         "--disable-extensions", "--disable-default-apps", "--mute-audio")

#: Added at the end of the measuring copy's body only (it runs once the page is parsed; reading a box forces the
#: layout): writes the layout into a <pre> element that --dump-dom returns.
_MEASURE = """<script>
(function () {
  document.querySelectorAll("details").forEach(function (d) { d.open = true; });  // measure the folded tables too
  var root = document.documentElement, limit = root.clientWidth + 0.5, out = [];
  document.querySelectorAll("body *").forEach(function (el) {
    if (el.closest(".scroll") || out.length >= 8) return;
    var box = el.getBoundingClientRect();
    if (box.right > limit) out.push(el.tagName.toLowerCase() + (el.className && el.className.baseVal === undefined
      ? "." + el.className : "") + " right=" + Math.round(box.right));
  });
  var pre = document.createElement("pre");
  pre.id = "zeroloss-layout";
  pre.textContent = JSON.stringify({viewport: root.clientWidth, scroll: root.scrollWidth,
                                    height: root.scrollHeight, overflowing: out});
  document.body.appendChild(pre);
})();
</script>"""


def find_chromium() -> str | None:
    """The Chromium executable on PATH (``chromium``, ``chromium-browser``, ``google-chrome``), or None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _run_chromium(chromium: str, args: list[str], profile: Path, timeout: float) -> subprocess.CompletedProcess:
    cmd = [chromium, *FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def measure_width(html: Path, width: int, chromium: str, height: int = 3000, timeout: float = 180) -> dict:
    """Load a measuring copy of ``html`` at ``width`` × ``height`` px; return ``{"viewport", "scroll", "height",
    "overflowing"}`` (px; ``overflowing``: up to 8 elements sticking out on the right outside a scrolling box)."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "measure.html"
        copy.write_text(html.read_text(encoding="utf-8").replace("</body>", _MEASURE + "\n</body>"), encoding="utf-8")
        res = _run_chromium(chromium, ["--dump-dom", f"--window-size={width},{height}", copy.as_uri()],
                            Path(tmp) / "profile", timeout)
    match = re.search(r'<pre id="zeroloss-layout">(.*?)</pre>', res.stdout, flags=re.S)
    if not match:
        raise RuntimeError(f"chromium returned no layout (exit {res.returncode}): {res.stderr.strip()[-400:]}")
    return json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<")
                      .replace("&gt;", ">"))


def screenshot(html: Path, png: Path, width: int, chromium: str, height: int = 3000, timeout: float = 180) -> None:
    """``--screenshot`` of ``html`` (unchanged) at ``width`` × ``height`` px into ``png``."""
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        res = _run_chromium(chromium, [f"--screenshot={png.resolve()}", f"--window-size={width},{height}",
                                       html.resolve().as_uri()], Path(tmp) / "profile", timeout)
    if not png.is_file():
        raise RuntimeError(f"chromium wrote no screenshot (exit {res.returncode}): {res.stderr.strip()[-400:]}")


def shrink_png(png: Path, colors: int = 64) -> None:
    """Re-save ``png`` with an adaptive palette of ``colors`` colours (no dithering): about 3× smaller, text intact."""
    from PIL import Image

    with Image.open(png) as image:
        small = image.convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT,
                                              dither=Image.Dither.NONE)
    small.save(png, optimize=True)


def png_size(png: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    head = png.read_bytes()[:24]
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{png}: not a PNG")
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def build_report(results: Path, paper: str) -> Path:
    """Run ``zeroloss reproduce PAPER --scale tiny`` into ``results`` (or rebuild its report); the report's path."""
    zeroloss = [sys.executable, "-m", "zeroloss"]
    if (results / "reproduce.json").is_file():
        cmd = [*zeroloss, "report", str(results)]
    else:
        cmd = [*zeroloss, "reproduce", paper, "--scale", "tiny", "--device", "cpu", "--out", str(results)]
    print("$", " ".join(cmd[2:]), flush=True)
    res = subprocess.run(cmd, cwd=ROOT, check=False)
    if res.returncode not in (0, 1):  # 1: some claim or figure raised; the page still shows it
        raise SystemExit(f"zeroloss exited {res.returncode}")
    return results / "report.html"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=ROOT / "zeroloss-results" / "screenshot-tiny")
    parser.add_argument("--paper", default="all", help="du2019 | chatterjee2022 | marion2023 | all")
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="where report-<width>.png go")
    parser.add_argument("--height", type=int, default=3000, help="screenshot height in px (the top of the page)")
    args = parser.parse_args()
    chromium = find_chromium()
    if chromium is None:
        raise SystemExit("chromium not found on PATH (Debian: apt-get install -y chromium)")
    html = build_report(args.results, args.paper)
    failed = False
    for width in WIDTHS:
        layout = measure_width(html, width, chromium, args.height)
        ok = layout["scroll"] <= layout["viewport"]
        failed |= not ok
        print(f"{width} px: viewport {layout['viewport']} px, page scroll width {layout['scroll']} px, page height "
              f"{layout['height']} px -> {'OK' if ok else 'OVERFLOW'}"
              + (f"; sticking out: {', '.join(layout['overflowing'])}" if layout["overflowing"] else ""))
        png = args.out / f"report-{width}.png"
        screenshot(html, png, width, chromium, args.height)
        shrink_png(png)
        print(f"  wrote {png}: {png_size(png)[0]} × {png_size(png)[1]} px, {png.stat().st_size / 1024:.0f} KiB")
    if failed:
        raise SystemExit("the page scrolls sideways at some width")


if __name__ == "__main__":
    main()
