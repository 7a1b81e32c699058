"""The weekly re-verification of stored history (every variety partition of history_verification)."""


import dagster as dg

from ghtrader_assets.defs import names

VERIFY_JOB = dg.define_asset_job(names.VERIFY_JOB, selection=[names.HISTORY_VERIFICATION])
# Saturday 03:00 Beijing: after the week's last night session (02:30), before anyone looks on Monday.
DEFAULT_VERIFY_CRON = "0 3 * * 6"


def build_verification_schedule(varieties: tuple[str, ...], cron: str = DEFAULT_VERIFY_CRON) -> dg.ScheduleDefinition:
    @dg.schedule(job=VERIFY_JOB, cron_schedule=cron, execution_timezone="Asia/Shanghai",
                 name="futures_weekly_verification", default_status=dg.DefaultScheduleStatus.RUNNING,
                 description="Re-count every stored main_l5 day of every variety against its index row "
                 "(history_verification); a mismatch makes the day stale until the next fill.")
    def futures_weekly_verification(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
        week = context.scheduled_execution_time.strftime("%G-W%V")
        return [dg.RunRequest(run_key=f"{week}|{v}", partition_key=v) for v in varieties]

    return futures_weekly_verification
