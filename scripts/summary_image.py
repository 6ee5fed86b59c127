#!/usr/bin/env python3
"""The README's picture of the check's job summary, made from a real report.

Usage: python scripts/summary_image.py REPORT.md OUT.png
REPORT.md is what `neon-migrate check --format markdown` printed. It is rendered to HTML
as GitHub renders a summary (CommonMark with tables, markdown-it-py from the dev extras)
and photographed by headless Chromium (Debian's `chromium` package).
"""

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from markdown_it import MarkdownIt

STYLE = """
body { font: 14px/1.5 -apple-system, "Segoe UI", "Noto Sans", Helvetica, Arial, sans-serif;
       color: #1f2328; margin: 0; padding: 16px 24px; background: #fff; }
h1 { font-size: 1.6em; border-bottom: 1px solid #d1d9e0; padding-bottom: .3em; }
h2 { font-size: 1.3em; border-bottom: 1px solid #d1d9e0; padding-bottom: .3em; }
h3 { font-size: 1.1em; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { border: 1px solid #d1d9e0; padding: 4px 10px; vertical-align: top; }
td:nth-child(-n+3) { white-space: nowrap; }
th { background: #f6f8fa; }
code { font: 12px ui-monospace, "DejaVu Sans Mono", monospace; background: #eff1f3;
       padding: .1em .3em; border-radius: 4px; }
pre { background: #f6f8fa; padding: 8px 12px; border-radius: 6px; }
pre code { background: none; padding: 0; }
a { color: #0969da; text-decoration: none; }
"""


def main(report: Path, out: Path, width: int = 1100, height: int = 1320) -> None:
    body = MarkdownIt("commonmark").enable("table").render(report.read_text())
    html = f"<!doctype html><meta charset='utf-8'><style>{STYLE}</style>{body}"
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        sys.exit("error: no chromium\nFix: apt-get install chromium")
    with tempfile.TemporaryDirectory() as folder:
        page = Path(folder, "summary.html")
        page.write_text(html)
        subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--hide-scrollbars",
             f"--window-size={width},{height}", f"--screenshot={out.resolve()}",
             page.as_uri()],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]))
