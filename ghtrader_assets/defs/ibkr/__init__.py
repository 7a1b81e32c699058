"""IBKR option-bar backfill: contracts, hours and minutes assets per symbol, their resources and the universe sensor."""

from __future__ import annotations

import dagster as dg

from ghtrader_assets.defs.ibkr.assets import STAGE_ASSETS
from ghtrader_assets.defs.ibkr.resources import IBGatewayResource, IBKRStorageResource
from ghtrader_assets.defs.ibkr.schedules import WEEKEND_JOB, ibkr_weekend
from ghtrader_assets.defs.ibkr.sensors import ibkr_universe_sync

defs = dg.Definitions(
    assets=list(STAGE_ASSETS.values()),
    resources={"ib_gateway": IBGatewayResource(), "ibkr_storage": IBKRStorageResource()},
    sensors=[ibkr_universe_sync],
    schedules=[ibkr_weekend],
    jobs=[WEEKEND_JOB],
)
