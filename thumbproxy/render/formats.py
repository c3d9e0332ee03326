"""Image formats of thumbnails: the file extension a cache key ends with, and the media type it is served as."""

EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp"}
MEDIA_TYPES = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}


def media_type(key: str) -> str:
    """The media type of the thumbnail stored under a cache key (which ends with its extension)."""
    return MEDIA_TYPES[key.rpartition(".")[2]]
