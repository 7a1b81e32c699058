"""The futures chain's Dagster definitions."""

from __future__ import annotations

import os

import dagster as dg

from ghtrader_assets.defs.futures.assets import build_futures_assets
from ghtrader_assets.defs.futures.factor_assets import build_factor_assets
from ghtrader_assets.defs.futures.ledger_assets import build_ledger_assets
from ghtrader_assets.defs.futures.resources import SETTINGS_ENV, FuturesSettings, TqSdkResource
from ghtrader_assets.defs.futures.schedules import DEFAULT_VERIFY_CRON, VERIFY_JOB, build_verification_schedule
from ghtrader_assets.defs.futures.sensors import JOBS, build_daily_update_sensor, build_gap_fill_sensor

DEFAULT_VARIETIES = ("SHFE.cu", "SHFE.rb", "DCE.m", "CFFEX.IF")


def settings_from_environment() -> FuturesSettings:
    """FuturesSettings with each variable of SETTINGS_ENV that is set (not blank) wired as a dg.EnvVar (the UI
    shows the variable's name; Dagster resolves it when a run starts); the others keep their defaults."""
    ints = {name for name, field in FuturesSettings.model_fields.items() if field.annotation in (int, "int")}
    return FuturesSettings(**{field: dg.EnvVar.int(var) if field in ints else dg.EnvVar(var)
                              for field, var in SETTINGS_ENV.items() if os.environ.get(var, "").strip()})


def build_futures_defs(varieties: tuple[str, ...] = DEFAULT_VARIETIES) -> dg.Definitions:
    return dg.Definitions(
        assets=[*build_futures_assets(varieties), *build_ledger_assets(varieties), *build_factor_assets(varieties)],
        sensors=[build_daily_update_sensor(varieties), build_gap_fill_sensor(varieties)],
        schedules=[build_verification_schedule(varieties, os.environ.get("GHTRADER_VERIFY_CRON") or DEFAULT_VERIFY_CRON)],
        jobs=[*JOBS, VERIFY_JOB],
        resources={
            "tqsdk": TqSdkResource(user=dg.EnvVar("TQSDK_USER"), password=dg.EnvVar("TQSDK_PASSWORD")),
            "futures": settings_from_environment(),
        },
    )
