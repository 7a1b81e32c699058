"""Session evidence: ticks outside the known sessions that recur at the same clock times over several days.

A night that ran later (or a session that opened earlier) than any version the session history knows leaves
the same footprint every day it held: served ticks outside the windows, at the same Beijing clock minutes.
Such a span is evidence of a session change the history lacks, reported with the GHTRADER_SESSION_HISTORY
entry that would explain it; ticks outside the sessions on fewer days stay ordinary cleaning.

Clock minutes are Beijing minutes of the day; a night's minutes after midnight count from 24:00 (so 01:30
is 25:30, as in quote.trading_time) and a span never wraps.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from ghtrader_assets.domain.calendar import CalendarError, TradingCalendar
from ghtrader_assets.domain.sessions import Sessions, Window

MIN_DAYS = 3  # a clock minute is evidence when outside ticks fall in it on at least this many trading days
MAX_GAP_MIN = 5  # minutes of evidence at most this far apart form one span
NIGHT_FROM_MIN = 18 * 60  # the trading day begins at 18:00 Beijing
ROUND_MIN = 5  # a suggested window edge is rounded outwards to whole 5 minutes
ADJACENT_MIN = 10  # a span this close to a window's edge extends that window


@dataclass(frozen=True)
class SessionEvidence:
    """Outside-session ticks of one variety recurring in [first_minute, last_minute] (session clock)."""

    variety: str
    first_minute: int
    last_minute: int
    days: tuple[date, ...]
    ticks: int

    def describe(self) -> str:
        return (f"{self.variety}: {self.ticks} ticks between {_hhmm(self.first_minute)} and "
                f"{_hhmm(self.last_minute)}:59 Beijing on {len(self.days)} trading days "
                f"({self.days[0]}..{self.days[-1]}) lie outside every known session")


def session_minute(clock_minute: int) -> int:
    """A Beijing minute of the day (0..1439) on the session clock: after-midnight night minutes past 24:00."""
    return clock_minute + 24 * 60 if clock_minute < 6 * 60 else clock_minute


def find_evidence(variety: str, outside: Mapping[date, Mapping[int, int]], min_days: int = MIN_DAYS) -> list[SessionEvidence]:
    """Spans of session-clock minutes with outside-session ticks on at least `min_days` trading days.
    `outside`: trading day -> Beijing clock minute (0..1439) -> ticks outside the sessions."""
    by_minute: dict[int, dict[date, int]] = {}
    for day, minutes in outside.items():
        for minute, count in minutes.items():
            if count:
                by_minute.setdefault(session_minute(int(minute)), {})[day] = int(count)
    recurring = sorted(m for m, days in by_minute.items() if len(days) >= min_days)
    spans: list[list[int]] = []
    for m in recurring:
        if spans and m - spans[-1][-1] <= MAX_GAP_MIN:
            spans[-1].append(m)
        else:
            spans.append([m])
    out = []
    for span in spans:
        days = sorted({d for m in span for d in by_minute[m]})
        ticks = sum(c for m in span for c in by_minute[m].values())
        out.append(SessionEvidence(variety, span[0], span[-1], tuple(days), ticks))
    return out


def suggested_windows(sessions: Sessions, evidence: SessionEvidence) -> Sessions:
    """The sessions with the evidence span added: the window whose close (or open) it adjoins is extended,
    otherwise the span becomes a window of its own; edges rounded outwards to whole 5 minutes."""
    start_s = evidence.first_minute // ROUND_MIN * ROUND_MIN * 60
    end_s = -(-evidence.last_minute // ROUND_MIN) * ROUND_MIN * 60
    night = evidence.first_minute >= NIGHT_FROM_MIN
    windows = list(sessions.night if night else sessions.day)
    for i, w in enumerate(windows):
        if w.end_s - 60 <= start_s <= w.end_s + ADJACENT_MIN * 60:
            windows[i] = Window(w.start_s, max(w.end_s, end_s))
            break
        if w.start_s - ADJACENT_MIN * 60 <= end_s <= w.start_s + 60:
            windows[i] = Window(min(w.start_s, start_s), w.end_s)
            break
    else:
        windows = sorted([*windows, Window(start_s, end_s)], key=lambda w: w.start_s)
    return Sessions(sessions.day, tuple(windows)) if night else Sessions(tuple(windows), sessions.night)


def suggested_changes(
    evidence: SessionEvidence, sessions: Sessions, calendar: TradingCalendar, through: date
) -> list[dict]:
    """GHTRADER_SESSION_HISTORY `changes` entries that explain the evidence: the widened sessions from the
    first day of the evidence (the change may be older: the range looked at starts there) and, when the
    evidence stops before `through` (the last day looked at), the sessions in force again from the next
    trading day."""
    wider = suggested_windows(sessions, evidence)
    source = f"session evidence: {evidence.describe()}"
    out = [{"variety": evidence.variety, "effective_from": evidence.days[0].isoformat(),
            "trading_time": trading_time(wider), "source": source}]
    if evidence.days[-1] < through:
        try:
            back = calendar.next_trading_day(evidence.days[-1])
        except CalendarError:
            return out
        out.append({"variety": evidence.variety, "effective_from": back.isoformat(),
                    "trading_time": trading_time(sessions), "source": source})
    return out


def trading_time(sessions: Sessions) -> dict[str, list[list[str]]]:
    """Sessions back in quote.trading_time's shape."""
    return {"day": [w.label().split("-") for w in sessions.day], "night": [w.label().split("-") for w in sessions.night]}


def _hhmm(session_min: int) -> str:
    return f"{session_min // 60:02d}:{session_min % 60:02d}"
