"""README's example pictures of the display parameters, drawn from the demo archive as the service draws them.

Each is the landing page's example of one parameter (thumbproxy.web.pages.PARAMETERS) on the demo's star field,
or on its R, V, B frames for the colour ones, at EXAMPLE_SIZE pixels.

    .venv/bin/python docs/examples.py      (from the repository root: writes docs/examples/<parameter>.jpg)
"""

import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote, urlencode

from multidict import MultiDict

from thumbproxy.demo.sampledata import demo_archive
from thumbproxy.render import color_thumbnail_from_files, thumbnail_from_file
from thumbproxy.web.pages import EXAMPLE_BASENAME, PARAMETERS
from thumbproxy.web.query import DISPLAY_PARAMETERS, parse_query

EXAMPLES = Path(__file__).resolve().parent / "examples"
EXAMPLE_SIZE = 160
# The parameters whose pictures README shows: those that change how a frame is drawn, and the plain default.
SHOWN = (*DISPLAY_PARAMETERS, "color", "weights")
DEFAULT = "default"
# The demo's R, V, B frames, red first, and the red one's basename, which a colour request names.
RVB_FRAMES = ("0280", "0281", "0282")
RVB_BASENAME = "ogg0m404-kb82-20190321-0280-e91"
# Where `thumbproxy demo` serves: each picture links to its large rendering there.
DEMO_URL = "http://127.0.0.1:8080"
COLUMNS = 4


def examples() -> dict[str, Mapping[str, str]]:
    """The query of each picture by its name."""
    return {DEFAULT: {}, **{p.name: p.example for p in PARAMETERS if p.name in SHOWN}}


def draw(archive: Path, query: Mapping[str, str]) -> bytes:
    """The JPEG the service answers to this query on the demo's star field (its R, V, B frames for color=true)."""
    asked = parse_query(MultiDict({**query, "width": str(EXAMPLE_SIZE), "height": str(EXAMPLE_SIZE)}), EXAMPLE_SIZE)
    if asked.color:
        frames = [archive / f"{RVB_BASENAME.replace(RVB_FRAMES[0], number)}.fits.fz" for number in RVB_FRAMES]
        return color_thumbnail_from_files(frames, asked.options).image
    return thumbnail_from_file(archive / f"{EXAMPLE_BASENAME}.fits.fz", asked.options)


def write_examples(directory: Path, archive: Path) -> list[Path]:
    """Every example picture, drawn from the demo archive in archive (made there if missing), into directory."""
    demo_archive(archive)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, query in examples().items():
        path = directory / f"{name}.jpg"
        path.write_bytes(draw(archive, query))
        written.append(path)
    return written


def readme_table() -> str:
    """README's table of the pictures, COLUMNS to a row, each linked to its large rendering by the demo."""
    cells = []
    for name, query in examples().items():
        text = urlencode(query, quote_via=quote)
        frame = f"{RVB_BASENAME}" if "color" in query else EXAMPLE_BASENAME
        large = f"{DEMO_URL}/{frame}/?image=true&width=1000&height=1000" + (f"&{text}" if text else "")
        cells.append(f"[![{name}](docs/examples/{name}.jpg)]({large})<br>`{text or 'defaults'}`")
    cells += [""] * (-len(cells) % COLUMNS)
    rows = [cells[start : start + COLUMNS] for start in range(0, len(cells), COLUMNS)]
    return "\n".join(["| " + " | ".join(row) + " |" for row in [rows[0], ["---"] * COLUMNS, *rows[1:]]])


def main() -> int:
    with tempfile.TemporaryDirectory() as archive:
        for path in write_examples(EXAMPLES, Path(archive)):
            print(path)
    print(f"\nREADME's table:\n\n{readme_table()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
