"""Which frames make a colour composite: one per channel from the requested frame's request."""

from collections.abc import Sequence

from thumbproxy.archive.base import Frame
from thumbproxy.errors import ThumbproxyError

# Composites mix reduced frames only: mixing reduction levels was a bug of the old service.
COLOR_REDUCTION_LEVEL = 91


def color_listing_filters(frame: Frame) -> dict[str, str]:
    """The archive filters that list the frames a composite of this frame may use."""
    return {"request_id": str(frame.request_id), "reduction_level": str(COLOR_REDUCTION_LEVEL)}


def select_rvb(requested: Frame, candidates: Sequence[Frame], channel_filters: Sequence[Sequence[str]]) -> list[Frame]:
    """The red, visual and blue frames: for each channel, of its filters, the one closest in time
    to the requested frame. 404 "RVB frames not found" when a channel has none."""
    usable = [
        frame
        for frame in candidates
        if frame.reduction_level == COLOR_REDUCTION_LEVEL and frame.request_id == requested.request_id
    ]
    selected = []
    for filters in channel_filters:
        matching = [frame for frame in usable if frame.primary_optical_element in filters]
        if not matching:
            raise ThumbproxyError(404, "RVB frames not found")
        selected.append(min(matching, key=lambda frame: _time_apart(frame, requested)))
    return selected


def _time_apart(frame: Frame, requested: Frame) -> tuple[float, int]:
    # The id breaks ties so the choice never depends on the archive's ordering.
    if frame.observation_date is None or requested.observation_date is None:
        return float("inf"), frame.id
    return abs((frame.observation_date - requested.observation_date).total_seconds()), frame.id
