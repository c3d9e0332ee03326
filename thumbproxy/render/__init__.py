"""Turn FITS frames into JPEG thumbnails: pure functions, paths in, bytes out."""

from thumbproxy.render.color import ColorThumbnail, render_color_thumbnail
from thumbproxy.render.errors import RenderError
from thumbproxy.render.options import RenderOptions
from thumbproxy.render.thumbnail import render_thumbnail

__all__ = ["ColorThumbnail", "RenderError", "RenderOptions", "render_color_thumbnail", "render_thumbnail"]
