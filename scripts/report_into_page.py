"""Put a sweep's report.md into a docs page, verbatim: `python scripts/report_into_page.py SWEEP PAGE IMAGES`.

The page's text between `<!-- report:begin -->` and `<!-- report:end -->` becomes SWEEP/report.md with its headings
one level down and its figures copied into IMAGES (a folder under docs/) and linked from there; `make docs-results`
and `make docs-study` call it. Nothing else of the page changes.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

BEGIN, END = "<!-- report:begin -->", "<!-- report:end -->"


def small_png(source: Path, target: Path) -> None:
    """The figure with a 128-colour palette: a few tens of KB for git instead of a few hundred, the plots unchanged
    to the eye."""
    from PIL import Image

    with Image.open(source) as image:
        image.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)


def page_text(report: str, sweep: Path, page: Path, images: Path) -> str:
    """The report's Markdown as it reads inside the page: headings one level down, figures linked from `images`."""
    def figure(match: re.Match) -> str:
        source = sweep / match.group(2)
        target = images / source.name
        small_png(source, target)
        return f"![{match.group(1)}]({os.path.relpath(target, page.parent)})"

    text = re.sub(r"^(#+) ", r"#\1 ", report, flags=re.MULTILINE)
    text = re.sub(r"(?<!!)\[([^\]]+)\]\((?!https?:)([^)]+)\)", lambda m: f"`{sweep / m.group(2)}`", text)  # not in git
    return re.sub(r"!\[([^\]]*)\]\(([^)]+\.png)\)", figure, text)


def main(sweep: Path, page: Path, images: Path) -> None:
    """Replace the page's report block with the sweep's report."""
    text = page.read_text()
    if BEGIN not in text or END not in text:
        sys.exit(f"error: {page} has no {BEGIN} … {END} block to fill")
    report = sweep / "report.md"
    if not report.is_file():
        sys.exit(f"error: no {report}: run the sweep and `python -m vae_lab.report {sweep}` first")
    images.mkdir(parents=True, exist_ok=True)
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    body = page_text(report.read_text(), sweep, page, images)
    page.write_text(f"{head}{BEGIN}\n{body}{END}{tail}")
    print(f"{page}: the report of {sweep}, figures in {images}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: python scripts/report_into_page.py SWEEP PAGE IMAGES")
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
