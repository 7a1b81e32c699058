"""Unit tests of the simulated market's pure rules: calendar, night sessions, main-contract roll, ticks, determinism."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from ghtrader_assets.sim.tq import Faults, MarketConfig, SimMarket
from ghtrader_assets.sim.tq import calendar as cal
from ghtrader_assets.sim.tq.specs import midnight_ns

SMALL = dict(seed=1, start=date(2024, 1, 2), end=date(2024, 3, 29), density=0.1, far_density=0.02)


@pytest.fixture(scope="module")
def market() -> SimMarket:
    return SimMarket(MarketConfig(**SMALL))


def _bj(ns: int) -> datetime:
    return datetime(1970, 1, 1) + timedelta(microseconds=ns // 1000, hours=8)


def test_calendar_real_holidays() -> None:
    closed = set(cal.holidays())
    for d in (date(2023, 1, 23), date(2023, 10, 6), date(2024, 2, 9), date(2024, 10, 7), date(2025, 1, 28),
              date(2025, 6, 2), date(2026, 2, 23), date(2026, 10, 7)):
        assert d in closed and not cal.is_trading_day(d)
    counts = {y: len(cal.trading_days(date(y, 1, 1), date(y, 12, 31))) for y in (2023, 2024, 2025)}
    assert counts == {2023: 242, 2024: 242, 2025: 243}  # the exchanges' published trading-day counts


def test_night_session_rule(market: SimMarket) -> None:
    assert cal.has_night_session(date(2024, 1, 8))  # Monday: Friday night belongs to it
    assert not cal.has_night_session(date(2024, 2, 19))  # after Spring Festival
    assert not cal.has_night_session(date(2024, 1, 2))  # after New Year
    assert cal.has_night_session(date(2024, 2, 8))
    friday_night = market.sessions("SHFE.cu", date(2024, 1, 8))[0]
    assert _bj(friday_night[0]) == datetime(2024, 1, 5, 21) and _bj(friday_night[1]) == datetime(2024, 1, 6, 1)
    assert _bj(market.sessions("SHFE.rb", date(2024, 2, 19))[0][0]) == datetime(2024, 2, 19, 9)
    assert len(market.sessions("CFFEX.IF", date(2024, 1, 8))) == 2
    assert cal.trading_day_of(date(2024, 2, 8), 21) == date(2024, 2, 19)
    assert cal.trading_day_of(date(2024, 1, 6), 0) == date(2024, 1, 8)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_main_contract_follows_vendor_rule(seed: int) -> None:
    m = SimMarket(MarketConfig(**{**SMALL, "seed": seed, "end": date(2024, 12, 31)}))
    days = m.trading_days()
    for v in m.cfg.varieties:
        rolls = m.roll_days(v)
        assert rolls[0][0] == days[0] and len(rolls) >= 6
        assert [s for _, s in rolls] == sorted(s for _, s in rolls)  # never back
        for (a, _), (b, _) in zip(rolls[1:], rolls[2:]):
            assert 20 <= (b - a).days <= 70  # a roll every one to two months
        for t, t1 in zip(days, days[1:]):
            cur, nxt = m.main_contract(v, t), m.main_contract(v, t1)
            leader = max(m.contracts(v), key=lambda c: m.open_interest(c, t))
            if nxt != cur:  # decided at T's close, effective T+1
                assert leader == nxt and m.open_interest(nxt, t) > m.open_interest(cur, t)
            else:
                assert leader <= cur
        assert m.continuous_table()[v] == [[d.strftime("%Y%m%d"), s] for d, s in rolls]


def test_ticks_shape_and_grid(market: SimMarket) -> None:
    d = date(2024, 1, 8)
    c = market.main_contract("SHFE.cu", d)
    df = market.ticks(c, d)
    assert list(df.columns[:3]) == ["id", "datetime", "last_price"] and list(df.columns[-2:]) == ["symbol", "duration"]
    assert df["id"].dtype == np.int64 and df["datetime"].dtype == np.int64 and df["last_price"].dtype == np.float64
    assert (df["id"].diff().dropna() == 1).all()
    assert (df["datetime"] % 500_000_000 == 0).all() and df["datetime"].is_monotonic_increasing
    inside = np.zeros(len(df), dtype=bool)
    for a, b in market.sessions("SHFE.cu", d):
        inside |= (df["datetime"] >= a) & (df["datetime"] < b)
    assert inside.all()
    assert (np.round(df["last_price"] / 10) * 10 == df["last_price"]).all()
    assert df["volume"].is_monotonic_increasing and df["amount"].is_monotonic_increasing
    assert df["bid_price5"].notna().all() and (df["ask_price1"] > df["bid_price1"]).all()
    assert df["open_interest"].iloc[-1] == market.open_interest(c, d)
    assert _bj(int(df["datetime"].iloc[0])).date() == date(2024, 1, 5)  # Friday night belongs to Monday
    assert 0.05 < len(df) / sum((b - a) / 5e8 for a, b in market.sessions("SHFE.cu", d)) < 0.15


def test_level1_only_variety(market: SimMarket) -> None:
    d = date(2024, 1, 8)
    c = market.main_contract("DCE.m", d)
    df = market.ticks(c, d)
    assert "bid_price2" not in df.columns and "ask_volume1" in df.columns  # tqsdk's DataSeries columns
    frame = market.frame(c, 0, d)
    assert np.isnan(frame["bid_price2"]).all() and (frame["ask_volume5"] == 0).all()
    if_df = market.ticks(market.main_contract("CFFEX.IF", d), d)
    assert np.allclose(np.round(if_df["last_price"] / 0.2) * 0.2, if_df["last_price"])


def test_no_night_after_holiday_eve(market: SimMarket) -> None:
    d = date(2024, 2, 19)
    df = market.ticks(market.main_contract("SHFE.cu", d), d)
    assert _bj(int(df["datetime"].min())) >= datetime(2024, 2, 19, 9)


def test_determinism_independent_of_range() -> None:
    d = date(2024, 3, 5)
    a = SimMarket(MarketConfig(**SMALL))
    b = SimMarket(MarketConfig(**{**SMALL, "start": date(2024, 2, 1), "end": date(2024, 3, 8)}))
    c = a.main_contract("SHFE.rb", d)
    assert c == b.main_contract("SHFE.rb", d)
    ta, tb = a.ticks(c, d), b.ticks(c, d)
    pd.testing.assert_frame_equal(ta.drop(columns="id"), tb.drop(columns="id"))  # ids count from the range start
    pd.testing.assert_frame_equal(ta, SimMarket(MarketConfig(**SMALL)).ticks(c, d))
    other = SimMarket(MarketConfig(**{**SMALL, "seed": 2})).ticks(c, d)
    assert len(other) != len(ta) or not other["last_price"].equals(ta["last_price"])


def test_now_and_faults() -> None:
    d = date(2024, 1, 10)
    cfg = MarketConfig(**{**SMALL, "now": datetime(2024, 1, 10, 10, 0),
                          "faults": Faults(no_tick_days=(("SHFE.cu2402", date(2024, 1, 9)),),
                                           no_night_days=(date(2024, 1, 10),))})
    m = SimMarket(cfg)
    assert m.ticks("SHFE.cu2402", date(2024, 1, 9)).empty
    df = m.ticks("SHFE.cu2402", d)
    assert _bj(int(df["datetime"].min())) >= datetime(2024, 1, 10, 9)
    assert _bj(int(df["datetime"].max())) <= datetime(2024, 1, 10, 10)
    assert m.ticks("SHFE.cu2402", date(2024, 1, 11)).empty  # after now nothing exists
    assert m.data_days()[-1] == d and m.trading_days()[-1] == date(2024, 3, 29)
    assert midnight_ns(d) < m.now_ns
