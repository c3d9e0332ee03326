"""`thumbproxy render` renders a local file with the server's code; `python -m thumbproxy` is the same command."""

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from conftest import Service
from hostilefits import ASTROPY_FAILURES
from thumbproxy.demo import sampledata
from thumbproxy.render import thumbnail_from_file
from thumbproxy.render.options import RenderOptions


def _thumbproxy(*arguments: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "thumbproxy", *arguments], capture_output=True, text=True, cwd=cwd, env=env, timeout=120
    )


def _refused(result: subprocess.CompletedProcess[str], message: str) -> bool:
    """Whether the command failed as a user should see it: exit status 2 and this one line on stderr."""
    return result.returncode == 2 and result.stderr == f"thumbproxy: {message}\n"


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


def test_render_takes_every_display_parameter_as_the_server_does(tmp_path: Path) -> None:
    frame = sampledata.star_field(tmp_path / "field.fits.fz", size=256)
    given = [
        ["--stretch", "log", "--min-percent", "20", "--max-percent", "99.9", "--gamma", "1.5", "--invert"],
        ["--zmin", "990", "--zmax", "1400", "--stretch", "asinh", "--cmap", "viridis"],
        ["--contrast", "0.3"],
    ]
    asked = [
        RenderOptions(stretch="log", min_percent=20.0, max_percent=99.9, gamma=1.5, invert=True, format="png"),
        RenderOptions(stretch="asinh", zmin=990.0, zmax=1400.0, cmap="viridis", format="png"),
        RenderOptions(contrast=0.3, format="png"),
    ]
    for flags, options in zip(given, asked):
        result = _thumbproxy("render", str(frame), "-o", "out.png", *flags, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "out.png").read_bytes() == thumbnail_from_file(frame, options), flags
    refused = _thumbproxy("render", str(frame), "--zmin", "5", "--zmax", "1", cwd=tmp_path)
    assert _refused(refused, "Invalid parameter zmax: must be greater than zmin")


def test_render_defaults_to_basename_jpg_here(tmp_path: Path) -> None:
    frame = sampledata.star_field(tmp_path / "ogg-e91.fits.fz", size=256)
    result = _thumbproxy("render", str(frame), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "ogg-e91.jpg").size == (200, 200)


