"""The futures chain end to end: real tqsdk against the simulator, a real QuestDB, a real Dagster instance."""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg
import polars as pl
import pytest

from ghtrader_assets.defs.futures.assets import build_futures_assets
from ghtrader_assets.defs.futures.resources import FuturesSettings, TqSdkResource
from ghtrader_assets.domain.symbols import SymbolError
from ghtrader_assets.domain.ticks import L2_TO_L5_PRICE_COLUMNS
from ghtrader_assets.io import questdb_schema as schema
from ghtrader_assets.io import ledger_store as ledger
from ghtrader_assets.io.questdb import QuestDBClient, QuestDBSettings
from ghtrader_assets.reader import read_ticks
from ghtrader_assets.sim.tq import Faults, TqSimServer
from ghtrader_assets_tests.fixtures.tq_sim import tq_env
from ghtrader_assets_tests.fixtures.chain import SIM_NOW, Chain, failure_message, questdb_resource
from ghtrader_assets_tests.truth import materializations, truth_stats

VARIETIES = ("SHFE.cu", "DCE.m")


@pytest.fixture(scope="module")
def chain(tq_sim: TqSimServer, questdb_settings: QuestDBSettings) -> Iterator[Chain]:
    resources = {
        "questdb": questdb_resource(questdb_settings),
        "tqsdk": TqSdkResource(user="sim", password="sim", backoff_s=0.2),
        "futures": FuturesSettings(start_date=str(tq_sim.market.cfg.start), now=SIM_NOW),  # the backtest source
    }
    with QuestDBClient(questdb_settings) as qdb, dg.instance_for_test() as instance:
        run = Chain(tq_sim, instance, resources, VARIETIES).prepare()
        run.qdb = qdb  # type: ignore[attr-defined]
        result = run.backfill("SHFE.cu", run.days[0], run.days[-1])
        assert result.success, failure_message(result)
        run.first_backfill = result  # type: ignore[attr-defined]
        assert run.backfill("DCE.m", run.days[0], run.days[19]).success
        yield run


def test_partitions_are_exactly_the_trading_days(chain: Chain) -> None:
    assert chain.days == chain.market.trading_days()
    assert len(chain.days) >= 60
    assert all(d.weekday() < 5 for d in chain.days)


def test_schedule_segments_equal_the_simulator_rolls(chain: Chain) -> None:
    for variety in VARIETIES:
        rows = ledger.read_schedule(chain.qdb, variety)
        assert [r.trading_day for r in rows] == chain.days
        assert [(r.trading_day, r.main_contract) for r in rows] == [(d, chain.market.main_contract(variety, d)) for d in chain.days]
        segments = []
        for r in rows:
            if not segments or segments[-1][1] != r.main_contract:
                segments.append((r.trading_day, r.main_contract))
        assert segments == chain.market.roll_days(variety)
        assert len(segments) >= 2


def test_main_l5_equals_the_scheduled_contract_day_by_day(chain: Chain) -> None:
    index = ledger.read_index(chain.qdb, "KQ.m@SHFE.cu", chain.days[0], chain.days[-1], "main_l5")
    by_day = {ts.date(): row for ts, row in zip(index["ts"], index.iter_rows(named=True))}
    rolls = {d for d, _ in chain.market.roll_days("SHFE.cu")}
    assert rolls <= set(by_day)
    for day in chain.days:
        contract = chain.market.main_contract("SHFE.cu", day)
        truth = truth_stats(chain.market, contract, day)
        got = by_day[day]
        assert got["underlying_contract"] == contract
        assert {k: got[k] for k in truth} == truth, day


def test_read_api_returns_the_stored_series_in_order(chain: Chain) -> None:
    roll = chain.market.roll_days("SHFE.cu")[1][0]
    frame = read_ticks("KQ.m@SHFE.cu", chain.days[chain.days.index(roll) - 1], roll, settings=chain.qdb.settings)
    assert frame["datetime_ns"].is_sorted()
    assert set(frame["underlying_contract"]) == {chain.market.main_contract("SHFE.cu", d) for d in frame["trading_day"].dt.date().unique()}
    truth = pl.from_pandas(chain.market.ticks(chain.market.main_contract("SHFE.cu", roll), roll)[["datetime", "last_price"]])
    got = frame.filter(pl.col("trading_day").dt.date() == roll)
    assert got["datetime_ns"].to_list() == truth["datetime"].cast(pl.Int64).to_list()
    assert got["last_price"].to_list() == truth["last_price"].to_list()


