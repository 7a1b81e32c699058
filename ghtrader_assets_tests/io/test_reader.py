"""The reader against a real QuestDB: the same rows, timestamps and values as one whole-range export (the
reader before weekly chunks and the cache), a cache that never serves a revised day, bounded streaming, and
bars whose session-margin ticks land in their window's first and last bar."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ghtrader_assets import reader
from ghtrader_assets.domain.calendar import CST, TradingCalendar
from ghtrader_assets.domain.schedule import build_schedule
from ghtrader_assets.domain.ticks import TICK_COLUMNS, with_row_hash, with_seq
from ghtrader_assets.io import futures_store as store
from ghtrader_assets.io import ledger_store as ledger
from ghtrader_assets.io.questdb import QuestDBClient, QuestDBSettings
from ghtrader_assets.io.questdb_schema import MAIN_L5_TICKS
from ghtrader_assets.sim.tq import calendar as sim_calendar

VARIETY, SYMBOL = "SHFE.pb", "KQ.m@SHFE.pb"  # used by no other test module
FIRST, LAST = date(2024, 9, 2), date(2024, 10, 25)  # Mid-Autumn (9-16/17) and National Day (10-1..7) inside
ROLL = date(2024, 9, 25)
TRADING_TIME = {"day": [["09:00:00", "10:15:00"], ["10:30:00", "11:30:00"], ["13:30:00", "15:00:00"]],
                "night": [["21:00:00", "25:00:00"]]}


def _calendar() -> TradingCalendar:
    """The exchanges' calendar as trading_days stores it (the simulator's holidays), 2023-12 .. 2024-12."""
    first, last = date(2023, 12, 1), date(2024, 12, 31)
    holidays = set(sim_calendar.holidays())
    return TradingCalendar.from_flags((first + timedelta(i), (first + timedelta(i)).weekday() < 5
                                       and first + timedelta(i) not in holidays) for i in range((last - first).days + 1))


CAL = _calendar()
DAYS = CAL.between(FIRST, LAST)


def contract(day: date) -> str:
    return "SHFE.pb2410" if day < ROLL else "SHFE.pb2411"


def ticks(day: date, variant: int = 0) -> pl.DataFrame:
    """A day of ticks every 30 s through its windows, plus a call-auction tick before each window and a tick
    after each close, two ticks sharing one time, and levels 2-5 unquoted (NaN) on odd minutes."""
    rng = np.random.default_rng([day.toordinal(), variant])
    times: list[int] = []
    night = CAL.has_night_session(day)
    for anchor, windows in ((CAL.previous_trading_day(day), TRADING_TIME["night"] if night else []), (day, TRADING_TIME["day"])):
        midnight = int(datetime.combine(anchor, datetime.min.time()).replace(tzinfo=CST).timestamp()) * 10**9
        for start, end in windows:
            lo, hi = (sum(int(x) * m for x, m in zip(t.split(":"), (3600, 60, 1))) * 10**9 for t in (start, end))
            times += [midnight + lo - 120 * 10**9]  # call auction, 2 minutes before the open
            times += list(range(midnight + lo, midnight + hi, 30 * 10**9))
            times += [midnight + hi + 20 * 10**9]  # after the close, within the 60 s grace
    times.sort()
    times.insert(10, times[10])  # two ticks at one time: seq 0 and 1
    n = len(times)
    price = 16000.0 + 5 * np.cumsum(rng.choice([-1, 0, 1], size=n)) + 40 * variant
    volume = np.cumsum(rng.integers(1, 20, size=n)).astype(float)
    values = {"last_price": price, "average": price - 1, "highest": np.maximum.accumulate(price),
              "lowest": np.minimum.accumulate(price), "volume": volume, "amount": volume * 80000.0,
              "open_interest": 50000.0 + np.arange(n)}
    for level in range(1, 6):
        quoted = level == 1 or bool(day.day % 2)
        values[f"bid_price{level}"] = price - 5 * level if quoted else np.full(n, np.nan)
        values[f"bid_volume{level}"] = np.full(n, float(level)) if quoted else np.zeros(n)
        values[f"ask_price{level}"] = price + 5 * level if quoted else np.full(n, np.nan)
        values[f"ask_volume{level}"] = np.full(n, float(level + 1)) if quoted else np.zeros(n)
    frame = pl.DataFrame({"symbol": [contract(day)] * n, "datetime_ns": times, **{c: values[c] for c in TICK_COLUMNS}})
    return with_seq(with_row_hash(frame)).with_columns(
        pl.from_epoch("datetime_ns", time_unit="ns").alias("ts"),
        pl.lit(datetime(day.year, day.month, day.day)).alias("trading_day")).select(store.RAW_FRAME_COLUMNS)


def store_days(qdb: QuestDBClient, days: list[date], variant: int = 0, index: bool = True) -> None:
    """Raw and main_l5 through the store's batch path, and the index rows the chain writes for them."""
    schedule = {r.trading_day: r for r in build_schedule(VARIETY, {d: contract(d) for d in DAYS})}
    batch = [store.DayWrite(VARIETY, d, CAL.bounds_ns(d), schedule[d], ticks(d, variant)) for d in days]
    done = store.store_days(qdb, batch)
    assert not [v.error for v in done.values() if v.error]
    if index:
        ledger.write_index(qdb, [ledger.IndexWrite(SYMBOL, d, "main_l5", done[(VARIETY, d)].main_l5, contract(d),
                                                   schedule[d].segment_id, schedule[d].schedule_hash, 0, True) for d in days])
        qdb.wait_for_wal(ledger.SYMBOL_DAY_INDEX)


