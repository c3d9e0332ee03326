"""Turning an archive's JSON frame record into a `Frame`."""

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeGuard

from thumbproxy.archive.base import Frame
from thumbproxy.errors import ThumbproxyError

MALFORMED_RECORD = "archive answered with a malformed frame record"

# Sorts version_set entries without a creation date before every dated one.
_UNDATED = datetime.min.replace(tzinfo=UTC)


def frame_from_record(record: Any) -> Frame:
    """The `Frame` described by an archive frame record (lower-case field names).

    Missing or null fields become None; a record without an integer ``id`` is the archive's
    fault and raises ThumbproxyError(502).
    """
    if not isinstance(record, Mapping) or not _is_int(record.get("id")):
        raise ThumbproxyError(502, MALFORMED_RECORD)
    return Frame(
        id=record["id"],
        basename=_text(record.get("basename")) or "",
        filename=_text(record.get("filename")),
        url=_text(record.get("url")),
        proposal_id=_text(record.get("proposal_id")),
        configuration_type=_text(record.get("configuration_type")),
        request_id=_integer(record.get("request_id")),
        reduction_level=_integer(record.get("reduction_level")),
        primary_optical_element=_text(record.get("primary_optical_element")),
        observation_date=parse_datetime(record.get("observation_date")),
        public_date=parse_datetime(record.get("public_date")),
        version=_version(record.get("version_set")),
        record=record,
    )


def parse_datetime(value: Any) -> datetime | None:
    """An aware datetime from an ISO 8601 string (``Z``, offsets and fractions allowed); naive means UTC."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _version(version_set: Any) -> str:
    """The newest version's md5, else its key, else ""; newest by creation date, then by id."""
    if not isinstance(version_set, list):
        return ""
    versions = [entry for entry in version_set if isinstance(entry, Mapping)]
    if not versions:
        return ""
    newest = max(
        versions,
        key=lambda entry: (
            parse_datetime(entry.get("created")) or _UNDATED,
            entry.get("id") if _is_int(entry.get("id")) else -1,
        ),
    )
    return _text(newest.get("md5")) or _text(newest.get("key")) or ""


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _integer(value: Any) -> int | None:
    """An int from an int or a string of digits (header-derived values); anything else is None."""
    if _is_int(value):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return None
    return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)
