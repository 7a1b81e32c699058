"""TqSdk faults through the futures assets (the connection dropped mid-download, the server answering nothing
for a while) and a dirty provider answer stored as served, flagged by the documented rule, with every count
in the metadata."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import dagster as dg
import numpy as np
import polars as pl
import pytest

from ghtrader_assets.defs.futures.resources import TqSdkResource
from ghtrader_assets.domain.symbols import main_symbol
from ghtrader_assets.domain.ticks import TICK_COLUMNS
from ghtrader_assets.io import futures_store as store
from ghtrader_assets.io import ledger_store as ledger
from ghtrader_assets.io.questdb import QuestDBClient, QuestDBSettings
from ghtrader_assets.sim.tq import Faults, TqSimServer
from ghtrader_assets_tests.fixtures.chain import (
    Chain,
    assert_stored_equals_truth,
    failure_message,
    materializations,
    questdb_resource,
    resources,
)
from ghtrader_assets_tests.truth import real_frame, served_frame

pytestmark = pytest.mark.reliability
VARIETY = "SHFE.rb"


@pytest.fixture(scope="module")
def chain(tq_sim: TqSimServer, questdb_settings: QuestDBSettings) -> Iterator[Chain]:
    with dg.instance_for_test() as instance:
        yield Chain(tq_sim, instance, resources(questdb_resource(questdb_settings), tq_sim.market), (VARIETY,)).prepare()


def fast_tq(**kw: Any) -> TqSdkResource:
    return TqSdkResource(user="sim", password="sim", **{"retries": 3, "backoff_s": 0.2, **kw})


@pytest.mark.parametrize("fault", ["drop", "stall"])
def test_tq_drop_or_stall_mid_download_is_retried_on_a_fresh_session(
    chain: Chain, tq_sim_factory, qdb: QuestDBClient, fault: str, figures, caplog: pytest.LogCaptureFixture
) -> None:
    # tqsdk would reconnect by itself only after a 10-80 s backoff and keeps waiting through a stall;
    # the download timeout bounds each attempt and the retry opens a fresh session.
    faults = (Faults(drop_after_tick_responses=2, drop_count=1) if fault == "drop"
              else Faults(stall_after_tick_responses=2, stall_seconds=8))
    days = chain.days[10:13] if fault == "drop" else chain.days[14:17]
    broken = tq_sim_factory(faults=faults)
    chain.resources["tqsdk"] = fast_tq(download_timeout_s=4)
    started = time.monotonic()
    try:
        result = chain.backfill(VARIETY, days[0], days[-1], srv=broken)
    finally:
        chain.resources["tqsdk"] = fast_tq()
    took = time.monotonic() - started
    figures["faults"] += 1
    assert result.success, failure_message(result)
    assert took < 60, took  # bounded: one timed-out attempt, then a fresh session
    assert broken.stats["drops" if fault == "drop" else "tick_responses"] >= 1
    assert "retrying in" in caplog.text and "did not finish within" in caplog.text  # the user is told
    assert len(materializations(result, "day_index")) == len(days)
    figures["rows_compared"] += assert_stored_equals_truth(qdb, chain.market, VARIETY, days)


def stored_day(qdb: QuestDBClient, table: str, symbol: str, day, bounds) -> pl.DataFrame:
    """The stored rows of one (symbol, day), in time order."""
    return qdb.export(f"SELECT * FROM {table} WHERE {store.day_filter(symbol, day, bounds)} ORDER BY ts, seq")


def assert_same_values(got: pl.DataFrame, want: pl.DataFrame, columns: list[str]) -> None:
    """Equal column by column, value by value (NaN equal to NaN: a level the vendor did not send)."""
    assert got.height == want.height, (got.height, want.height)
    for c in columns:
        a, b = got[c].to_numpy(), want[c].to_numpy()
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), c


def test_a_dirty_answer_is_stored_as_served_flagged_and_main_l5_holds_the_real_ticks(
    chain: Chain, tq_sim_factory, qdb: QuestDBClient, figures, caplog: pytest.LogCaptureFixture
) -> None:
    """The simulator serves a day with bad prices, duplicates, ticks outside every session and swapped
    neighbours on the wire: raw stores every served tick with the rule's flag, main_l5 exactly the real
    ticks in time order, and every count is in the metadata."""
    day = chain.days[20]
    contract = chain.market.main_contract(VARIETY, day)
    dirty = tq_sim_factory(faults=Faults(dirty_days=((contract, day),)))
    result = chain.backfill(VARIETY, day, day, srv=dirty)
    assert result.success, failure_message(result)
    served = served_frame(dirty.market, contract, day)
    dirt = dirty.market.dirt(contract, day)
    kinds = Counter(kind for kind, _, _ in dirt["injected"])
    meta = materializations(result, "underlying_ticks")[f"{day}|{VARIETY}"]
    assert {k: meta[k] for k in meta if k.startswith("ticks_")} == {
        "ticks_received": served.height, "ticks_bad_price": kinds["bad_price"],
        "ticks_outside_session": kinds["outside_session"], "ticks_duplicate": kinds["duplicate"],
        "ticks_out_of_order": len(dirt["swaps"]), "ticks_kept": served["real"].sum()}
    assert meta["rows"] == served.height  # raw: the answer as served
    assert "raw keeps them, flagged" in caplog.text
    bounds = ledger.read_calendar(qdb).bounds_ns(day)
    raw = stored_day(qdb, store.RAW_TICKS.name, contract, day, bounds)
    want = served.sort("datetime_ns", "seq").with_columns(pl.col("injected").fill_null("ok").alias("flag"))
    assert_same_values(raw, want, ["datetime_ns", "seq", *TICK_COLUMNS, "flag"])
    main = stored_day(qdb, store.MAIN_L5_TICKS.name, main_symbol(VARIETY), day, bounds)
    assert_same_values(main, real_frame(dirty.market, contract, day), ["datetime_ns", "seq", *TICK_COLUMNS])
    figures["bad_inputs"] += sum(kinds.values()) + len(dirt["swaps"])
    figures["rows_compared"] += raw.height + main.height
