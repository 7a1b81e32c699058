"""The IBKR schedules: the weekend backfill (discovery, hours, minutes) and the daily capture before expiry."""

from datetime import datetime

import dagster as dg

from ghtrader_assets.defs.ibkr.partitions import ibkr_symbol_partitions
from ghtrader_assets.domain.expiry import ExpiryRule
from ghtrader_assets.domain.stage_table import BAR_STAGES, STAGE_TABLE
from ghtrader_assets.domain.us_sessions import NEW_YORK, is_session

WEEKEND_JOB = dg.define_asset_job("ibkr_weekend_backfill", selection=[s.asset_name for s in STAGE_TABLE])
CAPTURE_JOB = dg.define_asset_job("ibkr_daily_capture", selection=[s.asset_name for s in BAR_STAGES])


def _symbols(context: dg.ScheduleEvaluationContext) -> list[str]:
    return sorted(context.instance.get_dynamic_partitions(ibkr_symbol_partitions.name))


@dg.schedule(
    job=WEEKEND_JOB,
    cron_schedule="0 6 * * 6",  # Saturday 06:00 New York: markets closed, the gateway free all weekend
    execution_timezone="America/New_York",
    description="One run per universe symbol; the ibkr_gateway pool lets one step at a time use the gateway.",
)
def ibkr_weekend(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest] | dg.SkipReason:
    symbols = _symbols(context)
    if not symbols:
        return dg.SkipReason("no ibkr_symbol partitions: point GHTRADER_IB_UNIVERSE at a universe CSV")
    week = context.scheduled_execution_time.strftime("%Y-%m-%d")
    return [dg.RunRequest(run_key=f"{week}|{s}", partition_key=s, tags={"ghtrader/ibkr_week": week}) for s in symbols]


def capture_requests(symbols: list[str], scheduled: datetime) -> list[dg.RunRequest] | dg.SkipReason:
    """One capture run per symbol on an NYSE session day: the hours and minutes stages with
    `capture` on (only the contracts IB stops serving before the next weekend run)."""
    day = scheduled.astimezone(NEW_YORK).date()
    if not is_session(day):
        return dg.SkipReason(f"{day} is not an NYSE session: nothing expires today")
    if not symbols:
        return dg.SkipReason("no ibkr_symbol partitions: point GHTRADER_IB_UNIVERSE at a universe CSV")
    config = {"ops": {s.asset_name: {"config": {"capture": True}} for s in BAR_STAGES}}
    return [dg.RunRequest(run_key=f"capture|{day}|{s}", partition_key=s, run_config=config,
                          tags={"ghtrader/ibkr_capture": day.isoformat()}) for s in symbols]


def build_capture_schedule(rule: ExpiryRule) -> dg.ScheduleDefinition:
    """The daily capture at `rule.capture_time` New York, Monday to Friday; NYSE holidays are skipped."""
    clock = rule.capture_clock

    @dg.schedule(
        name="ibkr_daily_capture",
        job=CAPTURE_JOB,
        cron_schedule=f"{clock.minute} {clock.hour} * * 1-5",
        execution_timezone="America/New_York",
        description=f"Each NYSE session at {rule.capture_time} New York: hours and minutes bars of the contracts "
                    "that stop being served before the next weekend run, so their last sessions are kept.",
    )
    def ibkr_daily_capture(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest] | dg.SkipReason:
        return capture_requests(_symbols(context), context.scheduled_execution_time)

    return ibkr_daily_capture
