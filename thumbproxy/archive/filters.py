"""The frame filters the OCS archive's ``/frames/`` list understands (docs/archive-api.md lists their meanings).

The archive ignores a name it does not know and answers every frame as if it had not been given, so a
misspelt filter (``siteid=lsc``) quietly answers another site's frames: names are checked against this
list before a caller's filters are sent.
"""

from collections.abc import Iterable

FRAME_FILTERS = frozenset({
    # Exact matches on the record's fields, and their legacy upper-case names.
    "proposal_id", "PROPID", "configuration_type", "OBSTYPE", "instrument_id", "INSTRUME",
    "site_id", "SITEID", "telescope_id", "TELID", "primary_optical_element", "FILTER",
    "reduction_level", "RLEVEL", "request_id", "REQNUM", "observation_id", "BLKUID",
    "basename_exact", "target_name_exact",
    # Substrings, case ignored.
    "basename", "target_name", "OBJECT",
    # Exposure time at least this many seconds.
    "exposure_time", "EXPTIME",
    # Observation date from start, up to end, or equal; observation day; public date.
    "start", "end", "DATE_OBS", "DAY_OBS", "dayobs", "L1PUBDAT",
    # Configuration types in or out, calibrations out, proprietary only (public=false).
    "include_configuration_type", "exclude_configuration_type", "exclude_OBSTYPE", "exclude_calibrations",
    "public",
    # Sky position (WKT POINT(RA DEC)) inside the frame's footprint; frames whose headers name a submitter.
    "covers", "intersects", "submitter", "empty_target_name",
})


def unknown_filters(names: Iterable[str]) -> list[str]:
    """The names, in order, that are not filters of the archive."""
    return [name for name in names if name not in FRAME_FILTERS]
