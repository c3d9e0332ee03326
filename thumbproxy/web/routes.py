"""The thumbnail endpoints: /<frame_id>/ and /<basename>/, with or without the trailing slash."""

import re
from collections.abc import Sequence
from dataclasses import replace
from urllib.parse import parse_qsl, urlencode

from aiohttp import hdrs, web
from prometheus_client import Counter

from thumbproxy.archive.base import Archive, Frame
from thumbproxy.errors import ThumbproxyError
from thumbproxy.pipeline.colorframes import color_listing_filters, select_rvb
from thumbproxy.pipeline.framechecks import FramePolicy, check_frame
from thumbproxy.pipeline.latest import LatestFrames
from thumbproxy.pipeline.thumbnails import Thumbnailer
from thumbproxy.support.deadline import request_deadline
from thumbproxy.web import pages
from thumbproxy.web.caching import CACHE_POLICY, PRIVATE, etag, image_headers, not_modified
from thumbproxy.web.hotanswers import HOT_ANSWERS
from thumbproxy.web.observe import SERVED_FROM, Observation, Served
from thumbproxy.web.operations import add_operations_routes
from thumbproxy.web.query import KNOWN_PARAMETERS, ThumbnailQuery, accepts_webp, canonical_query, parse_query_string
from thumbproxy.web.signing import UrlSigner

ARCHIVE = web.AppKey("archive", Archive)
THUMBNAILER = web.AppKey("thumbnailer", Thumbnailer)
FRAME_POLICY = web.AppKey("frame_policy", FramePolicy)
MAX_SIZE = web.AppKey("max_size", int)
PUBLIC_URL = web.AppKey("public_url", str)
ALLOWED_HOSTS = web.AppKey("allowed_hosts", frozenset)
COLOR_FILTERS: web.AppKey[Sequence[Sequence[str]]] = web.AppKey("color_filters", tuple)
REQUEST_TIMEOUT = web.AppKey("request_timeout", float)
LATEST = web.AppKey("latest", LatestFrames)
# None unless THUMBPROXY_SIGNING_KEY is set.
SIGNER = web.AppKey[UrlSigner | None]("signer")
SIGNATURE_FAILURES = web.AppKey("signature_failures", Counter)

# /latest/ parameters that are not archive filters: ours, the signature, paging, and cache busters (_=...).
NOT_FRAME_FILTERS = KNOWN_PARAMETERS | {"sig", "ordering", "limit", "offset"}

PREFLIGHT_HEADERS = "Authorization, If-None-Match, X-Request-ID"
# Browsers cap this (Chromium at 2 hours) but ask less often with it.
PREFLIGHT_MAX_AGE = 86400

# A DNS name, IPv4 or [IPv6] address, and an optional port; nothing that could add a path or user.
HOST = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]{2,45}\])(?::(?P<port>[0-9]{1,5}))?")
# One pattern for both lookups, so a basename is not first tried as a frame id: an archive id
# (1 to 18 ASCII digits; \d would also take other scripts' digits, minting more URLs for one
# frame), else a basename.
FRAME = r"{frame:[A-Za-z0-9._-]{1,200}}"
FRAME_ID = re.compile(r"[0-9]{1,18}")


def thumbnail_url(request: web.Request, frame: Frame, query: ThumbnailQuery) -> str:
    """An absolute URL of this service that answers with the same thumbnail's image (signed, with signing on)."""
    base = request.app[PUBLIC_URL] or f"{request.scheme}://{_host(request)}"
    image_query = canonical_query(replace(query, image=True))
    url = f"{base}/{frame.id}/?{urlencode(image_query)}"
    signer = request.app[SIGNER]
    return url if signer is None else signer.sign_url(url)


def _names_this_service(request: web.Request) -> bool:
    """Whether a URL thumbnail_url builds for this request names this service for everyone: it comes from
    THUMBPROXY_PUBLIC_URL, or from a Host in THUMBPROXY_ALLOWED_HOSTS. From any other Host (or an absolute
    request target) it names whatever the caller said, which a shared cache must not hand to others."""
    return bool(request.app[PUBLIC_URL]) or request.host.lower() in request.app[ALLOWED_HOSTS]


