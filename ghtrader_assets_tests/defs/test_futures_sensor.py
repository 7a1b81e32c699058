"""The daily update sensor with a real DagsterInstance and QuestDB: the facts are ledger rows in QuestDB (written
through ledger_store, as the assets write them), never Dagster metadata. A trading day, a weekend, a holiday,
after a failure, when a day closes, beyond the schedule. (The gap fill runs against a real chain:
test_ledger_coverage.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone

import dagster as dg
import pytest

from ghtrader_assets.defs.futures.resources import FuturesSettings
from ghtrader_assets.defs.futures.sensors import build_daily_update_sensor
from ghtrader_assets.defs.resources import QuestDBResource
from ghtrader_assets.domain.calendar import TradingCalendar
from ghtrader_assets.domain.ledger import DayStats, Verification
from ghtrader_assets.domain.schedule import build_schedule
from ghtrader_assets.domain.symbols import main_symbol
from ghtrader_assets.io import ledger_store as ledger
from ghtrader_assets.io.questdb import QuestDBClient, QuestDBSettings
from ghtrader_assets.sim.tq import calendar as sim_calendar

# Varieties no other test module writes: the server is shared by the whole session.
VARIETIES = ("SHFE.ag", "DCE.jm")
START = date(2024, 1, 2)


def contract(variety: str, day: date) -> str:
    return f"{variety}2405" if day < date(2024, 3, 18) else f"{variety}2409"


@pytest.fixture(scope="module")
def stored_calendar(questdb_settings: QuestDBSettings) -> TradingCalendar:
    """The exchanges' 2024 calendar and the varieties' schedules, as trading_days and main_schedule write them."""
    first, last = date(2023, 12, 1), date(2024, 12, 31)
    holidays = set(sim_calendar.holidays())
    calendar = TradingCalendar.from_flags(
        (first + timedelta(i), (first + timedelta(i)).weekday() < 5 and first + timedelta(i) not in holidays)
        for i in range((last - first).days + 1))
    with QuestDBClient(questdb_settings) as qdb:
        qdb.bootstrap()
        ledger.write_calendar(qdb, calendar)
        for variety in VARIETIES:
            days = calendar.between(START, date(2024, 4, 12))
            ledger.write_schedule(qdb, variety, build_schedule(variety, {d: contract(variety, d) for d in days}), "test")
    return calendar


@pytest.fixture
def instance(questdb_settings: QuestDBSettings, stored_calendar: TradingCalendar) -> Iterator[dg.DagsterInstance]:
    """A fresh Dagster instance, and the varieties' index, verification and window rows of earlier tests
    moved out of the way (QuestDB has no DELETE: renamed, as the store retires rows)."""
    with QuestDBClient(questdb_settings) as qdb:
        for table, column in ((ledger.SYMBOL_DAY_INDEX, "symbol"), (ledger.DAY_VERIFICATIONS, "symbol"),
                              (ledger.VARIETY_WINDOWS, "variety")):
            names = [main_symbol(v) for v in VARIETIES] + [f"{v}{m}" for v in VARIETIES for m in ("2405", "2409")] \
                if column == "symbol" else list(VARIETIES)
            qdb.execute(f"UPDATE {table.name} SET {column} = '~old' WHERE {column} IN ({', '.join(repr(n) for n in names)})")
            qdb.wait_for_wal(table)
    with dg.instance_for_test() as inst:
        yield inst


def resources(settings: QuestDBSettings, now: str, update_time: str = "18:00") -> dict:
    return {"questdb": QuestDBResource(host=settings.host, http_port=settings.http_port, pg_port=settings.pg_port),
            "futures": FuturesSettings(start_date=str(START), now=now, daily_update_time=update_time)}


def evaluate(instance: dg.DagsterInstance, settings: QuestDBSettings, now: str, update_time: str = "18:00"):
    with dg.build_sensor_context(instance=instance, resources=resources(settings, now, update_time)) as context:
        return build_daily_update_sensor(VARIETIES)(context)


def refreshed(settings: QuestDBSettings, when: str) -> None:
    """main_schedule ran at `when` (its window row)."""
    with QuestDBClient(settings) as qdb:
        for variety in VARIETIES:
            ledger.write_window(qdb, ledger.VarietyWindow(variety, START, "start", "test", datetime.fromisoformat(when)))


def stored(settings: QuestDBSettings, calendar: TradingCalendar, day: date, variety: str, final: bool = True) -> None:
    """The day's ledger rows as the tick assets leave them: index rows and the run's verification."""
    row = {r.trading_day: r for r in build_schedule(variety, {d: contract(variety, d)
                                                              for d in calendar.between(START, date(2024, 4, 12))})}[day]
    stats = DayStats(rows_total=100, first_datetime_ns=1, last_datetime_ns=2, row_hash_sum=3)
    with QuestDBClient(settings) as qdb:
        ledger.write_index(qdb, [ledger.IndexWrite(row.main_contract, day, "raw", stats, final=final),
                                 ledger.IndexWrite(main_symbol(variety), day, "main_l5", stats, row.main_contract,
                                                   row.segment_id, row.schedule_hash, None, final)])
        qdb.wait_for_wal(ledger.SYMBOL_DAY_INDEX)
        ledger.write_verifications(qdb, main_symbol(variety), "main_l5",
                                   [Verification(day, datetime.now(timezone.utc) + timedelta(seconds=5), True)])


def prepare(instance: dg.DagsterInstance, settings: QuestDBSettings, calendar: TradingCalendar, through: date) -> None:
    days = calendar.between(START, through)
    instance.add_dynamic_partitions("trading_day", [d.isoformat() for d in days])
    for day in days:
        for variety in VARIETIES:
            stored(settings, calendar, day, variety)


def requested(result) -> list[str]:
    return sorted(r.partition_key for r in (result.run_requests or [])) if isinstance(result, dg.SensorResult) else []


def test_a_trading_day_adds_the_day_and_requests_exactly_its_partitions(instance, questdb_settings, stored_calendar) -> None:
    prepare(instance, questdb_settings, stored_calendar, date(2024, 3, 11))
    refreshed(questdb_settings, "2024-03-12T18:10:00+08:00")
    result = evaluate(instance, questdb_settings, "2024-03-12T18:30:00+08:00")
    assert isinstance(result, dg.SensorResult)
    assert requested(result) == ["2024-03-12|DCE.jm", "2024-03-12|SHFE.ag"]
    assert [r.partition_keys for r in result.dynamic_partitions_requests] == [["2024-03-12"]]
    assert {r.job_name for r in result.run_requests} == {"futures_ticks_job"}
    assert {r.tags["ghtrader/variety"] for r in result.run_requests} == set(VARIETIES)
    # before the update time nothing is due yet
    assert requested(evaluate(instance, questdb_settings, "2024-03-12T17:00:00+08:00")) == []


def test_the_schedule_is_refreshed_first_each_trading_day(instance, questdb_settings, stored_calendar) -> None:
    prepare(instance, questdb_settings, stored_calendar, date(2024, 3, 11))
    refreshed(questdb_settings, "2024-03-11T18:10:00+08:00")  # before the 12th's update time
    result = evaluate(instance, questdb_settings, "2024-03-12T18:30:00+08:00")
    assert sorted((r.job_name, r.partition_key) for r in result.run_requests) == [
        ("futures_schedule", "DCE.jm"), ("futures_schedule", "SHFE.ag")]


def test_weekend_and_holiday_request_nothing(instance, questdb_settings, stored_calendar) -> None:
    prepare(instance, questdb_settings, stored_calendar, date(2024, 3, 15))
    refreshed(questdb_settings, "2024-03-15T18:10:00+08:00")
    weekend = evaluate(instance, questdb_settings, "2024-03-16T12:00:00+08:00")
    assert isinstance(weekend, dg.SkipReason) and "up to date through 2024-03-15" in str(weekend.skip_message)
    prepare(instance, questdb_settings, stored_calendar, date(2024, 4, 3))
    refreshed(questdb_settings, "2024-04-03T18:10:00+08:00")
    holiday = evaluate(instance, questdb_settings, "2024-04-04T19:00:00+08:00")  # Qingming
    assert isinstance(holiday, dg.SkipReason)


def test_after_a_failure_only_what_is_missing_is_requested_again(instance, questdb_settings, stored_calendar) -> None:
    prepare(instance, questdb_settings, stored_calendar, date(2024, 3, 11))
    refreshed(questdb_settings, "2024-03-13T18:10:00+08:00")
    now = "2024-03-13T19:00:00+08:00"
    first = evaluate(instance, questdb_settings, now)
    assert requested(first) == ["2024-03-12|DCE.jm", "2024-03-12|SHFE.ag", "2024-03-13|DCE.jm", "2024-03-13|SHFE.ag"]
    for day, variety in ((date(2024, 3, 12), "DCE.jm"), (date(2024, 3, 12), "SHFE.ag"), (date(2024, 3, 13), "DCE.jm")):
        stored(questdb_settings, stored_calendar, day, variety)  # the (2024-03-13, SHFE.ag) run failed
    assert requested(evaluate(instance, questdb_settings, now)) == ["2024-03-13|SHFE.ag"]


def test_an_unfinished_day_is_requested_again_once_it_closes(instance, questdb_settings, stored_calendar) -> None:
    prepare(instance, questdb_settings, stored_calendar, date(2024, 3, 19))
    stored(questdb_settings, stored_calendar, date(2024, 3, 20), "SHFE.ag", final=False)
    stored(questdb_settings, stored_calendar, date(2024, 3, 20), "DCE.jm", final=True)
    refreshed(questdb_settings, "2024-03-20T15:40:00+08:00")
    assert requested(evaluate(instance, questdb_settings, "2024-03-20T16:00:00+08:00", update_time="15:30")) == []
    assert requested(evaluate(instance, questdb_settings, "2024-03-20T19:00:00+08:00", update_time="15:30")) == ["2024-03-20|SHFE.ag"]


def test_days_beyond_the_schedule_extend_the_schedule_first(instance, questdb_settings, stored_calendar) -> None:
    prepare(instance, questdb_settings, stored_calendar, date(2024, 4, 12))
    refreshed(questdb_settings, "2024-04-15T18:10:00+08:00")
    result = evaluate(instance, questdb_settings, "2024-04-15T18:30:00+08:00")
    assert sorted((r.job_name, r.partition_key) for r in result.run_requests) == [
        ("futures_schedule", "DCE.jm"), ("futures_schedule", "SHFE.ag")]
