"""The thumbnail endpoints: /<frame_id>/ and /<basename>/, with or without the trailing slash."""

from urllib.parse import urlencode

from aiohttp import web

from thumbproxy.archive.base import Archive, Frame
from thumbproxy.colorframes import color_listing_filters, select_rvb
from thumbproxy.framechecks import FramePolicy, check_frame
from thumbproxy.thumbnails import Thumbnail, Thumbnailer
from thumbproxy.web import pages
from thumbproxy.web.hotanswers import HOT_ANSWERS
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


def _image(data: bytes) -> web.Response:
    return web.Response(body=data, content_type="image/jpeg")


def _hot_answer(request: web.Request) -> web.Response | None:
    """The lean hit path: an image answered to this very request line before, still valid, else None."""
    hot = request.app[HOT_ANSWERS].get(request.raw_path)
    if hot is None:
        return None
    key, data = hot
    request[SERVED_FROM] = Thumbnail(key, data, "memory")
    return _image(data)


async def _answer(request: web.Request, field: str, value: int | str) -> web.Response:
    """The thumbnail or its URL, for the frame found by this lookup ("id" or "basename")."""
    # The raw query from the request line: building a URL object for it costs a hit more than parsing.
    query = parse_query_string(request.raw_path.partition("?")[2], request.app[MAX_SIZE])
    authorization = request.headers.get("Authorization")
    archive = request.app[ARCHIVE]
    if isinstance(value, int):
        frame = await archive.frame(value, authorization)
    else:
        frame = await archive.frame_by_basename(value, authorization)
    check_frame(frame, request.app[FRAME_POLICY], query.color)
    thumbnailer = request.app[THUMBNAILER]
    # Rendered in JSON mode too: a frame that cannot be rendered fails now, and the URL works when followed.
    if query.color:
        thumbnail = await thumbnailer.color_thumbnail(await _color_frames(request, frame), query.options)
    else:
        thumbnail = await thumbnailer.thumbnail(frame, query.options)
    request[SERVED_FROM] = thumbnail
    if query.image:
        if not query.color:
            request.app[HOT_ANSWERS].remember(request.raw_path, field, value, frame, thumbnail.key)
        return _image(thumbnail.data)
    url = await thumbnailer.s3_url(thumbnail) or thumbnail_url(request, frame, query)
    return web.json_response({"url": url, "propid": frame.proposal_id})


async def by_frame_id(request: web.Request) -> web.Response:
    """Thumbnail of the frame with this archive id."""
    hot = _hot_answer(request)
    return hot if hot is not None else await _answer(request, "id", int(request.match_info["frame_id"]))


async def by_basename(request: web.Request) -> web.Response:
    """Thumbnail of the one frame with this basename."""
    hot = _hot_answer(request)
    return hot if hot is not None else await _answer(request, "basename", request.match_info["basename"])


def add_routes(app: web.Application) -> None:
    """Register every route.

    aiohttp tries the routes under one path prefix in the order they were added, and every
    thumbnail route and `/` share the prefix `/`: the thumbnail routes come first, so a hit tries
    the fewest. Fixed paths such as /healthz are found by their full path before any pattern.
    """
    for suffix in ("/", ""):
        app.router.add_get(f"/{FRAME_ID}{suffix}", by_frame_id)
        app.router.add_get(f"/{BASENAME}{suffix}", by_basename)
    app.router.add_get("/", pages.index)
    app.router.add_get("/robots.txt", pages.robots)
    app.router.add_get("/favicon.ico", pages.favicon)
    add_operations_routes(app)
