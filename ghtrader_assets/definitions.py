"""The code location: every asset family's definitions merged with the shared resources."""

from __future__ import annotations

import dagster as dg

from ghtrader_assets.defs.resources import questdb_from_env


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions.merge(
        dg.Definitions(resources={"questdb": questdb_from_env()}),
    )
