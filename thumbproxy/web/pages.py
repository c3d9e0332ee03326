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
from thumbproxy.render.options import DEFAULT_PERCENTILE, DEFAULT_QUALITY, DEFAULT_SIZE
from thumbproxy.web.query import MAX_LABEL_LENGTH, MAX_QUALITY

# The demo's star field: the examples work as written against `thumbproxy demo`.
EXAMPLE_BASENAME = "ogg0m404-kb82-20190321-0273-e91"
GALLERY_LIMIT = 24
# Thumbnails at the default size, shown pixel for pixel.
TILE_SIZE = DEFAULT_SIZE
LARGE_SIZE = 1000


@dataclass(frozen=True)
class Gallery:
    """A local archive whose frames the landing page shows, and the checks deciding which thumbnails they get."""

    archive: LocalArchive
    policy: FramePolicy
    color_filters: Sequence[Sequence[str]]


# Set only when the archive is a local directory: a remote archive is never listed.
GALLERY = web.AppKey("gallery", Gallery)

# name, meaning, default, example query
PARAMETERS = (
    (
        "width",
        "Largest width in pixels; the aspect ratio is kept and frames are never upscaled.",
        str(DEFAULT_SIZE),
        "width=500",
    ),
    ("height", "Largest height in pixels, likewise.", str(DEFAULT_SIZE), "height=500"),
    (
        "label",
        f"White text in the lower-left corner, shrunk to fit; up to {MAX_LABEL_LENGTH} characters.",
        "none",
        "label=M42",
    ),
    ("image", "Answer with the JPEG itself instead of JSON.", "JSON", "image=true"),
    (
        "median",
        "Subtract the median and stretch to <code>percentile</code>: faint structure stands out.",
        "false",
        "median=true",
    ),
    (
        "percentile",
        "Upper percentile of the <code>median</code> stretch, 0 &lt; p &le; 100.",
        str(DEFAULT_PERCENTILE),
        "median=true&amp;percentile=98",
    ),
    (
        "format",
        "<code>jpeg</code>, <code>png</code>, <code>webp</code>, or <code>auto</code>: WebP for "
        "clients whose <code>Accept</code> names it, JPEG for the others.",
        "jpeg",
        "format=auto",
    ),
    ("quality", f"JPEG and WebP quality, 1 to {MAX_QUALITY}.", str(DEFAULT_QUALITY), "quality=90"),
    ("progressive", "Progressive JPEG.", "false", "progressive=true"),
    (
        "color",
        "Colour composite of the R, V and B frames of the frame&rsquo;s observing request "
        f"(reduction level {COLOR_REDUCTION_LEVEL}).",
        "false",
        "color=true",
    ),
    (
        "stretch",
        "Colour only: <code>zscale</code> draws each channel with the single-frame curve, all on one "
        "scale so the sky is neutral; <code>lupton</code> is an asinh composite that keeps star colours.",
        "zscale",
        "color=true&amp;stretch=lupton",
    ),
    (
        "weights",
        "Colour only: red, visual and blue multipliers of each channel&rsquo;s light above its black point, "
        "before the stretch; <code>1,1,2</code> doubles the blue.",
        "1,1,1",
        "color=true&amp;weights=1,1,2",
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


def _parameter_rows() -> str:
    return "\n".join(
        f"<tr><td><code>{name}</code></td><td>{meaning}</td><td><code>{default}</code></td>"
        f"<td><code>?{example}</code></td></tr>"
        for name, meaning, default, example in PARAMETERS
    )


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

REFERENCE = f"""
<h2 id="parameters">Query parameters <small>a bad value answers 400 naming it; unknown ones are ignored</small></h2>
<table>
<tr><th>parameter</th><th>meaning</th><th>default</th><th>example</th></tr>
{_parameter_rows()}
</table>
<p class="muted">Booleans accept <code>true/false</code>, <code>1/0</code>, <code>yes/no</code>, <code>on/off</code>
in any case. Sizes go from 1 to the server&rsquo;s <code>THUMBPROXY_MAX_SIZE</code>.</p>

<h2 id="errors">Errors</h2>
<p>JSON <code>{{"message": ...}}</code> with 400 bad parameter or a frame that gets no thumbnail,
401/403 as the archive answered, 404 not found or not visible to you, 413 FITS file too large,
422 unrenderable FITS file, 429 archive throttling (see <code>Retry-After</code>),
502 archive failure, 503 busy or unable to write (retry), 504 archive timeout.</p>
"""


def _page(gallery_html: str) -> str:
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
{ENDPOINTS}{gallery_html}{REFERENCE}
<footer><a href="/healthz">/healthz</a> &middot; <a href="/readyz">/readyz</a> &middot; <a href="/metrics">/metrics</a>
</footer>
</main></body></html>
"""


INDEX_HTML = _page("")


def _image_url(frame: Frame, parameters: Mapping[str, str]) -> str:
    # The id rather than the basename: any file name gets a working URL.
    return f"/{frame.id}/?" + urlencode({"image": "true", **parameters}, quote_via=quote)


def _shot(frame: Frame, name: str, query: str, parameters: Mapping[str, str]) -> str:
    """One thumbnail, the query that made it under it, linked to a large rendering of the same."""
    large = {**parameters, "width": str(LARGE_SIZE), "height": str(LARGE_SIZE)}
    return (
        f'<a class="shot" href="{escape(_image_url(frame, large))}">'
        f'<img src="{escape(_image_url(frame, parameters))}" alt="{escape(frame.basename)}, {name}"'
        f' width="{TILE_SIZE}" height="{TILE_SIZE}" loading="lazy"><code>{query}</code></a>'
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


async def _gallery_html(gallery: Gallery) -> str:
    """The archive's frames as thumbnails; a note instead when the directory cannot be listed."""
    heading = '<h2 id="frames">Frames in this archive'
    try:
        frames = await gallery.archive.frames({}, None)
    except ThumbproxyError as error:
        return f'{heading}</h2>\n<p class="muted">{escape(error.message)}</p>\n'
    usable = [frame for frame in frames if _makes_thumbnail(frame, gallery.policy, color=False)]
    shown = usable[:GALLERY_LIMIT]
    colour = _colour_frames(frames, gallery)
    count = f"{len(shown)} of {len(usable)}" if len(shown) < len(usable) else str(len(usable))
    figures = "\n".join(_frame_figure(frame, frame.id in colour) for frame in shown)
    return (
        f"{heading} <small>{count}; click a thumbnail for a {LARGE_SIZE} px one</small></h2>\n"
        f'<div class="frames">\n{figures}\n</div>\n'
    )


async def index(request: web.Request) -> web.Response:
    """What this service is and how to call it, with the frames of a local archive as examples."""
    gallery = request.app.get(GALLERY)
    text = INDEX_HTML if gallery is None else _page(await _gallery_html(gallery))
    return web.Response(text=text, content_type="text/html")


ROBOTS_TXT = "User-agent: *\nDisallow: /\n"


async def robots(request: web.Request) -> web.Response:
    """Crawlers have no business rendering thumbnails."""
    return web.Response(text=ROBOTS_TXT, content_type="text/plain")


FAVICON = resources.files("thumbproxy").joinpath("static/favicon.ico").read_bytes()


async def favicon(request: web.Request) -> web.Response:
    """The service's icon, so browsers stop asking for a thumbnail of frame "favicon.ico"."""
    return web.Response(body=FAVICON, content_type="image/x-icon", headers={"Cache-Control": "public, max-age=86400"})