def _host(request: web.Request) -> str:
    """The request's Host, if it is a plain host[:port]: it becomes part of a URL handed out and cached."""
    host = request.host
    match = HOST.fullmatch(host)
    if match is None or (match["port"] is not None and not 0 < int(match["port"]) < 65536):
        raise ThumbproxyError(400, "Invalid Host header")
    return host


def _check_signature(request: web.Request, app: web.Application) -> None:
    """With signing on, a thumbnail URL must carry a valid sig=, so nobody mints parameter combinations."""
    signer = app[SIGNER]
    if signer is None:
        return
    path, _, raw_query = request.raw_path.partition("?")
    if not signer.verify(path, raw_query):
        app[SIGNATURE_FAILURES].inc()
        raise ThumbproxyError(403, "This URL needs a valid signature (sig=)")


async def _color_frames(request: web.Request, frame: Frame) -> list[Frame]:
    """Red, visual and blue frames of the frame's request, among those the caller may see."""
    authorization = request.headers.get("Authorization")
    candidates = await request.app[ARCHIVE].frames(color_listing_filters(frame), authorization)
    return select_rvb(frame, candidates, request.app[COLOR_FILTERS])


def _image(key: str, data: bytes, cache_control: str, vary: str | None = None) -> web.Response:
    return web.Response(body=data, headers=image_headers(key, cache_control, vary))


def _not_modified(key: str, cache_control: str, vary: str | None) -> web.Response:
    return web.Response(status=304, headers=image_headers(key, cache_control, vary, status=304))


def _vary(public: bool, negotiated: bool) -> str | None:
    # What else the answer depends on besides the URL: the caller (for proprietary frames) and Accept.
    varies = ([] if public else [hdrs.AUTHORIZATION]) + ([hdrs.ACCEPT] if negotiated else [])
    return ", ".join(varies) or None


async def _answer(request: web.Request, field: str, value: int | str) -> web.Response:
    """The thumbnail or its URL, for the frame found by this lookup ("id" or "basename"), within the deadline."""
    async with request_deadline(request.app[REQUEST_TIMEOUT]):
        # The raw query from the request line: building a URL object for it costs a hit more than parsing.
        query = parse_query_string(request.raw_path.partition("?")[2], request.app[MAX_SIZE])
        authorization = request.headers.get(hdrs.AUTHORIZATION)
        archive = request.app[ARCHIVE]
        if isinstance(value, int):
            frame = await archive.frame(value, authorization)
        else:
            frame = await archive.frame_by_basename(value, authorization)
        answer = await _thumbnail_answer(request, frame, query)
        if query.image and not query.color and not query.negotiate_format and answer.status == 200:
            request.app[HOT_ANSWERS].remember(request.raw_path, field, value, frame, request[SERVED_FROM].key)
        return answer


async def _thumbnail_answer(
    request: web.Request, frame: Frame, query: ThumbnailQuery, newest: bool = False
) -> web.Response:
    """The frame's thumbnail as the query asks: the image, not-modified, or JSON with its URL.

    `newest`: the frame is what /latest/ found, which depends on the caller and changes often.
    """
    check_frame(frame, request.app[FRAME_POLICY], query.color)
    frames = await _color_frames(request, frame) if query.color else [frame]
    options = query.options
    if query.negotiate_format and accepts_webp(request.headers.get(hdrs.ACCEPT, "")):
        options = replace(options, format="webp")
    thumbnailer = request.app[THUMBNAILER]
    policy = request.app[CACHE_POLICY]
    # Colour composites are as public as the least public of their frames.
    public = all(each.is_public() for each in frames)
    # Which frame /latest/ finds depends on what the caller may see, even when the one found is public.
    vary = _vary(public and not newest, query.negotiate_format)
    cache_control = policy.latest if newest and public else policy.image(public)
    if query.image:
        key = thumbnailer.key(frames, options)
        # The key names the exact bytes, so a client holding them needs neither a read nor a render.
        if not_modified(request, etag(key)):
            return _not_modified(key, cache_control, vary)
    # Rendered in JSON mode too: a frame that cannot be rendered fails now, and the URL works when followed.
    thumbnail = await thumbnailer.thumbnail(frames, options)
    request[SERVED_FROM] = Served(thumbnail.key, thumbnail.source, thumbnail.coalesced)
    if query.image:
        return _image(thumbnail.key, thumbnail.data, cache_control, vary)
    presigned = await thumbnailer.s3_url(thumbnail)
    url = presigned or thumbnail_url(request, frame, query)
    response = web.json_response({"url": url, "propid": frame.proposal_id})
    if presigned is None and not _names_this_service(request):
        cache_control = PRIVATE
    elif not newest:
        cache_control = policy.json(public, presigned is not None)
    response.headers[hdrs.CACHE_CONTROL] = cache_control
    if vary is not None:
        response.headers[hdrs.VARY] = vary
    return response


