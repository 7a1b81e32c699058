"""A daily kline's trading day, whichever way the vendor stamps it: its day's start (18:00 Beijing on the
weekday before, TqSdk's own rule) or midnight of the day."""

from datetime import date, datetime

from ghtrader_assets.domain.calendar import CST
from ghtrader_assets.io.tqsdk_client import kline_trading_day


def ns(*args: int) -> int:
    return int(datetime(*args, tzinfo=CST).timestamp()) * 10**9


def test_a_daily_kline_stands_for_the_trading_day_it_starts() -> None:
    assert kline_trading_day(ns(2024, 1, 15, 18)) == date(2024, 1, 16)  # Monday 18:00 -> Tuesday
    assert kline_trading_day(ns(2024, 1, 12, 18)) == date(2024, 1, 15)  # Friday 18:00 -> Monday
    assert kline_trading_day(ns(2024, 1, 16)) == date(2024, 1, 16)  # midnight of the day itself
