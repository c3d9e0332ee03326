"""The small fixed answers: landing page, robots.txt, favicon."""

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from importlib import resources
from urllib.parse import quote, urlencode

from aiohttp import web

from thumbproxy.archive.base import Frame
from thumbproxy.archive.local import LocalArchive
from thumbproxy.errors import ThumbproxyError
from thumbproxy.pipeline.colorframes import COLOR_REDUCTION_LEVEL, select_rvb
from thumbproxy.pipeline.framechecks import FramePolicy, check_frame
from thumbproxy.render.display import DEFAULT_CONTRAST, DEFAULT_MAX_PERCENT, DEFAULT_MIN_PERCENT
from thumbproxy.render.options import DEFAULT_PERCENTILE, DEFAULT_QUALITY, DEFAULT_SIZE
from thumbproxy.render.palette import COLORMAPS
from thumbproxy.render.stretch import GAMMA
from thumbproxy.web.query import MAX_LABEL_LENGTH, MAX_QUALITY

# The demo's star field: the examples work as written against `thumbproxy demo`.
EXAMPLE_BASENAME = "ogg0m404-kb82-20190321-0273-e91"
GALLERY_LIMIT = 24
# Thumbnails at the default size, shown pixel for pixel.
TILE_SIZE = DEFAULT_SIZE
LARGE_SIZE = 1000
# The parameters' example pictures, small beside their table rows.
EXAMPLE_SIZE = 120


@dataclass(frozen=True)
class Gallery:
    """A local archive whose frames the landing page shows, and the checks deciding which thumbnails they get."""

    archive: LocalArchive
    policy: FramePolicy
    color_filters: Sequence[Sequence[str]]


# Set only when the archive is a local directory: a remote archive is never listed.
GALLERY = web.AppKey("gallery", Gallery)


@dataclass(frozen=True)
class Parameter:
    """A query parameter as the page documents it: what it does, its default, and an example query."""

    name: str
    meaning: str
    default: str
    example: Mapping[str, str]
    # The example asks for a colour composite, so it is shown on a frame that has one.
    colour: bool = False


PARAMETERS = (
    Parameter(
        "width",
        "Largest width in pixels; the aspect ratio is kept and frames are never upscaled.",
        str(DEFAULT_SIZE),
        {"width": "120"},
    ),
    Parameter("height", "Largest height in pixels, likewise.", str(DEFAULT_SIZE), {"height": "120"}),
    Parameter(
        "label",
        f"White text in the lower-left corner, shrunk to fit; up to {MAX_LABEL_LENGTH} characters.",
        "none",
        {"label": "M42"},
    ),
    Parameter("image", "Answer with the JPEG itself instead of JSON.", "JSON", {"image": "true"}),
    Parameter(
        "stretch",
        "<code>zscale</code> (fits2image&rsquo;s look), <code>linear</code>, <code>sqrt</code>, <code>log</code>, "
        "<code>asinh</code> or <code>histeq</code>; colour composites also take <code>lupton</code>, an asinh "
        "composite that keeps star colours.",
        "zscale",
        {"stretch": "asinh"},
    ),
    Parameter(
        "zmin",
        "Pixel value drawn black, in data units; given alone, white comes from the stretch.",
        "the stretch&rsquo;s",
        {"zmin": "1020"},
    ),
    Parameter(
        "zmax",
        "Pixel value drawn white, in data units; above <code>zmin</code>.",
        "the stretch&rsquo;s",
        {"zmax": "1200"},
    ),
    Parameter(
        "min_percent",
        "Black at this percentile of the frame&rsquo;s pixels, 0 to 100 (instead of <code>zmin</code>).",
        f"zscale: the median; others: {DEFAULT_MIN_PERCENT:g}",
        {"stretch": "log", "min_percent": "50"},
    ),
    Parameter(
        "max_percent",
        "White at this percentile, above <code>min_percent</code> (instead of <code>zmax</code>).",
        f"zscale&rsquo;s; others: {DEFAULT_MAX_PERCENT:g}",
        {"stretch": "sqrt", "max_percent": "99.9"},
    ),
    Parameter(
        "contrast",
        "zscale&rsquo;s contrast, 0 &lt; c &lt; 1: larger brings white down toward the sky.",
        f"{DEFAULT_CONTRAST:g}",
        {"contrast": "0.3"},
    ),
    Parameter(
        "gamma",
        "Grey levels raised to 1/gamma last, 0 &lt; gamma &le; 10: larger lifts faint light.",
        f"zscale: {GAMMA:g}; others: 1",
        {"gamma": "4"},
    ),
    Parameter("invert", "White sky and black stars, as on printed charts.", "false", {"invert": "true"}),
    Parameter(
        "cmap",
        "A colour map for single frames: "
        + ", ".join(f"<code>{name}</code>" for name in ("gray", *COLORMAPS))
        + "; the answer is then RGB.",
        "gray",
        {"cmap": "inferno"},
    ),
    Parameter(
        "median",
        "Subtract the median and stretch to <code>percentile</code>: faint structure stands out.",
        "false",
        {"median": "true"},
    ),
    Parameter(
        "percentile",
        "Upper percentile of the <code>median</code> stretch, 0 &lt; p &le; 100.",
        str(DEFAULT_PERCENTILE),
        {"median": "true", "percentile": "98"},
    ),
    Parameter(
        "format",
        "<code>jpeg</code>, <code>png</code>, <code>webp</code>, or <code>auto</code>: WebP for "
        "clients whose <code>Accept</code> names it, JPEG for the others.",
        "jpeg",
        {"format": "auto"},
    ),
    Parameter("quality", f"JPEG and WebP quality, 1 to {MAX_QUALITY}.", str(DEFAULT_QUALITY), {"quality": "10"}),
    Parameter("progressive", "Progressive JPEG.", "false", {"progressive": "true"}),
    Parameter(
        "color",
        "Colour composite of the R, V and B frames of the frame&rsquo;s observing request "
        f"(reduction level {COLOR_REDUCTION_LEVEL}).",
        "false",
        {"color": "true"},
        colour=True,
    ),
    Parameter(
        "weights",
        "Colour only: red, visual and blue multipliers of each channel&rsquo;s light above its black point, "
        "before the stretch; <code>1,1,2</code> doubles the blue.",
        "1,1,1",
        {"color": "true", "weights": "1,1,2"},
        colour=True,
    ),
)

