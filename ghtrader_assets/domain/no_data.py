"""When a provider-empty day is asked again: after 1, 2, 4 ... days, then it is reported as permanent."""

from __future__ import annotations

from datetime import datetime, timedelta

DEFAULT_MAX_RETRIES = 6  # asks at +1, +2, +4, +8, +16, +32 days: about two months of retries


def next_retry(asked_at: datetime, attempts: int, max_retries: int = DEFAULT_MAX_RETRIES) -> datetime | None:
    """The time to ask again after the `attempts`-th empty answer (at `asked_at`); None when the retries
    are used up (the record becomes permanent). The wait doubles: 1 day after the first empty answer."""
    if attempts < 1:
        raise ValueError("attempts counts empty answers, starting at 1")
    if attempts > max_retries:
        return None
    return asked_at + timedelta(days=2 ** (attempts - 1))


def permanent_reason(attempts: int, first_reason: str) -> str:
    return f"permanent: {first_reason}; still empty after {attempts} answers"
