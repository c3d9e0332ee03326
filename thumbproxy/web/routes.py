"""The thumbnail endpoints: /<frame_id>/ and /<basename>/, with or without the trailing slash."""

from urllib.parse import urlencode

from aiohttp import web

from thumbproxy.archive.base import Archive, Frame
from thumbproxy.colorframes import color_listing_filters, select_rvb
from thumbproxy.framechecks import FramePolicy, check_frame
from thumbproxy.thumbnails import Thumbnailer
from thumbproxy.web import pages
from thumbproxy.web.observe import SERVED_FROM
from thumbproxy.web.operations import add_operations_routes
from thumbproxy.web.query import ThumbnailQuery, canonical_query, parse_query_string

ARCHIVE = web.AppKey("archive", Archive)
THUMBNAILER = web.AppKey("thumbnailer", Thumbnailer)
FRAME_POLICY = web.AppKey("frame_policy", FramePolicy)
MAX_SIZE = web.AppKey("max_size", int)
PUBLIC_URL = web.AppKey("public_url", str)
COLOR_FILTERS = web.AppKey("color_filters", tuple)

FRAME_ID = r"{frame_id:\d{1,18}}"
BASENAME = r"{basename:[A-Za-z0-9._-]{1,200}}"


def thumbnail_url(request: web.Request, frame: Frame, query: ThumbnailQuery) -> str:
    """An absolute URL of this service that answers with the same thumbnail's image."""
    base = request.app[PUBLIC_URL] or str(request.url.origin())
    image_query = canonical_query(ThumbnailQuery(options=query.options, color=query.color, image=True))
    return f"{base}/{frame.id}/?{urlencode(image_query)}"


async def _color_frames(request: web.Request, frame: Frame) -> list[Frame]:
    """Red, visual and blue frames of the frame's request, among those the caller may see."""
    authorization = request.headers.get("Authorization")
    candidates = await request.app[ARCHIVE].frames(color_listing_filters(frame), authorization)
    return select_rvb(frame, candidates, request.app[COLOR_FILTERS])


async def _answer(request: web.Request, frame: Frame, query: ThumbnailQuery) -> web.Response:
    check_frame(frame, request.app[FRAME_POLICY], query.color)
    thumbnailer = request.app[THUMBNAILER]
    # Rendered in JSON mode too: a frame that cannot be rendered fails now, and the URL works when followed.
    if query.color:
        thumbnail = await thumbnailer.color_thumbnail(await _color_frames(request, frame), query.options)
    else:
        thumbnail = await thumbnailer.thumbnail(frame, query.options)
    request[SERVED_FROM] = thumbnail
    if query.image:
        return web.Response(body=thumbnail.data, content_type="image/jpeg")
    url = await thumbnailer.s3_url(thumbnail) or thumbnail_url(request, frame, query)
    return web.json_response({"url": url, "propid": frame.proposal_id})


def _query(request: web.Request) -> ThumbnailQuery:
    # The raw query from the request line: building a URL object for it costs a hit more than parsing.
    return parse_query_string(request.raw_path.partition("?")[2], request.app[MAX_SIZE])


async def by_frame_id(request: web.Request) -> web.Response:
    """Thumbnail of the frame with this archive id."""
    query = _query(request)
    frame_id = int(request.match_info["frame_id"])
    frame = await request.app[ARCHIVE].frame(frame_id, request.headers.get("Authorization"))
    return await _answer(request, frame, query)


async def by_basename(request: web.Request) -> web.Response:
    """Thumbnail of the one frame with this basename."""
    query = _query(request)
    basename = request.match_info["basename"]
    frame = await request.app[ARCHIVE].frame_by_basename(basename, request.headers.get("Authorization"))
    return await _answer(request, frame, query)


def add_routes(app: web.Application) -> None:
    """Register every route; fixed paths before the patterns that would also match them."""
    app.router.add_get("/", pages.index)
    app.router.add_get("/robots.txt", pages.robots)
    app.router.add_get("/favicon.ico", pages.favicon)
    add_operations_routes(app)
    for suffix in ("/", ""):
        app.router.add_get(f"/{FRAME_ID}{suffix}", by_frame_id)
        app.router.add_get(f"/{BASENAME}{suffix}", by_basename)
