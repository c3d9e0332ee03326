"""The command line: thumbproxy serve | demo | render | sign."""

import argparse
import asyncio
import gc
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiohttp import web
from multidict import MultiDict

from thumbproxy.config import MIN_SIGNING_KEY_LENGTH, Settings, SettingsError, load_settings
from thumbproxy.errors import ThumbproxyError
from thumbproxy.ops.logs import configure_logging
from thumbproxy.web.signing import signed_url

DEMO_HOST = "127.0.0.1"
# `thumbproxy render`'s options, each the query parameter of its name, so parse_query validates them as the
# service does: RENDER_OPTIONS take a value, RENDER_FLAGS given set theirs to true.
RENDER_OPTIONS = {
    "width": "fit inside this many pixels across (default 200)",
    "height": "fit inside this many pixels down (default 200)",
    "label": "white text in the lower-left corner",
    "percentile": "upper percentile of the --median stretch (default 99.5)",
    "quality": "JPEG and WebP quality, 1 to 95 (default 80)",
    "format": "jpeg (jpg), png or webp; auto or not given: as -o's extension says, else jpeg",
    "stretch": "zscale (default), linear, sqrt, log, asinh or histeq",
    "zmin": "pixel value drawn black, in data units",
    "zmax": "pixel value drawn white, in data units",
    "min_percent": "black at this percentile of the pixels, 0 to 100",
    "max_percent": "white at this percentile of the pixels, 0 to 100",
    "contrast": "zscale's contrast, 0 < c < 1 (default 0.1)",
    "gamma": "grey levels raised to 1/gamma last (default: 2.5 for zscale, 1 otherwise)",
    "cmap": "colour map: gray (default), viridis, magma, inferno, plasma, cividis, heat, hot, cubehelix",
}
RENDER_FLAGS = {
    "median": "subtract the median and stretch to --percentile",
    "progressive": "progressive JPEG",
    "invert": "white sky and black stars",
}
# What a FITS file's name ends with, compressed or not: the rest of the name is the frame's.
FITS_EXTENSION = re.compile(r"\.(?:fits|fit|fts)(?:\.(?:fz|gz|bz2))?$", re.IGNORECASE)


