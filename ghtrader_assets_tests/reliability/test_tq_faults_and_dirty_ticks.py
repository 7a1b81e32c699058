"""TqSdk faults through the futures assets (the connection dropped mid-download, the server answering nothing
for a while) and a dirty provider frame cleaned by the documented rule with every count in the metadata."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import dagster as dg
import polars as pl
import pytest

from ghtrader_assets.defs.futures.resources import TqSdkResource
from ghtrader_assets.domain.calendar import CST
from ghtrader_assets.io.questdb import QuestDBClient, QuestDBSettings
from ghtrader_assets.sim.tq import Faults, TqSimServer
from ghtrader_assets_tests.reliability._chain import (
    Chain,
    assert_stored_equals_truth,
    failure_message,
    materializations,
    questdb_resource,
    resources,
)

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


class DirtyClient:
    """The real TqSdkClient, with the provider's tick frame made dirty: known numbers of bad prices,
    ticks outside the sessions, exact duplicates and swapped (out-of-order) neighbours."""

    BAD, OUTSIDE, DUPES, SWAPS = 4, 3, 5, 2

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def ticks(self, contract: str, day) -> pl.DataFrame:
        frame = self.inner.ticks(contract, day)
        rows = frame.to_dicts()
        template = rows[len(rows) // 2]
        bad = [{**template, "last_price": v} for v in (float("nan"), 0.0, -5.0, float("inf"))]

        def at(when: datetime) -> dict:
            return {**template, "datetime_ns": int(when.replace(tzinfo=CST).timestamp()) * 10**9}

        d = datetime(day.year, day.month, day.day)
        outside = [at(d + timedelta(hours=12, minutes=30)), at(d + timedelta(hours=3, minutes=30)),
                   at(d - timedelta(days=6) + timedelta(hours=10))]
        t = [r["datetime_ns"] for r in rows]
        swaps = [i for i in range(100, len(rows) - 1, 97) if t[i - 1] < t[i] < t[i + 1] < t[i + 2]][: self.SWAPS]
        for i in swaps:
            rows[i], rows[i + 1] = rows[i + 1], rows[i]
        dupes = list(range(10, 10 + 7 * self.DUPES, 7))
        out: list[dict] = []
        for i, row in enumerate(rows):
            out.append(row)
            if i in dupes:
                out.append(dict(row))
            if i == 50:
                out += bad
            if i == 60:
                out += outside
        assert len(swaps) == self.SWAPS
        return pl.DataFrame(out, schema=frame.schema)


class DirtyTqSdkResource(TqSdkResource):
    def client(self) -> Any:  # type: ignore[override]
        return DirtyClient(super().client())

    def session(self) -> Any:  # type: ignore[override]
        return DirtyClient(super().session())


def test_dirty_provider_frame_is_cleaned_by_the_rule_and_counted(
    chain: Chain, qdb: QuestDBClient, figures, caplog: pytest.LogCaptureFixture
) -> None:
    day = chain.days[20]
    chain.resources["tqsdk"] = DirtyTqSdkResource(user="sim", password="sim", backoff_s=0.2)
    try:
        result = chain.backfill(VARIETY, day, day)
    finally:
        chain.resources["tqsdk"] = fast_tq()
    assert result.success, failure_message(result)
    meta = materializations(result, "underlying_ticks")[f"{day}|{VARIETY}"]
    kept = meta["rows"]
    c = DirtyClient
    assert {k: meta[k] for k in meta if k.startswith("ticks_")} == {
        "ticks_received": kept + c.BAD + c.OUTSIDE + c.DUPES, "ticks_bad_price": c.BAD,
        "ticks_outside_session": c.OUTSIDE, "ticks_duplicate": c.DUPES, "ticks_out_of_order": c.SWAPS,
        "ticks_kept": kept}
    assert "cleaning rule changed the provider frame" in caplog.text
    figures["bad_inputs"] += c.BAD + c.OUTSIDE + c.DUPES + c.SWAPS
    # what is stored is exactly the provider's clean ticks
    figures["rows_compared"] += assert_stored_equals_truth(qdb, chain.market, VARIETY, [day])
