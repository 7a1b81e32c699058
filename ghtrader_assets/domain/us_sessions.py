"""US equity regular sessions (NYSE): the last completed session a request covers, the resume window's anchor."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")
CLOSE = time(16, 0)  # regular close; on 13:00 half days 16:00 is later, so a session is never counted early
# NYSE full closures (published calendars); outside these years only weekends are closed.
HOLIDAYS: frozenset[date] = frozenset(
    date.fromisoformat(d)
    for d in (
        "2024-01-01 2024-01-15 2024-02-19 2024-03-29 2024-05-27 2024-06-19 2024-07-04 2024-09-02 "
        "2024-11-28 2024-12-25 "
        "2025-01-01 2025-01-09 2025-01-20 2025-02-17 2025-04-18 2025-05-26 2025-06-19 2025-07-04 "
        "2025-09-01 2025-11-27 2025-12-25 "
        "2026-01-01 2026-01-19 2026-02-16 2026-04-03 2026-05-25 2026-06-19 2026-07-03 2026-09-07 "
        "2026-11-26 2026-12-25 "
        "2027-01-01 2027-01-18 2027-02-15 2027-03-26 2027-05-31 2027-06-18 2027-07-05 2027-09-06 "
        "2027-11-25 2027-12-24"
    ).split()
)


def is_session(day: date) -> bool:
    """True when NYSE holds a regular session on `day`."""
    return day.weekday() < 5 and day not in HOLIDAYS


def last_completed_session(end: datetime) -> date:
    """The New York date of the latest regular session closed at or before `end` (time-zone aware).
    Saturday, Sunday and Friday evening all give that Friday; a weekday before 16:00 gives the
    previous session, so an unfinished day is never taken as final."""
    local = end.astimezone(NEW_YORK)
    day = local.date() if local.time() >= CLOSE else local.date() - timedelta(days=1)
    while not is_session(day):
        day -= timedelta(days=1)
    return day


def parse_end(text: str) -> datetime:
    """An ISO time standing for "now" (`--end`, asset config `end`): without a zone it is New York
    time, as everything else the user reads about sessions. ValueError when malformed."""
    parsed = datetime.fromisoformat(text.strip())
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=NEW_YORK)