class CommandError(Exception):
    """A command that cannot do what it was asked: the message, one line for the user; exit status 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="thumbproxy", description="Thumbnails of FITS frames in a Science Archive.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the server")
    serve.add_argument("--host", help="address to listen on (THUMBPROXY_HOST)")
    serve.add_argument("--port", help="port to listen on (THUMBPROXY_PORT)")
    serve.add_argument("--config", help="config file (THUMBPROXY_CONFIG; default config/thumbproxy.toml)")

    demo = commands.add_parser("demo", help="run the server on a generated sample archive: no S3, no network")
    demo.add_argument("--port", help="port to listen on (default 8080)")
    demo.add_argument("--config", help="config file")

    render = commands.add_parser("render", help="render a local FITS file with the server's code")
    render.add_argument("file", type=Path, help="FITS file (.fits or .fits.fz)")
    render.add_argument(
        "-o", "--output", type=Path, help="image to write, .jpg, .png or .webp (default: the file's name, here)"
    )
    # Spelled on the command line with hyphens (--min-percent), in the query with underscores (min_percent).
    for option, meaning in RENDER_OPTIONS.items():
        render.add_argument(f"--{option.replace('_', '-')}", dest=option, help=meaning)
    for flag, meaning in RENDER_FLAGS.items():
        render.add_argument(f"--{flag}", action="store_const", const="true", help=meaning)
    render.add_argument("--config", help="config file")

    sign = commands.add_parser("sign", help="print a thumbnail URL signed with the signing key")
    sign.add_argument("url", help="absolute URL or path, e.g. https://host/123/?image=true&width=300")
    sign.add_argument("--key", help="key to sign with (default: the first of THUMBPROXY_SIGNING_KEY)")
    sign.add_argument("--config", help="config file")
    return parser


def _serve(settings: Settings, announce: Callable[[str], None] = print) -> None:
    from thumbproxy.app import create_app
    from thumbproxy.web.connections import CONNECTIONS
    from thumbproxy.web.serving import CannotListen, serve

    app = create_app(settings)
    app.on_startup.append(_freeze_started)
    try:
        asyncio.run(
            serve(
                app,
                app[CONNECTIONS],
                settings.host,
                settings.port,
                settings.drain_seconds,
                settings.shutdown_timeout,
                announce,
            )
        )
    except CannotListen as error:
        raise CommandError(f"{error}; choose another port with --port" if error.in_use else str(error)) from None


async def _freeze_started(app: web.Application) -> None:
    # What is alive once started (modules, the app's services) lives as long as the process: full
    # collections skip it, where they would otherwise walk all of it for tens of milliseconds.
    gc.freeze()


def _demo(settings: Settings) -> None:
    from thumbproxy.demo.sampledata import demo_archive

    archive_dir = Path(settings.cache_dir) / "demo-archive"
    print(f"Preparing the sample archive in {archive_dir} ...", flush=True)
    basenames = [path.name.split(".")[0] for path in demo_archive(archive_dir)]
    settings = replace(settings, archive_api_url=archive_dir.resolve().as_uri() + "/")
    base = f"http://{settings.host}:{settings.port}"

    def announce(message: str) -> None:
        lines = [f"thumbproxy demo is serving {archive_dir} on {base}/ - try:"]
        lines += [f"  {base}/{name}/?image=true&width=500&height=500" for name in basenames]
        lines += [
            f"  {base}/{basenames[0]}/?image=true&label=Demo&median=true",
            # The red frame of the R, V, B triple: a colour composite of its request.
            f"  {base}/{basenames[3]}/?image=true&color=true&width=500&height=500",
            f"  {base}/{basenames[3]}/?image=true&color=true&stretch=lupton&width=500&height=500",
            # What a dashboard panel shows: the site's newest frame.
            f"  {base}/latest/?site_id=ogg&image=true&width=500&height=500",
            "(Ctrl-C to stop)",
        ]
        print("\n".join(lines), flush=True)

    _serve(settings, announce)


def _render(arguments: argparse.Namespace, settings: Settings) -> None:
    from thumbproxy.render import RenderError, thumbnail_from_file
    from thumbproxy.web.query import parse_query

    given = {name: getattr(arguments, name) for name in (*RENDER_OPTIONS, *RENDER_FLAGS)}
    try:
        query = parse_query(MultiDict({k: v for k, v in given.items() if v is not None}), settings.max_size)
    except ThumbproxyError as error:
        raise CommandError(error.message) from None
    # --format auto, like no --format: the output's extension decides.
    asked = None if arguments.format is None or query.negotiate_format else query.options.format
    output, image_format = _output(arguments.file, arguments.output, asked)
    try:
        image = thumbnail_from_file(arguments.file, replace(query.options, format=image_format), settings.preview_size)
    except RenderError as error:
        raise CommandError(str(error)) from None
    except OSError as error:
        raise CommandError(f"cannot read {arguments.file}: {error.strerror or error}") from None
    try:
        output.write_bytes(image)
    except FileNotFoundError:
        raise CommandError(f"cannot write {output}: there is no directory {output.parent}") from None
    except OSError as error:
        raise CommandError(f"cannot write {output}: {error.strerror or error}") from None
    print(output)


def _output(file: Path, output: Path | None, asked: str | None) -> tuple[Path, str]:
    """Where the thumbnail of file goes and its format, from -o and --format (asked, None if not given).

    Without -o: the file's name without its FITS extensions, in the current directory, with the
    extension of the format. With -o: its extension gives the format, and must agree with --format.
    """
    from thumbproxy.render.formats import EXTENSIONS
    from thumbproxy.render.options import FORMATS, RenderOptions
    from thumbproxy.web.query import FORMAT_ALIASES

    if output is None:
        default = asked or RenderOptions.format
        return Path(FITS_EXTENSION.sub("", file.name) + "." + EXTENSIONS[default]), default
    # The format each image extension names: .jpg, .jpeg, .png, .webp.
    formats_named = {f".{name}": FORMAT_ALIASES.get(name, name) for name in (*FORMAT_ALIASES, *FORMATS)}
    named = formats_named.get(output.suffix.lower())
    image_format = asked or named
    if image_format is None:
        known = ", ".join(formats_named)
        raise CommandError(f"-o {output}: its extension names no image format ({known}); or give --format")
    if named is not None and named != image_format:
        raise CommandError(f"-o {output}: its extension names {named}, but --format is {asked}")
    return output, image_format


def _sign(url: str, key: str | None) -> int:
    """Print the URL signed with this key; returns the exit status (2: no key or not a URL)."""
    if not key:
        print("thumbproxy: no signing key: give --key or set THUMBPROXY_SIGNING_KEY", file=sys.stderr)
        return 2
    if len(key) < MIN_SIGNING_KEY_LENGTH:
        # The server refuses shorter keys, so a URL signed with one could never be served.
        print(f"thumbproxy: --key: must be at least {MIN_SIGNING_KEY_LENGTH} characters", file=sys.stderr)
        return 2
    try:
        print(signed_url(url, key))
    except ValueError as error:
        print(f"thumbproxy: {error}", file=sys.stderr)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `thumbproxy` command; returns the exit status."""
    arguments = _parser().parse_args(argv)
    cli: dict[str, Any] = {"host": getattr(arguments, "host", None), "port": getattr(arguments, "port", None)}
    if arguments.command == "demo":
        cli["host"] = DEMO_HOST
    try:
        settings = load_settings(cli=cli, config_file=arguments.config)
    except SettingsError as error:
        print(f"thumbproxy: {error}", file=sys.stderr)
        return 2
    if arguments.command == "sign":
        return _sign(arguments.url, arguments.key or (settings.signing_keys[0] if settings.signing_keys else None))
    configure_logging(settings.log_level, settings.log_format)
    try:
        if arguments.command == "serve":
            _serve(settings)
        elif arguments.command == "demo":
            _demo(settings)
        else:
            _render(arguments, settings)
    except CommandError as error:
        print(f"thumbproxy: {error}", file=sys.stderr)
        return 2
    return 0
