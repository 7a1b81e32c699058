"""Run-level limits: the run queue tags every futures run with its variety and provider, so a backfill
launched as the UI launches it (GraphQL `launchPartitionBackfill` against `dagster dev`) is limited to one
run per variety; two varieties' backfills run side by side and store exactly the simulator's ticks."""

from __future__ import annotations

import time
from pathlib import Path

import dagster as dg
import pytest

from ghtrader_assets.defs.run_queue import PROVIDER_TAG, VARIETY_TAG, run_limit_tags
from ghtrader_assets.io.questdb import QuestDBClient, QuestDBSettings
from ghtrader_assets.sim.tq import TqSimServer
from ghtrader_assets_tests.fixtures.dagster_dev import DagsterUI, dagster_dev
from ghtrader_assets_tests.fixtures.chain import Chain, assert_stored_equals_truth, questdb_resource, resources

TICKS = ["underlying_ticks", "main_l5", "day_index"]


def test_run_limit_tags_from_partition_tags() -> None:
    single = {"dagster/partition": "2024-01-02|SHFE.cu", "dagster/partition/variety": "SHFE.cu"}
    assert run_limit_tags(single, TICKS) == {VARIETY_TAG: "SHFE.cu", PROVIDER_TAG: "tqsdk"}
    ranged = {"dagster/asset_partition_range_start": "2024-01-02|DCE.m",
              "dagster/asset_partition_range_end": "2024-02-01|DCE.m"}
    assert run_limit_tags(ranged, ["main_l5", "day_index"]) == {VARIETY_TAG: "DCE.m"}  # no TqSdk session
    assert run_limit_tags({"dagster/partition": "SHFE.cu"}, ["main_schedule"]) == {
        VARIETY_TAG: "SHFE.cu", PROVIDER_TAG: "tqsdk"}
    assert run_limit_tags({}, ["trading_days"]) == {PROVIDER_TAG: "tqsdk"}
    assert run_limit_tags({"dagster/partition": "AAPL"}, ["ibkr_hours_bars"]) == {}  # IBKR: not a variety
    assert run_limit_tags({VARIETY_TAG: "SHFE.cu", "dagster/partition": "SHFE.cu"}, ["main_schedule"]) == {
        PROVIDER_TAG: "tqsdk"}  # a tag the run already has is kept as it is


LAUNCH = """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""


def launch_backfill(ui: DagsterUI, assets: list[str], partitions: list[str]) -> str:
    data = ui.graphql(LAUNCH, {"params": {"assetSelection": [{"path": [a]} for a in assets],
                                          "partitionNames": partitions, "fromFailure": False}})
    out = data["launchPartitionBackfill"]
    assert out["__typename"] == "LaunchBackfillSuccess", out
    return out["backfillId"]


def wait_backfill_runs(ui: DagsterUI, backfill_ids: list[str], timeout: float = 840) -> list[dict]:
    """Wait until every run of the backfills has finished; return them (with their start and end times)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = [r for r in ui.runs() if any(t["key"] == "dagster/backfill" and t["value"] in backfill_ids for t in r["tags"])]
        done = {b for r in runs for t in r["tags"] if t["key"] == "dagster/backfill" for b in [t["value"]]
                if r["status"] in ("SUCCESS", "FAILURE", "CANCELED")}
        if runs and all(r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in runs) and done >= set(backfill_ids):
            return runs
        time.sleep(0.5)
    pytest.fail(f"backfills {backfill_ids} did not finish in {timeout:.0f} s:\n{ui.log_tail()}", pytrace=False)


def overlapping(runs: list[dict]) -> list[tuple[str, str]]:
    """Pairs of runs of one variety whose [start, end] times overlap (from the runs' own records, so no
    overlap can pass unseen between two looks)."""
    spans = [({t["key"]: t["value"] for t in r["tags"]}.get(VARIETY_TAG), r["startTime"], r["endTime"], r["runId"])
             for r in runs]
    return [(a[3], b[3]) for i, a in enumerate(spans) for b in spans[i + 1:]
            if a[0] == b[0] and a[1] < b[2] and b[1] < a[2]]


def three_logins(settings: str) -> str:
    """The project's dagster.yaml with room for three TqSdk runs: the login limit (2) must not be what keeps
    the second SHFE.cu run waiting, or the variety limit would go untested."""
    old = 'value: "tqsdk"\n        limit: 2'
    assert old in settings
    return settings.replace(old, 'value: "tqsdk"\n        limit: 3')


def test_ui_backfills_of_two_varieties_run_in_parallel_one_run_per_variety(
    tmp_path: Path, questdb_settings: QuestDBSettings, tq_sim: TqSimServer
) -> None:
    days = tq_sim.market.trading_days()
    first_days, more_days = days[:4], days[4:7]
    with dagster_dev(tmp_path, questdb_settings, tq_sim, instance_yaml=three_logins) as ui:
        # trading_days and the schedules in-process, into the same instance: not what is under test here.
        with dg.DagsterInstance.from_config(str(ui.home)) as instance:
            Chain(tq_sim, instance, resources(questdb_resource(questdb_settings), tq_sim.market), ("SHFE.cu", "DCE.m")).prepare()

        # Two varieties at once, and a second SHFE.cu backfill that must wait for the first.
        keys = lambda variety, ds: [f"{d.isoformat()}|{variety}" for d in ds]  # noqa: E731
        ids = [launch_backfill(ui, TICKS, keys("SHFE.cu", first_days)),
               launch_backfill(ui, TICKS, keys("DCE.m", first_days)),
               launch_backfill(ui, TICKS, keys("SHFE.cu", more_days))]
        runs = wait_backfill_runs(ui, ids)
        assert all(r["status"] == "SUCCESS" for r in runs), ui.log_tail()
        tags = [{t["key"]: t["value"] for t in r["tags"]} for r in runs]
        assert sorted(t[VARIETY_TAG] for t in tags) == ["DCE.m", "SHFE.cu", "SHFE.cu"]
        assert not overlapping(runs), "two runs of one variety were running at the same time"
        assert overlapping([{**r, "tags": [{"key": VARIETY_TAG, "value": "x"}]} for r in runs]), \
            "the two varieties' runs did not run side by side"

    with QuestDBClient(questdb_settings) as qdb:
        rows = assert_stored_equals_truth(qdb, tq_sim.market, "SHFE.cu", first_days + more_days)
        rows += assert_stored_equals_truth(qdb, tq_sim.market, "DCE.m", first_days)
    assert rows > 0
