"""The weekend schedule of the IBKR stages: discovery, hours and minutes for every universe symbol."""

import dagster as dg

from ghtrader_assets.defs.ibkr.partitions import ibkr_symbol_partitions
from ghtrader_assets.domain.stage_table import STAGE_TABLE

WEEKEND_JOB = dg.define_asset_job("ibkr_weekend_backfill", selection=[s.asset_name for s in STAGE_TABLE])


@dg.schedule(
    job=WEEKEND_JOB,
    cron_schedule="0 6 * * 6",  # Saturday 06:00 New York: markets closed, the gateway free all weekend
    execution_timezone="America/New_York",
    description="One run per universe symbol; the ibkr_gateway pool lets one step at a time use the gateway.",
)
def ibkr_weekend(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest] | dg.SkipReason:
    symbols = sorted(context.instance.get_dynamic_partitions(ibkr_symbol_partitions.name))
    if not symbols:
        return dg.SkipReason("no ibkr_symbol partitions: point GHTRADER_IB_UNIVERSE at a universe CSV")
    week = context.scheduled_execution_time.strftime("%Y-%m-%d")
    return [dg.RunRequest(run_key=f"{week}|{s}", partition_key=s, tags={"ghtrader/ibkr_week": week}) for s in symbols]
