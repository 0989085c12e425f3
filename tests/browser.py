"""The report as a reader sees it: Debian's chromium (apt-get install chromium), headless, renders
results/report.html (a React app: its scripts must run) to screenshots and to the DOM they show.

    python tests/browser.py results/report.html results/screenshots   # what `make report-screenshots` runs
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHROMIUM = shutil.which("chromium")
# No sandbox (containers, root), no GPU, nothing reaching out to the network, a fresh profile each time.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
SETTLE_MS = 15000  # virtual time for the report's scripts to render the page


def chromium(page: Path, *args: str) -> subprocess.CompletedProcess:
    if CHROMIUM is None:
        raise FileNotFoundError("chromium not found: apt-get install chromium (Debian)")
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={SETTLE_MS}",
                               *args, page.resolve().as_uri()], capture_output=True, text=True, timeout=180, check=True)


def screenshot(page: Path, png: Path, size: str = "1400,1000") -> Path:
    png.parent.mkdir(parents=True, exist_ok=True)
    chromium(page, f"--window-size={size}", f"--screenshot={png.resolve()}")
    return png


def rendered_dom(page: Path) -> str:
    """The page's DOM after its scripts ran (what the screenshot shows), as HTML."""
    return chromium(page, "--dump-dom").stdout


def report_screenshots(report: Path, out_dir: Path) -> list[Path]:
    """The landing page of the report, and every table page of results/figures/summary/ beside it."""
    shots = [screenshot(report, out_dir / "landing.png")]
    summary = report.parent / "figures" / "summary"
    shots += [screenshot(page, out_dir / f"{page.stem}.png", "1200,800") for page in sorted(summary.glob("*.html"))
              if page.stem != "landing"]
    return shots


if __name__ == "__main__":
    for shot in report_screenshots(Path(sys.argv[1]), Path(sys.argv[2])):
        print(shot)