STYLE = """
:root { color-scheme: dark; --bg: #0b0e14; --panel: #131824; --line: #232b3b; --text: #e4e8f1;
  --muted: #8e99ad; --accent: #f5b94a; --code: #9ecbff; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--text);
  font: 16px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 40px 24px 64px; }
header { border-bottom: 1px solid var(--line); padding-bottom: 18px; }
h1 { margin: 0; font-size: 34px; letter-spacing: -0.5px; }
h1 span { color: var(--accent); }
.lead { margin: 4px 0 12px; color: var(--muted); font-size: 18px; }
nav a { margin-right: 18px; font-size: 15px; text-decoration: none; }
nav a:hover { text-decoration: underline; }
h2 { margin: 40px 0 12px; font-size: 21px; }
h2 small { color: var(--muted); font-weight: normal; font-size: 15px; margin-left: 8px; }
p { margin: 8px 0; }
a { color: var(--code); }
code, pre { font-family: ui-monospace, "SF Mono", Menlo, Consolas, "DejaVu Sans Mono", monospace; font-size: 14px; }
code { color: var(--code); }
pre { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px;
  overflow-x: auto; margin: 12px 0; line-height: 1.6; }
pre .note { color: var(--muted); }
table { width: 100%; border-collapse: collapse; font-size: 15px; }
th, td { text-align: left; vertical-align: top; padding: 8px 10px; border-bottom: 1px solid var(--line); }
th { color: var(--muted); font-weight: 600; font-size: 13px; text-transform: uppercase; letter-spacing: 0.6px; }
td:first-child code { color: var(--accent); font-weight: 600; }
td code, td:nth-child(3), td:nth-child(4), .endpoints td:first-child { white-space: nowrap; }
.muted { color: var(--muted); }
.frames { display: grid; gap: 14px; }
figure.frame { margin: 0; display: flex; flex-wrap: wrap; gap: 16px; background: var(--panel);
  border: 1px solid var(--line); border-radius: 10px; padding: 14px; }
figure.frame figcaption { flex: 0 0 170px; color: var(--muted); font-size: 14px; line-height: 1.7; }
figure.frame figcaption code { display: block; margin-bottom: 6px; color: var(--text); font-size: 14px;
  font-weight: 600; line-height: 1.4; overflow-wrap: anywhere; }
.shots { display: flex; flex-wrap: wrap; gap: 14px; }
.shot { display: block; text-decoration: none; text-align: center; }
.shot img { display: block; background: #000; border-radius: 6px; object-fit: contain; }
.shot:hover img { outline: 2px solid var(--accent); }
.shot code { display: block; margin-top: 6px; color: var(--muted); font-size: 12px; }
footer { margin-top: 48px; padding-top: 16px; border-top: 1px solid var(--line); color: var(--muted);
  font-size: 14px; }
"""


@dataclass(frozen=True)
class Examples:
    """The frames the parameters' example pictures show: a single frame, and one with a colour composite."""

    single: Frame | None
    colour: Frame | None


