"""Ground truth shared by the tests, taken from the simulated market (never from the product's rules):
what the simulator served for a (contract, day) and which of it are real ticks, their stored stats, and the
materializations of a run."""

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


def served_frame(market: SimMarket, contract: str, day: date) -> pl.DataFrame:
    """Every tick the simulator served for the day, in id order: datetime_ns, the 27 tick columns (NaN for
    the levels it did not send), `seq` (the tick's rank among the served ticks of its time, in id order),
    `injected` (what the simulator made a dirty row: bad_price, duplicate or outside_session; null for a
    real tick) and `real`."""
    ticks = market.served(contract, day)
    schema = {"datetime_ns": pl.Int64, **{c: pl.Float64 for c in TICK_COLUMNS}}
    if ticks.empty:
        return pl.DataFrame(schema={**schema, "seq": pl.Int32, "injected": pl.String, "real": pl.Boolean})
    frame = pl.from_pandas(ticks[["datetime", *[c for c in TICK_COLUMNS if c in ticks.columns]]])
    frame = frame.rename({"datetime": "datetime_ns"}).with_columns(
        [pl.col("datetime_ns").cast(pl.Int64)]
        + [pl.lit(float("nan")).alias(c) for c in TICK_COLUMNS if c not in ticks.columns])
    dirt = market.dirt(contract, day)
    kinds = iter(kind for kind, _, _ in dirt["injected"]) if dirt else iter(())
    injected = [next(kinds) if i < 0 else None for i in dirt["order"]] if dirt else [None] * frame.height
    return frame.select(*schema).with_columns(
        pl.int_range(pl.len()).over("datetime_ns").cast(pl.Int32).alias("seq"),
        pl.Series("injected", injected, dtype=pl.String),
        pl.Series("real", [k is None for k in injected]))


def real_frame(market: SimMarket, contract: str, day: date) -> pl.DataFrame:
    """The simulator's real ticks of the day, as served (with their `seq`), in time order."""
    return served_frame(market, contract, day).filter(pl.col("real")).sort("datetime_ns", "seq")


def truth_frame(market: SimMarket, contract: str, day: date) -> pl.DataFrame:
    """The served ticks as a raw frame: datetime_ns and the 27 tick columns."""
    return served_frame(market, contract, day).select("datetime_ns", *TICK_COLUMNS)


def truth_stats(market: SimMarket, contract: str, day: date, kind: str = "raw") -> dict:
    """Rows and row-hash aggregates of what raw (every served tick) or main_l5 (the real ticks) must hold."""
    frame = served_frame(market, contract, day) if kind == "raw" else real_frame(market, contract, day)
    frame = with_row_hash(frame)
    return {"rows_total": frame.height, **hash_aggregates(frame["row_hash"])}
