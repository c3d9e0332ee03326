"""What a thumbnail should look like: everything the renderer needs besides the FITS file."""

from dataclasses import dataclass

DEFAULT_SIZE = 200
DEFAULT_PERCENTILE = 99.5
DEFAULT_QUALITY = 80
STRETCHES = ("zscale", "lupton")
FORMATS = ("jpeg", "png", "webp")


@dataclass(frozen=True)
class RenderOptions:
    """Normalised, validated rendering parameters; picklable so a pool worker can take them."""

    width: int = DEFAULT_SIZE
    height: int = DEFAULT_SIZE
    label: str = ""
    median: bool = False
    percentile: float = DEFAULT_PERCENTILE
    quality: int = DEFAULT_QUALITY
    progressive: bool = False
    # Spectra carry only a prototype WCS: rotating them "north up" turns them on their side.
    spectrum: bool = False
    # Colour composites only: "zscale" scales each channel like a single frame (fits2image's
    # look); "lupton" is an asinh composite that keeps star colours.
    stretch: str = "zscale"
    # One of FORMATS; quality applies to JPEG and WebP, progressive to JPEG.
    format: str = "jpeg"
