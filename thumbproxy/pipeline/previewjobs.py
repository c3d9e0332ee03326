"""The jobs a render worker runs for thumbnails made with a frame's preview, each named for what it returns.

A worker that makes a preview (or joins its bands) stores it on the disk level itself, and a worker that draws
from a stored preview maps it from there: the server keeps no preview, and hands none made on to a worker. The
pool runs a frame's jobs on the worker that ran its last one when it is free, so what that worker keeps of the
frame (its preview, resampled to the sizes drawn lately) is there for the next.
"""

import os
from typing import NamedTuple

from thumbproxy.cache.disk import map_elsewhere, write_elsewhere
from thumbproxy.render.display import cut_options
from thumbproxy.render.options import RenderOptions
from thumbproxy.render.preview import Preview, PreviewBand, PreviewOutline, join_bands
from thumbproxy.render.thumbnail import (
    ResampledPreview,
    preview_at_size,
    thumbnail_and_preview_from_file,
    thumbnail_from_resampled,
)
from thumbproxy.support.lrumap import LruMap

# Previews a worker keeps after making or reading them: a frame's next thumbnails tend to follow each other.
WORKER_PREVIEWS = 4
# Previews resampled to a thumbnail size a worker keeps, about 1 MiB each: thumbnails of that size and display
# limits differing only in curve, gamma, colours, label or format skip the resampling, the larger part of their work.
WORKER_RESAMPLED = 16

_worker_previews: LruMap[str, Preview] = LruMap(WORKER_PREVIEWS)
# By preview key, thumbnail size and the options deciding the display limits, which the resampled pixels are clipped to.
_worker_resampled: LruMap[tuple[str, tuple[int, int], tuple[object, ...]], ResampledPreview] = LruMap(WORKER_RESAMPLED)


class PreviewPlace(NamedTuple):
    """Where a frame version's preview is stored: the disk level's directory, and the preview's key there."""

    directory: str
    key: str


def thumbnail_and_stored_outline(
    path: str | os.PathLike[str], options: RenderOptions, preview_size: int, place: PreviewPlace | None
) -> tuple[bytes, PreviewOutline | None]:
    """The thumbnail of the FITS frame at path, and the outline of its preview, made on the way and stored at
    place; None when there is no place (the frame is read only for this thumbnail) or the disk failed."""
    thumbnail, preview = thumbnail_and_preview_from_file(path, options, preview_size)
    return thumbnail, None if place is None or preview is None else _stored(place, preview)


def thumbnail_from_bands(
    bands: list[PreviewBand], options: RenderOptions, place: PreviewPlace
) -> tuple[bytes | None, PreviewOutline | None]:
    """The thumbnail drawn from the preview these bands join into (None when it needs finer pixels), and the
    outline of that preview, stored at place (None when the disk failed)."""
    preview = join_bands(bands)
    outline = _stored(place, preview)
    return (_drawn(place, preview, options) if preview.covers(options) else None), outline


def thumbnail_from_stored_preview(place: PreviewPlace, options: RenderOptions) -> bytes | None:
    """The thumbnail drawn from the preview stored at place (which covers it); None when it is stored no more.
    ValueError when the stored preview is damaged."""
    preview = _worker_previews.get(place.key)
    if preview is None:
        stored = map_elsewhere(place.directory, place.key)
        if stored is None:
            return None
        preview = Preview.from_bytes(stored)
        _worker_previews.put(place.key, preview)
    return _drawn(place, preview, options)


def _stored(place: PreviewPlace, preview: Preview) -> PreviewOutline | None:
    """The preview's outline once it is stored at place; None when the disk failed."""
    if not write_elsewhere(place.directory, place.key, preview.to_bytes()):
        return None
    _worker_previews.put(place.key, preview)
    return preview.outline


def _drawn(place: PreviewPlace, preview: Preview, options: RenderOptions) -> bytes:
    """The thumbnail drawn from the preview stored at place, resampled to its size once for every thumbnail
    of that size and display limits this worker draws."""
    size_key = (place.key, preview.outline.thumbnail_size(options), cut_options(options))
    resampled = _worker_resampled.get(size_key)
    if resampled is None:
        resampled = preview_at_size(preview, options)
        _worker_resampled.put(size_key, resampled)
    return thumbnail_from_resampled(preview, resampled, options)
