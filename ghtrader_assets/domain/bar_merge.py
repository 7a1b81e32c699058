"""Option-bar frames: the stored schema, the earlier system's columns, the incremental fetch window, and merge."""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta

import polars as pl

# One row per bar. `ts` is the bar's start time in UTC (display in America/New_York);
# volume is a float because IB reports fractional share volumes for some products.
BAR_SCHEMA: dict[str, pl.DataType] = {
    "ts": pl.Datetime("us", "UTC"),
    "symbol": pl.String(),
    "conid": pl.Int64(),
    "bar_size": pl.String(),
    "what_to_show": pl.String(),
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Float64(),
    "wap": pl.Float64(),
    "bar_count": pl.Int64(),
}
BAR_KEY = ("ts", "conid", "bar_size", "what_to_show")

_DURATION_RE = re.compile(r"^(\d+) ([SDWMY])$")
# Upper bounds in calendar days, so a full-window comparison never under-fetches.
_UNIT_DAYS = {"S": 1 / 86400, "D": 1, "W": 7, "M": 31, "Y": 366}


# The earlier weekend script's files: `ts` (UTC; a naive `ts` is read as UTC), ib_insync's bar fields
# (`date`, `open`, `high`, `low`, `close`, `volume`, `average`, `barCount`) and key columns under either
# spelling. Renamed here; `date` (the same instant as `ts`) and any other column are dropped; a key column
# that is missing is taken from the file's path (`{SYMBOL}/{conId}/{WHAT}/{BAR}.parquet`), a missing
# `wap` / `bar_count` is null.
LEGACY_NAMES: dict[str, str] = {"average": "wap", "barCount": "bar_count", "conId": "conid", "barSize": "bar_size",
                                "whatToShow": "what_to_show", "what": "what_to_show"}
_PRICES = ("open", "high", "low", "close")


class BarSchemaError(ValueError):
    """A frame does not have the stored bar schema."""


def empty_bars() -> pl.DataFrame:
    """A zero-row frame with BAR_SCHEMA."""
    return pl.DataFrame(schema=BAR_SCHEMA)


def conform(frame: pl.DataFrame) -> pl.DataFrame:
    """Select and cast BAR_SCHEMA's columns in order; raise BarSchemaError if any is missing."""
    missing = [name for name in BAR_SCHEMA if name not in frame.columns]
    if missing:
        raise BarSchemaError(f"missing column(s): {', '.join(missing)}")
    if frame.schema["ts"] != BAR_SCHEMA["ts"]:
        dtype = frame.schema["ts"]
        if not isinstance(dtype, pl.Datetime) or dtype.time_zone is None:
            raise BarSchemaError(f"ts must be a time-zone aware datetime, got {dtype}")
    return frame.select(pl.col(name).cast(dtype) for name, dtype in BAR_SCHEMA.items())


def from_legacy(frame: pl.DataFrame, symbol: str, conid: int, bar_size: str, what: str) -> pl.DataFrame:
    """An earlier-system bar frame in BAR_SCHEMA (see LEGACY_NAMES); BarSchemaError when it has no
    `ts` or no prices. Daily bars' `ts` given as dates become midnight New York, as ours."""
    missing = [name for name in ("ts", *_PRICES) if name not in frame.columns]
    if missing:
        raise BarSchemaError(f"not a bar file of ours or of the earlier system: missing {', '.join(missing)}")
    renames = {old: new for old, new in LEGACY_NAMES.items() if old in frame.columns and new not in frame.columns}
    frame = frame.rename(renames)
    ts = frame.schema["ts"]
    if frame.height == 0:
        return empty_bars()
    if isinstance(ts, pl.Date):
        stamp = pl.col("ts").cast(pl.Datetime("us")).dt.replace_time_zone("America/New_York")
    elif isinstance(ts, pl.Datetime):
        stamp = pl.col("ts") if ts.time_zone else pl.col("ts").dt.replace_time_zone("UTC")
    else:
        raise BarSchemaError(f"ts must be a date or datetime, got {ts}")
    defaults = {"symbol": pl.lit(symbol.upper()), "conid": pl.lit(conid), "bar_size": pl.lit(bar_size),
                "what_to_show": pl.lit(what.upper()), "volume": pl.lit(None), "wap": pl.lit(None),
                "bar_count": pl.lit(None)}
    columns = [stamp.dt.convert_time_zone("UTC").dt.cast_time_unit("us").alias("ts")]
    for name, dtype in BAR_SCHEMA.items():
        if name != "ts":
            source = pl.col(name) if name in frame.columns else defaults[name]
            columns.append(source.cast(dtype).alias(name))
    return frame.select(columns)


def merge_bars(existing: pl.DataFrame, new: pl.DataFrame) -> pl.DataFrame:
    """Union of `existing` and `new`, one row per BAR_KEY with the row from `new` winning (a
    re-fetched, corrected bar replaces the stored one), sorted by (ts, conid, bar_size, what_to_show)."""
    both = pl.concat(
        [
            conform(existing).with_columns(pl.lit(0, pl.Int8).alias("_new")),
            conform(new).with_columns(pl.lit(1, pl.Int8).alias("_new")),
        ]
    )
    return (
        both.sort([*BAR_KEY, "_new"])
        .unique(subset=list(BAR_KEY), keep="last", maintain_order=True)
        .drop("_new")
        .sort(list(BAR_KEY))
    )


def duration_days(duration: str) -> float:
    """Upper bound, in calendar days, of an IB duration string (`N S|D|W|M|Y`)."""
    match = _DURATION_RE.match(duration.strip())
    if not match:
        raise ValueError(f"invalid IB duration {duration!r}: expected 'N S|D|W|M|Y', e.g. '6 M'")
    return int(match[1]) * _UNIT_DAYS[match[2]]


def fetch_duration(
    full_duration: str, end: datetime, last_stored: datetime | None, overlap: timedelta
) -> str:
    """Duration to request: the full window when nothing is stored, else from `overlap` before the
    last stored bar up to `end` in whole days (`N D`), capped at the full window. The overlap is
    re-fetched on purpose so corrected bars replace stored ones."""
    if last_stored is None:
        return full_duration
    days = math.ceil(max((end - last_stored + overlap).total_seconds(), 0) / 86400)
    if days >= duration_days(full_duration):
        return full_duration
    return f"{max(days, 1)} D"
