"""Exact day replacement in QuestDB: no duplicates, no stale rows."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import polars as pl

from ghtrader_assets.domain.calendar import CST, TradingCalendar
from ghtrader_assets.domain.schedule import build_schedule
from ghtrader_assets.domain.ticks import TICK_COLUMNS, with_row_hash, with_seq
from ghtrader_assets.io import futures_store as store
from ghtrader_assets.io.questdb import QuestDBClient
from ghtrader_assets.io.questdb_schema import RAW_TICKS
from ghtrader_assets_tests.store_days import materialize_main_l5, replace_raw_day

FIRST, LAST = date(2025, 3, 1), date(2025, 3, 31)
CAL = TradingCalendar.from_flags((FIRST + timedelta(i), (FIRST + timedelta(i)).weekday() < 5) for i in range(31))
DAY = date(2025, 3, 11)  # Tuesday: its night session starts Monday 21:00
VARIETY = "SHFE.zn"


def frame(contract: str, day: date, n: int, price: float) -> pl.DataFrame:
    start = int(datetime.combine(CAL.previous_trading_day(day), datetime.min.time()).replace(hour=21, tzinfo=CST).timestamp()) * 10**9
    out = pl.DataFrame({"symbol": [contract] * n, "datetime_ns": [start + i * 500_000_000 for i in range(n)],
                        **{c: [price + i for i in range(n)] for c in TICK_COLUMNS}})
    return with_seq(with_row_hash(out)).with_columns(
        pl.from_epoch("datetime_ns", time_unit="ns").alias("ts"),
        pl.lit(datetime(day.year, day.month, day.day)).alias("trading_day"),
    ).select(store.RAW_FRAME_COLUMNS)


def stored(qdb: QuestDBClient, table, symbol: str, day: date) -> dict:
    qdb.wait_for_wal(table)
    return store.day_stats(qdb, table, symbol, day, CAL.bounds_ns(day)).as_dict()


def test_a_shorter_provider_answer_leaves_no_stale_rows(qdb: QuestDBClient) -> None:
    qdb.bootstrap()
    bounds = CAL.bounds_ns(DAY)
    neighbour = frame("SHFE.zn2505", CAL.next_trading_day(DAY), 50, 1.0)
    replace_raw_day(qdb, "SHFE.zn2505", CAL.next_trading_day(DAY), CAL.bounds_ns(CAL.next_trading_day(DAY)), neighbour)
    replace_raw_day(qdb, "SHFE.zn2505", DAY, bounds, frame("SHFE.zn2505", DAY, 300, 100.0))
    replace_raw_day(qdb, "SHFE.zn2505", DAY, bounds, frame("SHFE.zn2505", DAY, 300, 100.0))
    assert stored(qdb, RAW_TICKS, "SHFE.zn2505", DAY)["rows_total"] == 300
    newer = frame("SHFE.zn2505", DAY, 120, 200.0)
    replace_raw_day(qdb, "SHFE.zn2505", DAY, bounds, newer)
    assert stored(qdb, RAW_TICKS, "SHFE.zn2505", DAY) == store.frame_stats(newer).as_dict()
    # the rebuild kept everything else in the touched partitions
    nb_day = CAL.next_trading_day(DAY)
    assert stored(qdb, RAW_TICKS, "SHFE.zn2505", nb_day) == store.frame_stats(neighbour).as_dict()
    assert not [n for n in qdb.query("SELECT table_name FROM tables()")["table_name"] if "__restage_" in n]


def test_main_l5_follows_a_changed_schedule_without_stale_rows(qdb: QuestDBClient) -> None:
    qdb.bootstrap()
    bounds = CAL.bounds_ns(DAY)
    a, b = frame("SHFE.zn2504", DAY, 200, 10.0), frame("SHFE.zn2505", DAY, 150, 20.0)
    replace_raw_day(qdb, "SHFE.zn2504", DAY, bounds, a)
    replace_raw_day(qdb, "SHFE.zn2505", DAY, bounds, b)
    row_a = build_schedule(VARIETY, {DAY: "SHFE.zn2504"})[0]
    row_b = build_schedule(VARIETY, {DAY: "SHFE.zn2505"})[0]
    assert materialize_main_l5(qdb, VARIETY, DAY, bounds, row_a) == 200
    assert materialize_main_l5(qdb, VARIETY, DAY, bounds, row_a) == 200  # idempotent
    assert materialize_main_l5(qdb, VARIETY, DAY, bounds, row_b) == 150
    got = store.read_ticks(qdb, "KQ.m@SHFE.zn", [DAY], CAL, "main_l5")
    assert set(got["underlying_contract"]) == {"SHFE.zn2505"}
    assert got["row_hash"].to_list() == b["row_hash"].to_list()
    assert set(got["schedule_hash"]) == {row_b.schedule_hash}
