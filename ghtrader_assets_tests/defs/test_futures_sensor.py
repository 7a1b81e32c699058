"""The daily update sensor with a real DagsterInstance and QuestDB: trading day, weekend, holiday, failures."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta

import dagster as dg
import pytest

from ghtrader_assets.defs.futures.resources import FuturesSettings
from ghtrader_assets.defs.futures.sensors import build_daily_update_sensor
from ghtrader_assets.defs.resources import QuestDBResource
from ghtrader_assets.domain.calendar import TradingCalendar
from ghtrader_assets.domain.schedule import build_schedule
from ghtrader_assets.io import futures_store as store
from ghtrader_assets.io.questdb import QuestDBClient, QuestDBSettings
from ghtrader_assets.sim.tq import MarketConfig, SimMarket

VARIETIES = ("SHFE.cu", "DCE.m")
MARKET = SimMarket(MarketConfig(start=date(2024, 1, 2), end=date(2024, 4, 30), varieties=VARIETIES))


@pytest.fixture(scope="module")
def stored_calendar(questdb_settings: QuestDBSettings) -> TradingCalendar:
    """The simulator's 2024 calendar and schedules, written as the trading_days and main_schedule assets would."""
    first, last = date(2023, 12, 1), date(2024, 12, 31)
    holidays = set(MARKET.holidays())
    flags = [(first + timedelta(i), (first + timedelta(i)).weekday() < 5 and first + timedelta(i) not in holidays)
             for i in range((last - first).days + 1)]
    calendar = TradingCalendar.from_flags(flags)
    with QuestDBClient(questdb_settings) as qdb:
        qdb.bootstrap()
        store.write_calendar(qdb, calendar)
        for variety in VARIETIES:
            days = [d for d in MARKET.trading_days() if d <= date(2024, 4, 12)]
            store.write_schedule(qdb, variety, build_schedule(variety, {d: MARKET.main_contract(variety, d) for d in days}), "test")
    return calendar


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        yield inst


def evaluate(instance: dg.DagsterInstance, settings: QuestDBSettings, now: str, update_time: str = "18:00"):
    sensor = build_daily_update_sensor(VARIETIES)
    resources = {
        "questdb": QuestDBResource(host=settings.host, http_port=settings.http_port, pg_port=settings.pg_port),
        "futures": FuturesSettings(start_date="2024-01-02", now=now, daily_update_time=update_time),
    }
    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        return sensor(context)


def mark_done(instance: dg.DagsterInstance, day: str, variety: str, final: bool = True) -> None:
    instance.add_dynamic_partitions("trading_day", [day]) if day not in instance.get_dynamic_partitions("trading_day") else None
    instance.report_runless_asset_event(
        dg.AssetMaterialization("day_index", partition=f"{day}|{variety}", metadata={"final": final}))


def prepare(instance: dg.DagsterInstance, calendar: TradingCalendar, through: date) -> None:
    days = [d.isoformat() for d in calendar.between(date(2024, 1, 2), through)]
    instance.add_dynamic_partitions("trading_day", days)
    for day in days[-6:]:
        for variety in VARIETIES:
            mark_done(instance, day, variety)


def requested(result) -> list[str]:
    return sorted(r.partition_key for r in (result.run_requests or [])) if isinstance(result, dg.SensorResult) else []


def test_a_trading_day_adds_the_day_and_requests_exactly_its_partitions(instance, questdb_settings, stored_calendar) -> None:
    prepare(instance, stored_calendar, date(2024, 3, 11))
    result = evaluate(instance, questdb_settings, "2024-03-12T18:30:00+08:00")
    assert isinstance(result, dg.SensorResult)
    assert requested(result) == ["2024-03-12|DCE.m", "2024-03-12|SHFE.cu"]
    assert [r.partition_keys for r in result.dynamic_partitions_requests] == [["2024-03-12"]]
    assert {r.job_name for r in result.run_requests} == {"futures_ticks_job"}
    # before the update time nothing is due yet
    assert requested(evaluate(instance, questdb_settings, "2024-03-12T17:00:00+08:00")) == []


def test_weekend_and_holiday_request_nothing(instance, questdb_settings, stored_calendar) -> None:
    prepare(instance, stored_calendar, date(2024, 3, 15))
    weekend = evaluate(instance, questdb_settings, "2024-03-16T12:00:00+08:00")
    assert isinstance(weekend, dg.SkipReason) and "up to date through 2024-03-15" in str(weekend.skip_message)
    prepare(instance, stored_calendar, date(2024, 4, 3))
    holiday = evaluate(instance, questdb_settings, "2024-04-04T19:00:00+08:00")  # Qingming
    assert isinstance(holiday, dg.SkipReason)


def test_after_a_failure_only_what_is_missing_is_requested_again(instance, questdb_settings, stored_calendar) -> None:
    prepare(instance, stored_calendar, date(2024, 3, 11))
    now = "2024-03-13T19:00:00+08:00"
    first = evaluate(instance, questdb_settings, now)
    assert requested(first) == ["2024-03-12|DCE.m", "2024-03-12|SHFE.cu", "2024-03-13|DCE.m", "2024-03-13|SHFE.cu"]
    for key in ("2024-03-12|DCE.m", "2024-03-12|SHFE.cu", "2024-03-13|DCE.m"):
        mark_done(instance, *key.split("|"))  # the (2024-03-13, SHFE.cu) run failed
    assert requested(evaluate(instance, questdb_settings, now)) == ["2024-03-13|SHFE.cu"]


def test_an_unfinished_day_is_requested_again_once_it_closes(instance, questdb_settings, stored_calendar) -> None:
    prepare(instance, stored_calendar, date(2024, 3, 19))
    mark_done(instance, "2024-03-20", "SHFE.cu", final=False)
    mark_done(instance, "2024-03-20", "DCE.m", final=True)
    assert requested(evaluate(instance, questdb_settings, "2024-03-20T16:00:00+08:00", update_time="15:30")) == []
    assert requested(evaluate(instance, questdb_settings, "2024-03-20T19:00:00+08:00", update_time="15:30")) == ["2024-03-20|SHFE.cu"]


def test_days_beyond_the_schedule_extend_the_schedule_first(instance, questdb_settings, stored_calendar) -> None:
    prepare(instance, stored_calendar, date(2024, 4, 12))
    result = evaluate(instance, questdb_settings, "2024-04-15T18:30:00+08:00")
    assert sorted((r.job_name, r.partition_key) for r in result.run_requests) == [
        ("futures_schedule", "DCE.m"), ("futures_schedule", "SHFE.cu")]
