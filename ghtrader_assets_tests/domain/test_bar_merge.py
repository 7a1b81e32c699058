"""Bar merge: union, new bar wins on (ts, conid, bar_size, what_to_show), sorted; incremental fetch window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from ghtrader_assets.domain.bar_merge import (
    BAR_SCHEMA,
    BarSchemaError,
    conform,
    duration_days,
    empty_bars,
    fetch_duration,
    merge_bars,
)

T0 = datetime(2026, 11, 2, 14, 30, tzinfo=UTC)


def bars(hours: list[int], close: float, conid: int = 7) -> pl.DataFrame:
    n = len(hours)
    return pl.DataFrame(
        {
            "ts": [T0 + timedelta(hours=h) for h in hours], "symbol": ["XYZ"] * n, "conid": [conid] * n,
            "bar_size": ["8 hours"] * n, "what_to_show": ["TRADES"] * n, "open": [1.0] * n, "high": [2.0] * n,
            "low": [0.5] * n, "close": [close] * n, "volume": [10.0] * n, "wap": [1.2] * n, "bar_count": [3] * n,
        },
        schema=BAR_SCHEMA,
    )


def test_new_bar_wins_and_result_is_sorted_and_unique() -> None:
    merged = merge_bars(bars([0, 8, 16], close=1.0), bars([24, 16, 8], close=9.0))
    assert merged["ts"].to_list() == [T0 + timedelta(hours=h) for h in (0, 8, 16, 24)]
    assert merged["close"].to_list() == [1.0, 9.0, 9.0, 9.0]
    assert merged.schema == pl.Schema(BAR_SCHEMA)


def test_same_ts_other_conid_is_kept() -> None:
    merged = merge_bars(bars([0], 1.0, conid=7), bars([0], 2.0, conid=8))
    assert merged.height == 2


def test_duplicates_inside_new_collapse_to_one() -> None:
    assert merge_bars(empty_bars(), pl.concat([bars([0], 1.0), bars([0], 1.0)])).height == 1


def test_conform_rejects_missing_columns_and_naive_ts() -> None:
    with pytest.raises(BarSchemaError, match="missing column"):
        conform(bars([0], 1.0).drop("close"))
    with pytest.raises(BarSchemaError, match="time-zone aware"):
        conform(bars([0], 1.0).with_columns(pl.col("ts").dt.replace_time_zone(None)))


def test_fetch_duration_full_window_without_a_file() -> None:
    assert fetch_duration("6 M", T0, None, timedelta(days=3)) == "6 M"


def test_fetch_duration_overlaps_last_stored_bar() -> None:
    end = T0 + timedelta(days=10)
    assert fetch_duration("6 M", end, T0, timedelta(days=3)) == "13 D"
    assert fetch_duration("6 M", T0, T0, timedelta(hours=1)) == "1 D"
    assert fetch_duration("1 M", end, T0 - timedelta(days=40), timedelta(days=3)) == "1 M"


def test_duration_days_validates() -> None:
    assert duration_days("6 M") == 186
    assert duration_days("2 W") == 14
    with pytest.raises(ValueError, match="invalid IB duration"):
        duration_days("6 months")
