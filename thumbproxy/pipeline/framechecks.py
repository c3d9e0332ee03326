"""Which frames get thumbnails: the existing service's checks, with its messages."""

from dataclasses import dataclass

from thumbproxy.archive.base import Frame
from thumbproxy.errors import ThumbproxyError

FITS_EXTENSIONS = (".fits", ".fits.fz")
# Spectra carry only a prototype WCS, so they are never turned north up.
SPECTRAL_TYPES = frozenset({"SPECTRUM", "ARC", "LAMPFLAT"})


@dataclass(frozen=True)
class FramePolicy:
    """The configurable parts of the checks."""

    required_keys: tuple[str, ...]
    valid_types: tuple[str, ...]
    valid_color_types: tuple[str, ...]


def check_frame(frame: Frame, policy: FramePolicy, color: bool) -> None:
    """Raise ThumbproxyError(400) with the existing service's message if no thumbnail can be made."""
    if not all(key in frame.record for key in policy.required_keys):
        raise ThumbproxyError(400, "Cannot generate thumbnail for given frame")
    configuration_type = (frame.configuration_type or "").upper()
    if configuration_type not in policy.valid_types:
        raise ThumbproxyError(400, f"Cannot generate thumbnail for configuration_type={configuration_type}")
    if color and not frame.request_id:
        raise ThumbproxyError(400, "Cannot generate color thumbnail for a frame that does not have a request")
    if color and configuration_type not in policy.valid_color_types:
        raise ThumbproxyError(400, f"Cannot generate color thumbnail for configuration_type={configuration_type}")
    if not (frame.filename or "").endswith(FITS_EXTENSIONS):
        raise ThumbproxyError(400, "Cannot generate thumbnail for non FITS-type frame")


def is_spectrum(frame: Frame) -> bool:
    """Whether the frame is a spectrum, which must not be rotated."""
    return (frame.configuration_type or "").upper() in SPECTRAL_TYPES
