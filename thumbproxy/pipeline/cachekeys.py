"""Cache keys: a thumbnail's covers everything that changes its bytes, and nothing else; a preview's
names one frame version's preview."""

import hashlib
import json
from dataclasses import fields
from typing import Any

from thumbproxy.render.formats import EXTENSIONS
from thumbproxy.render.options import RenderOptions

# Bump when the renderer's output changes, so no cache level serves the old look.
RENDERER_VERSION = 6


def thumbnail_key(frames: tuple[tuple[int, str], ...], options: RenderOptions, preview_size: int) -> str:
    """ "<first frame id>/<hex digest of the frames, their versions, the render options not at their default
    (_keyed_options), the preview size and the renderer>.<ext>".

    `frames` are (id, version) pairs: one for a single frame, red, visual and blue for a colour
    composite. The first id leads so that stored objects group by frame (and S3 lifecycle rules can use it).
    `preview_size` is that of the previews the thumbnail may be made from (0: none).
    """
    identity = {
        "frames": [list(frame) for frame in frames],
        "renderer": RENDERER_VERSION,
        "options": _keyed_options(options),
        "preview_size": preview_size,
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    return f"{frames[0][0]}/{digest}.{EXTENSIONS[options.format]}"


def _keyed_options(options: RenderOptions) -> dict[str, Any]:
    """The options a thumbnail's key names: those not at their default, so an option added later leaves every
    request that does not use it with the key it had. (Changing a default changes what leaving an option out
    means: bump RENDERER_VERSION then.)"""
    return {
        option.name: getattr(options, option.name)
        for option in fields(options)
        if getattr(options, option.name) != option.default
    }


def preview_key(frame: tuple[int, str], preview_size: int) -> str:
    """ "preview/<frame id>/<version>/<preview size>/<renderer version>": never a thumbnail's key."""
    frame_id, version = frame
    return f"preview/{frame_id}/{version}/{preview_size}/{RENDERER_VERSION}"