def _parameter_rows(examples: Examples | None) -> str:
    """The parameters' table rows, each example drawn on examples' frames when there are any."""
    rows = []
    for parameter in PARAMETERS:
        query = escape(urlencode(parameter.example, quote_via=quote))
        frame = None if examples is None else examples.colour if parameter.colour else examples.single
        picture = "" if frame is None else _shot(frame, parameter.name, query, parameter.example, EXAMPLE_SIZE)
        rows.append(
            f"<tr><td><code>{parameter.name}</code></td><td>{parameter.meaning}</td>"
            f"<td><code>{parameter.default}</code></td><td>{picture or f'<code>?{query}</code>'}</td></tr>"
        )
    return "\n".join(rows)


ENDPOINTS = f"""
<h2 id="endpoints">Endpoints</h2>
<table class="endpoints">
<tr><th>request</th><th>answer</th></tr>
<tr><td><code>GET /&lt;frame_id&gt;/</code><br><code>GET /&lt;basename&gt;/</code></td>
<td>JSON <code>{{"url": ..., "propid": ...}}</code>: <code>url</code> answers with the JPEG,
<code>propid</code> is the frame&rsquo;s proposal. The trailing slash is optional.</td></tr>
<tr><td>the same with <code>?image=true</code></td><td>the image itself (<code>image/jpeg</code>, or as
<code>format</code> asks), with an <code>ETag</code> and a <code>Cache-Control</code> a CDN can follow</td></tr>
<tr><td><code>GET /healthz</code>, <code>GET /readyz</code></td><td>liveness and readiness, as JSON</td></tr>
<tr><td><code>GET /metrics</code></td><td>Prometheus metrics: renders, cache levels, archive and S3 calls</td></tr>
</table>
<pre>GET /{EXAMPLE_BASENAME}/?width=500&amp;height=500&amp;median=true
<span class="note">200</span> {{"url": "https://&hellip;/1234/?height=500&amp;image=true&amp;median=true&amp;width=500",
     "propid": "LCO2019A-001"}}

GET /{EXAMPLE_BASENAME}/?image=true&amp;label=M42
<span class="note">200 image/jpeg</span></pre>
<p>Send your archive <code>Authorization</code> header (<code>Token &hellip;</code> or <code>Bearer &hellip;</code>)
to see proprietary frames; it is passed to the archive unchanged and never logged.</p>
"""


def _reference(examples: Examples | None) -> str:
    """The parameters, errors and what a bad request answers; with example pictures of examples' frames."""
    click = "; click an example for a larger one" if examples else ""
    return f"""
<h2 id="parameters">Query parameters
<small>a bad value answers 400 naming it; unknown ones are ignored{click}</small></h2>
<table>
<tr><th>parameter</th><th>meaning</th><th>default</th><th>example</th></tr>
{_parameter_rows(examples)}
</table>
<p class="muted">Booleans accept <code>true/false</code>, <code>1/0</code>, <code>yes/no</code>, <code>on/off</code>
in any case. Sizes go from 1 to the server&rsquo;s <code>THUMBPROXY_MAX_SIZE</code>.</p>

<h2 id="errors">Errors</h2>
<p>JSON <code>{{"message": ...}}</code> with 400 bad parameter or a frame that gets no thumbnail,
401/403 as the archive answered, 404 not found or not visible to you, 413 FITS file too large,
422 unrenderable FITS file, 429 archive throttling (see <code>Retry-After</code>),
502 archive failure, 503 busy or unable to write (retry), 504 archive timeout.</p>
"""


def _page(gallery_html: str, examples: Examples | None) -> str:
    frames_link = '<a href="#frames">Frames</a>' if gallery_html else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>thumbproxy</title>