def hot_answer(request: web.Request) -> web.StreamResponse | None:
    """A thumbnail route's image answer given before, if it still holds (see HotAnswers); else None."""
    app = request.app
    _check_signature(request, app)
    return app[HOT_ANSWERS].answer(request)


async def thumbnail(request: web.Request) -> web.Response:
    """Thumbnail of the frame with this archive id, or else of the one frame with this basename."""
    # Checked here too, not only in hot_answer: the handler must be safe however it is registered.
    _check_signature(request, request.app)
    value = request.match_info["frame"]
    if FRAME_ID.fullmatch(value):
        return await _answer(request, "id", int(value))
    return await _answer(request, "basename", value)


def _frame_filters(raw_query: str) -> dict[str, str]:
    """The archive filters of a /latest/ query: every parameter that is not a thumbnail parameter."""
    filters: dict[str, str] = {}
    for name, value in parse_qsl(raw_query, keep_blank_values=True):
        if name in NOT_FRAME_FILTERS or name.startswith("_"):
            continue
        if name in filters:
            raise ThumbproxyError(400, f"Invalid parameter {name}: given more than once")
        filters[name] = value
    return filters


async def latest(request: web.Request) -> web.Response:
    """Thumbnail of the newest frame matching the query's archive filters, for dashboards."""
    _check_signature(request, request.app)
    async with request_deadline(request.app[REQUEST_TIMEOUT]):
        raw_query = request.raw_path.partition("?")[2]
        query = parse_query_string(raw_query, request.app[MAX_SIZE])
        frame = await request.app[LATEST].newest(_frame_filters(raw_query), request.headers.get(hdrs.AUTHORIZATION))
        return await _thumbnail_answer(request, frame, query, newest=True)


async def preflight(request: web.Request) -> web.Response:
    """A CORS preflight: pages elsewhere may send the archive's Authorization header with their GETs."""
    return web.Response(
        status=204,
        headers={
            hdrs.ACCESS_CONTROL_ALLOW_METHODS: "GET, HEAD, OPTIONS",
            hdrs.ACCESS_CONTROL_ALLOW_HEADERS: PREFLIGHT_HEADERS,
            hdrs.ACCESS_CONTROL_MAX_AGE: str(PREFLIGHT_MAX_AGE),
            hdrs.ALLOW: "GET, HEAD, OPTIONS",
        },
    )


def add_routes(app: web.Application, observation: Observation) -> None:
    """Register every route, each observed.

    aiohttp tries the routes under one path prefix in the order they were added, and every
    thumbnail route and `/` share the prefix `/`: the thumbnail routes come first, so a hit tries
    the fewest. Fixed paths such as /healthz are found by their full path before any pattern;
    the route of last resort comes last.
    """
    for suffix in ("/", ""):
        observation.add(app, hdrs.METH_GET, f"/latest{suffix}", latest)
        observation.add(app, hdrs.METH_OPTIONS, f"/latest{suffix}", preflight)
        observation.add(app, hdrs.METH_GET, f"/{FRAME}{suffix}", thumbnail, hot_answer)
        observation.add(app, hdrs.METH_OPTIONS, f"/{FRAME}{suffix}", preflight)
    observation.add(app, hdrs.METH_GET, "/", pages.index)
    observation.add(app, hdrs.METH_GET, "/robots.txt", pages.robots)
    observation.add(app, hdrs.METH_GET, "/favicon.ico", pages.favicon)
    add_operations_routes(app, observation)
    observation.add_unmatched(app)
