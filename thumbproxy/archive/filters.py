"""The frame filters the OCS archive's ``/frames/`` list understands (docs/archive-api.md lists their meanings).

The archive ignores a name it does not know and answers every frame as if it had not been given, so a
misspelt filter (``siteid=lsc``) quietly answers another site's frames: names are checked against this
list before a caller's filters are sent.
"""

from collections.abc import Iterable, Mapping
from datetime import datetime

FRAME_FILTERS = frozenset(
    {
        # Exact matches on the record's fields, and their legacy upper-case names.
        "proposal_id",
        "PROPID",
        "configuration_type",
        "OBSTYPE",
        "instrument_id",
        "INSTRUME",
        "site_id",
        "SITEID",
        "telescope_id",
        "TELID",
        "primary_optical_element",
        "FILTER",
        "reduction_level",
        "RLEVEL",
        "request_id",
        "REQNUM",
        "observation_id",
        "BLKUID",
        "basename_exact",
        "target_name_exact",
        # Substrings, case ignored.
        "basename",
        "target_name",
        "OBJECT",
        # Exposure time at least this many seconds.
        "exposure_time",
        "EXPTIME",
        # Observation date from start, up to end, or equal; observation day; public date.
        "start",
        "end",
        "DATE_OBS",
        "DAY_OBS",
        "dayobs",
        "L1PUBDAT",
        # Configuration types in or out, calibrations out, proprietary only (public=false).
        "include_configuration_type",
        "exclude_configuration_type",
        "exclude_OBSTYPE",
        "exclude_calibrations",
        "public",
        # Sky position (WKT POINT(RA DEC)) inside the frame's footprint; frames whose headers name a submitter.
        "covers",
        "intersects",
        "submitter",
        "empty_target_name",
    }
)


def unknown_filters(names: Iterable[str]) -> list[str]:
    """The names, in order, that are not filters of the archive."""
    return [name for name in names if name not in FRAME_FILTERS]


def window_mistakes(filters: Mapping[str, str]) -> dict[str, list[str]]:
    """Messages by field for a ``start`` and ``end`` the archive cannot compare; empty when it can.

    Given both, the archive subtracts one from the other to judge whether the window is small enough
    to count exactly, and answers 500 when it cannot: a value that is not ISO 8601, or one with a time
    zone and one without.
    """
    if "start" not in filters or "end" not in filters:
        return {}
    start, end = _iso_datetime(filters["start"]), _iso_datetime(filters["end"])
    if start is None or end is None:
        return {
            name: ["Enter an ISO 8601 date or date-time, such as 2026-11-20T03:00:00Z."]
            for name, value in (("start", start), ("end", end))
            if value is None
        }
    if (start.tzinfo is None) != (end.tzinfo is None):
        return {"end": ["Give start and end both with a time zone, or both without."]}
    return {}


def _iso_datetime(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
