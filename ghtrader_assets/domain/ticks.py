"""The L5 tick schema and its row hash (64-bit FNV-1a over the tick's time and values)."""

from __future__ import annotations

import numpy as np
import polars as pl

LEVELS = 5
PRICE_COLUMNS = ("last_price", "average", "highest", "lowest", "volume", "amount", "open_interest")
DEPTH_COLUMNS = tuple(
    f"{side}_{field}{level}"
    for level in range(1, LEVELS + 1)
    for side, field in (("bid", "price"), ("bid", "volume"), ("ask", "price"), ("ask", "volume"))
)
# The 27 tick value columns, in the order the row hash reads them.
TICK_COLUMNS: tuple[str, ...] = PRICE_COLUMNS + DEPTH_COLUMNS
L2_TO_L5_PRICE_COLUMNS = tuple(
    f"{side}_price{level}" for level in range(2, LEVELS + 1) for side in ("bid", "ask")
)

FNV_OFFSET_BASIS = np.uint64(0xCBF29CE484222325)
FNV_PRIME = np.uint64(0x100000001B3)


def row_hash(datetime_ns: np.ndarray, values: np.ndarray) -> np.ndarray:
    """FNV-1a 64 over each row's 28 little-endian 8-byte words: datetime_ns (int64), then the 27 tick
    columns as IEEE-754 float64 with NaN and -0.0 written as +0.0. Returned as int64 (two's complement).

    `datetime_ns` has shape (n,), `values` shape (n, 27) in TICK_COLUMNS order. Pure numpy, so the
    result is the same on every platform and library version.
    """
    n = len(datetime_ns)
    clean = np.where(np.isnan(values), 0.0, values).astype("<f8") + 0.0  # + 0.0 turns -0.0 into +0.0
    words = np.empty((n, 1 + values.shape[1]), dtype="<u8")
    words[:, 0] = np.asarray(datetime_ns, dtype="<i8").view("<u8")
    words[:, 1:] = clean.view("<u8")
    data = words.view(np.uint8).reshape(n, -1)
    h = np.full(n, FNV_OFFSET_BASIS, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for column in range(data.shape[1]):
            h ^= data[:, column].astype(np.uint64)
            h *= FNV_PRIME
    return h.view(np.int64)


def with_row_hash(frame: pl.DataFrame) -> pl.DataFrame:
    """Add the `row_hash` column to a frame holding `datetime_ns` and the 27 tick columns."""
    values = frame.select([pl.col(c).cast(pl.Float64) for c in TICK_COLUMNS]).to_numpy()
    hashes = row_hash(frame["datetime_ns"].to_numpy(), values) if frame.height else np.empty(0, np.int64)
    return frame.with_columns(pl.Series("row_hash", hashes, dtype=pl.Int64))


def with_seq(frame: pl.DataFrame) -> pl.DataFrame:
    """Add `seq`: the 0-based rank of a tick among the ticks of the same symbol with the same datetime_ns,
    in arrival order, so two ticks sharing a timestamp both survive DEDUP on (ts, symbol, datetime_ns, seq)."""
    return frame.with_columns(pl.int_range(pl.len()).over("symbol", "datetime_ns").cast(pl.Int32).alias("seq"))


def hash_aggregates(hashes: pl.Series) -> dict[str, int]:
    """min, max, wrapping sum and wrapping sum of absolute values (both mod 2**64, as int64) of row hashes."""
    if hashes.len() == 0:
        return {"row_hash_min": 0, "row_hash_max": 0, "row_hash_sum": 0, "row_hash_sum_abs": 0}
    arr = hashes.to_numpy().astype(np.int64)
    with np.errstate(over="ignore"):
        total = int(arr.view(np.uint64).sum(dtype=np.uint64).view(np.int64))
        total_abs = int(np.abs(arr).view(np.uint64).sum(dtype=np.uint64).view(np.int64))
    return {
        "row_hash_min": int(arr.min()),
        "row_hash_max": int(arr.max()),
        "row_hash_sum": total,
        "row_hash_sum_abs": total_abs,
    }


VALUE_SCALE = 1000.0  # value_checksum reads each value at this scale, truncated toward zero


def value_checksum(values: np.ndarray) -> int:
    """A checksum of the tick values themselves (row_hash is stored, so it cannot show a value changed later):
    the wrapping int64 sum over rows and the 27 columns (in TICK_COLUMNS order, weighted 1..27) of each value
    times 1000 truncated toward zero, non-finite or out-of-range values counting 0. QuestDB computes the same
    in SQL with long arithmetic (see io.futures_store), so stored days can be re-counted exactly."""
    if len(values) == 0:
        return 0
    scaled = np.asarray(values, dtype=np.float64) * VALUE_SCALE
    ok = np.isfinite(scaled) & (np.abs(scaled) < 2.0**63)
    ints = np.where(ok, np.trunc(np.where(ok, scaled, 0.0)), 0.0).astype(np.int64)
    weights = np.arange(1, ints.shape[1] + 1, dtype=np.int64)
    with np.errstate(over="ignore"):
        return int((ints * weights).view(np.uint64).sum(dtype=np.uint64).view(np.int64))


def answer_hash(row_hashes: np.ndarray) -> int:
    """One int64 naming a provider answer for a (symbol, trading day): FNV-1a 64 over six little-endian
    words: the row count, then the wrapping sums (mod 2**64) of the row hashes, of their absolute values,
    and of each hash times its 1-based position, then the min and max hash. Order-sensitive and the same
    on every platform; equal answers give equal values, so re-ingesting one rewrites nothing."""
    arr = np.asarray(row_hashes, dtype=np.int64)
    n = len(arr)
    with np.errstate(over="ignore"):
        u = arr.view(np.uint64)
        words = [
            np.uint64(n),
            u.sum(dtype=np.uint64),
            np.abs(arr).view(np.uint64).sum(dtype=np.uint64),
            (u * np.arange(1, n + 1, dtype=np.uint64)).sum(dtype=np.uint64),
            arr.min(keepdims=True).view(np.uint64)[0] if n else np.uint64(0),
            arr.max(keepdims=True).view(np.uint64)[0] if n else np.uint64(0),
        ]
        data = np.array(words, dtype="<u8").view(np.uint8)
        h = FNV_OFFSET_BASIS
        for byte in data:
            h ^= np.uint64(byte)
            h *= FNV_PRIME
    return int(np.array([h], dtype=np.uint64).view(np.int64)[0])


def served_depth(frame: pl.DataFrame) -> int:
    """The deepest level (0-5) at which any tick of the frame carries a finite, positive bid or ask price."""
    if frame.height == 0:
        return 0
    for level in range(LEVELS, 0, -1):
        prices = [pl.col(f"{side}_price{level}") for side in ("bid", "ask")]
        if frame.select(pl.any_horizontal([p.is_finite() & (p > 0) for p in prices]).any()).item():
            return level
    return 0


def l5_present(frame: pl.DataFrame) -> bool:
    """True when any tick carries a finite, positive price on depth levels 2-5."""
    if frame.height == 0:
        return False
    return bool(
        frame.select(
            pl.any_horizontal([(pl.col(c).is_finite() & (pl.col(c) > 0)) for c in L2_TO_L5_PRICE_COLUMNS]).any()
        ).item()
    )
