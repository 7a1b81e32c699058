"""A read is cut into ISO weeks of trading days; a week the read covers whole can be cached."""

from datetime import date, timedelta

from ghtrader_assets.domain.calendar import TradingCalendar
from ghtrader_assets.domain.read_plan import plan_chunks


def test_chunks_are_iso_weeks_and_know_when_they_are_whole() -> None:
    first = date(2024, 1, 1)
    cal = TradingCalendar.from_flags((first + timedelta(i), (first + timedelta(i)).weekday() < 5) for i in range(60))
    chunks = plan_chunks(cal, cal.between(date(2024, 1, 3), date(2024, 1, 19)))
    assert [(c.key, len(c.days), c.whole) for c in chunks] == [("2024-W01", 3, False), ("2024-W02", 5, True),
                                                               ("2024-W03", 5, True)]
