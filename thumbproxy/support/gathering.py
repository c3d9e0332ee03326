"""Awaiting several things at once, failing as the first of them in order does."""

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def all_or_first_failure(*work: Awaitable[T]) -> list[T]:
    """Every outcome once all have ended, or the failure of the first to fail in the order given (not in time)."""
    outcomes = await asyncio.gather(*work, return_exceptions=True)
    failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    if failures:
        raise failures[0]
    return [outcome for outcome in outcomes if not isinstance(outcome, BaseException)]
