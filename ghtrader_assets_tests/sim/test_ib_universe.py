"""Data rules of the IB simulator: NYSE sessions, chains, conId stability and deterministic bars."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from ghtrader_assets.sim.ib import GatewayConfig, SimUniverse
from ghtrader_assets.sim.ib import calendar as cal
from ghtrader_assets.sim.ib.universe import option_conid, strike_increment

AS_OF = datetime(2026, 11, 20, 21, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def universe() -> SimUniverse:
    return SimUniverse(GatewayConfig(seed=7, as_of=AS_OF))


def liquid_option(u: SimUniverse, symbol: str = "AAPL"):
    close = u.close_on(symbol, AS_OF.date())
    monthly = [o for o in u.option_chain(symbol) if o.expiry == "20261218" and o.right == "C"]
    return min(monthly, key=lambda o: abs(o.strike - close))


@pytest.mark.parametrize(("day", "open_"), [
    ("2024-03-29", False), ("2025-01-09", False), ("2025-04-18", False), ("2026-07-03", False),
    ("2026-11-26", False), ("2026-11-21", False), ("2026-11-22", False), ("2026-11-20", True), ("2025-07-03", True),
])
def test_trading_days(day: str, open_: bool) -> None:
    assert cal.is_trading_day(date.fromisoformat(day)) is open_


def test_sessions_and_half_days() -> None:
    assert cal.session(date(2026, 11, 27))[1].time() == time(13, 0)  # type: ignore[index]
    assert cal.session(date(2024, 12, 24))[1].time() == time(13, 0)  # type: ignore[index]
    opened, closed = cal.session(date(2026, 11, 20))  # type: ignore[misc]
    assert (opened.time(), closed.time(), opened.tzinfo) == (time(9, 30), time(16, 0), cal.NY)
    assert len(cal.trading_days(date(2024, 1, 1), date(2024, 12, 31))) == 252
    assert len(cal.trading_days(date(2025, 1, 1), date(2025, 12, 31))) == 250
    with pytest.raises(ValueError):
        cal.is_trading_day(date(2027, 1, 4))


def test_stocks_have_stable_conids(universe: SimUniverse) -> None:
    assert universe.stock("AAPL").conid == 265598
    assert universe.stock("spy")[:2] == (756733, "SPY")
    assert len({universe.stock(s).conid for s in universe.symbols}) == len(universe.symbols) >= 12
    with pytest.raises(KeyError):
        universe.stock("ZZZZ")


def test_chain_shape(universe: SimUniverse) -> None:
    chain = universe.option_chain("AAPL")
    expiries = sorted({o.expiry for o in chain})
    # Friday 16:30: today's monthly is still known to IB until the end of its expiry day
    assert all(e >= "20261120" for e in expiries) and "20261120" in expiries
    gone = SimUniverse(GatewayConfig(seed=7, as_of=AS_OF, expired_after=timedelta(0)))
    assert "20261120" not in {o.expiry for o in gone.option_chain("AAPL")}
    assert "20261218" in expiries and "20261224" in expiries  # monthly; Christmas-Friday weekly moves to Thursday
    assert len(expiries) >= 10
    assert len({o.conid for o in chain}) == len(chain)
    for o in chain:
        assert (o.multiplier, o.trading_class, o.right in "CP") == ("100", "AAPL", True)
        assert o.conid == option_conid(o.symbol, o.expiry, o.right, o.strike)
    strikes = sorted({o.strike for o in chain if o.expiry == "20261218"})
    inc = min(b - a for a, b in zip(strikes, strikes[1:]))
    assert inc in (0.5, 1.0, 2.5, 5.0, 10.0)
    assert all(abs(s / inc - round(s / inc)) < 1e-9 for s in strikes)
    assert strike_increment(230) == 5.0


def test_conids_do_not_depend_on_seed_or_as_of(universe: SimUniverse) -> None:
    later = SimUniverse(GatewayConfig(seed=99, as_of=datetime(2026, 11, 23, 15, tzinfo=UTC)))
    common = {(o.expiry, o.right, o.strike): o.conid for o in universe.option_chain("MSFT")}
    other = {(o.expiry, o.right, o.strike): o.conid for o in later.option_chain("MSFT")}
    shared = common.keys() & other.keys()
    assert shared and all(common[k] == other[k] for k in shared)


def test_bars_are_deterministic(universe: SimUniverse) -> None:
    o = liquid_option(universe)
    same = SimUniverse(GatewayConfig(seed=7, as_of=AS_OF))
    other = SimUniverse(GatewayConfig(seed=8, as_of=AS_OF))
    bars = universe.bars(o.conid, "30 mins", "1 M")
    assert bars and bars == same.bars(o.conid, "30 mins", "1 M")
    assert universe.bars(universe.stock("AAPL").conid, "1 day", "1 M") != other.bars(
        other.stock("AAPL").conid, "1 day", "1 M")


@pytest.mark.parametrize("bar_size", ["30 mins", "8 hours"])
def test_bars_only_in_regular_hours(universe: SimUniverse, bar_size: str) -> None:
    for conid in (universe.stock("SPY").conid, liquid_option(universe, "SPY").conid):
        bars = universe.bars(conid, bar_size, "6 M")
        assert bars
        for b in bars:
            local = b.time.astimezone(cal.NY)  # type: ignore[union-attr]
            opened, closed = cal.session(local.date())  # type: ignore[misc]
            assert opened <= local < closed, b


def test_daily_bars_and_aggregation(universe: SimUniverse) -> None:
    conid = universe.stock("AAPL").conid
    days = universe.bars(conid, "1 day", "1 Y")
    assert all(cal.is_trading_day(b.time) for b in days)  # type: ignore[arg-type]
    assert date(2026, 11, 27) in {b.time for b in days} or days[-1].time == date(2026, 11, 20)
    assert days[-1].close == pytest.approx(universe.close_on("AAPL", date(2026, 11, 20)), abs=0.01)
    halfs = universe.bars(conid, "30 mins", "1 Y")
    friday = [b for b in halfs if b.time.astimezone(cal.NY).date() == date(2025, 11, 28)]  # type: ignore[union-attr]
    assert len(friday) == 7  # 09:30-13:00 half day
    last = [b for b in halfs if b.time.astimezone(cal.NY).date() == date(2026, 11, 20)]  # type: ignore[union-attr]
    assert len(last) == 13
    assert (max(b.high for b in last), sum(b.volume for b in last)) == (days[-1].high, days[-1].volume)
    eight = universe.bars(conid, "8 hours", "1 W")
    assert [b.time.astimezone(cal.NY).time() for b in eight] == [time(9, 30)] * len(eight)  # type: ignore[union-attr]


def test_duration_and_end(universe: SimUniverse) -> None:
    conid = universe.stock("QQQ").conid
    assert len(universe.bars(conid, "1 day", "5 D")) == 5
    assert len(universe.bars(conid, "30 mins", "1 D")) == 13
    end = datetime(2026, 11, 19, 17, 0, tzinfo=UTC)  # 12:00 New York
    bars = universe.bars(conid, "30 mins", "1 D", end=end)
    assert len(bars) == 5 and bars[-1].time == datetime(2026, 11, 19, 16, 30, tzinfo=UTC)
    mid = SimUniverse(GatewayConfig(as_of=end))
    assert mid.bars(conid, "30 mins", "2 D")[-1].time < end  # nothing after the simulated now
    with pytest.raises(ValueError):
        universe.bars(conid, "7 mins", "1 D")
    with pytest.raises(ValueError):
        universe.bars(conid, "30 mins", "1 Q")
    with pytest.raises(KeyError):
        universe.bars(1, "30 mins", "1 D")


def test_daily_expiries_of_spy_and_expiry_moment() -> None:
    u = SimUniverse(GatewayConfig(seed=7, as_of=AS_OF))
    spy = sorted({date.fromisoformat(f"{e[:4]}-{e[4:6]}-{e[6:]}") for e in {o.expiry for o in u.option_chain("SPY")}})
    weekdays = {d.weekday() for d in spy[:8]}
    assert {0, 2, 4} <= weekdays and 1 not in weekdays  # Mon/Wed dailies besides the Friday weeklies
    assert {o.expiry for o in u.option_chain("AAPL")} & {"20261123", "20261125"} == set()
    monday = next(o for o in u.option_chain("SPY") if o.expiry == "20261123")
    assert u.expired_at(monday) == datetime(2026, 11, 24, 0, 0, tzinfo=cal.NY)


def test_illiquid_options_have_no_bars_expired_ones_keep_their_history(universe: SimUniverse) -> None:
    chain = universe.option_chain("NVDA")
    illiquid = [o for o in chain if o.illiquid]
    assert 0.05 < len(illiquid) / len(chain) < 0.2
    assert all(universe.bars(o.conid, "8 hours", "6 M") == [] for o in illiquid[:5])
    calls = [o for o in chain if o.expiry == chain[0].expiry and o.right == "C"]
    assert max(calls, key=lambda o: o.strike).illiquid  # the farthest OTM call
    expired = [o for o in universe.all_options("NVDA") if o.expiry < "20261120"]
    assert expired and universe.lookup(expired[-1].conid) == expired[-1] and universe.expired(expired[-1])
    # ground truth stays: the gateway, not the universe, refuses expired options (test_ib_gateway)
    liquid = [o for o in expired if not o.illiquid]
    assert any(universe.bars(o.conid, "8 hours", "6 M") for o in liquid)
    none = SimUniverse(GatewayConfig(as_of=AS_OF, illiquid_fraction=0.0))
    assert not any(o.illiquid for o in none.option_chain("NVDA"))
