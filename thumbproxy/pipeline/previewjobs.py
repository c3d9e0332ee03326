"""The jobs a render worker runs for thumbnails made with a frame's preview, each named for what it returns.

A worker that makes a preview (or joins its bands) stores it on the disk level itself, and a worker that draws
from a stored preview maps it from there: the server keeps no preview, and hands none made on to a worker.
"""

import os
from typing import NamedTuple

from thumbproxy.cache.disk import map_elsewhere, write_elsewhere
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

_worker_previews: LruMap[str, Preview] = LruMap(WORKER_PREVIEWS)


class PreviewPlace(NamedTuple):
    """Where a frame version's preview is stored: the disk level's directory, and the preview's key there."""

    directory: str
    key: str


class DrawnFromPreview(NamedTuple):
    """A thumbnail drawn from a preview, and the preview resampled to the thumbnail's size when this job
    resampled it: the server keeps that for the size's other thumbnails."""

    image: bytes
    resampled: ResampledPreview | None


def thumbnail_and_stored_outline(
    path: str | os.PathLike[str], options: RenderOptions, preview_size: int, place: PreviewPlace | None
) -> tuple[bytes, PreviewOutline | None]:
    """The thumbnail of the FITS frame at path, and the outline of its preview, made on the way and stored at
    place; None when there is no place (the frame is read only for this thumbnail) or the disk failed."""
    thumbnail, preview = thumbnail_and_preview_from_file(path, options, preview_size)
    return thumbnail, None if place is None or preview is None else _stored(place, preview)


def thumbnail_from_bands(
    bands: list[PreviewBand], options: RenderOptions, place: PreviewPlace
) -> tuple[DrawnFromPreview | None, PreviewOutline | None]:
    """The thumbnail drawn from the preview these bands join into (None when it needs finer pixels), and the
    outline of that preview, stored at place (None when the disk failed)."""
    preview = join_bands(bands)
    outline = _stored(place, preview)
    return (_drawn(preview, options, None) if preview.covers(options) else None), outline


def thumbnail_from_stored_preview(
    place: PreviewPlace, options: RenderOptions, resampled: ResampledPreview | None
) -> DrawnFromPreview | None:
    """The thumbnail drawn from the preview stored at place (which covers it), from its resampled pixels when
    given; None when it is stored no more. ValueError when the stored preview is damaged."""
    preview = _worker_previews.get(place.key)
    if preview is None:
        stored = map_elsewhere(place.directory, place.key)
        if stored is None:
            return None
        preview = Preview.from_bytes(stored)
        _worker_previews.put(place.key, preview)
    return _drawn(preview, options, resampled)


def _stored(place: PreviewPlace, preview: Preview) -> PreviewOutline | None:
    """The preview's outline once it is stored at place; None when the disk failed."""
    if not write_elsewhere(place.directory, place.key, preview.to_bytes()):
        return None
    _worker_previews.put(place.key, preview)
    return preview.outline


def _drawn(preview: Preview, options: RenderOptions, resampled: ResampledPreview | None) -> DrawnFromPreview:
    if resampled is not None:
        return DrawnFromPreview(thumbnail_from_resampled(preview, resampled, options), None)
    made = preview_at_size(preview, options)
    return DrawnFromPreview(thumbnail_from_resampled(preview, made, options), made)
