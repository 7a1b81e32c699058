"""IBKR option-bar backfill: contracts, hours and minutes assets per symbol, their resources and the universe sensor."""

from __future__ import annotations

import os

import dagster as dg

from ghtrader_assets.defs.ibkr.assets import STAGE_ASSETS
from ghtrader_assets.defs.ibkr.resources import ibkr_resources
from ghtrader_assets.defs.ibkr.schedules import CAPTURE_JOB, WEEKEND_JOB, build_capture_schedule, ibkr_weekend
from ghtrader_assets.defs.ibkr.sensors import ibkr_universe_sync
from ghtrader_assets.domain.expiry import ExpiryRule
from ghtrader_assets.ibkr_settings import SETTINGS, resolve


def build_ibkr_defs() -> dg.Definitions:
    """The family's definitions, its resources wired to the environment as it is now (the capture
    schedule's time too: a bad GHTRADER_IB_CAPTURE_TIME fails the load with the variable named)."""
    rule = resolve(environ={s.env: v for s in SETTINGS if s.section is ExpiryRule
                            if (v := os.environ.get(s.env)) is not None}).expiry
    return dg.Definitions(
        assets=list(STAGE_ASSETS.values()),
        resources=ibkr_resources(),
        sensors=[ibkr_universe_sync],
        schedules=[ibkr_weekend, build_capture_schedule(rule)],
        jobs=[WEEKEND_JOB, CAPTURE_JOB],
    )
