"""What a thumbnail should look like: everything the renderer needs besides the FITS file."""

from dataclasses import dataclass

DEFAULT_SIZE = 200
DEFAULT_PERCENTILE = 99.5
DEFAULT_QUALITY = 80
# Stretches of single frames and of each channel of a colour composite; lupton is a colour composite's own.
STRETCHES = ("zscale", "linear", "sqrt", "log", "asinh", "histeq")
COLOR_STRETCHES = (*STRETCHES, "lupton")
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
    # One of STRETCHES: "zscale" is fits2image's look. Colour composites also take "lupton", an asinh
    # composite that keeps star colours.
    stretch: str = "zscale"
    # Cuts in data units (fits2image's zmin, zmax), or as percentiles of the frame's pixels; None: the
    # stretch's own interval. A value wins over a percentile.
    zmin: float | None = None
    zmax: float | None = None
    min_percent: float | None = None
    max_percent: float | None = None
    # fits2image's zscale contrast (0.1 when None), and gamma_adjust (None: 2.5 for zscale, 1 otherwise).
    contrast: float | None = None
    gamma: float | None = None
    # White sky and black stars, as on printed charts.
    invert: bool = False
    # A colour map of palette.COLORMAPS, which makes a grey frame RGB; "" for grey.
    cmap: str = ""
    # Colour composites only: multipliers of the red, visual and blue channels' light above their black
    # points, before the stretch.
    weights: tuple[float, float, float] = (1.0, 1.0, 1.0)
    # One of FORMATS; quality applies to JPEG and WebP, progressive to JPEG.
    format: str = "jpeg"
