"""The cache key of a thumbnail: everything that changes its bytes, and nothing else."""

import hashlib
import json
from dataclasses import asdict

from thumbproxy.formats import EXTENSIONS
from thumbproxy.render.options import RenderOptions

# Bump when the renderer's output changes, so no cache level serves the old look.
RENDERER_VERSION = 1


def thumbnail_key(frames: tuple[tuple[int, str], ...], options: RenderOptions) -> str:
    """"<first frame id>/<hex digest of the frames and their versions, every render option and the renderer>.<ext>".

    `frames` are (id, version) pairs: one for a single frame, red, visual and blue for a colour
    composite. The first id leads so that stored objects group by frame (and S3 lifecycle rules can use it).
    """
    identity = {
        "frames": [list(frame) for frame in frames],
        "renderer": RENDERER_VERSION,
        "options": asdict(options),
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    return f"{frames[0][0]}/{digest}.{EXTENSIONS[options.format]}"
