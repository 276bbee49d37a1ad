"""The README's picture of the run report: `gra report RUN_DIR`, opened in headless chromium.

    python scripts/report_screenshot.py RUN_DIR docs/report.png

Writes RUN_DIR/report.html with the same command a user runs, screenshots the
top of it (what a reader sees first) in the browser tests/test_report_browser.py
uses, and keeps the PNG small (a 128-colour palette: plots are flat colours).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.report_runs import open_in_chromium  # noqa: E402


def main(run_dir: Path, png: Path, width: int = 1200, height: int = 1700) -> None:
    subprocess.run([sys.executable, "-m", "gra", "report", str(run_dir)], check=True)
    with tempfile.TemporaryDirectory() as work:
        raw = Path(work) / "raw.png"
        page = open_in_chromium(
            (run_dir / "report.html").resolve().as_uri(),
            Path(work),
            screenshot=raw,
            size=(width, height),
        )
        assert not page.console and not page.page_requests, (page.console, page.page_requests)
        image = Image.open(raw).convert("RGB").quantize(colors=128, dither=Image.Dither.NONE)
        png.parent.mkdir(parents=True, exist_ok=True)
        image.save(png, optimize=True)
    print(f"{png}: {png.stat().st_size / 1000:.0f} kB")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
