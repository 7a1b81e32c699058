"""The daily incremental update of the futures chain: one sensor that requests exactly what is missing."""

import json
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

import dagster as dg

from ghtrader_assets.defs.futures.partitions import TRADING_DAY, VarietyDay
from ghtrader_assets.defs.futures.resources import FuturesSettings
from ghtrader_assets.defs.futures.staleness import stale_partitions
from ghtrader_assets.defs.resources import QuestDBResource
from ghtrader_assets.domain.calendar import CST, CalendarError, due_days, is_final
from ghtrader_assets.domain.symbols import variety_of
from ghtrader_assets.io import futures_store as store
from ghtrader_assets.io.questdb import QuestDBError

SENSOR_TAG = "ghtrader/request"
IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
             dg.DagsterRunStatus.STARTED]


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
            cursor = _Cursor.load(context.cursor)
            cursor.watch |= _changed_schedule_days(context.instance, cursor)
            retries = _due_retries(store.no_data_records(qdb, "raw"), now)
            wanted: dict[str, set[dg.AssetKey]] = {}  # partition key -> assets to materialize
            schedule_runs: list[dg.RunRequest] = []
            for variety in varieties:
                rows = {r.trading_day: r for r in store.read_schedule(qdb, variety)}
                if any(d not in rows or rows[d].provisional for d in days) or _schedule_older_than(
                        context.instance, variety, datetime.combine(days[-1], update_at, CST)):
                    # Extend it, settle provisional days, and ask the source again (vendor revisions).
                    schedule_runs += request(f"main_schedule|{variety}", job_name=SCHEDULE_JOB.name, partition_key=variety)
                    continue
                for day in days:
                    key = str(VarietyDay(day, variety).key)
                    final = is_final(calendar, day, now)
                    # Done, unless it was stored while unfinished and the day has closed since.
                    if key in done and not (final and _was_unfinished(context.instance, key)):
                        continue
                    wanted.setdefault(key, set()).update(TICK_ASSETS)
                for contract, day in retries:
                    if variety == variety_of(contract) and day in rows and rows[day].main_contract == contract:
                        wanted.setdefault(str(VarietyDay(day, variety).key), set()).update(TICK_ASSETS)
                watched = [rows[d] for v, d in cursor.watched() if v == variety and d in rows]
                stale = {s.key: s for s in stale_partitions(context.instance, variety, watched)}
                for key, s in stale.items():
                    wanted.setdefault(key, set()).update(TICK_ASSETS if s.contract_changed else TICK_ASSETS[1:])
                cursor.watch -= {w for w in cursor.watch if w.endswith(f"|{variety}") and w not in stale
                                 and f"ticks|{w}" not in in_flight}
            runs = list(schedule_runs)
            for key, assets in sorted(wanted.items()):
                runs += request(f"ticks|{key}", job_name=TICKS_JOB.name, partition_key=VarietyDay.parse(key).key,
                                asset_selection=sorted(assets, key=TICK_ASSETS.index),
                                tags={"ghtrader/variety": VarietyDay.parse(key).variety})
        partitions = [TRADING_DAY.build_add_request(new_days)] if new_days else []
        if not runs and not new_days:
            context.update_cursor(cursor.dump())
            return dg.SkipReason(f"up to date through {days[-1]}")
        return dg.SensorResult(run_requests=runs, dynamic_partitions_requests=partitions, cursor=cursor.dump())

    return futures_daily_update


TICK_ASSETS = [dg.AssetKey("underlying_ticks"), dg.AssetKey("main_l5"), dg.AssetKey("day_index")]


@dataclass
class _Cursor:
    """The last main_schedule materialization read, and the partitions whose assignment changed since."""

    schedule_after: int | None = None
    watch: set[str] = field(default_factory=set)  # "YYYY-MM-DD|variety"

    @classmethod
    def load(cls, text: str | None) -> "_Cursor":
        if not text:
            return cls()
        data = json.loads(text)
        return cls(data.get("schedule_after"), set(data.get("watch", [])))

    def dump(self) -> str:
        return json.dumps({"schedule_after": self.schedule_after, "watch": sorted(self.watch)})

    def watched(self) -> list[tuple[str, date]]:
        out = []
        for key in self.watch:
            part = VarietyDay.parse(key)
            out.append((part.variety, part.trading_day))
        return out


def _changed_schedule_days(instance: dg.DagsterInstance, cursor: _Cursor) -> set[str]:
    """Partition keys named in `changed_days` of main_schedule materializations newer than the cursor."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("main_schedule"), after_storage_id=cursor.schedule_after),
        limit=1000, ascending=True).records
    out: set[str] = set()
    for record in records:
        cursor.schedule_after = record.storage_id
        mat = record.asset_materialization
        changed = mat.metadata.get("changed_days") if mat else None
        if mat is not None and changed is not None and mat.partition:
            out |= {f"{d}|{mat.partition}" for d in changed.value}
    return out


def _schedule_older_than(instance: dg.DagsterInstance, variety: str, moment: datetime) -> bool:
    """Whether the variety's latest main_schedule materialization was computed (its `as_of` clock)
    before `moment`. Without one (rows written otherwise) there is nothing to compare: False."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("main_schedule"), asset_partitions=[variety]), limit=1).records
    mat = records[0].asset_materialization if records else None
    as_of = mat.metadata.get("as_of") if mat else None
    return as_of is not None and datetime.fromisoformat(as_of.value) < moment


def _due_retries(records: list[dict], now: datetime) -> list[tuple[str, date]]:
    """(contract, day) of unresolved raw no-data records whose next ask is due (any age)."""
    return [(r["symbol"], r["day"]) for r in records
            if r["status"] != "permanent" and (r["next_retry"] is None or r["next_retry"] <= now)]



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
