"""Making a thumbnail of a frame: from a cache level, else one shared download and one render."""

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
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

# Hits ask for the same few keys over and over: hashing them once is part of a lean hit path.
cached_thumbnail_key = lru_cache(maxsize=65536)(thumbnail_key)


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
        render: Callable[[str, RenderOptions], bytes] = render_thumbnail,
    ) -> None:
        self._cache = cache
        self._files = files
        self._pool = pool
        self._metrics = metrics
        self._flights: SingleFlight[str, tuple[bytes, str]] = SingleFlight()
        # Module-level function: it is pickled by name into a pool worker.
        self.render = render

    async def thumbnail(self, frame: Frame, options: RenderOptions) -> Thumbnail:
        """The thumbnail of one frame, from the first cache level holding it, else rendered once."""
        if is_spectrum(frame):
            options = dataclasses.replace(options, spectrum=True)
        return await self._thumbnail((frame,), ((frame.id, frame.version),), options, self._render_mono)

    async def color_thumbnail(self, frames: Sequence[Frame], options: RenderOptions) -> Thumbnail:
        """The colour composite of the red, visual and blue frames, cached like a single frame's."""
        versions = tuple((frame.id, frame.version) for frame in frames)
        return await self._thumbnail(tuple(frames), versions, options, self._render_color)

    async def s3_url(self, thumbnail: Thumbnail) -> str | None:
        """A pre-signed URL of the thumbnail in S3, stored there first if need be; None without S3."""
        if thumbnail.source == "s3" or await self._cache.ensure_in_s3(thumbnail.key, thumbnail.data):
            return await self._cache.url(thumbnail.key)
        return None

    async def close(self) -> None:
        """Stop work still under way at shutdown."""
        await self._flights.close()

    async def _thumbnail(
        self, frames: tuple[Frame, ...], versions: tuple[tuple[int, str], ...], options: RenderOptions, render: Renderer
    ) -> Thumbnail:
        key = cached_thumbnail_key(versions, options)
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
        thumbnail = await render(frames, options)
        # The S3 upload may finish after the answer; a JSON answer waits for it in s3_url.
        await self._cache.put(key, thumbnail, wait_for_s3=False)
        return thumbnail, "render"

    async def _render_mono(self, frames: tuple[Frame, ...], options: RenderOptions) -> bytes:
        async with self._files.fits_file(frames[0]) as fits_path:
            return await self._in_pool("mono", self.render, str(fits_path), options)

    async def _render_color(self, frames: tuple[Frame, ...], options: RenderOptions) -> bytes:
        async with AsyncExitStack() as files:
            # All three download at once, each shared with other requests for the same frame version.
            entered = await asyncio.gather(
                *(files.enter_async_context(self._files.fits_file(frame)) for frame in frames), return_exceptions=True
            )
            failure = next((outcome for outcome in entered if isinstance(outcome, BaseException)), None)
            if failure is not None:
                raise failure
            composite = await self._in_pool("color", render_color_thumbnail, [str(path) for path in entered], options)
        self._metrics.color_alignments.labels(method=composite.alignment).inc()
        if composite.alignment == "none":
            log.warning("colour frames %s could not be aligned", [frame.id for frame in frames])
        return composite.jpeg

    async def _in_pool(self, kind: str, function: Callable[..., T], *args: Any) -> T:
        result = "error"
        started = time.perf_counter()
        try:
            outcome = await self._pool.run(function, *args)
            result = "ok"
            return outcome
        except RenderError as error:
            raise ThumbproxyError(422, str(error)) from None
        finally:
            self._metrics.renders.labels(kind=kind, result=result).inc()
            self._metrics.render_duration.labels(kind=kind).observe(time.perf_counter() - started)
