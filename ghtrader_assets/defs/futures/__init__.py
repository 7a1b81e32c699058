"""The futures chain's Dagster definitions."""

from __future__ import annotations

import dagster as dg

from ghtrader_assets.defs.futures.assets import build_futures_assets
from ghtrader_assets.defs.futures.resources import FuturesSettings, TqSdkResource

DEFAULT_VARIETIES = ("SHFE.cu", "SHFE.rb", "DCE.m", "CFFEX.IF")


def build_futures_defs(varieties: tuple[str, ...] = DEFAULT_VARIETIES) -> dg.Definitions:
    return dg.Definitions(
        assets=build_futures_assets(varieties),
        resources={
            "tqsdk": TqSdkResource(user=dg.EnvVar("TQSDK_USER"), password=dg.EnvVar("TQSDK_PASSWORD")),
            "futures": FuturesSettings(
                start_date=dg.EnvVar("GHTRADER_START_DATE"),
                now=dg.EnvVar("GHTRADER_NOW"),
                schedule_source=dg.EnvVar("GHTRADER_SCHEDULE_SOURCE"),
            ),
        },
    )
