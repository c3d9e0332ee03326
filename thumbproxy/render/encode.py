"""Encode a thumbnail as JPEG, PNG or WebP bytes."""

import io

from PIL import Image

from thumbproxy.render.options import RenderOptions


def encode(image: Image.Image, options: RenderOptions) -> bytes:
    """The image in options.format: JPEG and WebP at options.quality (1-95 useful), JPEG progressive if asked."""
    buffer = io.BytesIO()
    if options.format == "png":
        image.save(buffer, format="PNG")
    elif options.format == "webp":
        # Lossy WebP has no grey mode: a grey image goes to libwebp with equal channels, whose chroma it codes as
        # exactly neutral and nearly free; lossless, the only WebP that decodes exactly grey, is 2-4x larger.
        image.save(buffer, format="WEBP", quality=options.quality)
    else:
        image.save(buffer, format="JPEG", quality=options.quality, progressive=options.progressive)
    return buffer.getvalue()
