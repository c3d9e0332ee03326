"""The small fixed answers: landing page, robots.txt, favicon."""

from importlib import resources

from aiohttp import web

INDEX_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>thumbproxy</title></head>
<body>
<h1>thumbproxy</h1>
<p>Thumbnails of FITS frames held in a Science Archive.</p>
<ul>
<li><code>GET /&lt;frame_id&gt;/</code> or <code>GET /&lt;basename&gt;/</code>:
JSON <code>{"url": ..., "propid": ...}</code>; add <code>?image=true</code> for the JPEG itself.</li>
<li>Parameters: <code>width</code>, <code>height</code> (default 200), <code>label</code>, <code>median</code>,
<code>percentile</code> (default 99.5), <code>quality</code> (default 80), <code>progressive</code>,
<code>color</code>.</li>
<li>Send your archive <code>Authorization</code> header to see proprietary frames.</li>
</ul>
</body></html>
"""

ROBOTS_TXT = "User-agent: *\nDisallow: /\n"


async def index(request: web.Request) -> web.Response:
    """What this service is and how to call it."""
    return web.Response(text=INDEX_HTML, content_type="text/html")


async def robots(request: web.Request) -> web.Response:
    """Crawlers have no business rendering thumbnails."""
    return web.Response(text=ROBOTS_TXT, content_type="text/plain")


FAVICON = resources.files("thumbproxy").joinpath("static/favicon.ico").read_bytes()


async def favicon(request: web.Request) -> web.Response:
    """The service's icon, so browsers stop asking for a thumbnail of frame "favicon.ico"."""
    return web.Response(body=FAVICON, content_type="image/x-icon",
                        headers={"Cache-Control": "public, max-age=86400"})
