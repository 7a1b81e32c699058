"""Every exchange's shape through the chain, compared value by value with what the simulator served:
CZCE's 3-digit contracts, SHFE.au's night to 02:30 (Friday nights into Saturday), INE's five levels, a
day-only GFEX product, a DCE night that closed at 23:30 before a change the vendor no longer reports, and a
dirty answer. Raw holds every served tick, main_l5 the real ticks inside the known sessions, a wrong depth
is reported, and the session evidence becomes a session-history entry that rebuilds main_l5 without a
download."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest

from ghtrader_assets.defs.futures.resources import FuturesSettings, TqSdkResource
from ghtrader_assets.domain.calendar import CST
from ghtrader_assets.domain.symbols import main_symbol
from ghtrader_assets.domain.ticks import TICK_COLUMNS
from ghtrader_assets.io import futures_store as store
from ghtrader_assets.io import ledger_store as ledger
from ghtrader_assets.io.questdb import QuestDBClient, QuestDBSettings
from ghtrader_assets.sim.tq import Faults, MarketConfig, SimMarket, TqSimServer
from ghtrader_assets_tests.fixtures.chain import Chain, failure_message, materializations, questdb_resource
from ghtrader_assets_tests.truth import real_frame, served_frame

VARIETIES = ("CZCE.TA", "SHFE.au", "INE.sc", "GFEX.si", "DCE.i")
START, END = date(2024, 2, 19), date(2024, 3, 8)  # after the Spring Festival (no night on the 19th) .. a Friday
NOW = datetime(2024, 3, 8, 19, 0)  # Beijing: every day of the window is final
DAY = (("09:00:00", "10:15:00"), ("10:30:00", "11:30:00"), ("13:30:00", "15:00:00"))
CHANGE = date(2024, 3, 1)  # DCE.i's night closes at 23:00 from this trading day; at 23:30 before
DIRTY_DAY = date(2024, 2, 22)
THIN_DAY = date(2024, 3, 5)  # INE.sc served with one level this day


def market_config(faults: Faults = Faults()) -> MarketConfig:
    return MarketConfig(seed=3, start=START, end=END, varieties=VARIETIES, density=0.05, far_density=0.01, now=NOW,
                        session_changes=(("DCE.i", date(2023, 1, 3), DAY, (("21:00:00", "23:30:00"),)),
                                         ("DCE.i", CHANGE, DAY, (("21:00:00", "23:00:00"),))),
                        faults=faults)


@pytest.fixture(scope="module")
def chain(questdb_settings: QuestDBSettings) -> Iterator[Chain]:
    plain = SimMarket(market_config())
    faults = Faults(dirty_days=((plain.main_contract("CZCE.TA", DIRTY_DAY), DIRTY_DAY),),
                    depth_days=((plain.main_contract("INE.sc", THIN_DAY), THIN_DAY, 1),))
    resources = {"questdb": questdb_resource(questdb_settings),
                 "tqsdk": TqSdkResource(user="sim", password="sim", backoff_s=0.2),
                 "futures": FuturesSettings(start_date=str(START), now=NOW.replace(tzinfo=CST).isoformat(),
                                            schedule_source="continuous_table")}
    with TqSimServer(market_config(faults)) as srv, dg.instance_for_test() as instance:
        run = Chain(srv, instance, resources, VARIETIES).prepare()
        run.days = [d for d in run.days if d <= END]  # the current trading day (after END) has no ticks yet
        run.results = {v: run.backfill(v, run.days[0], run.days[-1]) for v in VARIETIES}  # type: ignore[attr-defined]
        yield run


def stored(qdb: QuestDBClient, table: store.Table, symbol: str, day: date) -> pl.DataFrame:
    bounds = ledger.read_calendar(qdb).bounds_ns(day)
    return qdb.export(f"SELECT * FROM {table.name} WHERE {store.day_filter(symbol, day, bounds)} ORDER BY ts, seq")


def same_values(got: pl.DataFrame, want: pl.DataFrame, columns: list[str]) -> bool:
    return got.height == want.height and all(
        np.array_equal(got[c].to_numpy(), want[c].to_numpy(), equal_nan=got[c].dtype.is_float()) for c in columns)


def beijing_clock(frame: pl.DataFrame) -> pl.Expr:
    return pl.from_epoch("datetime_ns", time_unit="ns").dt.convert_time_zone("Asia/Shanghai")


def test_raw_holds_every_served_tick_of_every_exchange(chain: Chain, qdb: QuestDBClient) -> None:
    for variety in VARIETIES:
        assert chain.results[variety].success, failure_message(chain.results[variety])  # type: ignore[attr-defined]
        for day in chain.days:
            contract = chain.market.main_contract(variety, day)
            served = served_frame(chain.market, contract, day).sort("datetime_ns", "seq")
            assert served.height > 0
            raw = stored(qdb, store.RAW_TICKS, contract, day)
            assert same_values(raw, served, ["datetime_ns", "seq", *TICK_COLUMNS]), (variety, day)
    assert chain.market.main_contract("CZCE.TA", START).startswith("CZCE.TA4")  # CZCE's 3-digit code
    assert len(chain.market.main_contract("CZCE.TA", START)) == len("CZCE.TA405")


def test_main_l5_is_the_real_ticks_and_a_dirty_answer_is_flagged(chain: Chain, qdb: QuestDBClient) -> None:
    for variety in ("CZCE.TA", "SHFE.au", "INE.sc", "GFEX.si"):
        for day in chain.days:
            contract = chain.market.main_contract(variety, day)
            main = stored(qdb, store.MAIN_L5_TICKS, main_symbol(variety), day)
            assert same_values(main, real_frame(chain.market, contract, day), ["datetime_ns", "seq", *TICK_COLUMNS]), (variety, day)
    contract = chain.market.main_contract("CZCE.TA", DIRTY_DAY)
    raw = stored(qdb, store.RAW_TICKS, contract, DIRTY_DAY)
    want = served_frame(chain.market, contract, DIRTY_DAY).sort("datetime_ns", "seq")
    assert raw["flag"].to_list() == want["injected"].fill_null("ok").to_list()


def test_a_night_to_0230_keeps_friday_nights_after_midnight_with_monday(chain: Chain, qdb: QuestDBClient) -> None:
    monday = date(2024, 3, 4)
    main = stored(qdb, store.MAIN_L5_TICKS, "KQ.m@SHFE.au", monday)
    clock = main.select(beijing_clock(main).alias("t"))["t"]
    saturday = clock.filter(clock.dt.date() == date(2024, 3, 2))
    assert saturday.len() > 0 and saturday.max().time() <= datetime(2024, 3, 2, 2, 31).time()
    assert (main["trading_day"].dt.date() == monday).all()
    first_day = stored(qdb, store.MAIN_L5_TICKS, "KQ.m@SHFE.au", START)  # after the holiday: no night session
    assert first_day.select(beijing_clock(first_day).dt.hour().min()).item() >= 8
    gfex = stored(qdb, store.MAIN_L5_TICKS, "KQ.m@GFEX.si", monday)
    assert gfex.select(beijing_clock(gfex).dt.hour().max()).item() < 16  # day-only


def test_ine_keeps_five_levels_and_a_day_served_with_one_is_reported(chain: Chain, qdb: QuestDBClient) -> None:
    index = ledger.read_index(qdb, "KQ.m@INE.sc", START, END, "main_l5")
    by_day = dict(zip(index["ts"].dt.date().to_list(), index["l5_present"].to_list()))
    assert by_day == {d: d != THIN_DAY for d in chain.days}
    raw = stored(qdb, store.RAW_TICKS, chain.market.main_contract("INE.sc", START), START)
    assert raw["bid_price2"].is_not_nan().all() and raw["ask_volume5"].is_not_nan().all()
    meta = materializations(chain.results["INE.sc"], "underlying_ticks")  # type: ignore[attr-defined]
    assert meta[f"{START}|INE.sc"]["depth_levels"] == meta[f"{START}|INE.sc"]["depth_expected"] == 5
    assert (meta[f"{THIN_DAY}|INE.sc"]["depth_levels"], meta[f"{THIN_DAY}|INE.sc"]["depth_expected"]) == (1, 5)
    checks = {c.check_name: c for c in chain.results["INE.sc"].get_asset_check_evaluations()}  # type: ignore[attr-defined]
    assert not checks["depth_as_expected"].passed
    assert list(checks["depth_as_expected"].metadata["mismatches"].value) == [f"{THIN_DAY}|INE.sc"]
    for variety in ("CZCE.TA", "SHFE.au", "GFEX.si", "DCE.i"):
        evaluations = {c.check_name: c for c in chain.results[variety].get_asset_check_evaluations()}  # type: ignore[attr-defined]
        assert evaluations["depth_as_expected"].passed, variety


def test_session_evidence_suggests_the_missing_change_and_the_rebuild_needs_no_download(
    chain: Chain, qdb: QuestDBClient, tmp_path: Path
) -> None:
    result = chain.results["DCE.i"]  # type: ignore[attr-defined]
    check = {c.check_name: c for c in result.get_asset_check_evaluations()}["sessions_explain_ticks"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    nights = [d for d in chain.days if d < CHANGE and d != START]  # START follows the holiday: no night
    suggested = check.metadata["suggested_session_history"].value
    assert [(c["variety"], c["effective_from"], c["trading_time"]["night"]) for c in suggested["changes"]] == [
        ("DCE.i", str(nights[0]), [["21:00:00", "23:30:00"]]), ("DCE.i", str(CHANGE), [["21:00:00", "23:00:00"]])]

    # Before the entry: the real ticks of the old night's last half hour are in raw only.
    def left_out(day: date) -> pl.DataFrame:
        real = real_frame(chain.market, chain.market.main_contract("DCE.i", day), day)
        main = stored(qdb, store.MAIN_L5_TICKS, "KQ.m@DCE.i", day)
        return real.join(main.select("datetime_ns", "seq"), on=["datetime_ns", "seq"], how="anti")

    by_day = {d: left_out(d) for d in chain.days}
    assert {d for d, frame in by_day.items() if frame.height} == set(nights)
    missing = pl.concat(by_day.values())
    clock = missing.select(beijing_clock(missing).alias("t"))["t"]
    assert missing.height > 100
    assert clock.dt.hour().to_list() == [23] * missing.height and clock.dt.minute().max() < 30  # the old half hour only

    # The suggested entries, as the user would save them, make those ticks part of main_l5: no download.
    path = tmp_path / "sessions.json"
    path.write_text(json.dumps(suggested))
    downloads = dict(chain.srv.downloads)
    futures = chain.resources["futures"]
    chain.resources["futures"] = FuturesSettings(**{**futures.model_dump(), "session_history_file": str(path)})
    try:
        rebuild = chain.materialize(["main_l5", "day_index"], tags={
            "dagster/asset_partition_range_start": f"{chain.days[0]}|DCE.i",
            "dagster/asset_partition_range_end": f"{chain.days[-1]}|DCE.i"})
    finally:
        chain.resources["futures"] = futures
    assert rebuild.success, failure_message(rebuild)
    assert chain.srv.downloads == downloads
    for day in chain.days:
        contract = chain.market.main_contract("DCE.i", day)
        main = stored(qdb, store.MAIN_L5_TICKS, "KQ.m@DCE.i", day)
        assert same_values(main, real_frame(chain.market, contract, day), ["datetime_ns", "seq", *TICK_COLUMNS]), day
        assert set(stored(qdb, store.RAW_TICKS, contract, day)["flag"]) == {"ok"}, day
    assert all(c.passed for c in rebuild.get_asset_check_evaluations())
