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
    # Colour composites only: "zscale" draws the channels with fits2image's curve, on one scale in
    # units of each channel's sky noise; "lupton" is an asinh composite that keeps star colours.
    stretch: str = "zscale"
    # Colour composites only: multipliers of the red, visual and blue channels' light above their black
    # points, before the stretch.
    weights: tuple[float, float, float] = (1.0, 1.0, 1.0)
    # One of FORMATS; quality applies to JPEG and WebP, progressive to JPEG.
    format: str = "jpeg"
