"""HTTP caching of answers: ETags, conditional requests, and who may keep an answer for how long.

A thumbnail's key covers the frame version and every rendering parameter, so the key is a
strong validator known before the image is read. Public frames' answers may be kept by any
cache; proprietary ones only by the caller's browser, revalidated each time so the archive is
asked again; errors briefly.
"""

from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from aiohttp import hdrs, web

from thumbproxy.render.formats import media_type

# Seconds a JSON answer expires before the pre-signed URL inside it does, so no cache hands out a dead URL.
PRESIGNED_URL_MARGIN = 60
PRIVATE = "private, no-cache"


@dataclass(frozen=True)
class CachePolicy:
    """How long answers may be kept (THUMBPROXY_MAX_AGE, THUMBPROXY_ERROR_MAX_AGE, THUMBPROXY_URL_EXPIRY,
    THUMBPROXY_LATEST_TTL)."""

    max_age: int
    error_max_age: int
    url_expiry: int
    latest_max_age: int

    @cached_property
    def public_image(self) -> str:
        """Cache-Control of a public frame's thumbnail: made once, sent on every hit."""
        return f"public, max-age={self.max_age}"

    def image(self, public: bool) -> str:
        """Cache-Control of a thumbnail (or of its not-modified answer)."""
        return self.public_image if public else PRIVATE

    def json(self, public: bool, presigned: bool) -> str:
        """Cache-Control of a JSON answer, whose URL may be pre-signed and so expire."""
        if not public:
            return PRIVATE
        max_age = min(self.max_age, max(0, self.url_expiry - PRESIGNED_URL_MARGIN)) if presigned else self.max_age
        return f"public, max-age={max_age}"

    @cached_property
    def latest(self) -> str:
        """Cache-Control of a /latest/ answer showing a public frame: short, so dashboards see the next one."""
        return f"public, max-age={self.latest_max_age}"

    def error(self) -> str:
        """Cache-Control of an error answer: kept briefly, so a storm of bad URLs stays cheap but a fix shows soon."""
        return f"max-age={self.error_max_age}"


def etag(key: str) -> str:
    """The strong ETag of the thumbnail stored under a cache key."""
    return f'"{key.rpartition("/")[2]}"'


def image_headers(
    key: str, cache_control: str, vary: str | None = None, status: Literal[200, 304] = 200
) -> dict[str, str]:
    """The headers of a thumbnail's answer, in the order sent, made here alone so every path answers alike.

    A 304 carries those of the 200 it stands for, less its Content-Type (it has no body).
    """
    headers: dict[str, str] = {hdrs.CONTENT_TYPE: media_type(key)} if status == 200 else {}
    headers[hdrs.ETAG] = etag(key)
    headers[hdrs.CACHE_CONTROL] = cache_control
    if vary is not None:
        headers[hdrs.VARY] = vary
    return headers


def not_modified(request: web.Request, tag: str) -> bool:
    """Whether the request's If-None-Match already names this ETag (weak comparison, as RFC 9110 asks)."""
    given = request.headers.get("If-None-Match")
    if given is None:
        return False
    return any(candidate.strip().removeprefix("W/") in (tag, "*") for candidate in given.split(","))


CACHE_POLICY = web.AppKey("cache_policy", CachePolicy)