@pytest.fixture(scope="module")
def stored(questdb_settings: QuestDBSettings) -> Iterator[QuestDBSettings]:
    with QuestDBClient(questdb_settings) as qdb:
        qdb.bootstrap()
        ledger.write_calendar(qdb, CAL)
        ledger.write_sessions(qdb, VARIETY, TRADING_TIME, date(2024, 1, 2), True)
        ledger.write_schedule(qdb, VARIETY, build_schedule(VARIETY, {d: contract(d) for d in DAYS}), "test")
        for i in range(0, len(DAYS), 8):
            store_days(qdb, DAYS[i:i + 8])
    yield questdb_settings


def whole_export(settings: QuestDBSettings, symbol: str, first: date, last: date, kind: str = "main_l5") -> pl.DataFrame:
    """The reader before this release: one export of the whole range, ordered by (ts, seq)."""
    with QuestDBClient(settings) as qdb:
        return store.read_ticks(qdb, symbol, CAL.between(first, last), CAL, kind)


def weeks(sqls: list[str]) -> list[str]:
    """The time ranges of exports (for a failure message)."""
    return [sql[sql.index("ts >="):sql.index("AND trading_day")] for sql in sqls]


@pytest.fixture
def exports(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every Parquet export the reader asks QuestDB for (its SQL)."""
    seen: list[str] = []
    original = QuestDBClient.export_parquet

    def counting(self, sql: str, codec: str = "LZ4_RAW") -> bytes:  # noqa: ANN001
        seen.append(sql)
        return original(self, sql, codec)

    monkeypatch.setattr(QuestDBClient, "export_parquet", counting)
    return seen


def test_the_same_rows_as_one_whole_export_then_from_the_cache(stored: QuestDBSettings, tmp_path: Path,
                                                                exports: list[str]) -> None:
    want = whole_export(stored, SYMBOL, FIRST, LAST)
    assert want.height > 20_000 and want["underlying_contract"].n_unique() == 2
    got = reader.read_ticks(SYMBOL, FIRST, LAST, settings=stored, cache=tmp_path)
    assert got.equals(want) and got.schema == want.schema  # rows, ns timestamps, every value (NaN too), order
    first_exports = len(exports)
    assert first_exports == len({w for w in (d.isocalendar()[:2] for d in DAYS)})  # one export per week
    assert all("underlying_contract" not in sql.split("FROM")[0] for sql in exports)  # text restored, not exported
    again = reader.read_ticks(SYMBOL, FIRST, LAST, settings=stored, cache=tmp_path)
    assert again.equals(want)
    assert len(exports) == first_exports  # every week was closed and indexed: all from the cache
    middle = reader.read_ticks(SYMBOL, date(2024, 9, 4), date(2024, 10, 15), settings=stored, cache=tmp_path)
    assert middle.equals(whole_export(stored, SYMBOL, date(2024, 9, 4), date(2024, 10, 15)))
    assert len(exports) == first_exports  # part of a cached week is read from its file
    assert reader.read_ticks(SYMBOL, FIRST, LAST, settings=stored, cache=False).equals(want)


def test_raw_reads_equal_a_whole_export(stored: QuestDBSettings, tmp_path: Path) -> None:
    got = reader.read_ticks("SHFE.pb2411", date(2024, 9, 20), date(2024, 10, 11), kind="raw", settings=stored,
                            cache=tmp_path)
    assert got.height > 0 and got.equals(whole_export(stored, "SHFE.pb2411", date(2024, 9, 20), date(2024, 10, 11), "raw"))


def test_a_revised_day_is_never_served_stale(stored: QuestDBSettings, tmp_path: Path, exports: list[str]) -> None:
    first, last = date(2024, 10, 14), date(2024, 10, 25)
    assert reader.read_ticks(SYMBOL, first, last, settings=stored, cache=tmp_path).equals(
        whole_export(stored, SYMBOL, first, last))
    before = len(exports)
    day = date(2024, 10, 16)
    with QuestDBClient(stored) as qdb:
        store_days(qdb, [day], variant=1, index=False)  # rows rewritten, the index not yet (a run in between)
    want = whole_export(stored, SYMBOL, first, last)
    assert reader.read_ticks(SYMBOL, first, last, settings=stored, cache=tmp_path).equals(want)
    assert len(exports) == before + 1, weeks(exports[before:])  # that week again (not cached: the index disagrees)
    with QuestDBClient(stored) as qdb:
        store_days(qdb, [day], variant=1)  # the index follows
    assert reader.read_ticks(SYMBOL, first, last, settings=stored, cache=tmp_path).equals(want)
    assert len(exports) == before + 2, weeks(exports[before:])
    assert reader.read_ticks(SYMBOL, first, last, settings=stored, cache=tmp_path).equals(want)
    assert len(exports) == before + 2, weeks(exports[before:])  # cached again, with the revised day
    with QuestDBClient(stored) as qdb:
        store_days(qdb, [day])  # back to the first answer
    assert reader.read_ticks(SYMBOL, first, last, settings=stored, cache=tmp_path).equals(
        whole_export(stored, SYMBOL, first, last))
    # a value rewritten in place, same rows and hashes (e.g. a rebuild for another segment), index not yet
    with QuestDBClient(stored) as qdb:
        qdb.execute(f"UPDATE {MAIN_L5_TICKS.name} SET schedule_hash = 42 WHERE {store.day_filter(SYMBOL, day, CAL.bounds_ns(day))}")
        qdb.wait_for_wal(MAIN_L5_TICKS)
    try:
        want = whole_export(stored, SYMBOL, first, last)
        assert set(want.filter(pl.col("trading_day").dt.date() == day)["schedule_hash"]) == {42}
        assert reader.read_ticks(SYMBOL, first, last, settings=stored, cache=tmp_path).equals(want)
    finally:
        with QuestDBClient(stored) as qdb:
            store_days(qdb, [day], variant=1)
            store_days(qdb, [day])  # a rewrite puts the schedule's hash back


def test_a_day_holding_two_contracts_is_read_as_stored(stored: QuestDBSettings, tmp_path: Path) -> None:
    day = date(2024, 9, 3)
    extra = ticks(day).head(5).with_columns(pl.lit(SYMBOL).alias("symbol"), pl.lit("SHFE.pb2412").alias("underlying_contract"),
                                            pl.lit(1, dtype=pl.Int32).alias("segment_id"), pl.lit(7).alias("schedule_hash"),
                                            pl.col("seq") + 100, pl.lit(1).alias("answer_hash"), pl.lit(0).alias("session_hash"))
    with QuestDBClient(stored) as qdb:
        qdb.write(MAIN_L5_TICKS, extra.select(MAIN_L5_TICKS.column_names))
        qdb.wait_for_wal(MAIN_L5_TICKS)
    try:
        want = whole_export(stored, SYMBOL, FIRST, date(2024, 9, 13))
        assert set(want["underlying_contract"]) == {"SHFE.pb2410", "SHFE.pb2412"}
        assert reader.read_ticks(SYMBOL, FIRST, date(2024, 9, 13), settings=stored, cache=tmp_path).equals(want)
    finally:
        with QuestDBClient(stored) as qdb:
            qdb.execute(f"UPDATE {MAIN_L5_TICKS.name} SET symbol = '~{SYMBOL}' WHERE symbol = '{SYMBOL}' "
                        "AND underlying_contract = 'SHFE.pb2412'")
            qdb.wait_for_wal(MAIN_L5_TICKS)


def test_streaming_yields_one_week_at_a_time(stored: QuestDBSettings) -> None:
    weeks = list(reader.iter_ticks(SYMBOL, FIRST, LAST, settings=stored, cache=False))
    assert len(weeks) == len({d.isocalendar()[:2] for d in DAYS})
    assert all(w.select(pl.col("trading_day").dt.iso_year().alias("y"), pl.col("trading_day").dt.week().alias("w")).n_unique() == 1
               for w in weeks if w.height)
    assert pl.concat(weeks).equals(whole_export(stored, SYMBOL, FIRST, LAST))


def test_bars_keep_session_margins_in_their_window(stored: QuestDBSettings) -> None:
    day = date(2024, 10, 8)  # the first day after National Day: no night session
    assert not CAL.has_night_session(day)
    got = reader.read_bars(SYMBOL, day, day, every="15m", settings=stored)
    frame = ticks(day)
    local = pl.from_epoch("datetime_ns", time_unit="ns").dt.replace_time_zone("UTC").dt.convert_time_zone("Asia/Shanghai")
    # expected, from the ticks: each tick's bar by the documented rule, written out for these windows
    minutes = frame.select(local.alias("t"), "last_price", "volume", "open_interest").with_columns(
        (pl.col("t").dt.hour().cast(pl.Int32) * 60 + pl.col("t").dt.minute()).alias("m"))
    opens, closes = (540, 630, 810), (615, 690, 900)
    bar = pl.col("m")
    for o in opens:
        bar = pl.when((pl.col("m") >= o - 5) & (pl.col("m") < o)).then(o).otherwise(bar)
    for c in closes:
        bar = pl.when((pl.col("m") >= c) & (pl.col("m") <= c + 1)).then(c - 1).otherwise(bar)
    want = minutes.with_columns((bar // 15 * 15).alias("bar")).group_by("bar", maintain_order=True).agg(
        pl.col("last_price").first().alias("open"), pl.col("last_price").max().alias("high"),
        pl.col("last_price").min().alias("low"), pl.col("last_price").last().alias("close"),
        pl.col("volume").last().alias("v_end"), pl.col("open_interest").first().alias("oi0"),
        pl.col("open_interest").last().alias("close_oi"), pl.len().alias("ticks"))
    want = want.with_columns((pl.col("v_end") - pl.col("v_end").shift(1).fill_null(0.0)).alias("volume"),
                             pl.col("close_oi").shift(1).fill_null(pl.col("oi0")).alias("open_oi"))
    clock = got["ts"].dt.convert_time_zone("Asia/Shanghai")
    assert (clock.dt.hour().cast(pl.Int32) * 60 + clock.dt.minute()).to_list() == want["bar"].to_list()
    for column in ("open", "high", "low", "close", "volume", "open_oi", "close_oi", "ticks"):
        assert got[column].to_list() == want[column].to_list(), column
    assert got["ticks"].sum() == frame.height  # the auction and after-close ticks are in the first and last bars
    assert set(got["trading_day"].dt.date()) == {day} and set(got["underlying_contract"]) == {"SHFE.pb2411"}


def test_bar_sizes_across_a_break_and_bad_arguments_are_refused(stored: QuestDBSettings) -> None:
    with pytest.raises(ValueError, match="across a session break"):
        reader.read_bars(SYMBOL, FIRST, FIRST, every="1h", settings=stored)
    with pytest.raises(reader.ReaderError, match="main series"):
        reader.read_bars("SHFE.pb2410", FIRST, FIRST, settings=stored)
    with pytest.raises(reader.ReaderError, match="only the main series"):
        reader.read_ticks("SHFE.pb2410", FIRST, FIRST, kind="raw", adjust="pre", settings=stored)
    with pytest.raises(reader.ReaderError, match="method must be"):
        reader.read_ticks(SYMBOL, FIRST, FIRST, adjust="pre", method="log", settings=stored)
    with pytest.raises(reader.ReaderError, match="no roll factor"):
        reader.read_ticks(SYMBOL, FIRST, LAST, adjust="pre", settings=stored)


def test_readers_side_by_side_share_the_servers_two_exports(stored: QuestDBSettings) -> None:
    """Three reads at once ask for six exports; QuestDB runs two and refuses the others (HTTP 429), which are
    sent again: every read still returns the stored rows."""
    from concurrent.futures import ThreadPoolExecutor

    want = whole_export(stored, SYMBOL, FIRST, LAST)
    with ThreadPoolExecutor(3) as pool:
        got = list(pool.map(lambda _: reader.read_ticks(SYMBOL, FIRST, LAST, settings=stored, cache=False), range(3)))
    assert all(g.equals(want) for g in got)
