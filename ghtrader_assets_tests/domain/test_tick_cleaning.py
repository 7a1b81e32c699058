"""The cleaning rule flags every served tick and deletes none; the flags depend only on the answer and the
day's session windows."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np
import polars as pl

from ghtrader_assets.domain.calendar import CST, TradingCalendar
from ghtrader_assets.domain.sessions import Sessions
from ghtrader_assets.domain.tick_cleaning import KeepRule, flag_ticks, keep_rule, kept
from ghtrader_assets.domain.ticks import TICK_COLUMNS

DAY = date(2024, 1, 17)  # a Wednesday: its night session runs on Tuesday evening
SESSIONS = Sessions.parse({"day": [["09:00:00", "10:15:00"], ["10:30:00", "11:30:00"], ["13:30:00", "15:00:00"]],
                           "night": [["21:00:00", "23:00:00"]]})


def calendar() -> TradingCalendar:
    first = date(2024, 1, 1)
    return TradingCalendar.from_flags((first + timedelta(i), (first + timedelta(i)).weekday() < 5) for i in range(60))


def ns(d: date, hh: int, mm: int, ss: int = 0) -> int:
    return int(datetime(d.year, d.month, d.day, hh, mm, ss, tzinfo=CST).timestamp()) * 10**9


def ticks(rows: list[tuple[int, float]]) -> pl.DataFrame:
    """Ticks at (time, last price); other values fixed, level 2-5 NaN as on a level-1 exchange."""
    values = {c: [float("nan") if c[-1] in "2345" else 1.0 for _ in rows] for c in TICK_COLUMNS}
    values["last_price"] = [p for _, p in rows]
    return pl.DataFrame({"symbol": ["DCE.i2405"] * len(rows), "datetime_ns": [t for t, _ in rows], **values})


def test_every_served_tick_is_kept_and_flagged_with_the_first_rule_that_applies() -> None:
    eve = date(2024, 1, 16)
    served = ticks([
        (ns(eve, 21, 0, 5), 900.0),
        (ns(DAY, 9, 30), 901.0),
        (ns(DAY, 9, 30), 901.0),  # exact duplicate of the tick before: flagged, not deleted
        (ns(DAY, 9, 29), 902.0),  # served after a later tick: kept, counted out of order
        (ns(DAY, 9, 31), float("nan")),
        (ns(DAY, 9, 32), 0.0),
        (ns(DAY, 9, 30), -1.0),  # a bad price wins over duplicate and session
        (ns(DAY, 12, 30), 903.0),  # lunch break
        (ns(eve, 23, 20), 904.0),  # after the night's close
        (ns(eve, 23, 20), 904.0),  # duplicate outside the sessions: a duplicate first
    ])
    flagged, report = flag_ticks(served, keep_rule(calendar(), SESSIONS, DAY))
    assert flagged.height == served.height and flagged.drop("flag").equals(served)
    assert flagged["flag"].to_list() == ["ok", "ok", "duplicate", "ok", "bad_price", "bad_price", "bad_price",
                                         "outside_session", "outside_session", "duplicate"]
    assert (report.received, report.bad_price, report.duplicate, report.outside_session, report.kept,
            report.out_of_order) == (10, 3, 2, 2, 3, 1)
    assert report.changed
    assert dict(report.outside_minutes) == {12 * 60 + 30: 1, 23 * 60 + 20: 1}  # Beijing clock minutes
    assert kept(flagged)["datetime_ns"].to_list() == [ns(eve, 21, 0, 5), ns(DAY, 9, 29), ns(DAY, 9, 30)]


def test_the_call_auction_and_the_close_are_inside() -> None:
    served = ticks([(ns(DAY, 8, 55), 1.0), (ns(DAY, 8, 54, 59), 1.0), (ns(DAY, 15, 1), 1.0), (ns(DAY, 15, 1, 1), 1.0)])
    flagged, _ = flag_ticks(served, keep_rule(calendar(), SESSIONS, DAY))
    assert flagged["flag"].to_list() == ["ok", "outside_session", "ok", "outside_session"]


def test_the_session_hash_names_the_windows() -> None:
    rule = keep_rule(calendar(), SESSIONS, DAY)
    assert rule.session_hash == keep_rule(calendar(), SESSIONS, DAY).session_hash
    assert rule.session_hash != keep_rule(calendar(), SESSIONS, date(2024, 1, 18)).session_hash
    later = Sessions(SESSIONS.day, (SESSIONS.night[0].__class__(21 * 3600, 23 * 3600 + 1800),))
    assert rule.session_hash != keep_rule(calendar(), later, DAY).session_hash
    # the test vector of PRD section 5: FNV-1a 64 over the bounds, -1, then the other version's bounds
    assert KeepRule(((1, 2),), ((3, 4),)).session_hash == -827450741048900519
    assert KeepRule(((1, 2),), ((3, 4),)).session_hash != KeepRule(((1, 2), (3, 4))).session_hash


def test_an_empty_answer_has_nothing_to_flag() -> None:
    flagged, report = flag_ticks(ticks([]), keep_rule(calendar(), SESSIONS, DAY))
    assert flagged.height == 0 and "flag" in flagged.columns and report.kept == 0 and not report.changed
    assert np.isfinite(report.received)
