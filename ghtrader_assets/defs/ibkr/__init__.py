"""IBKR option-bar backfill: contracts, hours and minutes assets per symbol, their resources and the universe sensor."""

from __future__ import annotations

import dagster as dg

from ghtrader_assets.defs.ibkr.assets import STAGE_ASSETS
from ghtrader_assets.defs.ibkr.resources import ibkr_resources
from ghtrader_assets.defs.ibkr.schedules import WEEKEND_JOB, ibkr_weekend
from ghtrader_assets.defs.ibkr.sensors import ibkr_universe_sync


def build_ibkr_defs() -> dg.Definitions:
    """The family's definitions, its resources wired to the environment as it is now."""
    return dg.Definitions(
        assets=list(STAGE_ASSETS.values()),
        resources=ibkr_resources(),
        sensors=[ibkr_universe_sync],
        schedules=[ibkr_weekend],
        jobs=[WEEKEND_JOB],
    )
