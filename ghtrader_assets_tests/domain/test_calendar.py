"""Trading calendar rules: trading day of a tick, night sessions, ranges."""

from datetime import date, datetime, timedelta

import pytest

from ghtrader_assets.domain.calendar import CST, CalendarError, TradingCalendar, current_trading_day
from ghtrader_assets.domain.sessions import Sessions, SessionSpecError

# 2024: New Year 1 Jan (Mon); Spring Festival 9-17 Feb closed weekdays 12-16 Feb (and 9 Feb Fri).
HOLIDAYS = {date(2024, 1, 1), date(2024, 2, 9), date(2024, 2, 12), date(2024, 2, 13), date(2024, 2, 14),
            date(2024, 2, 15), date(2024, 2, 16)}


def calendar() -> TradingCalendar:
    first, last = date(2023, 12, 1), date(2024, 3, 31)
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    return TradingCalendar.from_flags((d, d.weekday() < 5 and d not in HOLIDAYS) for d in days)


def ns(y, m, d, hh, mm=0) -> int:
    return int(datetime(y, m, d, hh, mm, tzinfo=CST).timestamp()) * 10**9


def test_trading_day_of_ticks() -> None:
    cal = calendar()
    assert cal.trading_day_of(ns(2024, 1, 3, 9, 30)) == date(2024, 1, 3)
    assert cal.trading_day_of(ns(2024, 1, 3, 21, 0)) == date(2024, 1, 4)  # night -> next day
    assert cal.trading_day_of(ns(2024, 1, 4, 0, 30)) == date(2024, 1, 4)  # after midnight, same night
    assert cal.trading_day_of(ns(2024, 1, 5, 21, 0)) == date(2024, 1, 8)  # Friday night -> Monday
    assert cal.trading_day_of(ns(2024, 1, 6, 0, 59)) == date(2024, 1, 8)  # Saturday 00:59 -> Monday
    assert cal.trading_day_of(ns(2024, 2, 8, 21, 0)) == date(2024, 2, 19)  # holiday eve -> after the break
    with pytest.raises(CalendarError, match="not a trading day"):
        cal.trading_day_of(ns(2024, 1, 6, 10, 0))


def test_night_session_rules() -> None:
    cal = calendar()
    assert cal.has_night_session(date(2024, 1, 8))  # ordinary weekend keeps Friday night
    assert not cal.has_night_session(date(2024, 1, 2))  # New Year holiday eve
    assert not cal.has_night_session(date(2024, 2, 19))  # Spring Festival eve
    assert cal.has_night_session(date(2024, 1, 3))


def test_ranges_and_errors() -> None:
    cal = calendar()
    assert cal.between(date(2024, 2, 7), date(2024, 2, 20)) == [date(2024, 2, 7), date(2024, 2, 8), date(2024, 2, 19), date(2024, 2, 20)]
    with pytest.raises(CalendarError, match="reversed"):
        cal.between(date(2024, 2, 20), date(2024, 2, 7))
    with pytest.raises(CalendarError, match="outside"):
        cal.between(date(2020, 1, 1), date(2024, 2, 7))
    with pytest.raises(CalendarError, match="gap"):
        TradingCalendar.from_flags([(date(2024, 1, 2), True), (date(2024, 1, 4), True)])
    lo, hi = cal.bounds_ns(date(2024, 1, 8))
    assert lo == ns(2024, 1, 5, 18) and hi == ns(2024, 1, 8, 18)


def test_current_trading_day_is_never_final() -> None:
    cal = calendar()
    assert current_trading_day(cal, datetime(2024, 1, 3, 14, 0, tzinfo=CST)) == date(2024, 1, 3)
    assert current_trading_day(cal, datetime(2024, 1, 3, 19, 0, tzinfo=CST)) == date(2024, 1, 4)
    assert current_trading_day(cal, datetime(2024, 1, 6, 12, 0, tzinfo=CST)) == date(2024, 1, 8)


CU = {"day": [["09:00:00", "10:15:00"], ["10:30:00", "11:30:00"], ["13:30:00", "15:00:00"]], "night": [["21:00:00", "25:00:00"]]}


def test_sessions_parse_and_windows() -> None:
    cal = calendar()
    s = Sessions.parse(CU)
    assert s.has_night and s.normalized() == ("09:00:00-10:15:00;10:30:00-11:30:00;13:30:00-15:00:00", "21:00:00-25:00:00")
    intervals = s.intervals_ns(cal, date(2024, 1, 8))
    assert intervals[0] == (ns(2024, 1, 5, 21), ns(2024, 1, 6, 1))
    assert len(s.intervals_ns(cal, date(2024, 2, 19))) == 3  # no night after the holiday eve
    import numpy as np

    mask = s.inside(cal, date(2024, 1, 8), np.array([ns(2024, 1, 5, 22), ns(2024, 1, 8, 12), ns(2024, 1, 8, 15)]))
    assert mask.tolist() == [True, False, True]
    with pytest.raises(SessionSpecError):
        Sessions.parse({"day": [["10:00:00", "09:00:00"]]})
    with pytest.raises(SessionSpecError):
        Sessions.parse({"night": []})
