"""Pure rules of long-running operation: provisional schedule days, revisions, no-data backoff, session history."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import numpy as np
import polars as pl

from ghtrader_assets.domain.calendar import CST, TradingCalendar
from ghtrader_assets.domain.no_data import next_retry, permanent_reason
from ghtrader_assets.domain.schedule import build_schedule, decidable_from, diff_schedule
from ghtrader_assets.domain.session_history import SessionHistory
from ghtrader_assets.domain.sessions import Sessions
from ghtrader_assets.domain.tick_cleaning import flag_ticks, keep_rule
from ghtrader_assets.domain.ticks import TICK_COLUMNS

DAY = [["09:00:00", "10:15:00"], ["10:30:00", "11:30:00"], ["13:30:00", "15:00:00"]]
LATE = {"day": DAY, "night": [["21:00:00", "25:00:00"]]}
EARLY = {"day": DAY, "night": [["21:00:00", "23:00:00"]]}


def calendar() -> TradingCalendar:
    first = date(2024, 1, 1)
    return TradingCalendar.from_flags((first + timedelta(i), (first + timedelta(i)).weekday() < 5) for i in range(120))


def test_a_day_is_decidable_from_the_previous_trading_days_evening() -> None:
    assert decidable_from(date(2024, 3, 1), time(21, 0)) == datetime(2024, 3, 1, 21, 0, tzinfo=CST)


def test_diff_reports_revisions_of_settled_days_only() -> None:
    days = [date(2024, 3, d) for d in (4, 5, 6, 7)]
    old = build_schedule("SHFE.cu", {d: "SHFE.cu2404" if d < days[3] else "SHFE.cu2405" for d in days}, [days[3]])
    new = build_schedule("SHFE.cu", {d: "SHFE.cu2404" if d < days[2] else "SHFE.cu2405" for d in days})
    to_write, revisions = diff_schedule({r.trading_day: r for r in old}, new)
    assert [r.trading_day for r in to_write] == days[2:]  # day 7: segment moved and provisional -> settled
    assert [r.trading_day for r in revisions] == [days[2]]  # day 7 was provisional: not a revision
    assert revisions[0].contract_changed
    assert diff_schedule({r.trading_day: r for r in new}, new) == ([], [])


def test_no_data_backoff_doubles_then_gives_up() -> None:
    t0 = datetime(2024, 3, 1, 18, 0, tzinfo=CST)
    assert [next_retry(t0, n, 4) - t0 for n in (1, 2, 3, 4)] == [timedelta(days=k) for k in (1, 2, 4, 8)]
    assert next_retry(t0, 5, 4) is None
    assert "permanent" in permanent_reason(5, "provider returned no ticks")


def test_first_capture_holds_since_always_and_a_changed_capture_opens_an_uncertain_gap() -> None:
    h = SessionHistory.build("SHFE.cu", [(date(2024, 1, 10), LATE), (date(2024, 2, 1), LATE), (date(2024, 3, 1), EARLY)],
                             changes=())
    assert h.windows(date(2023, 6, 1)) == (Sessions.parse(LATE), None)
    assert h.windows(date(2024, 2, 1)) == (Sessions.parse(LATE), None)
    assert h.windows(date(2024, 2, 15)) == (Sessions.parse(LATE), Sessions.parse(EARLY))  # uncertain
    assert h.windows(date(2024, 3, 1)) == (Sessions.parse(EARLY), None)


def test_a_known_change_keeps_old_night_ticks_that_todays_sessions_would_drop() -> None:
    cal = calendar()
    day = date(2024, 1, 17)  # Wednesday: night of Tuesday 16th
    tick = int(datetime(2024, 1, 16, 23, 30, tzinfo=CST).timestamp()) * 10**9
    frame = pl.DataFrame({"symbol": ["SHFE.cu2403"], "datetime_ns": [tick], **{c: [1.0] for c in TICK_COLUMNS}})
    today_only = SessionHistory.build("SHFE.cu", [(date(2024, 4, 1), EARLY)], changes=())
    assert flag_ticks(frame, keep_rule(cal, today_only, day))[1].outside_session == 1
    known = SessionHistory.build("SHFE.cu", [(date(2024, 4, 1), EARLY)],
                                 changes=[("SHFE.cu", date(2020, 1, 2), LATE), ("SHFE.cu", date(2024, 2, 1), EARLY)])
    flagged, report = flag_ticks(frame, keep_rule(cal, known, day))
    assert flagged["flag"].to_list() == ["ok"] and report.kept == 1 and report.outside_session == 0
    gap = SessionHistory.build("SHFE.cu", [(date(2024, 1, 2), EARLY), (date(2024, 2, 1), LATE)], changes=())
    flagged, report = flag_ticks(frame, keep_rule(cal, gap, day))
    assert report.flagged == 1 and flagged["flag"].to_list() == ["session_uncertain"]  # uncertain day: kept, flagged


def test_a_night_exception_cancels_the_night_windows() -> None:
    cal = calendar()
    day = date(2024, 1, 17)
    h = SessionHistory.build("SHFE.cu", [(date(2024, 1, 2), LATE)], changes=(),
                             exceptions=[("SHFE", day, False, "night cancelled")])
    current, _ = h.intervals_ns(cal, day)
    assert len(current) == 3 and np.all([lo > int(datetime(2024, 1, 17, tzinfo=CST).timestamp()) * 10**9 for lo, _ in current])
