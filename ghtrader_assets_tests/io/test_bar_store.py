"""Parquet bar store: path layout, schema on disk, incremental merge, corrupt-file quarantine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from ghtrader_assets.domain.bar_merge import BAR_SCHEMA
from ghtrader_assets.io.bar_store import bar_path, last_stored_ts, merge_into, read_bars, write_atomic

T0 = datetime(2026, 11, 2, 14, 30, tzinfo=UTC)


def bars(hours: list[int], close: float) -> pl.DataFrame:
    n = len(hours)
    return pl.DataFrame(
        {
            "ts": [T0 + timedelta(hours=h) for h in hours], "symbol": ["XYZ"] * n, "conid": [7] * n,
            "bar_size": ["8 hours"] * n, "what_to_show": ["TRADES"] * n, "open": [1.0] * n, "high": [2.0] * n,
            "low": [0.5] * n, "close": [close] * n, "volume": [10.0] * n, "wap": [1.2] * n, "bar_count": [3] * n,
        },
        schema=BAR_SCHEMA,
    )


def test_path_layout(tmp_path: Path) -> None:
    assert bar_path(tmp_path, "weekend", "aapl", 123, "trades", "8 hours") == (
        tmp_path / "historical_bars_weekend" / "AAPL" / "123" / "TRADES" / "8_hours.parquet"
    )


def test_written_file_has_documented_schema_in_utc(tmp_path: Path) -> None:
    path = bar_path(tmp_path, "t", "XYZ", 7, "TRADES", "8 hours")
    merge_into(path, bars([8, 0], 1.0))
    schema = pq.read_schema(path)
    assert schema.names == list(BAR_SCHEMA)
    assert str(schema.field("ts").type) == "timestamp[us, tz=UTC]"
    frame = pl.read_parquet(path)
    assert frame["ts"].to_list() == [T0, T0 + timedelta(hours=8)]
    assert last_stored_ts(path) == T0 + timedelta(hours=8)
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_incremental_merge_replaces_corrected_bars(tmp_path: Path) -> None:
    path = tmp_path / "b.parquet"
    merge_into(path, bars([0, 8, 16], 1.0))
    result = merge_into(path, bars([16, 24], 5.0))
    assert (result.rows_before, result.rows_after) == (3, 4)
    assert read_bars(path)["close"].to_list() == [1.0, 1.0, 5.0, 5.0]


def test_not_incremental_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "b.parquet"
    merge_into(path, bars([0, 8, 16], 1.0))
    assert merge_into(path, bars([24], 5.0), incremental=False).rows_after == 1


def test_truncated_file_is_moved_aside_not_merged(tmp_path: Path) -> None:
    path = tmp_path / "b.parquet"
    write_atomic(bars([0, 8], 1.0), path)
    path.write_bytes(path.read_bytes()[:40])
    assert last_stored_ts(path) is None
    result = merge_into(path, bars([16], 2.0))
    assert result.quarantined is not None and result.quarantined.name.startswith("b.parquet.corrupt-")
    assert result.quarantined.exists() and "unreadable Parquet" in (result.quarantine_reason or "")
    assert read_bars(path)["ts"].to_list() == [T0 + timedelta(hours=16)]


def test_parquet_without_bar_columns_is_treated_as_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "b.parquet"
    pl.DataFrame({"x": [1]}).write_parquet(path)
    result = merge_into(path, bars([0], 1.0))
    assert result.quarantined is not None and "not a bar file" in (result.quarantine_reason or "")


MERGER = """
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
import polars as pl
from ghtrader_assets.domain.bar_merge import BAR_SCHEMA
from ghtrader_assets.io.bar_store import merge_into
import time
path, offset = Path(sys.argv[1]), int(sys.argv[2])
time.sleep(max(0.0, float(sys.argv[3]) - time.time()))  # both start merging at the same moment
t0 = datetime(2026, 11, 2, 14, 30, tzinfo=UTC)
for i in range(60):
    h = offset + 2 * i
    row = {"ts": [t0 + timedelta(hours=h)], "symbol": ["XYZ"], "conid": [7], "bar_size": ["8 hours"],
           "what_to_show": ["TRADES"], "open": [1.0], "high": [2.0], "low": [0.5], "close": [float(h)],
           "volume": [10.0], "wap": [1.2], "bar_count": [3]}
    merge_into(path, pl.DataFrame(row, schema=BAR_SCHEMA))
"""


def test_two_processes_merging_into_one_file_lose_no_write(tmp_path: Path) -> None:
    # Separate interpreters (not fork: polars deadlocks in forked children), started together.
    import subprocess
    import sys
    import time

    target = bar_path(tmp_path, "lock", "XYZ", 7, "TRADES", "8 hours")
    start = str(time.time() + 4)
    procs = [subprocess.Popen([sys.executable, "-c", MERGER, str(target), str(offset), start]) for offset in (0, 1)]
    assert [p.wait(120) for p in procs] == [0, 0]
    frame = read_bars(target)
    assert frame.height == 120 and frame["close"].to_list() == [float(h) for h in range(120)]
