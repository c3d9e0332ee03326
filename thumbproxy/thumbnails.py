"""Making a thumbnail of a frame: from a cache level, else one shared download and one render."""

import asyncio
import dataclasses
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from functools import lru_cache
from typing import Any, NamedTuple, TypeVar

from thumbproxy.archive.base import Frame
from thumbproxy.cache.tiered import TieredCache
from thumbproxy.errors import ThumbproxyError
from thumbproxy.framechecks import is_spectrum
from thumbproxy.metrics import Metrics
from thumbproxy.render import RenderError, render_color_thumbnail, render_thumbnail
from thumbproxy.render.options import RenderOptions
from thumbproxy.renderpool import RenderPool
from thumbproxy.sharedfiles import SharedFitsFiles
from thumbproxy.singleflight import SingleFlight
from thumbproxy.thumbkey import thumbnail_key

log = logging.getLogger(__name__)

T = TypeVar("T")
Renderer = Callable[[tuple[Frame, ...], RenderOptions], Awaitable[bytes]]

MAX_RETRY_AFTER_SECONDS = 60
# Weight of the newest render in the running average of render time.
RENDER_SECONDS_WEIGHT = 0.1

# Hits ask for the same few keys over and over: hashing them once is part of a lean hit path.
cached_thumbnail_key = lru_cache(maxsize=65536)(thumbnail_key)


def _for_frames(frames: Sequence[Frame], options: RenderOptions) -> RenderOptions:
    # Spectra carry only a prototype WCS: they are not turned north up.
    if len(frames) == 1 and is_spectrum(frames[0]):
        return dataclasses.replace(options, spectrum=True)
    return options


class Thumbnail(NamedTuple):
    """A thumbnail's bytes, its cache key, and where it came from."""

    key: str
    data: bytes
    # "memory", "disk", "s3" or "render".
    source: str
    # Whether this request joined a lookup or render another request had started.
    coalesced: bool = False


class Thumbnailer:
    """Thumbnails of frames whose access has already been checked against the archive."""

    def __init__(
        self,
        cache: TieredCache,
        files: SharedFitsFiles,
        pool: RenderPool,
        metrics: Metrics,
        max_pending: int,
        render: Callable[[str, RenderOptions], bytes] = render_thumbnail,
    ) -> None:
        """At most `max_pending` renders wait for a worker; past that, a request needing one is refused (503)."""
        self._cache = cache
        self._files = files
        self._pool = pool
        self._metrics = metrics
        self._max_pending = max_pending
        # Recent render time, for the Retry-After of a refusal.
        self._render_seconds = 1.0
        self._flights: SingleFlight[str, tuple[bytes, str]] = SingleFlight()
        # Module-level function: it is pickled by name into a pool worker.
        self.render = render

    def key(self, frames: Sequence[Frame], options: RenderOptions) -> str:
        """The cache key of the thumbnail of one frame, or of the red, visual and blue frames' composite."""
        return cached_thumbnail_key(tuple((frame.id, frame.version) for frame in frames), _for_frames(frames, options))

    async def thumbnail(self, frames: Sequence[Frame], options: RenderOptions) -> Thumbnail:
        """The thumbnail of one frame, or the composite of three, from the first cache level holding it,
        else rendered once."""
        options = _for_frames(frames, options)
        render = self._render_mono if len(frames) == 1 else self._render_color
        return await self._thumbnail(tuple(frames), options, render)

    async def s3_url(self, thumbnail: Thumbnail) -> str | None:
        """A pre-signed URL of the thumbnail in S3, stored there first if need be; None without S3."""
        if thumbnail.source == "s3" or await self._cache.ensure_in_s3(thumbnail.key, thumbnail.data):
            return await self._cache.url(thumbnail.key)
        return None

    async def close(self) -> None:
        """Stop work still under way at shutdown."""
        await self._flights.close()

    async def _thumbnail(self, frames: tuple[Frame, ...], options: RenderOptions, render: Renderer) -> Thumbnail:
        key = cached_thumbnail_key(tuple((frame.id, frame.version) for frame in frames), options)
        hot = self._cache.memory_hit(key)
        if hot is not None:
            return Thumbnail(key, hot, "memory")
        # Lookup and render share one flight: identical requests ask the slower levels once, and
        # none can miss them just before another request's render lands there.
        (data, source), joined = await self._flights.run(key, lambda: self._find_or_render(key, frames, options, render))
        if joined:
            self._metrics.coalesced_requests.inc()
        return Thumbnail(key, data, source, coalesced=joined)

    async def _find_or_render(
        self, key: str, frames: tuple[Frame, ...], options: RenderOptions, render: Renderer
    ) -> tuple[bytes, str]:
        found = await self._cache.get(key)
        if found is not None:
            return found
        self._admit()
        thumbnail = await render(frames, options)
        # The S3 upload may finish after the answer; a JSON answer waits for it in s3_url.
        await self._cache.put(key, thumbnail, wait_for_s3=False)
        return thumbnail, "render"

    def _admit(self) -> None:
        """Refuse a render at once when the pool's queue is full, rather than let requests pile up."""
        # This render would wait behind pending - workers others: admitted while that is within the bound.
        if self._pool.pending - self._pool.workers < self._max_pending:
            return
        self._metrics.renders_refused.inc()
        wait = math.ceil(self._render_seconds * (self._pool.queued + 1) / self._pool.workers)
        raise ThumbproxyError(503, "Too many thumbnails are being rendered; please retry shortly",
                              {"Retry-After": str(min(max(wait, 1), MAX_RETRY_AFTER_SECONDS))})

    async def _render_mono(self, frames: tuple[Frame, ...], options: RenderOptions) -> bytes:
        async with self._files.fits_file(frames[0]) as fits_path:
            return await self._in_pool("mono", {fits_path.name: frames[0]}, self.render, str(fits_path), options)

    async def _render_color(self, frames: tuple[Frame, ...], options: RenderOptions) -> bytes:
        async with AsyncExitStack() as files:
            # All three download at once, each shared with other requests for the same frame version.
            entered = await asyncio.gather(
                *(files.enter_async_context(self._files.fits_file(frame)) for frame in frames), return_exceptions=True
            )
            failure = next((outcome for outcome in entered if isinstance(outcome, BaseException)), None)
            if failure is not None:
                raise failure
            names = {path.name: frame for path, frame in zip(entered, frames)}
            composite = await self._in_pool("color", names, render_color_thumbnail, [str(path) for path in entered],
                                            options)
        self._metrics.color_alignments.labels(method=composite.alignment).inc()
        if composite.alignment == "none":
            log.warning("colour frames %s could not be aligned", [frame.id for frame in frames])
        return composite.image

    async def _in_pool(self, kind: str, files: Mapping[str, Frame], function: Callable[..., T], *args: Any) -> T:
        """function(*args) in the pool; `files` names the frame behind each file, for the client's 422."""
        result = "error"
        started = time.perf_counter()
        try:
            outcome = await self._pool.run(function, *args)
            result = "ok"
            return outcome
        except RenderError as error:
            # The frame's own name: the file's is a temporary one, of no use to the client.
            frame = files.get(error.file)
            name = (frame.filename or frame.basename) if frame is not None else error.file
            raise ThumbproxyError(422, f"cannot render {name}: {error.reason}") from None
        finally:
            seconds = time.perf_counter() - started
            self._render_seconds += RENDER_SECONDS_WEIGHT * (seconds - self._render_seconds)
            self._metrics.renders.labels(kind=kind, result=result).inc()
            self._metrics.render_duration.labels(kind=kind).observe(seconds)
