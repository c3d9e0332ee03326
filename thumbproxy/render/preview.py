"""A frame's preview: the frame block-averaged to about THUMBPROXY_PREVIEW_SIZE pixels on its long
side, with everything its thumbnails take from the full-resolution pixels.

Thumbnails that need no finer pixels are always made from the preview, also the first one, so
their bytes are the same whether the preview was just built or kept from earlier. Several
workers can each read a band of rows and the bands join into exactly the preview read whole. A
thumbnail that needs finer pixels is made from the frame reduced by its own factor, read in the
same pass as the preview.
"""

import io
import json
import math
import mmap
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, partial
from typing import Any

import numpy as np

from thumbproxy.render.errors import refused_as_render_error
from thumbproxy.render.fitsread import FitsImage, open_frame, open_image
from thumbproxy.render.hits import HitFilter
from thumbproxy.render.options import RenderOptions
from thumbproxy.render.orient import Orientation, as_drawn, header_orientation, orientation_cards
from thumbproxy.render.reduce import REDUCING_GAP, output_size, reduction_factor
from thumbproxy.render.samples import BandSamples, PixelSamples, band_samples, concatenated, joined
from thumbproxy.render.stretch import Limits, display_limits

# THUMBPROXY_PREVIEW_SIZE's default (see config.py), for renders outside the service too.
DEFAULT_PREVIEW_SIZE = 1024
# Pixels of the frame read at once (2 MiB as float32): the frame is never whole in memory.
CHUNK_PIXELS = 2**19
# The .npy format versions write_array chooses for a stored preview's arrays.
_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def preview_factor(shape: tuple[int, int], preview_size: int) -> int:
    """The block size of the preview of an image of shape (rows, columns): the largest that leaves
    at least preview_size pixels on the long side (1 for smaller images)."""
    return max(1, max(shape) // preview_size)


def likely_from_preview(options: RenderOptions, preview_size: int) -> bool:
    """Whether the thumbnail options ask for is usually made from a preview of this size, whatever
    the frame: its box is at most 1 / REDUCING_GAP of the preview's long side.

    Only a guess before the frame's shape is known; Preview.covers decides.
    """
    return max(options.width, options.height) * REDUCING_GAP <= preview_size


@dataclass(frozen=True)
class PreviewOutline:
    """What decides which thumbnails a preview covers, without its pixels: a few hundred bytes."""

    shape: tuple[int, int]
    factor: int
    # How the frame's header says to turn it (see header_orientation): read once where the header is.
    orientation: Orientation

    def covers(self, options: RenderOptions) -> bool:
        """Whether the thumbnail options ask for is made from the preview: it needs no finer pixels."""
        return reduction_factor(self.shape, self.thumbnail_size(options)) >= self.factor

    def thumbnail_size(self, options: RenderOptions) -> tuple[int, int]:
        """(width, height) in data orientation of the thumbnail options ask for."""
        return output_size(self.shape, as_drawn(self.orientation, options.spectrum), options)


@dataclass(frozen=True)
class Preview:
    """A frame reduced by an integer factor, and what its thumbnails take from the full-resolution frame.

    A thumbnail's own reduction of the frame is one too (see reduce_image), of factor 1 when it needs
    every pixel.
    """

    # (rows, columns) of the full-resolution image.
    shape: tuple[int, int]
    factor: int
    # The full-resolution image's block mean by factor (see pixelrows.PixelRows.block_mean), particle hits left out
    # (see hits).
    image: np.ndarray
    samples: PixelSamples
    # The header cards the orientation is read from.
    cards: Mapping[str, Any]

    def orientation(self, spectrum: bool) -> Orientation:
        """How the frame is turned for display (see display_orientation)."""
        return as_drawn(self.frame_orientation, spectrum)

    @cached_property
    def frame_orientation(self) -> Orientation:
        """How the cards say to turn the frame, read once (see header_orientation)."""
        return header_orientation(self.cards)

    @cached_property
    def sample_limits(self) -> Limits | None:
        """The display limits of the samples, measured once for every thumbnail size drawn from the preview;
        None without samples (each size then measures its own pixels)."""
        return display_limits(self.samples.limit_samples) if self.samples.limit_samples.size else None

    @property
    def outline(self) -> PreviewOutline:
        return PreviewOutline(self.shape, self.factor, self.frame_orientation)

    def covers(self, options: RenderOptions) -> bool:
        """Whether the thumbnail options ask for is made from this preview: it needs no finer pixels."""
        return self.outline.covers(options)

    def to_bytes(self) -> bytes:
        """The preview as .npy records one after another: its other fields (with the samples' display limits)
        as a JSON document (uint8), the image, the limit samples and the median samples. No pickled objects."""
        limits = self.sample_limits
        orientation = self.frame_orientation
        fields = {
            "shape": self.shape,
            "factor": self.factor,
            "noise": self.samples.noise,
            "cards": dict(self.cards),
            "limits": None if limits is None else [limits.lower, limits.upper],
            "orientation": [orientation.mirror, orientation.quarter_turns],
        }
        stored = io.BytesIO()
        for array in (
            np.frombuffer(json.dumps(fields).encode(), np.uint8),
            self.image,
            self.samples.limit_samples,
            self.samples.median_samples,
        ):
            np.lib.format.write_array(stored, np.ascontiguousarray(array), allow_pickle=False)
        return stored.getvalue()

    @classmethod
    def from_bytes(cls, stored: bytes | mmap.mmap) -> "Preview":
        """The preview to_bytes wrote, its arrays read-only views of stored (bytes, or a file mapped read-only);
        ValueError when it is damaged."""
        # A mapping is read in place: a BytesIO would copy it.
        records = stored if isinstance(stored, mmap.mmap) else io.BytesIO(stored)
        fields_record, image, limit_samples, median_samples = (_next_array(stored, records) for _ in range(4))
        try:
            fields = json.loads(fields_record.tobytes())
            rows, columns = fields["shape"]
            preview = cls(
                (rows, columns),
                fields["factor"],
                image,
                PixelSamples(limit_samples, median_samples, fields["noise"]),
                fields["cards"],
            )
            # Measured when it was made: kept where cached_property keeps what it measures, so a worker
            # reading the preview draws its first size without measuring them again. (Older previews: measured.)
            if fields.get("limits") is not None:
                preview.__dict__["sample_limits"] = Limits(*fields["limits"])
            # Read with astropy when it was made: the server reads outlines on its event loop. (Older: read now.)
            if fields.get("orientation") is not None:
                preview.__dict__["frame_orientation"] = Orientation(*fields["orientation"])
            return preview
        except (KeyError, TypeError) as error:
            raise ValueError(f"not a stored preview: {error!r}") from error


def _next_array(stored: bytes | mmap.mmap, records: io.BytesIO | mmap.mmap) -> np.ndarray:
    """The .npy record at the position of records (a reader over stored), as a view of stored; moves past it."""
    read_header = _HEADER_READERS.get(np.lib.format.read_magic(records))
    if read_header is None:
        raise ValueError("not a stored preview: unknown .npy version")
    shape, fortran_order, dtype = read_header(records)
    if fortran_order or dtype.hasobject:
        raise ValueError("not a stored preview: unexpected array layout")
    array = np.frombuffer(stored, dtype, count=math.prod(shape), offset=records.tell()).reshape(shape)
    records.seek(array.nbytes, io.SEEK_CUR)
    return array


@dataclass(frozen=True)
class PreviewBand:
    """One band of rows of a preview, as a pool worker reads it."""

    shape: tuple[int, int]
    factor: int
    # The band's rows of the preview image.
    image: np.ndarray
    samples: BandSamples
    cards: Mapping[str, Any]


def band_rows(rows: int, unit: int, band: int, bands: int) -> slice:
    """The rows of band `band` of `bands` of an image of `rows` rows, split at multiples of unit.

    Bands are as even as whole units allow; when there are fewer units than bands, the last
    bands are empty.
    """
    units = -(-rows // unit)
    return slice(min(rows, band * units // bands * unit), min(rows, (band + 1) * units // bands * unit))


def join_bands(bands: Sequence[PreviewBand]) -> Preview:
    """The preview from all its bands, in order."""
    first = bands[0]
    return Preview(
        first.shape,
        first.factor,
        _joined([band.image for band in bands]),
        joined([band.samples for band in bands]),
        first.cards,
    )


def _read_bands(image: FitsImage, rows: slice, factors: Sequence[int]) -> list[PreviewBand]:
    """The band of these rows of image (whole tile rows, and whole blocks of each factor) reduced by each
    factor, read a chunk of about CHUNK_PIXELS at a time where that costs nothing more: the full-resolution
    rows are then never all in memory at once."""
    unit = math.lcm(image.tile_rows, *factors)
    step = unit * max(1, CHUNK_PIXELS // (unit * image.shape[1])) if image.reads_rows_cheaply else image.shape[0]
    chunks = [slice(start, min(rows.stop, start + step)) for start in range(rows.start, rows.stop, step)] or [rows]
    # Float chunks are read into the same memory: each is reduced, sampled and searched for hits before the next
    # is read.
    buffer = np.empty((min(step, image.shape[0]), image.shape[1]), np.float32)
    reduced: list[list[np.ndarray]] = [[] for _ in factors]
    samples = []
    hits = HitFilter(image, rows, factors)
    for chunk in chunks:
        pixels = image.read_rows(chunk, buffer)
        reductions = [pixels.block_mean(factor) for factor in factors]
        hits.add(pixels, reductions)
        for images, reduction in zip(reduced, reductions):
            images.append(reduction)
        samples.append(
            band_samples(
                pixels,
                chunk.start * image.shape[1],
                math.prod(image.shape),
                partial(_pixel_after, image, chunk.stop),
            )
        )
    # Taken from the header once, not once per chunk.
    cards = orientation_cards(image.header)
    bands = [
        PreviewBand(image.shape, factor, _joined(images), concatenated(samples), cards)
        for images, factor in zip(reduced, factors)
    ]
    for band, (block_rows, block_columns, means) in zip(bands, hits.finish([band.image for band in bands])):
        band.image[block_rows, block_columns] = means
    return bands


def _pixel_after(image: FitsImage, stop: int) -> Any:
    """The first pixel of row `stop` of image, the one just after a band ending there."""
    return image.read(slice(stop, stop + 1))[0, 0]


def _joined(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """arrays one after another along their first axis; a single one as itself, not copied."""
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def read_band(path: str | os.PathLike[str], band: int, bands: int, preview_size: int) -> PreviewBand | None:
    """Band `band` of `bands` of the preview of the FITS frame at path; only its rows are decompressed. None when
    the file holds a 1-D spectrum, which has neither bands nor a preview: it is plotted from the file whole.

    Bands are whole tile rows and whole preview blocks, so joined in order they are exactly
    the preview read in one band. The first band checks the compressed data's checksum: any
    band failing fails the preview. Raises RenderError and OSError as thumbnail_from_file does.
    """
    with refused_as_render_error(path), open_frame(path, check_datasum=band == 0, memory_mapped=True) as image:
        if not isinstance(image, FitsImage):
            return None
        factor = preview_factor(image.shape, preview_size)
        [read] = _read_bands(image, band_rows(image.shape[0], math.lcm(image.tile_rows, factor), band, bands), [factor])
        return read


def thumbnail_factor(image: FitsImage, options: RenderOptions) -> int:
    """The block size the thumbnail options ask for averages the image over before resampling."""
    outline = PreviewOutline(image.shape, 1, header_orientation(image.header))
    return reduction_factor(image.shape, outline.thumbnail_size(options))


def read_reductions(
    path: str | os.PathLike[str], factors_of: Callable[[FitsImage], Sequence[int]]
) -> tuple[list[Preview], Mapping[str, Any]]:
    """The FITS frame at path reduced by each factor factors_of gives for its image, all in one pass a chunk
    at a time (the whole frame is held only for a factor of 1), and the frame's header. Raises RenderError
    and OSError as thumbnail_from_file does."""
    with refused_as_render_error(path), open_image(path, memory_mapped=True) as image:
        return _reductions(image, factors_of(image)), image.header


def _reductions(image: FitsImage, factors: Sequence[int]) -> list[Preview]:
    """The open image reduced by each factor, all in one pass a chunk at a time."""
    return [join_bands([band]) for band in _read_bands(image, slice(0, image.shape[0]), factors)]


def reduce_image(image: FitsImage, options: RenderOptions, preview_size: int) -> tuple[Preview, Preview | None]:
    """The open image reduced for the thumbnail options ask for (a Preview covering it), and its preview of
    preview_size (None for 0), the same one when that covers the thumbnail, read as read_reductions reads. Raises
    UnreadableFrame when its pixels cannot be read."""

    def factors(image: FitsImage) -> list[int]:
        own = thumbnail_factor(image, options)
        if not preview_size:
            return [own]
        factor = preview_factor(image.shape, preview_size)
        return [factor] if own >= factor else [own, factor]

    previews = _reductions(image, factors(image))
    return previews[0], previews[-1] if preview_size else None
