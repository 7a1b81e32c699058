"""Every asset, check, job and run-tag name of the code location, in one place (the string literals live
here only; modules refer to these names)."""

from __future__ import annotations

import dagster as dg

from ghtrader_assets.domain import ledger

# -- futures assets (the chain trading_days -> main_schedule -> underlying_ticks -> main_l5 -> day_index)
TRADING_DAYS = dg.AssetKey("trading_days")
MAIN_SCHEDULE = dg.AssetKey("main_schedule")
UNDERLYING_TICKS = dg.AssetKey(ledger.RAW)
MAIN_L5 = dg.AssetKey(ledger.MAIN_L5)
DAY_INDEX = dg.AssetKey(ledger.INDEX)
TICK_ASSETS = (UNDERLYING_TICKS, MAIN_L5, DAY_INDEX)  # the multi-asset step `futures_ticks`, in chain order
FUTURES_COVERAGE = dg.AssetKey("futures_coverage")
HISTORY_VERIFICATION = dg.AssetKey("history_verification")
ROLL_FACTORS = dg.AssetKey("roll_factors")  # per variety, downstream of main_schedule

# -- checks
AGREES_WITH_CONTINUOUS_TABLE = "agrees_with_continuous_table"  # main_schedule
MATCHES_SCHEDULE = "matches_schedule"  # main_l5: every stored day built for the contract/segment/sessions it has now
DEPTH_AS_EXPECTED = "depth_as_expected"  # underlying_ticks
SESSIONS_EXPLAIN_TICKS = "sessions_explain_ticks"  # underlying_ticks
INDEX_MATCHES_STORED = "index_matches_stored"  # day_index
FACTORS_MATCH_SCHEDULE = "factors_match_schedule"  # roll_factors: a row per switch day, naming the schedule's contracts

# -- jobs
CALENDAR_JOB = "futures_calendar"
SCHEDULE_JOB = "futures_schedule"
TICKS_JOB = "futures_ticks_job"
VERIFY_JOB = "futures_verify"

# -- run tags
VARIETY_TAG = "ghtrader/variety"  # the varieties a futures run writes (dagster.yaml limits one run per variety)
PROVIDER_TAG = "ghtrader/provider"  # tqsdk: the run logs in to TqSdk (dagster.yaml limits how many at once)
HOST_TAG = "ghtrader/host"
PID_TAG = "ghtrader/pid"
REQUEST_TAG = "ghtrader/request"  # what a sensor asked for (not asked again while it is queued or running)
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"  # Dagster's single-run backfill of a key range
RANGE_END_TAG = "dagster/asset_partition_range_end"
