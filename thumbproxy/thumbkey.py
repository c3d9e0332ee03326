"""The cache key of a thumbnail: everything that changes its bytes, and nothing else."""

import hashlib
import json
from dataclasses import asdict

from thumbproxy.render.options import RenderOptions

# Bump when the renderer's output changes, so no cache level serves the old look.
RENDERER_VERSION = 1
IMAGE_FORMAT = "jpeg"


def thumbnail_key(frame_id: int, frame_version: str, options: RenderOptions) -> str:
    """"<frame id>/<hex digest of the frame, its version, every render option and the renderer>".

    The frame id leads so that stored objects group by frame (and S3 lifecycle rules can use it).
    """
    identity = {
        "frame_id": frame_id,
        "frame_version": frame_version,
        "format": IMAGE_FORMAT,
        "renderer": RENDERER_VERSION,
        "options": asdict(options),
    }
    return f"{frame_id}/{hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()}"
