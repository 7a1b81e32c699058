"""The code location: every asset family's definitions merged with the shared resources."""

from __future__ import annotations

import os

import dagster as dg

from ghtrader_assets.defs.futures import DEFAULT_VARIETIES, build_futures_defs
from ghtrader_assets.defs.ibkr import build_ibkr_defs
from ghtrader_assets.defs.resources import questdb_from_env
from ghtrader_assets.domain.symbols import parse_variety_list


def configured_varieties() -> tuple[str, ...]:
    """GHTRADER_VARIETIES (comma-separated, e.g. 'SHFE.cu,DCE.m', a variety optionally with its first
    trading day: 'SHFE.cu:2016-01-04'): the variety partitions."""
    return tuple(parse_variety_list(os.environ.get("GHTRADER_VARIETIES", ""))) or DEFAULT_VARIETIES


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions.merge(
        dg.Definitions(resources={"questdb": questdb_from_env()}),
        build_futures_defs(configured_varieties()),
        build_ibkr_defs(),
    )
