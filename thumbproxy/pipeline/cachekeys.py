"""Cache keys: a thumbnail's covers everything that changes its bytes, and nothing else; a preview's
names one frame version's preview."""

import hashlib
import json
from dataclasses import asdict

from thumbproxy.render.formats import EXTENSIONS
from thumbproxy.render.options import RenderOptions

# Bump when the renderer's output changes, so no cache level serves the old look.
RENDERER_VERSION = 6
DEFAULT_OPTIONS = asdict(RenderOptions())


def thumbnail_key(frames: tuple[tuple[int, str], ...], options: RenderOptions, preview_size: int) -> str:
    """ "<first frame id>/<hex digest of the frames, their versions, every render option not at its default,
    the preview size and the renderer>.<ext>".

    `frames` are (id, version) pairs: one for a single frame, red, visual and blue for a colour
    composite. The first id leads so that stored objects group by frame (and S3 lifecycle rules can use it).
    `preview_size` is that of the previews the thumbnail may be made from (0: none).
    """
    identity = {
        "frames": [list(frame) for frame in frames],
        "renderer": RENDERER_VERSION,
        # Options at their defaults are left out: an option added later changes no earlier request's key.
        "options": {name: value for name, value in asdict(options).items() if value != DEFAULT_OPTIONS[name]},
        "preview_size": preview_size,
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    return f"{frames[0][0]}/{digest}.{EXTENSIONS[options.format]}"


def preview_key(frame: tuple[int, str], preview_size: int) -> str:
    """ "preview/<frame id>/<version>/<preview size>/<renderer version>": never a thumbnail's key."""
    frame_id, version = frame
    return f"preview/{frame_id}/{version}/{preview_size}/{RENDERER_VERSION}"
