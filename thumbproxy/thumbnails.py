"""Making a thumbnail of a frame: from a cache level, else one shared download and one render."""

import dataclasses
from collections.abc import Callable
from functools import lru_cache

from thumbproxy.archive.base import Frame
from thumbproxy.cache.tiered import TieredCache
from thumbproxy.errors import ThumbproxyError
from thumbproxy.framechecks import is_spectrum
from thumbproxy.metrics import Metrics
from thumbproxy.render import RenderError, render_thumbnail
from thumbproxy.render.options import RenderOptions
from thumbproxy.renderpool import RenderPool
from thumbproxy.sharedfiles import SharedFitsFiles
from thumbproxy.singleflight import SingleFlight
from thumbproxy.thumbkey import thumbnail_key

# Hits ask for the same few keys over and over: hashing them once is part of a lean hit path.
cached_thumbnail_key = lru_cache(maxsize=65536)(thumbnail_key)


@dataclasses.dataclass(frozen=True)
class Thumbnail:
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
        """The thumbnail from the first cache level holding it, else rendered once for all askers."""
        if is_spectrum(frame):
            options = dataclasses.replace(options, spectrum=True)
        key = cached_thumbnail_key(frame.id, frame.version, options)
        hot = self._cache.memory_hit(key)
        if hot is not None:
            return Thumbnail(key, hot, "memory")
        # Lookup and render share one flight: identical requests ask the slower levels once, and
        # none can miss them just before another request's render lands there.
        (data, source), joined = await self._flights.run(key, lambda: self._find_or_render(key, frame, options))
        if joined:
            self._metrics.coalesced_requests.inc()
        return Thumbnail(key, data, source, coalesced=joined)

    async def s3_url(self, thumbnail: Thumbnail) -> str | None:
        """A pre-signed URL of the thumbnail in S3, stored there first if need be; None without S3."""
        if thumbnail.source == "s3" or await self._cache.ensure_in_s3(thumbnail.key, thumbnail.data):
            return await self._cache.url(thumbnail.key)
        return None

    async def close(self) -> None:
        """Stop renders still under way at shutdown."""
        await self._flights.close()

    async def _find_or_render(self, key: str, frame: Frame, options: RenderOptions) -> tuple[bytes, str]:
        found = await self._cache.get(key)
        if found is not None:
            return found
        return await self._render_and_store(key, frame, options), "render"

    async def _render_and_store(self, key: str, frame: Frame, options: RenderOptions) -> bytes:
        async with self._files.fits_file(frame) as fits_path:
            result = "error"
            try:
                thumbnail = await self._pool.run(self.render, str(fits_path), options)
                result = "ok"
            except RenderError as error:
                raise ThumbproxyError(422, str(error)) from None
            finally:
                self._metrics.renders.labels(kind="mono", result=result).inc()
        # The S3 upload may finish after the answer; a JSON answer waits for it in s3_url.
        await self._cache.put(key, thumbnail, wait_for_s3=False)
        return thumbnail
