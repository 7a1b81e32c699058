"""The futures chain's Dagster definitions."""

from __future__ import annotations

import os

import dagster as dg

from ghtrader_assets.defs.futures.assets import build_futures_assets
from ghtrader_assets.defs.futures.resources import FuturesSettings, TqSdkResource
from ghtrader_assets.defs.futures.sensors import JOBS, build_daily_update_sensor

DEFAULT_VARIETIES = ("SHFE.cu", "SHFE.rb", "DCE.m", "CFFEX.IF")


# Settings added later: wired only when set, so an older .env keeps working with the defaults.
_OPTIONAL = {
    "schedule_published_at": ("GHTRADER_SCHEDULE_PUBLISHED_AT", dg.EnvVar),
    "schedule_recheck_days": ("GHTRADER_SCHEDULE_RECHECK_DAYS", dg.EnvVar.int),
    "confirm_revisions_older_than": ("GHTRADER_CONFIRM_REVISIONS_OLDER_THAN", dg.EnvVar.int),
    "no_data_max_retries": ("GHTRADER_NO_DATA_MAX_RETRIES", dg.EnvVar.int),
    "session_history_file": ("GHTRADER_SESSION_HISTORY", dg.EnvVar),
}


def _optional_settings() -> dict:
    return {field: make(name) for field, (name, make) in _OPTIONAL.items() if os.environ.get(name)}


def build_futures_defs(varieties: tuple[str, ...] = DEFAULT_VARIETIES) -> dg.Definitions:
    return dg.Definitions(
        assets=build_futures_assets(varieties),
        sensors=[build_daily_update_sensor(varieties)],
        jobs=JOBS,
        resources={
            "tqsdk": TqSdkResource(user=dg.EnvVar("TQSDK_USER"), password=dg.EnvVar("TQSDK_PASSWORD")),
            "futures": FuturesSettings(
                start_date=dg.EnvVar("GHTRADER_START_DATE"),
                now=dg.EnvVar("GHTRADER_NOW"),
                schedule_source=dg.EnvVar("GHTRADER_SCHEDULE_SOURCE"),
                daily_update_time=dg.EnvVar("GHTRADER_DAILY_UPDATE_TIME"),
                lookback_days=dg.EnvVar.int("GHTRADER_LOOKBACK_DAYS"),
                **_optional_settings(),
            ),
        },
    )