<style>{STYLE}</style></head>
<body><main>
<header>
<h1>thumb<span>proxy</span></h1>
<p class="lead">JPEG thumbnails of the FITS frames in a Science Archive, by frame id or basename.</p>
<nav><a href="#endpoints">Endpoints</a>{frames_link}<a href="#parameters">Parameters</a>
<a href="#errors">Errors</a></nav>
</header>
{ENDPOINTS}{gallery_html}{_reference(examples)}
<footer><a href="/healthz">/healthz</a> &middot; <a href="/readyz">/readyz</a> &middot; <a href="/metrics">/metrics</a>
</footer>
</main></body></html>
"""


INDEX_HTML = _page("", None)


def _image_url(frame: Frame, parameters: Mapping[str, str]) -> str:
    # The id rather than the basename: any file name gets a working URL.
    return f"/{frame.id}/?" + urlencode({"image": "true", **parameters}, quote_via=quote)


def _shot(frame: Frame, name: str, query: str, parameters: Mapping[str, str], size: int = TILE_SIZE) -> str:
    """One thumbnail, the query that made it under it, linked to a large rendering of the same."""
    large = {**parameters, "width": str(LARGE_SIZE), "height": str(LARGE_SIZE)}
    return (
        f'<a class="shot" href="{escape(_image_url(frame, large))}">'
        f'<img src="{escape(_image_url(frame, parameters))}" alt="{escape(frame.basename)}, {name}"'
        f' width="{size}" height="{size}" loading="lazy"><code>{query}</code></a>'
    )


def _makes_thumbnail(frame: Frame, policy: FramePolicy, color: bool) -> bool:
    try:
        check_frame(frame, policy, color)
    except ThumbproxyError:
        return False
    return True


def _colour_frames(frames: Sequence[Frame], gallery: Gallery) -> set[int]:
    """Ids of the red frames whose request has a full R, V, B set: those get a colour thumbnail."""
    by_request: dict[int, list[Frame]] = defaultdict(list)
    for frame in frames:
        if frame.request_id and frame.reduction_level == COLOR_REDUCTION_LEVEL:
            by_request[frame.request_id].append(frame)
    chosen = set()
    for frames_of_request in by_request.values():
        for frame in frames_of_request:
            if frame.primary_optical_element not in gallery.color_filters[0]:
                continue
            if not _makes_thumbnail(frame, gallery.policy, color=True):
                continue
            try:
                select_rvb(frame, frames_of_request, gallery.color_filters)
            except ThumbproxyError:
                continue
            chosen.add(frame.id)
    return chosen


def _frame_figure(frame: Frame, colour: bool) -> str:
    label = str(frame.record.get("target_name") or frame.basename)[:MAX_LABEL_LENGTH]
    shots = [
        _shot(frame, "plain", "defaults", {}),
        _shot(frame, "labelled", "label=&hellip;", {"label": label}),
        _shot(frame, "median", "median=true", {"median": "true"}),
    ]
    if colour:
        shots.append(_shot(frame, "colour", "color=true", {"color": "true"}))
    details = [
        frame.primary_optical_element,
        frame.configuration_type,
        f"request {frame.request_id}" if frame.request_id else None,
    ]
    caption = "<br>".join(escape(detail) for detail in details if detail)
    return (
        f'<figure class="frame"><figcaption><code>{escape(frame.basename)}</code> {caption}</figcaption>'
        f'\n<div class="shots">{"".join(shots)}</div></figure>'
    )


async def _gallery_page(gallery: Gallery) -> str:
    """The page with the archive's frames as thumbnails, and the parameters' examples drawn from them; a note
    instead of the frames when the directory cannot be listed."""
    heading = '<h2 id="frames">Frames in this archive'
    try:
        frames = await gallery.archive.frames({}, None)
    except ThumbproxyError as error:
        return _page(f'{heading}</h2>\n<p class="muted">{escape(error.message)}</p>\n', None)
    usable = [frame for frame in frames if _makes_thumbnail(frame, gallery.policy, color=False)]
    shown = usable[:GALLERY_LIMIT]
    colour = _colour_frames(frames, gallery)
    count = f"{len(shown)} of {len(usable)}" if len(shown) < len(usable) else str(len(usable))
    figures = "\n".join(_frame_figure(frame, frame.id in colour) for frame in shown)
    named = [frame for frame in usable if frame.basename == EXAMPLE_BASENAME]
    examples = Examples(
        single=next(iter(named or usable), None),
        colour=next((frame for frame in frames if frame.id in colour), None),
    )
    return _page(
        f"{heading} <small>{count}; click a thumbnail for a {LARGE_SIZE} px one</small></h2>\n"
        f'<div class="frames">\n{figures}\n</div>\n',
        examples,
    )


async def index(request: web.Request) -> web.Response:
    """What this service is and how to call it, with the frames of a local archive as examples."""
    gallery = request.app.get(GALLERY)
    text = INDEX_HTML if gallery is None else await _gallery_page(gallery)
    return web.Response(text=text, content_type="text/html")


ROBOTS_TXT = "User-agent: *\nDisallow: /\n"


async def robots(request: web.Request) -> web.Response:
    """Crawlers have no business rendering thumbnails."""
    return web.Response(text=ROBOTS_TXT, content_type="text/plain")


FAVICON = resources.files("thumbproxy").joinpath("static/favicon.ico").read_bytes()


async def favicon(request: web.Request) -> web.Response:
    """The service's icon, so browsers stop asking for a thumbnail of frame "favicon.ico"."""
    return web.Response(body=FAVICON, content_type="image/x-icon", headers={"Cache-Control": "public, max-age=86400"})
