"""Encode a thumbnail as JPEG bytes."""

import io

from PIL import Image


def encode_jpeg(image: Image.Image, quality: int, progressive: bool) -> bytes:
    """JPEG bytes of image at the given quality (1-95 useful), progressive if asked."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality, progressive=progressive)
    return buffer.getvalue()
