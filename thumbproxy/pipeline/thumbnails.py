"""Making a thumbnail of a frame: from a cache level, else from the frame's stored preview, else one shared
download and one render."""

import asyncio
import dataclasses
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from functools import lru_cache, partial
from typing import NamedTuple, TypeVar

from thumbproxy.archive.base import Frame
from thumbproxy.archive.sharedfiles import SharedFitsFiles
from thumbproxy.cache.disk import read_elsewhere
from thumbproxy.cache.tiered import TieredCache
from thumbproxy.errors import ThumbproxyError
from thumbproxy.ops.metrics import Metrics
from thumbproxy.pipeline.framechecks import is_spectrum
from thumbproxy.pipeline.thumbkey import preview_key, thumbnail_key
from thumbproxy.render import RenderError, render_color_thumbnail
from thumbproxy.render.options import RenderOptions
from thumbproxy.render.preview import Outline, Preview, join_bands, likely_from_preview, read_band
from thumbproxy.render.thumbnail import Resampled, render_resampled, render_with_preview, resample_preview
from thumbproxy.support.lrumap import LruMap
from thumbproxy.support.singleflight import SingleFlight
from thumbproxy.workers.renderpool import RenderPool

log = logging.getLogger(__name__)

T = TypeVar("T")
Renderer = Callable[[tuple[Frame, ...], RenderOptions], Awaitable[bytes]]
# A frame's preview, and the thumbnail of the request that made it when that came along.
MadePreview = tuple[Preview, bytes | None]

MAX_RETRY_AFTER_SECONDS = 60
# Weight of the newest render in the running average of render time.
RENDER_SECONDS_WEIGHT = 0.1

# Previews a pool worker keeps after reading them: a frame's next thumbnails tend to follow each other.
WORKER_PREVIEWS = 4
# Previews resampled to a thumbnail size the server keeps, about 1 MiB each: thumbnails of that size
# differing only in stretch, label or format need no resampling.
RESAMPLED_KEPT = 16
# Outlines of stored previews the server keeps, so deciding whether one covers a thumbnail reads nothing.
OUTLINES = 4096
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


_worker_previews: LruMap[str, Preview] = LruMap(WORKER_PREVIEWS)


def _stored_preview(directory: str, key: str) -> Preview | None:
    """In a pool worker: the preview stored under key in the disk cache at directory, from the few this
    worker read last if it is one of them; None when it is not stored or cannot be decoded."""
    preview = _worker_previews.get(key)
    if preview is None:
        stored = read_elsewhere(directory, key)
        try:
            preview = None if stored is None else Preview.from_bytes(stored)
        except ValueError:
            # The server reads it too, says so, and makes it again.
            return None
        if preview is not None:
            _worker_previews.put(key, preview)
    return preview


def _render_kept_preview(
    key: str, preview: Preview, options: RenderOptions, resampled: Resampled | None
) -> tuple[bytes, Resampled | None]:
    """In a pool worker: _render_sharing from a preview handed over whole, kept for the frame's next thumbnails."""
    _worker_previews.put(key, preview)
    return _render_sharing(preview, options, resampled)


def _render_stored_preview(
    directory: str, key: str, options: RenderOptions, resampled: Resampled | None
) -> tuple[bytes, Resampled | None] | None:
    """In a pool worker: _render_sharing from the preview stored under key in the disk cache at directory;
    None when it is stored no more."""
    preview = _stored_preview(directory, key)
    return None if preview is None else _render_sharing(preview, options, resampled)


def _render_sharing(
    preview: Preview, options: RenderOptions, resampled: Resampled | None
) -> tuple[bytes, Resampled | None]:
    """The thumbnail made from the preview (resampled to its size when given), and the preview resampled
    for it when that was not given: the server keeps it for the size's other thumbnails."""
    if resampled is not None:
        return render_resampled(preview, resampled, options), None
    made = resample_preview(preview, options)
    return render_resampled(preview, made, options), made


