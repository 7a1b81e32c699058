"""Ground truth shared by the tests: the simulator's ticks as stored stats, and materializations of a run."""

from __future__ import annotations

from datetime import date

import dagster as dg
import polars as pl

from ghtrader_assets.domain.ticks import TICK_COLUMNS, hash_aggregates, with_row_hash
from ghtrader_assets.sim.tq import SimMarket


def materializations(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, dict]:
    out = {}
    for event in result.all_events:
        if event.event_type_value == "ASSET_MATERIALIZATION":
            mat = event.event_specific_data.materialization
            if mat.asset_key.to_user_string() == asset:
                out[mat.partition] = {k: v.value for k, v in mat.metadata.items()}
    return out


def truth_frame(market: SimMarket, contract: str, day: date) -> pl.DataFrame:
    """The simulator's ticks of the day, level 2-5 columns as NaN where the exchange has none."""
    ticks = market.ticks(contract, day)
    frame = pl.from_pandas(ticks[["datetime", *[c for c in TICK_COLUMNS if c in ticks.columns]]])
    frame = frame.rename({"datetime": "datetime_ns"}).with_columns(pl.col("datetime_ns").cast(pl.Int64))
    return frame.with_columns(pl.lit(float("nan")).alias(c) for c in TICK_COLUMNS if c not in frame.columns)


def truth_stats(market: SimMarket, contract: str, day: date) -> dict:
    frame = with_row_hash(truth_frame(market, contract, day))
    return {"rows_total": frame.height, **hash_aggregates(frame["row_hash"])}
