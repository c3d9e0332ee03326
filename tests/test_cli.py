"""`thumbproxy render` renders a local file with the server's code; `python -m thumbproxy` is the same command."""

import subprocess
import sys
from pathlib import Path

from PIL import Image

from thumbproxy.demo import sampledata
from thumbproxy.render import thumbnail_from_file
from thumbproxy.render.options import RenderOptions


def _thumbproxy(*arguments: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "thumbproxy", *arguments], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_render_writes_the_same_jpeg_the_server_makes(tmp_path: Path) -> None:
    frame = sampledata.star_field(tmp_path / "field.fits.fz", size=512)
    result = _thumbproxy(
        "render",
        str(frame),
        "-o",
        "out.jpg",
        "--width",
        "300",
        "--height",
        "120",
        "--label",
        "M42",
        "--median",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    written = (tmp_path / "out.jpg").read_bytes()
    options = RenderOptions(width=300, height=120, label="M42", median=True)
    assert written == thumbnail_from_file(frame, options)
    assert Image.open(tmp_path / "out.jpg").size == (120, 120)


def test_render_defaults_to_basename_jpg_here(tmp_path: Path) -> None:
    frame = sampledata.star_field(tmp_path / "ogg-e91.fits.fz", size=256)
    result = _thumbproxy("render", str(frame), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "ogg-e91.jpg").size == (200, 200)


def test_render_refuses_bad_parameters_and_bad_files(tmp_path: Path) -> None:
    frame = sampledata.star_field(tmp_path / "f.fits.fz", size=128)
    result = _thumbproxy("render", str(frame), "--quality", "500", cwd=tmp_path)
    assert result.returncode != 0 and "quality" in result.stderr and "Traceback" not in result.stderr
    (tmp_path / "empty.fits").write_bytes(b"")
    result = _thumbproxy("render", str(tmp_path / "empty.fits"), cwd=tmp_path)
    assert result.returncode != 0 and "cannot render" in result.stderr and "Traceback" not in result.stderr