def test_each_partition_has_its_own_materialization_with_metadata(chain: Chain) -> None:
    mats = materializations(chain.first_backfill, "main_l5")  # type: ignore[attr-defined]
    assert len(mats) == len(chain.days)
    last = mats[f"{chain.days[-1]}|SHFE.cu"]
    assert last["final"] is False  # the simulator's "now" is inside the last trading day
    first = materializations(chain.first_backfill, "underlying_ticks")[f"{chain.days[0]}|SHFE.cu"]  # type: ignore[attr-defined]
    assert first["underlying"] == chain.market.main_contract("SHFE.cu", chain.days[0]) and first["rows"] > 0
    assert first["ticks_received"] == first["ticks_kept"] == first["rows"]


def test_the_ledger_says_which_days_are_final(chain: Chain) -> None:
    """The daily sensor decides from these rows (not from the metadata above): only the last day, still
    trading at the simulator's "now", is stored as not final, for the raw and the main series alike."""
    for kind, symbol in (("main_l5", "KQ.m@SHFE.cu"), ("raw", None)):
        if symbol is None:
            entries = {}
            for contract in {chain.market.main_contract("SHFE.cu", d) for d in chain.days}:
                entries |= {d: e for d, e in ledger.index_entries(chain.qdb, contract, kind).items()
                            if chain.market.main_contract("SHFE.cu", d) == contract}
        else:
            entries = ledger.index_entries(chain.qdb, symbol, kind)
        assert sorted(entries) == chain.days
        assert sorted(d for d, e in entries.items() if e.final is not True) == [chain.days[-1]]


def test_a_range_backfill_materializes_every_partition_exactly_once(chain: Chain) -> None:
    counts: dict[tuple[str, str], int] = {}
    for event in chain.first_backfill.all_events:  # type: ignore[attr-defined]
        if event.event_type_value == "ASSET_MATERIALIZATION":
            mat = event.event_specific_data.materialization
            key = (mat.asset_key.to_user_string(), mat.partition)
            counts[key] = counts.get(key, 0) + 1
    expected = {(a, f"{d}|SHFE.cu") for a in ("underlying_ticks", "main_l5", "day_index") for d in chain.days}
    assert set(counts) == expected and set(counts.values()) == {1}
    assert len({r.run_id for r in chain.instance.get_runs() if r.tags.get("dagster/asset_partition_range_start") == f"{chain.days[0]}|SHFE.cu"}) == 1


def test_rematerializing_a_partition_changes_nothing(chain: Chain) -> None:
    roll = chain.market.roll_days("SHFE.cu")[1][0]
    before = ledger.read_index(chain.qdb, "KQ.m@SHFE.cu", roll, roll, "main_l5").drop("updated_at")
    total = chain.qdb.scalar("SELECT count() FROM ghtrader_ticks_main_l5_v2 WHERE symbol = 'KQ.m@SHFE.cu'")
    assert chain.backfill("SHFE.cu", roll, roll).success
    chain.qdb.wait_for_wal(schema.SYMBOL_DAY_INDEX)
    assert ledger.read_index(chain.qdb, "KQ.m@SHFE.cu", roll, roll, "main_l5").drop("updated_at").equals(before)
    assert chain.qdb.scalar("SELECT count() FROM ghtrader_ticks_main_l5_v2 WHERE symbol = 'KQ.m@SHFE.cu'") == total


