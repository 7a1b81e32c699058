"""The futures sensors: the daily incremental update, and gap-only fills requested from futures_coverage.
Both gather the ledger's facts from QuestDB and ask domain.ledger what to request; neither decides anything
from Dagster's own records."""


from datetime import date, time, timedelta

import dagster as dg

from ghtrader_assets.defs import names
from ghtrader_assets.defs.futures.partitions import TRADING_DAY, VarietyDay
from ghtrader_assets.defs.futures.resources import FuturesSettings
from ghtrader_assets.defs.resources import QuestDBResource
from ghtrader_assets.domain.calendar import CST
from ghtrader_assets.domain.ledger import DayState, RangeRequest, coverage, daily_plan, fill_requests
from ghtrader_assets.futures import calendar as calendar_step
from ghtrader_assets.futures import ledger as ledger_step
from ghtrader_assets.io import ledger_store as ledger
from ghtrader_assets.io.questdb import QuestDBError

IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
             dg.DagsterRunStatus.STARTED]

CALENDAR_JOB = dg.define_asset_job(names.CALENDAR_JOB, selection=[names.TRADING_DAYS])
# The schedule's runs also bring its roll factors in line (only changed switches are fetched again).
SCHEDULE_JOB = dg.define_asset_job(names.SCHEDULE_JOB, selection=[names.MAIN_SCHEDULE, names.ROLL_FACTORS])
TICKS_JOB = dg.define_asset_job(names.TICKS_JOB, selection=list(names.TICK_ASSETS))
JOBS = [CALENDAR_JOB, SCHEDULE_JOB, TICKS_JOB]


def _in_flight(instance: dg.DagsterInstance) -> set[str]:
    """The requests whose runs are queued or running (not asked again meanwhile)."""
    return {run.tags[names.REQUEST_TAG] for run in instance.get_runs(filters=dg.RunsFilter(statuses=IN_FLIGHT))
            if names.REQUEST_TAG in run.tags}


def range_run_request(request: RangeRequest) -> dg.RunRequest:
    """One single-run backfill of a variety's key range (the tags Dagster's own backfills carry)."""
    return dg.RunRequest(
        job_name=TICKS_JOB.name,
        asset_selection=[dg.AssetKey(a) for a in request.assets],
        tags={names.RANGE_START_TAG: str(VarietyDay(request.first, request.variety).key),
              names.RANGE_END_TAG: str(VarietyDay(request.last, request.variety).key),
              names.REQUEST_TAG: f"fill|{request.key}", names.VARIETY_TAG: request.variety})


def build_daily_update_sensor(varieties: tuple[str, ...]) -> dg.SensorDefinition:
    @dg.sensor(
        name="futures_daily_update",
        minimum_interval_seconds=900,
        jobs=JOBS,
        description="After each trading day's update time (Asia/Shanghai), add the new trading day, extend "
        "every variety's main schedule and request what the ledger says is missing or stale (domain.ledger.daily_plan).",
    )
    def futures_daily_update(
        context: dg.SensorEvaluationContext, questdb: QuestDBResource, futures: FuturesSettings
    ) -> dg.SensorResult | dg.SkipReason:
        now = futures.clock()
        in_flight = _in_flight(context.instance)

        def request(key: str, **kwargs) -> list[dg.RunRequest]:
            tags = {names.REQUEST_TAG: key, **kwargs.pop("tags", {})}
            return [] if key in in_flight else [dg.RunRequest(tags=tags, **kwargs)]

        with questdb.client() as qdb:
            try:
                calendar = ledger.read_calendar(qdb)
            except QuestDBError:
                calendar = None
            local_today = now.astimezone(CST).date()
            if calendar is None or calendar.last < local_today + timedelta(days=7):
                # No calendar yet, or it ends within a week: refresh it (and the partitions) first.
                return dg.SensorResult(run_requests=request("trading_days", job_name=CALENDAR_JOB.name))
            judged = [v for v in varieties if calendar_step.has_sessions(qdb, v)]
            histories = calendar_step.session_histories(qdb, judged, futures.session_history_file)
            facts = ledger_step.variety_facts(qdb, varieties, calendar, histories)
            plan = daily_plan(list(facts.values()), calendar, now, time.fromisoformat(futures.daily_update_time),
                              futures.start(), futures.lookback_days)
        if not plan.due:
            return dg.SkipReason(f"no trading day due at {now.astimezone(CST):%Y-%m-%d %H:%M} Beijing")
        known = set(context.instance.get_dynamic_partitions(TRADING_DAY.name))
        new_days = [d.isoformat() for d in plan.due if d.isoformat() not in known]
        runs = [r for v in plan.schedule for r in request(f"main_schedule|{v}", job_name=SCHEDULE_JOB.name, partition_key=v)]
        for status in plan.ticks:
            key = VarietyDay(status.day, status.variety).key
            runs += request(f"ticks|{key}", job_name=TICKS_JOB.name, partition_key=key,
                            asset_selection=[dg.AssetKey(a) for a in status.assets],
                            tags={names.VARIETY_TAG: status.variety})
        partitions = [TRADING_DAY.build_add_request(new_days)] if new_days else []
        if not runs and not new_days:
            return dg.SkipReason(f"up to date through {plan.due[-1]}")
        return dg.SensorResult(run_requests=runs, dynamic_partitions_requests=partitions)

    return futures_daily_update


