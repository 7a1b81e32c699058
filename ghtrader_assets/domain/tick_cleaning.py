"""The cleaning rule applied to a provider's tick frame before it is stored, with counts of what it did.

1. Ticks whose last_price is NaN, infinite or not positive are dropped (`bad_price`).
2. Ticks that belong to another trading day, or lie outside the session windows in force on this day
   (see domain.session_history; widened by AUCTION_S before each window for the opening call auction and
   CLOSE_GRACE_S after it), are dropped (`outside_session`). On a day where the history is uncertain
   (between two captures that differ) a tick inside either version is kept; those outside the version
   in force are counted as `session_flagged`.
3. Exact duplicates (same time and every value) keep one copy (`duplicate`).
4. The rest is sorted by time, stably (`out_of_order` counts the ticks that arrived earlier than the one
   before them). Ticks sharing a time but differing in value are all kept, told apart by `seq`.
Nothing is dropped silently: the counts go to the asset's metadata and the log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl

from ghtrader_assets.domain.calendar import NS_PER_S, TradingCalendar
from ghtrader_assets.domain.session_history import SessionHistory
from ghtrader_assets.domain.sessions import Sessions
from ghtrader_assets.domain.ticks import TICK_COLUMNS

AUCTION_S = 5 * 60
CLOSE_GRACE_S = 60


@dataclass(frozen=True)
class CleaningReport:
    received: int
    bad_price: int
    outside_session: int
    duplicate: int
    out_of_order: int
    kept: int
    flagged: int = 0  # kept although outside the version in force (uncertain day)

    def as_metadata(self) -> dict[str, int]:
        out = {f"ticks_{k}": v for k, v in self.__dict__.items() if k != "flagged"}
        out["session_flagged"] = self.flagged
        return out

    @property
    def changed(self) -> bool:
        return self.kept != self.received or self.out_of_order > 0


def clean_ticks(
    frame: pl.DataFrame, calendar: TradingCalendar, sessions: Sessions | SessionHistory, day: date
) -> tuple[pl.DataFrame, CleaningReport]:
    received = frame.height
    good_price = frame["last_price"].is_finite() & (frame["last_price"] > 0)
    frame_ok = frame.filter(good_price.fill_null(False))
    bad_price = received - frame_ok.height

    history = sessions if isinstance(sessions, SessionHistory) else SessionHistory.single(sessions)
    in_force, other = history.intervals_ns(calendar, day)
    times = frame_ok["datetime_ns"].to_numpy()
    mask = _within(times, in_force)
    alt = _within(times, other) & ~mask
    flagged = int(alt.sum())
    inside = frame_ok.filter(pl.Series(mask | alt))
    outside = frame_ok.height - inside.height

    unique = inside.unique(subset=["datetime_ns", *TICK_COLUMNS], keep="first", maintain_order=True)
    duplicate = inside.height - unique.height

    t = unique["datetime_ns"].to_numpy()
    out_of_order = int((t[1:] < np.maximum.accumulate(t)[:-1]).sum()) if len(t) > 1 else 0
    cleaned = unique.sort("datetime_ns", maintain_order=True) if out_of_order else unique
    return cleaned, CleaningReport(received, bad_price, outside, duplicate, out_of_order, cleaned.height, flagged)


def _within(times: np.ndarray, intervals: list[tuple[int, int]]) -> np.ndarray:
    mask = np.zeros(len(times), dtype=bool)
    for lo, hi in intervals:
        mask |= (times >= lo - AUCTION_S * NS_PER_S) & (times <= hi + CLOSE_GRACE_S * NS_PER_S)
    return mask
