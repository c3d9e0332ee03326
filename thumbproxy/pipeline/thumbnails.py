"""Finding or making a thumbnail, step by step in `Thumbnailer.thumbnail`: memory, a flight under way, the
cache levels, the frame's stored preview, then one shared download and one render."""

import dataclasses
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from functools import lru_cache
from typing import NamedTuple

from thumbproxy.archive.base import Frame
from thumbproxy.archive.sharedfiles import SharedFitsFiles
from thumbproxy.cache.tiered import TieredCache
from thumbproxy.errors import ThumbproxyError
from thumbproxy.ops.metrics import Metrics
from thumbproxy.pipeline.cachekeys import thumbnail_key
from thumbproxy.pipeline.framechecks import is_spectrum
from thumbproxy.pipeline.previews import FramePreviews
from thumbproxy.render import RenderError, color_thumbnail_from_files
from thumbproxy.render.options import RenderOptions
from thumbproxy.support.gathering import all_or_first_failure
from thumbproxy.support.lrumap import LruMap
from thumbproxy.support.singleflight import SingleFlight
from thumbproxy.workers.renderpool import RenderPool

log = logging.getLogger(__name__)

MAX_RETRY_AFTER_SECONDS = 60
# Weight of the newest render in the running average of render time.
RENDER_SECONDS_WEIGHT = 0.1
# How long a frame version the renderer refused (422) is answered so without another download and decode,
# and how many such versions are remembered: a bad file stays bad, and asking again must cost nothing.
UNRENDERABLE_SECONDS = 600.0
UNRENDERABLE_KEPT = 4096

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
        previews: FramePreviews,
        metrics: Metrics,
        max_pending: int,
    ) -> None:
        """At most `max_pending` renders wait for a worker; past that, a request needing one is refused (503)."""
        self._cache = cache
        self._files = files
        self._pool = pool
        self.previews = previews
        self._metrics = metrics
        self._max_pending = max_pending
        # Recent render time, for the Retry-After of a refusal.
        self._render_seconds = 1.0
        self._flights: SingleFlight[str, tuple[bytes, str]] = SingleFlight()
        # By frame version: until when the renderer's refusal of it is answered again, and the refusal.
        self._unrenderable: LruMap[tuple[int, str], tuple[float, str]] = LruMap(UNRENDERABLE_KEPT)

    def key(self, frames: Sequence[Frame], options: RenderOptions) -> str:
        """The cache key of the thumbnail of one frame, or of the red, visual and blue frames' composite."""
        return self._key(tuple(frames), _for_frames(frames, options))

    async def thumbnail(self, frames: Sequence[Frame], options: RenderOptions) -> Thumbnail:
        """The thumbnail of one frame, or the composite of three: found, else made once."""
        options = _for_frames(frames, options)
        key = self._key(tuple(frames), options)
        # 1. The memory level: no await, no thread, no copy.
        hot = self._cache.memory_hit(key)
        if hot is not None:
            return Thumbnail(key, hot, "memory")
        # 2. One flight per key: identical requests ask the slower levels and render once, and none
        # can miss the levels just before another request's render lands there.
        (data, source), joined = await self._flights.run(key, lambda: self._find_or_make(key, tuple(frames), options))
        if joined:
            self._metrics.coalesced_requests.inc()
        return Thumbnail(key, data, source, coalesced=joined)

    async def _find_or_make(self, key: str, frames: tuple[Frame, ...], options: RenderOptions) -> tuple[bytes, str]:
        # 3. The disk level, then S3.
        found = await self._cache.get(key)
        if found is not None:
            return found
        # 4. A frame version the renderer refused lately is refused again, with no download.
        self._refuse_known_unrenderable(frames)
        # 5. A full render queue refuses at once (503) rather than let requests pile up.
        self._admit()
        if len(frames) == 1:
            # 6. The frame's stored preview: no download, no decompression.
            thumbnail = await self._from_stored_preview(frames[0], options)
            if thumbnail is None:
                # 7. Its file, downloaded once for every request; its first render makes the preview.
                thumbnail = await self._from_file(frames[0], options)
        else:
            # 7. The three files, each downloaded once for every request.
            thumbnail = await self._color_from_files(frames, options)
        # The S3 upload may finish after the answer; a JSON answer waits for it in s3_url.
        await self._cache.put(key, thumbnail, wait_for_s3=False)
        return thumbnail, "render"

    async def s3_url(self, thumbnail: Thumbnail) -> str | None:
        """A pre-signed URL of the thumbnail in S3, stored there first if need be; None without S3."""
        if thumbnail.source == "s3" or await self._cache.ensure_in_s3(thumbnail.key, thumbnail.data):
            return await self._cache.url(thumbnail.key)
        return None

    async def close(self) -> None:
        """Stop work still under way at shutdown."""
        await self._flights.close()

    def _key(self, frames: tuple[Frame, ...], options: RenderOptions) -> str:
        # Only a single frame's thumbnail is made from a preview, so only its bytes depend on the preview size.
        preview_size = self.previews.size if len(frames) == 1 else 0
        return cached_thumbnail_key(tuple((frame.id, frame.version) for frame in frames), options, preview_size)

    def _refuse_known_unrenderable(self, frames: Sequence[Frame]) -> None:
        """The renderer's refusal (422) of any of these frame versions, answered again while remembered."""
        for frame in frames:
            refused = self._unrenderable.get((frame.id, frame.version))
            if refused is not None and refused[0] > time.monotonic():
                raise ThumbproxyError(422, refused[1])

    def _admit(self) -> None:
        """Refuse a render at once when the pool's queue is full, rather than let requests pile up."""
        # This render would wait behind pending - workers others: admitted while that is within the bound.
        if self._pool.pending - self._pool.workers < self._max_pending:
            return
        self._metrics.renders_refused.inc()
        wait = math.ceil(self._render_seconds * (self._pool.queued + 1) / self._pool.workers)
        raise ThumbproxyError(
            503,
            "Too many thumbnails are being rendered; please retry shortly",
            {"Retry-After": str(min(max(wait, 1), MAX_RETRY_AFTER_SECONDS))},
        )

    async def _from_stored_preview(self, frame: Frame, options: RenderOptions) -> bytes | None:
        """The thumbnail drawn from the frame's stored preview, counted as a render; None without one that covers it."""
        started = time.perf_counter()
        try:
            thumbnail = await self.previews.from_stored(frame, options)
        except BaseException:
            self._record_render("mono", "error", time.perf_counter() - started)
            raise
        # Nothing to draw from is no render.
        if thumbnail is not None:
            self._record_render("mono", "ok", time.perf_counter() - started)
        return thumbnail

    async def _from_file(self, frame: Frame, options: RenderOptions) -> bytes:
        async with self._files.fits_file(frame) as fits_path, self._rendering("mono", lambda _: frame):
            return await self.previews.from_file(frame, str(fits_path), options)

    async def _color_from_files(self, frames: tuple[Frame, ...], options: RenderOptions) -> bytes:
        async with AsyncExitStack() as files:
            # All three download at once, each shared with other requests for the same frame version.
            entered = await all_or_first_failure(
                *(files.enter_async_context(self._files.fits_file(frame)) for frame in frames)
            )
            names = {path.name: frame for path, frame in zip(entered, frames)}
            async with self._rendering("color", names.get):
                composite = await self._pool.run(color_thumbnail_from_files, [str(path) for path in entered], options)
        self._metrics.color_alignments.labels(method=composite.alignment).inc()
        if composite.alignment == "none":
            log.warning("colour frames %s could not be aligned", [frame.id for frame in frames])
        return composite.image

    @asynccontextmanager
    async def _rendering(self, kind: str, frame_of: Callable[[str], Frame | None]) -> AsyncIterator[None]:
        """Count and time one render; a file the renderer refuses answers 422 naming its frame (of `frame_of`)."""
        result = "error"
        started = time.perf_counter()
        try:
            yield
            result = "ok"
        except RenderError as error:
            # The frame's own name: the file's is a temporary one, of no use to the client.
            frame = frame_of(error.file)
            # A job stopped for its CPU time names no file: the request's frames are named instead.
            name = (frame.filename or frame.basename) if frame is not None else error.file or "these frames"
            message = f"cannot render {name}: {error.reason}"
            if frame is not None:
                self._unrenderable.put((frame.id, frame.version), (time.monotonic() + UNRENDERABLE_SECONDS, message))
            raise ThumbproxyError(422, message) from None
        finally:
            self._record_render(kind, result, time.perf_counter() - started)

    def _record_render(self, kind: str, result: str, seconds: float) -> None:
        self._render_seconds += RENDER_SECONDS_WEIGHT * (seconds - self._render_seconds)
        self._metrics.renders.labels(kind=kind, result=result).inc()
        self._metrics.render_duration.labels(kind=kind).observe(seconds)
