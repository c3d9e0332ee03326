"""Turn FITS frames into JPEG thumbnails: pure functions, paths in, bytes out."""

from thumbproxy.render.color import ColorThumbnail, color_thumbnail_from_files
from thumbproxy.render.errors import RenderError
from thumbproxy.render.options import RenderOptions
from thumbproxy.render.thumbnail import thumbnail_from_file

__all__ = ["ColorThumbnail", "RenderError", "RenderOptions", "color_thumbnail_from_files", "thumbnail_from_file"]
