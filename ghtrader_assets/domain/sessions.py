"""Trading sessions of a variety, from TqSdk's `quote.trading_time` (hours past 24 mean after midnight)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, time

import numpy as np

from ghtrader_assets.domain.calendar import CST, NS_PER_S, TradingCalendar


class SessionSpecError(ValueError):
    """A trading_time value that is not the documented shape."""


@dataclass(frozen=True)
class Window:
    """One session window in seconds after midnight of the day it starts on; `end` may pass 24:00."""

    start_s: int
    end_s: int

    def label(self) -> str:
        return f"{_hms(self.start_s)}-{_hms(self.end_s)}"


@dataclass(frozen=True)
class Sessions:
    """The day windows (on the trading day) and night windows (on the previous trading day's evening)."""

    day: tuple[Window, ...]
    night: tuple[Window, ...]

    @classmethod
    def parse(cls, trading_time: dict) -> "Sessions":
        """Parse {'day': [['09:00:00','10:15:00'], ...], 'night': [['21:00:00','25:00:00']]}."""
        if not isinstance(trading_time, dict) or not trading_time.get("day"):
            raise SessionSpecError(f"trading_time needs a non-empty 'day' list: {trading_time!r}")
        return cls(_windows(trading_time.get("day")), _windows(trading_time.get("night") or []))

    @property
    def has_night(self) -> bool:
        return bool(self.night)

    def normalized(self) -> tuple[str, str]:
        return ";".join(w.label() for w in self.day), ";".join(w.label() for w in self.night)

    def intervals_ns(self, calendar: TradingCalendar, day: date) -> list[tuple[int, int]]:
        """[start, end] epoch-ns intervals (end inclusive: ticks at the close are real) of trading day
        `day`, with the night session only when the calendar says it happens."""
        out = []
        if self.night and calendar.has_night_session(day):
            eve = calendar.previous_trading_day(day)
            out += [_interval(eve, w) for w in self.night]
        out += [_interval(day, w) for w in self.day]
        return out

    def inside(self, calendar: TradingCalendar, day: date, datetime_ns: np.ndarray) -> np.ndarray:
        """Boolean mask: which tick times fall inside a session window of trading day `day`."""
        mask = np.zeros(len(datetime_ns), dtype=bool)
        for lo, hi in self.intervals_ns(calendar, day):
            mask |= (datetime_ns >= lo) & (datetime_ns <= hi)
        return mask


def trading_time_json(trading_time: dict) -> str:
    return json.dumps(trading_time, sort_keys=True, separators=(",", ":"))


def _windows(pairs: list) -> tuple[Window, ...]:
    try:
        windows = tuple(Window(_seconds(a), _seconds(b)) for a, b in pairs)
    except (TypeError, ValueError) as exc:
        raise SessionSpecError(f"bad trading_time windows {pairs!r}: {exc}") from exc
    for w in windows:
        if w.end_s <= w.start_s:
            raise SessionSpecError(f"session window ends before it starts: {w.label()}")
    return windows


def _seconds(hms: str) -> int:
    h, m, s = (int(x) for x in hms.split(":"))
    if not (0 <= h < 48 and 0 <= m < 60 and 0 <= s < 60):
        raise ValueError(f"not a time of day: {hms}")
    return h * 3600 + m * 60 + s


def _hms(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _interval(anchor: date, w: Window) -> tuple[int, int]:
    midnight = int(datetime.combine(anchor, time(0), CST).timestamp())
    return (midnight + w.start_s) * NS_PER_S, (midnight + w.end_s) * NS_PER_S

