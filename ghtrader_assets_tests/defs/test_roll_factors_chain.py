"""Roll factors, adjusted reads and bars end to end (real tqsdk against the simulator, a real QuestDB, a real
Dagster instance), every expected value built from the simulated market's own rolls, ticks and bars: the
factor rows, a vendor's late roll corrected (only that switch computed again, the old row retired), the
adjusted series in both directions and both methods, and 1-minute bars equal to the simulator's."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime

import dagster as dg
import polars as pl
import pytest

from ghtrader_assets import reader
from ghtrader_assets.defs.futures.factor_assets import build_factor_assets
from ghtrader_assets.defs.futures.resources import FuturesSettings, TqSdkResource
from ghtrader_assets.domain.calendar import CST
from ghtrader_assets.io import futures_store as store
from ghtrader_assets.io import ledger_store as ledger
from ghtrader_assets.io.questdb import QuestDBClient, QuestDBSettings
from ghtrader_assets.sim.tq import MarketConfig, SimMarket, TqSimServer
from ghtrader_assets.sim.tq import calendar as sim_calendar
from ghtrader_assets_tests.fixtures.chain import Chain, failure_message, materializations, questdb_resource

VARIETY, SYMBOL = "SHFE.al", "KQ.m@SHFE.al"  # used by no other test module
START, END = date(2024, 1, 2), date(2024, 3, 15)
NOW = datetime(2024, 3, 15, 19, 0)  # Beijing: every day of the window has closed
LATE_ROLL = date(2024, 1, 30)  # the vendor first publishes this roll a day late
CORRECTED = datetime(2024, 3, 16, 12, 0)
PRICES = ("last_price", "average", "highest", "lowest", "bid_price1", "ask_price1", "bid_price5", "ask_price5")
UNTOUCHED = ("volume", "amount", "open_interest", "bid_volume1", "ask_volume5")


@pytest.fixture(scope="module")
def chain(questdb_settings: QuestDBSettings) -> Iterator[Chain]:
    cfg = MarketConfig(seed=4, start=START, end=END, varieties=(VARIETY,), density=0.02, far_density=0.01, now=NOW,
                       errata=((VARIETY, LATE_ROLL, 1, CORRECTED),))
    resources = {"questdb": questdb_resource(questdb_settings),
                 "tqsdk": TqSdkResource(user="sim", password="sim", backoff_s=0.2),
                 "futures": FuturesSettings(start_date=str(START), now=NOW.replace(tzinfo=CST).isoformat(),
                                            schedule_source="continuous_table")}
    with TqSimServer(cfg) as srv, dg.instance_for_test() as instance:
        run = Chain(srv, instance, resources, (VARIETY,))
        run.assets += build_factor_assets((VARIETY,))
        run.prepare()
        run.days = [d for d in run.days if d <= END]
        result = run.backfill(VARIETY, run.days[0], run.days[-1])
        assert result.success, failure_message(result)
        run.first_factors = run.materialize(["roll_factors"], partition_key=VARIETY)  # type: ignore[attr-defined]
        yield run


def true_switches(market: SimMarket, published: bool = False) -> list[tuple[date, str, str]]:
    """(switch day, outgoing, incoming) of the simulated market (as the vendor's table states it, if `published`)."""
    rolls = market.published_rolls(VARIETY) if published else market.roll_days(VARIETY)
    return [(day, rolls[i][1], contract) for i, (day, contract) in enumerate(rolls[1:])]


def close(market: SimMarket, contract: str, day: date) -> float:
    return float(market.real_ticks(contract, day)["last_price"].iloc[-1])


def opening(market: SimMarket, contract: str, day: date) -> float:
    return float(market.real_ticks(contract, day)["last_price"].iloc[0])


def test_factor_rows_hold_the_simulators_closes_and_opens(chain: Chain, qdb: QuestDBClient) -> None:
    assert chain.first_factors.success, failure_message(chain.first_factors)  # type: ignore[attr-defined]
    [check] = [e for e in chain.first_factors.get_asset_check_evaluations()]  # type: ignore[attr-defined]
    assert check.passed
    rows = ledger.roll_factor_rows(qdb, VARIETY)
    switches = true_switches(chain.market, published=True)
    assert LATE_ROLL not in [d for d, _, _ in switches] and len(switches) == 3
    assert [(r["ts"].date(), r["from_contract"], r["to_contract"]) for r in rows.iter_rows(named=True)] == switches
    for r in rows.iter_rows(named=True):
        day, old, new = r["ts"].date(), r["from_contract"], r["to_contract"]
        eve = sim_calendar.prev_trading_day(day)
        assert (r["close_day"].date(), r["from_close"], r["to_close"]) == (eve, close(chain.market, old, eve),
                                                                            close(chain.market, new, eve))
        assert (r["from_open"], r["to_open"]) == (opening(chain.market, old, day), opening(chain.market, new, day))
        assert r["spread"] == r["to_close"] - r["from_close"] and r["ratio"] == r["to_close"] / r["from_close"]
        assert r["segment_id"] == day.year * 10000 + day.month * 100 + day.day
    meta = materializations(chain.first_factors, "roll_factors")[VARIETY]  # type: ignore[attr-defined]
    assert (meta["switches"], meta["computed"], meta["kline_requests"]) == (3, 3, 4)  # 4 contracts, one request each
    again = chain.materialize(["roll_factors"], partition_key=VARIETY)
    assert materializations(again, "roll_factors")[VARIETY]["kline_requests"] == 0  # nothing changed: nothing fetched


def test_a_corrected_roll_recomputes_that_switch_alone_and_adjusted_reads_follow(chain: Chain, qdb: QuestDBClient) -> None:
    late = ledger.roll_factor_rows(qdb, VARIETY)
    chain.srv.set_now(CORRECTED.replace(hour=13))  # the vendor's table now has the true roll day
    result = chain.materialize(["main_schedule", "roll_factors"], partition_key=VARIETY)
    assert result.success, failure_message(result)
    meta = materializations(result, "roll_factors")[VARIETY]
    assert (meta["computed"], meta["reused"], meta["kline_requests"]) == (1, 2, 2)
    assert meta["retired"] == [str(sim_calendar.next_trading_day(LATE_ROLL))]
    rows = ledger.roll_factor_rows(qdb, VARIETY)
    assert [(r["ts"].date(), r["from_contract"], r["to_contract"]) for r in rows.iter_rows(named=True)] == true_switches(chain.market)
    unchanged = [d for d, _, _ in true_switches(chain.market) if d != LATE_ROLL]
    for column in ("from_close", "to_close", "spread", "from_open", "to_open", "post_spread"):
        before = {r["ts"].date(): r[column] for r in late.iter_rows(named=True)}
        now = {r["ts"].date(): r[column] for r in rows.iter_rows(named=True)}
        assert [before[d] for d in unchanged[:1]] == [now[d] for d in unchanged[:1]], column  # the first switch is kept
    # the days the revision moved are stale: an adjusted read refuses them until they are rebuilt
    with pytest.raises(reader.ReaderError, match="rebuild them"):
        reader.read_ticks(SYMBOL, START, END, adjust="pre", settings=qdb.settings, cache=False)
    rebuilt = chain.backfill(VARIETY, LATE_ROLL, END)
    assert rebuilt.success, failure_message(rebuilt)
    for adjust in ("pre", "post"):
        for method in ("spread", "ratio"):
            got = reader.read_ticks(SYMBOL, START, END, adjust=adjust, method=method, settings=qdb.settings, cache=False)
            want = expected_adjusted(chain.market, chain.days, adjust, method)
            assert got.height == want.height
            assert got["datetime_ns"].to_list() == want["datetime_ns"].to_list()
            for column in (*PRICES, *UNTOUCHED):
                if method == "spread" or column in UNTOUCHED:
                    assert got[column].to_list() == want[column].to_list(), (adjust, method, column)
                else:
                    assert got[column].to_list() == pytest.approx(want[column].to_list(), rel=1e-12, nan_ok=True), column
    opened = reader.read_ticks(SYMBOL, START, END, adjust="pre", reference="open", settings=qdb.settings, cache=False)
    assert opened["last_price"].to_list() == expected_adjusted(chain.market, chain.days, "pre", "spread", "open")["last_price"].to_list()


def expected_adjusted(market: SimMarket, days: list[date], adjust: str, method: str, reference: str = "prev_close") -> pl.DataFrame:
    """The main series from the simulator's real ticks, prices adjusted with factors computed here from its
    own rolls and prices (closes of the day before each roll, or opens on it)."""
    switches = true_switches(market)
    factors = []
    for day, old, new in switches:
        eve = sim_calendar.prev_trading_day(day)
        pre, post = ((close(market, old, eve), close(market, new, eve)) if reference == "prev_close"
                     else (opening(market, old, day), opening(market, new, day)))
        factors.append((day, post - pre, post / pre))
    frames = []
    for day in days:
        contract = market.main_contract(VARIETY, day)
        k = sum(1 for d, _, _ in switches if d <= day)  # the segment's number
        later, upto = factors[k:], factors[:k]
        if adjust == "pre":
            add = sum(s for _, s, _ in later)
            mul = 1.0
            for _, _, r in later:
                mul *= r
        else:
            add = -sum(s for _, s, _ in upto)
            mul = 1.0
            for _, _, r in upto:
                mul /= r
        ticks = pl.from_pandas(market.real_ticks(contract, day)).rename({"datetime": "datetime_ns"})
        ticks = ticks.with_columns([pl.col(c) + add if method == "spread" else pl.col(c) * mul for c in PRICES])
        frames.append(ticks.select("datetime_ns", *PRICES, *UNTOUCHED))
    return pl.concat(frames)


def test_unadjusted_reads_are_the_stored_rows(chain: Chain, qdb: QuestDBClient, tmp_path) -> None:
    days = ledger.read_calendar(qdb).between(START, END)
    want = store.read_ticks(qdb, SYMBOL, days, ledger.read_calendar(qdb), "main_l5")
    assert reader.read_ticks(SYMBOL, START, END, settings=qdb.settings, cache=tmp_path).equals(want)
    assert reader.read_ticks(SYMBOL, START, END, settings=qdb.settings, cache=tmp_path).equals(want)  # from the cache


def test_minute_bars_equal_the_simulators(chain: Chain, qdb: QuestDBClient) -> None:
    got = reader.read_bars(SYMBOL, START, END, every="1m", settings=qdb.settings)
    assert got["ts"].is_sorted()
    for day in chain.days:
        contract = chain.market.main_contract(VARIETY, day)
        bars = chain.market.minute_bars(contract, day)
        want = pl.DataFrame({k: bars[k] for k in ("datetime", "open", "high", "low", "close", "volume", "open_oi",
                                                  "close_oi")}).filter(pl.col("volume") > 0)  # bars with a trade
        mine = got.filter(pl.col("trading_day").dt.date() == day)
        assert (mine["ts"].dt.epoch("ns")).to_list() == want["datetime"].to_list(), day
        for column in ("open", "high", "low", "close", "volume", "open_oi", "close_oi"):
            assert mine[column].to_list() == want[column].to_list(), (day, column)
        assert set(mine["underlying_contract"]) == {contract}
    adjusted = reader.read_bars(SYMBOL, START, END, every="5m", adjust="post", settings=qdb.settings)
    ticks = expected_adjusted(chain.market, chain.days, "post", "spread")
    assert adjusted["high"].max() == ticks["last_price"].max() and adjusted["low"].min() == ticks["last_price"].min()
    assert adjusted["volume"].sum() == sum(float(chain.market.real_ticks(chain.market.main_contract(VARIETY, d), d)["volume"].iloc[-1])
                                           for d in chain.days)