def test_each_asset_subset_rebuilds_from_what_is_stored(chain: Chain) -> None:
    """A stale partition is rebuilt without a download (main_l5 + day_index, or day_index alone): the index
    still holds both the raw and the main series' rows, and they equal a full run's."""
    day = chain.days[5]
    key = f"{day}|SHFE.cu"
    before = {kind: ledger.read_index(chain.qdb, symbol, day, day, kind).drop("updated_at")
              for symbol, kind in ((chain.market.main_contract("SHFE.cu", day), "raw"), ("KQ.m@SHFE.cu", "main_l5"))}
    for selection in (["main_l5", "day_index"], ["day_index"]):
        result = chain.materialize(selection, partition_key=key)
        assert result.success, selection
        for (symbol, kind), frame in zip(((chain.market.main_contract("SHFE.cu", day), "raw"), ("KQ.m@SHFE.cu", "main_l5")),
                                         before.values()):
            assert ledger.read_index(chain.qdb, symbol, day, day, kind).drop("updated_at").equals(frame), (selection, kind)


def test_level_one_variety_has_empty_depth_levels(chain: Chain) -> None:
    index = ledger.read_index(chain.qdb, "KQ.m@DCE.m", chain.days[0], chain.days[19], "main_l5")
    assert index.height == 20 and not any(index["l5_present"])
    frame = read_ticks("KQ.m@DCE.m", chain.days[0], chain.days[0], settings=chain.qdb.settings)
    assert frame.height > 0 and frame.select(L2_TO_L5_PRICE_COLUMNS).null_count().sum_horizontal().item() + \
        frame.select([pl.col(c).is_nan().sum() for c in L2_TO_L5_PRICE_COLUMNS]).sum_horizontal().item() == frame.height * 8
    shfe = ledger.read_index(chain.qdb, "KQ.m@SHFE.cu", chain.days[0], chain.days[0], "main_l5")
    assert shfe["l5_present"].to_list() == [True]


def test_a_failed_download_is_reported_and_fills_on_a_later_run(chain: Chain, tq_sim_factory) -> None:
    days = chain.days[20:23]
    contract = chain.market.main_contract("DCE.m", days[1])
    # The first day downloads (three tick answers); then the server stops answering that session, so the
    # second day's only attempt runs out of time.
    broken = tq_sim_factory(faults=Faults(stall_after_tick_responses=3, stall_seconds=30))
    chain.resources["tqsdk"] = TqSdkResource(user="sim", password="sim", retries=1, download_timeout_s=4)
    try:
        result = chain.backfill("DCE.m", days[0], days[-1], srv=broken)
    finally:
        chain.resources["tqsdk"] = TqSdkResource(user="sim", password="sim", backoff_s=0.2)
    assert not result.success
    failure = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"][0]
    message = str(failure.event_specific_data.error)
    assert "of 3 partitions failed" in message and f"{days[1]}|DCE.m" in message and contract in message
    assert f"{days[0]}|DCE.m" in materializations(result, "main_l5")
    assert chain.backfill("DCE.m", days[0], days[-1]).success
    for day in days:
        stats = ledger.read_index(chain.qdb, "KQ.m@DCE.m", day, day, "main_l5")
        assert stats["rows_total"].to_list() == [truth_stats(chain.market, chain.market.main_contract("DCE.m", day), day)["rows_total"]]


def test_a_provider_empty_day_is_recorded_and_stays_retriable(chain: Chain, tq_sim_factory) -> None:
    day = chain.days[30]
    contract = chain.market.main_contract("DCE.m", day)
    empty = tq_sim_factory(faults=Faults(no_tick_days=((contract, day),)))
    result = chain.backfill("DCE.m", day, day, srv=empty)
    assert result.success
    assert materializations(result, "underlying_ticks")[f"{day}|DCE.m"]["no_data"] is True
    assert (contract, day) in ledger.open_no_data_days(chain.qdb, contract)
    assert chain.backfill("DCE.m", day, day).success
    assert (contract, day) not in ledger.open_no_data_days(chain.qdb, contract)


def test_unknown_varieties_are_refused_clearly(chain: Chain) -> None:
    with pytest.raises(SymbolError, match="not a futures variety"):
        build_futures_assets(("SHFE.cu", "SHFE.cu'; DROP TABLE x"))
    assets = build_futures_assets(("SHFE.zz",))
    with tq_env(chain.srv):
        result = dg.materialize(assets, selection=["trading_days"], resources=chain.resources,
                                instance=chain.instance, raise_on_error=False)
    assert not result.success
    failure = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"][0]
    assert "SHFE.zz" in str(failure.event_specific_data.error)
