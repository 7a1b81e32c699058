"""The cleaning rule: a flag for every tick the provider served, and counts of what it found.

Raw keeps every tick as served; the rule never deletes, it flags (the `flag` column of the raw table):
1. `bad_price`: last_price NaN, infinite or not positive.
2. `duplicate`: the same time and every value as a tick served before it (the first copy keeps its flag).
3. The session test on the rest: `ok` inside the session windows in force on the trading day (see
   domain.session_history; widened by AUCTION_S before each window for the opening call auction and
   CLOSE_GRACE_S after it); `session_uncertain` outside those but inside the other version on a day the
   history is uncertain about; `outside_session` otherwise.
main_l5 is the curated series: the ticks flagged `ok` or `session_uncertain` (KEPT_FLAGS), in time order
(`out_of_order` counts kept ticks served earlier than a kept tick before them). Because the flags depend
only on the answer and the day's windows (`KeepRule`), a corrected session history re-flags the stored
raw day and rebuilds main_l5 inside QuestDB, without a download.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import polars as pl

from ghtrader_assets.domain.calendar import NS_PER_S, TradingCalendar
from ghtrader_assets.domain.session_history import SessionHistory
from ghtrader_assets.domain.sessions import Sessions
from ghtrader_assets.domain.ticks import FNV_OFFSET_BASIS, FNV_PRIME, TICK_COLUMNS

AUCTION_S = 5 * 60
CLOSE_GRACE_S = 60

OK = "ok"
SESSION_UNCERTAIN = "session_uncertain"
OUTSIDE_SESSION = "outside_session"
BAD_PRICE = "bad_price"
DUPLICATE = "duplicate"
FLAGS = (OK, SESSION_UNCERTAIN, OUTSIDE_SESSION, BAD_PRICE, DUPLICATE)
KEPT_FLAGS = (OK, SESSION_UNCERTAIN)  # what main_l5 takes from raw
SESSION_FLAGS = (OK, SESSION_UNCERTAIN, OUTSIDE_SESSION)  # the flags a session change can move between
MINUTES_PER_DAY = 24 * 60
BEIJING_OFFSET_MIN = 8 * 60


@dataclass(frozen=True)
class KeepRule:
    """The session windows one trading day is judged by: [lo, hi] epoch-ns intervals already widened
    for the call auction and the close, those in force and (uncertain days only) the other version's."""

    in_force: tuple[tuple[int, int], ...]
    other: tuple[tuple[int, int], ...] = ()

    @property
    def session_hash(self) -> int:
        """FNV-1a 64 (row_hash parameters) over the interval bounds as little-endian int64 words, the
        in-force ones, a separator word -1, then the others; as int64. main_l5 rows carry the value of
        the rule they were cut with, so a rule change makes exactly those days' rows current again."""
        words = [b for lo, hi in self.in_force for b in (lo, hi)] + [-1] + [b for lo, hi in self.other for b in (lo, hi)]
        data = np.array(words, dtype="<i8").view(np.uint8)
        h = int(FNV_OFFSET_BASIS)
        for byte in data.tolist():
            h = ((h ^ byte) * int(FNV_PRIME)) & 0xFFFFFFFFFFFFFFFF
        return h - (1 << 64) if h >= 1 << 63 else h

    def flags_of(self, times: np.ndarray) -> np.ndarray:
        """The session flag (ok / session_uncertain / outside_session) of each tick time (epoch ns)."""
        inside = _within(times, self.in_force)
        alt = _within(times, self.other) & ~inside
        out = np.full(len(times), OUTSIDE_SESSION, dtype=object)
        out[inside] = OK
        out[alt] = SESSION_UNCERTAIN
        return out


def keep_rule(calendar: TradingCalendar, sessions: Sessions | SessionHistory, day: date) -> KeepRule:
    """The widened windows of trading day `day` under the session history (or one fixed version)."""
    history = sessions if isinstance(sessions, SessionHistory) else SessionHistory.single(sessions)
    in_force, other = history.intervals_ns(calendar, day)
    return KeepRule(_widen(in_force), _widen(other))


@dataclass(frozen=True)
class CleaningReport:
    received: int
    bad_price: int
    outside_session: int
    duplicate: int
    out_of_order: int
    kept: int
    flagged: int = 0  # kept although outside the version in force (uncertain day)
    # Beijing clock minute (0..1439) -> ticks outside the sessions: the evidence of a session change
    outside_minutes: tuple[tuple[int, int], ...] = field(default=(), compare=False)

    def as_metadata(self) -> dict[str, int]:
        out = {f"ticks_{k}": getattr(self, k)
               for k in ("received", "bad_price", "outside_session", "duplicate", "out_of_order", "kept")}
        out["session_flagged"] = self.flagged
        return out

    @property
    def changed(self) -> bool:
        """Whether main_l5 differs from the answer as served (ticks left out or reordered)."""
        return self.kept != self.received or self.out_of_order > 0


def flag_ticks(frame: pl.DataFrame, rule: KeepRule) -> tuple[pl.DataFrame, CleaningReport]:
    """The answer as served, in provider order, with the `flag` column; and the counts."""
    received = frame.height
    if received == 0:
        return frame.with_columns(pl.lit(None, dtype=pl.String).alias("flag")), CleaningReport(0, 0, 0, 0, 0, 0)
    last = frame["last_price"].to_numpy()
    with np.errstate(invalid="ignore"):
        good = np.isfinite(last) & (last > 0)
    first_copy = frame.select(pl.struct(["datetime_ns", *TICK_COLUMNS]).is_first_distinct()).to_series().to_numpy()
    duplicate = good & ~first_copy
    times = frame["datetime_ns"].to_numpy()
    flags = rule.flags_of(times)
    flags[duplicate] = DUPLICATE
    flags[~good] = BAD_PRICE
    kept_mask = (flags == OK) | (flags == SESSION_UNCERTAIN)
    outside_mask = flags == OUTSIDE_SESSION
    kept_times = times[kept_mask]
    out_of_order = int((kept_times[1:] < np.maximum.accumulate(kept_times)[:-1]).sum()) if len(kept_times) > 1 else 0
    minutes = (times[outside_mask] // (60 * NS_PER_S) + BEIJING_OFFSET_MIN) % MINUTES_PER_DAY
    report = CleaningReport(
        received=received,
        bad_price=int((~good).sum()),
        outside_session=int(outside_mask.sum()),
        duplicate=int(duplicate.sum()),
        out_of_order=out_of_order,
        kept=int(kept_mask.sum()),
        flagged=int((flags == SESSION_UNCERTAIN).sum()),
        outside_minutes=tuple(sorted(Counter(minutes.tolist()).items())),
    )
    return frame.with_columns(pl.Series("flag", flags.tolist(), dtype=pl.String)), report


def kept(frame: pl.DataFrame) -> pl.DataFrame:
    """The curated rows of a flagged frame (what main_l5 holds of the day), in time order."""
    return frame.filter(pl.col("flag").is_in(KEPT_FLAGS)).sort("datetime_ns", maintain_order=True)


def _widen(intervals: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    return tuple((lo - AUCTION_S * NS_PER_S, hi + CLOSE_GRACE_S * NS_PER_S) for lo, hi in intervals)


def _within(times: np.ndarray, intervals: tuple[tuple[int, int], ...]) -> np.ndarray:
    mask = np.zeros(len(times), dtype=bool)
    for lo, hi in intervals:
        mask |= (times >= lo) & (times <= hi)
    return mask
