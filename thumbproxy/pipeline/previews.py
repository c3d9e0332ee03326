"""What is made once per frame version and reused by its single-frame thumbnails: the preview, stored on the
disk level by the worker that makes it, and its outline. A frame version's jobs name it (`about`), so the pool
runs them on the worker that keeps its preview when that one is free.

Previews live on the disk level alone: megabytes each, they only save this instance work, so they stay out
of the memory level and S3.
"""

import logging

from thumbproxy.archive.base import Frame
from thumbproxy.cache.disk import DiskCache
from thumbproxy.pipeline.cachekeys import preview_key
from thumbproxy.pipeline.previewjobs import (
    PreviewPlace,
    thumbnail_and_stored_outline,
    thumbnail_from_bands,
    thumbnail_from_stored_preview,
)
from thumbproxy.render.options import RenderOptions
from thumbproxy.render.preview import Preview, PreviewBand, PreviewOutline, likely_from_preview, read_band
from thumbproxy.support.gathering import all_or_first_failure
from thumbproxy.support.lrumap import LruMap
from thumbproxy.support.singleflight import SingleFlight
from thumbproxy.workers.renderpool import RenderPool

log = logging.getLogger(__name__)

# Outlines of stored previews the server keeps, so deciding whether one covers a thumbnail reads nothing.
OUTLINES = 4096


class FramePreviews:
    """Single-frame thumbnails by way of the frame version's preview, of `preview_size` pixels on its long side
    (0: no previews, every thumbnail is read from the file)."""

    def __init__(self, pool: RenderPool, disk: DiskCache, preview_size: int) -> None:
        self._pool = pool
        self._disk = disk
        self.size = preview_size
        # By preview key.
        self._outlines: LruMap[str, PreviewOutline] = LruMap(OUTLINES)
        # By preview key: the thumbnails of a version asked for while it has no preview share one making it.
        self._making: SingleFlight[str, tuple[bytes | None, PreviewOutline | None]] = SingleFlight()
        # The jobs that read a frame's file; module-level functions, pickled by name into a worker.
        self.read_file = thumbnail_and_stored_outline
        self.read_band = read_band

    async def from_stored(self, frame: Frame, options: RenderOptions) -> bytes | None:
        """The thumbnail drawn from the frame version's stored preview: no download, no decompression. None when
        it has none, or one too coarse for this thumbnail."""
        if not self.size:
            return None
        place = self._place(frame)
        outline = await self._outline(place.key)
        if outline is None or not outline.covers(options):
            return None
        thumbnail = await self._drawn_from_stored(place, options)
        if thumbnail is None:
            # Evicted or damaged since: the file makes it again.
            self._outlines.forget(place.key)
        return thumbnail

    async def from_file(self, frame: Frame, path: str, options: RenderOptions) -> bytes:
        """The thumbnail read from the frame's file at path. A version with no preview gets one on the way,
        made once for all its thumbnails asked for meanwhile; one needing finer pixels reads the file whole."""
        if self.size:
            place = self._place(frame)
            # Known here only once stored: a preview too coarse for this thumbnail is not made again.
            if self._outlines.get(place.key) is None:
                (thumbnail, outline), joined = await self._making.run(
                    place.key, lambda: self._make(place, path, options)
                )
                if thumbnail is not None and not joined:
                    return thumbnail
                if outline is not None and outline.covers(options):
                    thumbnail = await self._drawn_from_stored(place, options)
                    if thumbnail is not None:
                        return thumbnail
        whole, _ = await self._pool.run(self.read_file, path, options, self.size, None)
        return whole

    async def close(self) -> None:
        """Stop the making of previews still under way at shutdown."""
        await self._making.close()

    def _place(self, frame: Frame) -> PreviewPlace:
        return PreviewPlace(self._disk.directory, preview_key((frame.id, frame.version), self.size))

    async def _outline(self, key: str) -> PreviewOutline | None:
        """The outline of the preview stored under key, read from it only the first time; None when there is none."""
        outline = self._outlines.get(key)
        if outline is None:
            stored = await self._disk.get(key)
            if stored is None:
                return None
            try:
                # Quick enough for the event loop: the arrays are views of the stored bytes.
                outline = Preview.from_bytes(stored).outline
            except ValueError as error:
                log.warning("stored preview %s cannot be read; building it again: %s", key, error)
                return None
            self._outlines.put(key, outline)
        return outline

    async def _make(
        self, place: PreviewPlace, path: str, options: RenderOptions
    ) -> tuple[bytes | None, PreviewOutline | None]:
        """The preview of the file at path, stored at place, and the thumbnail drawn on the way (None when it needs
        finer pixels). With idle workers the file is read in bands, one per worker; else one job reads it (and plots
        a 1-D spectrum, which has no preview: outline None)."""
        parts = await self._bands(path, options)
        if parts is not None:
            thumbnail, outline = await self._pool.run(thumbnail_from_bands, parts, options, place, about=place.key)
        else:
            thumbnail, outline = await self._pool.run(self.read_file, path, options, self.size, place, about=place.key)
        if outline is not None:
            self._outlines.put(place.key, outline)
        return thumbnail, outline

    async def _bands(self, path: str, options: RenderOptions) -> list[PreviewBand] | None:
        """The preview's bands of the file at path, one per idle worker, when two or more are idle and the thumbnail
        is likely drawn from the preview; else None, as for a 1-D spectrum, which has no bands."""
        bands = self._pool.idle
        if bands < 2 or not likely_from_preview(options, self.size):
            return None
        parts = await all_or_first_failure(
            *(self._pool.run(self.read_band, path, band, bands, self.size) for band in range(bands))
        )
        read = [part for part in parts if part is not None]
        return read if len(read) == len(parts) else None

    async def _drawn_from_stored(self, place: PreviewPlace, options: RenderOptions) -> bytes | None:
        """The thumbnail drawn from the preview stored at place; None when the preview is gone or damaged."""
        try:
            return await self._pool.run(thumbnail_from_stored_preview, place, options, about=place.key)
        except ValueError as error:
            log.warning("stored preview %s cannot be read; building it again: %s", place.key, error)
            return None
