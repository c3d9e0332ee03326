"""thumbproxy: thumbnails of FITS frames held in a Science Archive."""

__version__ = "0.1.0"