def build_gap_fill_sensor(varieties: tuple[str, ...]) -> dg.SensorDefinition:
    @dg.sensor(
        name="futures_gap_fill",
        minimum_interval_seconds=30,
        jobs=[TICKS_JOB],
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="When futures_coverage is materialized with `fill: true`, request exactly the missing and stale "
        "partitions of its range, as one run per variety range, and report the days the ledger holds complete but "
        "Dagster has no record of.",
    )
    def futures_gap_fill(
        context: dg.SensorEvaluationContext, questdb: QuestDBResource, futures: FuturesSettings
    ) -> dg.SensorResult | dg.SkipReason:
        after = int(context.cursor) if context.cursor else None
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=names.FUTURES_COVERAGE, after_storage_id=after), limit=100, ascending=True).records
        if not records:
            return dg.SkipReason("no new fill request")
        cursor = str(records[-1].storage_id)
        asks = []
        for record in records:
            meta = record.asset_materialization.metadata if record.asset_materialization else {}
            if meta.get("fill_requested") and meta["fill_requested"].value:
                asks.append((meta["fill_from"].value, meta["fill_to"].value, list(meta["fill_varieties"].value)))
        if not asks:
            return dg.SensorResult(cursor=cursor)
        runs, events = [], []
        in_flight = _in_flight(context.instance)
        with questdb.client() as qdb:
            calendar = ledger.read_calendar(qdb)
            for first, last, wanted in asks:
                plan = plan_fill(qdb, calendar, [v for v in wanted if v in varieties], date.fromisoformat(first),
                                 date.fromisoformat(last), futures)
                runs += [range_run_request(r) for r in plan.requests if f"fill|{r.key}" not in in_flight]
                events += view_repairs(context.instance, plan.complete)
        return dg.SensorResult(run_requests=runs, asset_events=events, cursor=cursor)

    return futures_gap_fill


class FillPlan:
    """The range runs a fill needs, and the ledger-complete partitions (variety, day)."""

    def __init__(self, requests: list[RangeRequest], complete: list[tuple[str, date]]) -> None:
        self.requests, self.complete = requests, complete


def plan_fill(qdb, calendar, varieties: list[str], first: date, last: date, futures: FuturesSettings) -> FillPlan:
    """Exactly the missing and stale days of [first, last] (stored rows counted), as range runs."""
    judged = [v for v in varieties if calendar_step.has_sessions(qdb, v)]
    histories = calendar_step.session_histories(qdb, judged, futures.session_history_file)
    facts = ledger_step.variety_facts(qdb, varieties, calendar, histories, count=(first, last))
    requests, complete = [], []
    for variety in varieties:
        cov = coverage(facts[variety], calendar, first, last, futures.clock())
        requests += fill_requests(cov.statuses)
        complete += [(variety, s.day) for s in cov.statuses
                     if s.state in (DayState.COMPLETE, DayState.UNVERIFIED, DayState.NO_DATA_PERMANENT)]
    return FillPlan(requests, complete)


def view_repairs(instance: dg.DagsterInstance, complete: list[tuple[str, date]]) -> list[dg.AssetMaterialization]:
    """Materializations for partitions the ledger holds complete but Dagster has no record of (e.g. wiped):
    Dagster's view follows the ledger, without a download."""
    events = []
    for asset in names.TICK_ASSETS:
        have = set(instance.get_materialized_partitions(asset))
        for variety, day in complete:
            key = str(VarietyDay(day, variety).key)
            if key not in have:
                events.append(dg.AssetMaterialization(asset, partition=key, description="complete in the ledger",
                                                      metadata={"from_ledger": True}))
    return events
