"""Turn a FITS frame into a JPEG thumbnail: pure functions, path in, bytes out."""

from thumbproxy.render.options import RenderOptions
from thumbproxy.render.thumbnail import RenderError, render_thumbnail

__all__ = ["RenderError", "RenderOptions", "render_thumbnail"]
