"""The daily incremental update of the futures chain: one sensor that requests exactly what is missing."""

from datetime import date, datetime, time, timedelta

import dagster as dg

from ghtrader_assets.defs.futures.partitions import TRADING_DAY, VarietyDay
from ghtrader_assets.defs.futures.resources import FuturesSettings
from ghtrader_assets.defs.resources import QuestDBResource
from ghtrader_assets.domain.calendar import CST, CalendarError, TradingCalendar, current_trading_day
from ghtrader_assets.io import futures_store as store
from ghtrader_assets.io.questdb import QuestDBError

SENSOR_TAG = "ghtrader/request"
IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
             dg.DagsterRunStatus.STARTED]


def due_days(calendar: TradingCalendar, now: datetime, update_at: time, start: date, lookback: int) -> list[date]:
    """Trading days whose data should be in by `now`: every trading day D from `start` whose update time
    (D at `update_at` Beijing) has passed, limited to the last `lookback` of them. Holidays and weekends
    add nothing, so evaluating on them requests nothing new."""
    local = now.astimezone(CST)
    last = min(local.date(), calendar.last)
    if last < start:
        return []
    days = [d for d in calendar.between(max(start, calendar.first), last) if datetime.combine(d, update_at, CST) <= local]
    return days[-lookback:]


CALENDAR_JOB = dg.define_asset_job("futures_calendar", selection=["trading_days"])
SCHEDULE_JOB = dg.define_asset_job("futures_schedule", selection=["main_schedule"])
TICKS_JOB = dg.define_asset_job("futures_ticks_job", selection=["underlying_ticks", "main_l5", "day_index"])
JOBS = [CALENDAR_JOB, SCHEDULE_JOB, TICKS_JOB]


def build_daily_update_sensor(varieties: tuple[str, ...]) -> dg.SensorDefinition:
    @dg.sensor(
        name="futures_daily_update",
        minimum_interval_seconds=900,
        jobs=JOBS,
        description="After each trading day's update time (Asia/Shanghai), add the new trading day, extend "
        "every variety's main schedule and request exactly the (variety, day) partitions still missing.",
    )
    def futures_daily_update(
        context: dg.SensorEvaluationContext, questdb: QuestDBResource, futures: FuturesSettings
    ) -> dg.SensorResult | dg.SkipReason:
        now = futures.clock()
        update_at = time.fromisoformat(futures.daily_update_time)
        in_flight = {
            run.tags[SENSOR_TAG]
            for run in context.instance.get_runs(filters=dg.RunsFilter(statuses=IN_FLIGHT))
            if SENSOR_TAG in run.tags
        }

        def request(key: str, **kwargs) -> list[dg.RunRequest]:
            return [] if key in in_flight else [dg.RunRequest(tags={SENSOR_TAG: key, **kwargs.pop("tags", {})}, **kwargs)]

        with questdb.client() as qdb:
            try:
                calendar = store.read_calendar(qdb)
            except QuestDBError:
                calendar = None
            local_today = now.astimezone(CST).date()
            if calendar is None or calendar.last < local_today + timedelta(days=7):
                # No calendar yet, or it ends within a week: refresh it (and the partitions) first.
                return dg.SensorResult(run_requests=request("trading_days", job_name=CALENDAR_JOB.name))
            try:
                days = due_days(calendar, now, update_at, futures.start(), futures.lookback_days)
            except CalendarError as exc:
                return dg.SkipReason(f"calendar cannot answer for {local_today}: {exc}")
            if not days:
                return dg.SkipReason(f"no trading day due at {now.astimezone(CST):%Y-%m-%d %H:%M} Beijing")
            known = set(context.instance.get_dynamic_partitions(TRADING_DAY.name))
            new_days = [d.isoformat() for d in days if d.isoformat() not in known]
            done = set(context.instance.get_materialized_partitions(dg.AssetKey("day_index")))
            runs: list[dg.RunRequest] = []
            for variety in varieties:
                scheduled = {r.trading_day for r in store.read_schedule(qdb, variety)}
                if not set(days) <= scheduled:
                    runs += request(f"main_schedule|{variety}", job_name=SCHEDULE_JOB.name, partition_key=variety)
                    continue
                for day in days:
                    key = VarietyDay(day, variety).key
                    final = day < current_trading_day(calendar, now)
                    # Done, unless it was stored while unfinished and the day has closed since.
                    if str(key) in done and not (final and _was_unfinished(context.instance, str(key))):
                        continue
                    runs += request(f"ticks|{key}", job_name=TICKS_JOB.name, partition_key=key,
                                    tags={"ghtrader/variety": variety})
        if not runs and not new_days:
            return dg.SkipReason(f"up to date through {days[-1]}")
        return dg.SensorResult(
            run_requests=runs,
            dynamic_partitions_requests=[TRADING_DAY.build_add_request(new_days)] if new_days else [],
        )

    return futures_daily_update


def _was_unfinished(instance: dg.DagsterInstance, partition: str) -> bool:
    """Whether the latest day_index materialization of `partition` was made before the day was final."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("day_index"), asset_partitions=[partition]), limit=1
    ).records
    if not records:
        return False
    metadata = records[0].asset_materialization.metadata if records[0].asset_materialization else {}
    final = metadata.get("final")
    return final is not None and final.value is False