async def _all_or_first_failure(*work: Awaitable[T]) -> list[T]:
    """Every outcome once all have ended, or the failure of the first to fail in the order given (not in time)."""
    outcomes = await asyncio.gather(*work, return_exceptions=True)
    failure = next((outcome for outcome in outcomes if isinstance(outcome, BaseException)), None)
    if failure is not None:
        raise failure
    return outcomes  # type: ignore[return-value]


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
        preview_size: int,
    ) -> None:
        """At most `max_pending` renders wait for a worker; past that, a request needing one is refused (503).

        Frames get previews of `preview_size` pixels on their long side (0: none).
        """
        self._cache = cache
        self._files = files
        self._pool = pool
        self._metrics = metrics
        self._max_pending = max_pending
        self._preview_size = preview_size
        # Recent render time, for the Retry-After of a refusal.
        self._render_seconds = 1.0
        self._flights: SingleFlight[str, tuple[bytes, str]] = SingleFlight()
        # By frame version: concurrent thumbnails of a frame with no stored preview share one making it.
        self._preview_flights: SingleFlight[tuple[int, str], MadePreview] = SingleFlight()
        # By preview key.
        self._outlines: LruMap[str, Outline] = LruMap(OUTLINES)
        # By preview key and thumbnail size.
        self._resampled: LruMap[tuple[str, tuple[int, int]], Resampled] = LruMap(RESAMPLED_KEPT)
        # By frame version: until when the renderer's refusal of it is answered again, and the refusal.
        self._unrenderable: LruMap[tuple[int, str], tuple[float, str]] = LruMap(UNRENDERABLE_KEPT)
        # The render of a downloaded frame, returning its thumbnail and preview. A partial of a module-level
        # function, so it is pickled by name into a pool worker.
        self.render: Callable[[str, RenderOptions], tuple[bytes, Preview | None]] = partial(
            render_with_preview, preview_size=preview_size
        )

    def key(self, frames: Sequence[Frame], options: RenderOptions) -> str:
        """The cache key of the thumbnail of one frame, or of the red, visual and blue frames' composite."""
        return self._key(tuple(frames), _for_frames(frames, options))

    def _key(self, frames: tuple[Frame, ...], options: RenderOptions) -> str:
        # Only a single frame's thumbnail is made from a preview, so only its bytes depend on the preview size.
        preview_size = self._preview_size if len(frames) == 1 else 0
        return cached_thumbnail_key(tuple((frame.id, frame.version) for frame in frames), options, preview_size)

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
        await self._preview_flights.close()

    async def _thumbnail(self, frames: tuple[Frame, ...], options: RenderOptions, render: Renderer) -> Thumbnail:
        key = self._key(frames, options)
        hot = self._cache.memory_hit(key)
        if hot is not None:
            return Thumbnail(key, hot, "memory")
        # Lookup and render share one flight: identical requests ask the slower levels once, and
        # none can miss them just before another request's render lands there.
        (data, source), joined = await self._flights.run(
            key, lambda: self._find_or_render(key, frames, options, render)
        )
        if joined:
            self._metrics.coalesced_requests.inc()
        return Thumbnail(key, data, source, coalesced=joined)

    async def _find_or_render(
        self, key: str, frames: tuple[Frame, ...], options: RenderOptions, render: Renderer
    ) -> tuple[bytes, str]:
        found = await self._cache.get(key)
        if found is not None:
            return found
        self._refuse_known_unrenderable(frames)
        self._admit()
        thumbnail = await render(frames, options)
        # The S3 upload may finish after the answer; a JSON answer waits for it in s3_url.
        await self._cache.put(key, thumbnail, wait_for_s3=False)
        return thumbnail, "render"

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

    async def _render_mono(self, frames: tuple[Frame, ...], options: RenderOptions) -> bytes:
        frame = frames[0]
        key = preview_key((frame.id, frame.version), self._preview_size)
        outline = await self._outline(key) if self._preview_size else None
        if outline is not None and outline.covers(options):
            thumbnail = await self._from_stored_preview(key, outline, options)
            if thumbnail is not None:
                return thumbnail
            self._outlines.forget(key)
            outline = None
        async with self._files.fits_file(frame) as fits_path, self._rendering("mono", lambda _: frame):
            if outline is None and self._preview_size:
                return await self._first_render(frame, key, str(fits_path), options)
            thumbnail, _ = await self._pool.run(self.render, str(fits_path), options)
            return thumbnail

    async def _from_stored_preview(self, key: str, outline: Outline, options: RenderOptions) -> bytes | None:
        """The thumbnail made from the stored preview under key, which covers it; None when the preview is gone.

        Neither a download nor a decompression. The worker reads the preview from the disk level itself,
        quicker than megabytes through a pipe, unless it is not on disk (yet) but in memory.
        """
        started = time.perf_counter()
        try:
            # Just made, it is not on disk yet: handed over rather than looked for there.
            writing = self._cache.preview_being_written(key)
            if writing is not None:
                thumbnail = await self._from_preview(key, writing, options)
            else:
                thumbnail = await self._render_sharing(
                    key, outline, options, _render_stored_preview, self._cache.disk.directory, key
                )
            if thumbnail is None:
                preview = await self._cache.preview(key)
                thumbnail = None if preview is None else await self._from_preview(key, preview, options)
        except BaseException:
            self._record_render("mono", "error", time.perf_counter() - started)
            raise
        # Nothing to render from is no render: the caller makes the preview again.
        if thumbnail is not None:
            self._record_render("mono", "ok", time.perf_counter() - started)
        return thumbnail

    async def _outline(self, key: str) -> Outline | None:
        """The outline of the preview stored under key, read from it only the first time; None when there is none."""
        outline = self._outlines.get(key)
        if outline is None:
            preview = await self._cache.preview(key)
            if preview is None:
                return None
            outline = preview.outline
            self._outlines.put(key, outline)
        return outline

    async def _first_render(self, frame: Frame, key: str, path: str, options: RenderOptions) -> bytes:
        """A thumbnail of a frame version with no preview stored under key, from its file at path.

        The preview is made once for all the version's requests under way, and stored.
        """
        (preview, thumbnail), joined = await self._preview_flights.run(
            (frame.id, frame.version), lambda: self._make_preview(key, path, options)
        )
        if joined or thumbnail is None:
            thumbnail = await self._from_preview(key, preview, options)
        if thumbnail is None:
            thumbnail, _ = await self._pool.run(self.render, path, options)
        return thumbnail

    async def _make_preview(self, key: str, path: str, options: RenderOptions) -> MadePreview:
        """The preview stored under key since this request looked, else made from the file at path and stored.

        With idle workers it is read in bands, one per worker; else one job renders the thumbnail
        and makes the preview on the way.
        """
        stored = await self._cache.preview(key)
        if stored is not None:
            return stored, None
        bands = self._pool.idle
        if bands >= 2 and likely_from_preview(options, self._preview_size):
            preview = await self._preview_in_bands(path, bands)
            thumbnail = await self._from_preview(key, preview, options)
        else:
            thumbnail, preview = await self._pool.run(self.render, path, options)
        # Written while the thumbnail is answered; until it is on disk, the cache answers from memory.
        self._cache.keep_preview(key, preview)
        self._outlines.put(key, preview.outline)
        return preview, thumbnail

    async def _preview_in_bands(self, path: str, bands: int) -> Preview:
        """The preview of the file at path read by `bands` pool jobs at once, each decompressing only its rows."""
        parts = await _all_or_first_failure(
            *(self._pool.run(read_band, path, band, bands, self._preview_size) for band in range(bands))
        )
        return await asyncio.to_thread(join_bands, parts)

    async def _from_preview(self, key: str, preview: Preview, options: RenderOptions) -> bytes | None:
        """The thumbnail made from the preview stored under key, or None when it needs finer pixels."""
        if not preview.covers(options):
            return None
        return await self._render_sharing(key, preview.outline, options, _render_kept_preview, key, preview)

    async def _render_sharing(
        self,
        key: str,
        outline: Outline,
        options: RenderOptions,
        job: Callable[..., tuple[bytes, Resampled | None] | None],
        *args: object,
    ) -> bytes | None:
        """job(*args, options, resampled) in the pool, handed the preview under key already resampled to the
        thumbnail's size if kept; keeps what the job resampled. None when the job finds no preview."""
        size_key = (key, outline.thumbnail_size(options))
        done = await self._pool.run(job, *args, options, self._resampled.get(size_key))
        if done is None:
            return None
        thumbnail, made = done
        if made is not None:
            self._resampled.put(size_key, made)
        return thumbnail

    async def _render_color(self, frames: tuple[Frame, ...], options: RenderOptions) -> bytes:
        async with AsyncExitStack() as files:
            # All three download at once, each shared with other requests for the same frame version.
            entered = await _all_or_first_failure(
                *(files.enter_async_context(self._files.fits_file(frame)) for frame in frames)
            )
            names = {path.name: frame for path, frame in zip(entered, frames)}
            async with self._rendering("color", names.get):
                composite = await self._pool.run(render_color_thumbnail, [str(path) for path in entered], options)
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