@pytest.mark.parametrize(
    ("name", "format_options", "written", "image_format"),
    [
        # Frames of one night differ only after the first dot: each keeps its own name.
        ("ISAAC.2006-04-13T06:32:38.944.fits", [], "ISAAC.2006-04-13T06:32:38.944.jpg", "JPEG"),
        ("wfc.r1234.fit.gz", ["--format", "png"], "wfc.r1234.png", "PNG"),
        ("night.2.FTS", ["--format", "webp"], "night.2.webp", "WEBP"),
    ],
)
def test_render_names_its_image_after_the_file_without_its_fits_extensions(
    tmp_path: Path, name: str, format_options: list[str], written: str, image_format: str
) -> None:
    # Uncompressed images, as ISAAC's are; astropy gzips a file named .gz as it writes it.
    sampledata.star_field(tmp_path / name, size=128, compression=None)
    result = _thumbproxy("render", name, *format_options, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{written}\n"
    assert Image.open(tmp_path / written).format == image_format


@pytest.mark.parametrize(
    ("output", "format_options", "image_format"),
    [
        ("spec.png", [], "PNG"),
        ("spec.webp", [], "WEBP"),
        ("spec.JPEG", [], "JPEG"),
        ("spec.jpg", ["--format", "jpeg"], "JPEG"),
        ("spec.png", ["--format", "auto"], "PNG"),
        ("spec", ["--format", "webp"], "WEBP"),
    ],
)
def test_render_writes_the_format_its_output_name_or_format_asks_for(
    tmp_path: Path, output: str, format_options: list[str], image_format: str
) -> None:
    frame = sampledata.star_field(tmp_path / "field.fits.fz", size=256)
    result = _thumbproxy("render", str(frame), "-o", output, *format_options, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / output).format == image_format
    options = RenderOptions(format=image_format.lower())
    assert (tmp_path / output).read_bytes() == thumbnail_from_file(frame, options)


def _directory(path: Path) -> Path:
    path.mkdir()
    return path


def _text(path: Path) -> Path:
    path.write_text("not a frame\n")
    return path


def _frame(path: Path) -> Path:
    return sampledata.star_field(path, size=64)


# Each way `thumbproxy render` is given something it cannot do: what it is given (files made by a
# function of their path), and the one line it answers.
BAD_RENDERS: dict[str, tuple[dict[str, Callable[[Path], Path]], list[str], str]] = {
    "missing file": ({}, ["nope.fits"], "cannot read nope.fits: No such file or directory"),
    "directory": ({"night": _directory}, ["night"], "cannot read night: Is a directory"),
    "not FITS": ({"notes.txt": _text}, ["notes.txt"], "cannot render notes.txt: not a FITS file"),
    "not readable FITS": (
        {"bad.fits": ASTROPY_FAILURES["text BITPIX"]},
        ["bad.fits"],
        "cannot render bad.fits: not a readable FITS file",
    ),
    "output in a missing directory": (
        {"f.fits": _frame},
        ["f.fits", "-o", "missing/f.jpg"],
        "cannot write missing/f.jpg: there is no directory missing",
    ),
    "output under a file": (
        {"f.fits": _frame, "notes.txt": _text},
        ["f.fits", "-o", "notes.txt/f.jpg"],
        "cannot write notes.txt/f.jpg: Not a directory",
    ),
    "output of no image format": (
        {"f.fits": _frame},
        ["f.fits", "-o", "f.tif"],
        "-o f.tif: its extension names no image format (.jpg, .jpeg, .png, .webp); or give --format",
    ),
    "output contradicting --format": (
        {"f.fits": _frame},
        ["f.fits", "-o", "f.png", "--format", "jpg"],
        "-o f.png: its extension names png, but --format is jpeg",
    ),
}


@pytest.mark.parametrize("kind", BAD_RENDERS)
def test_render_refuses_what_it_cannot_do_in_one_line(tmp_path: Path, kind: str) -> None:
    given, arguments, message = BAD_RENDERS[kind]
    for name, make in given.items():
        make(tmp_path / name)
    before = set(tmp_path.rglob("*"))
    result = _thumbproxy("render", *arguments, cwd=tmp_path)
    assert _refused(result, message), (result.returncode, result.stderr)
    assert set(tmp_path.rglob("*")) == before


@pytest.mark.parametrize("query", ["width=0", "quality=500", "format=gif", "percentile=abc"])
async def test_render_refuses_a_bad_option_with_the_message_of_the_http_400(
    service: Service, frame: dict[str, Any], tmp_path: Path, query: str
) -> None:
    response = await service.get(f"/{frame['id']}/?image=true&{query}")
    assert response.status == 400
    message = (await response.json())["message"]
    name, _, value = query.partition("=")
    result = _thumbproxy("render", str(_frame(tmp_path / "f.fits")), f"--{name}", value, cwd=tmp_path)
    assert _refused(result, message), (result.returncode, result.stderr)


@pytest.mark.parametrize("command", [["serve", "--host", "127.0.0.1"], ["demo"]])
def test_a_port_in_use_is_one_line_naming_it_and_the_option_to_choose_another(
    tmp_path: Path, command: list[str]
) -> None:
    env = {
        **os.environ,
        "THUMBPROXY_CACHE_DIR": str(tmp_path / "cache"),
        "TMP_DIR": str(tmp_path / "tmp"),
        "THUMBPROXY_WORKERS": "1",
        "THUMBPROXY_CONFIG": os.devnull,
    }
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _thumbproxy(*command, "--port", str(port), cwd=tmp_path, env=env)
    message = f"cannot listen on 127.0.0.1:{port}: Address already in use; choose another port with --port"
    assert _refused(result, message), (result.returncode, result.stderr)


def test_render_refuses_bad_parameters_and_bad_files(tmp_path: Path) -> None:
    frame = sampledata.star_field(tmp_path / "f.fits.fz", size=128)
    result = _thumbproxy("render", str(frame), "--quality", "500", cwd=tmp_path)
    assert result.returncode == 2 and "quality" in result.stderr and "Traceback" not in result.stderr
    (tmp_path / "empty.fits").write_bytes(b"")
    result = _thumbproxy("render", str(tmp_path / "empty.fits"), cwd=tmp_path)
    assert _refused(result, "cannot render empty.fits: the file is empty"), result.stderr
