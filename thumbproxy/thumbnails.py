"""Making a thumbnail of a frame: cache first, else download once and render in the pool."""

import dataclasses
from collections.abc import Callable

from thumbproxy.archive.base import Archive, Frame
from thumbproxy.cache.base import ThumbnailCache
from thumbproxy.errors import ThumbproxyError
from thumbproxy.framechecks import is_spectrum
from thumbproxy.render import RenderError, render_thumbnail
from thumbproxy.render.options import RenderOptions
from thumbproxy.renderpool import RenderPool
from thumbproxy.thumbkey import thumbnail_key


class Thumbnailer:
    """Thumbnails of frames whose access has already been checked against the archive."""

    def __init__(
        self,
        archive: Archive,
        cache: ThumbnailCache,
        pool: RenderPool,
        render: Callable[[str, RenderOptions], bytes] = render_thumbnail,
    ) -> None:
        self._archive = archive
        self._cache = cache
        self._pool = pool
        # Module-level function: it is pickled by name into a pool worker.
        self.render = render

    async def thumbnail(self, frame: Frame, options: RenderOptions) -> bytes:
        """The thumbnail's bytes, from the cache or freshly rendered and stored."""
        options = dataclasses.replace(options, spectrum=is_spectrum(frame))
        key = thumbnail_key(frame.id, frame.version, options)
        cached = await self._cache.get(key)
        if cached is not None:
            return cached
        async with self._archive.fits_file(frame) as fits_path:
            try:
                thumbnail = await self._pool.run(self.render, str(fits_path), options)
            except RenderError as error:
                raise ThumbproxyError(422, str(error)) from None
        await self._cache.put(key, thumbnail)
        return thumbnail
