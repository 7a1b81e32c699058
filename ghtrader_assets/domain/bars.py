"""Bars from ticks, aligned to the trading-day sessions: which `every` values tile a variety's sessions, and
where the ticks stored in a session's margins (the opening call auction before it, the close after it) go.

The rules (what read_bars computes inside QuestDB):
- A bar of `every` covers [t, t + every) on the clock grid (Beijing and UTC grids agree: every divides a
  day and the 8-hour offset). Only bars holding at least one tick exist (no empty bars).
- A tick in the AUCTION_S before a window opens belongs to the window's first bar (its time is taken as
  the open); a tick in the CLOSE_GRACE_S after a window closes belongs to the window's last bar (its time is
  taken as one microsecond before the close). Ticks inside a window keep their time.
- No bar holds ticks of two windows: an `every` for which one grid bar would reach across a session break
  (e.g. 1h on SHFE's 10:15-10:30 break) is refused.
- A bar belongs to the trading day of its ticks: the night session's bars are the next trading day's.
- Per bar, as TqSdk's klines define them: open, high, low, close of last_price; volume (and amount) the
  change of the day's cumulative volume (amount) over the bar, i.e. its last tick's value minus the last
  tick's value of the day's previous bar (0 before the day's first bar); open_oi the open interest before the
  bar (the previous bar's close_oi in the same trading day; the day's first bar: its first tick's), close_oi
  the open interest at its last tick.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ghtrader_assets.domain.sessions import Sessions
from ghtrader_assets.domain.tick_cleaning import AUCTION_S, CLOSE_GRACE_S

EVERY_S = {"1m": 60, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600}
DAY_S = 86400
US = 1_000_000


class BarError(ValueError):
    """A bar size that is not offered, or that does not tile the variety's sessions."""


@dataclass(frozen=True)
class Clamp:
    """Ticks whose Beijing time of day (µs after midnight) lies in [lo, hi) are stamped `to` instead."""

    lo: int
    hi: int
    to: int


def every_seconds(every: str) -> int:
    if every not in EVERY_S:
        raise BarError(f"every must be one of {sorted(EVERY_S, key=EVERY_S.get)}, not {every!r}")
    return EVERY_S[every]


def _spans(sessions: Iterable[Sessions]) -> list[tuple[int, int]]:
    """Windows as [open, close) seconds relative to the trading day's midnight (night windows negative),
    merged over several session versions, in time order."""
    spans = set()
    for s in sessions:
        spans |= {(w.start_s - DAY_S, w.end_s - DAY_S) for w in s.night}
        spans |= {(w.start_s, w.end_s) for w in s.day}
    return sorted(spans)


def check_tiling(sessions: Iterable[Sessions], every: str) -> None:
    """Raise unless every bar of `every` holds the ticks of one session window at most."""
    step = every_seconds(every)
    spans = _spans(sessions)
    for (_, close), (following, _) in zip(spans, spans[1:]):
        if (close - 1) // step == following // step:
            raise BarError(f"every={every} would put the ticks before {_clock(close)} and after {_clock(following)} "
                           f"into one bar across a session break; use a shorter bar (e.g. 15m)")


def clamps(sessions: Iterable[Sessions]) -> list[Clamp]:
    """Where ticks of the session margins go: [open - AUCTION_S, open) -> open, and [close, close +
    CLOSE_GRACE_S] -> close - 1 µs, as Beijing times of day in µs (a night past midnight wraps)."""
    out = []
    for open_s, close_s in _spans(sessions):
        o, c = (open_s % DAY_S) * US, (close_s % DAY_S) * US
        out.append(Clamp(o - AUCTION_S * US, o, o))
        out.append(Clamp(c, c + CLOSE_GRACE_S * US + 1, c - 1))
    return [piece for c in out for piece in _wrap(c)]


def _wrap(c: Clamp) -> list[Clamp]:
    """A margin as times of day: one that crosses midnight becomes two (the stamp wraps too)."""
    day = DAY_S * US
    to = c.to % day
    if c.lo < 0:
        return [Clamp(c.lo + day, day, to), Clamp(0, c.hi, to)] if c.hi > 0 else [Clamp(c.lo + day, c.hi + day, to)]
    if c.hi > day:
        return [Clamp(c.lo, day, to), Clamp(0, c.hi - day, to)] if c.lo < day else [Clamp(c.lo - day, c.hi - day, to)]
    return [Clamp(c.lo, c.hi, to)]


def _clock(seconds: int) -> str:
    s = seconds % DAY_S
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}"
