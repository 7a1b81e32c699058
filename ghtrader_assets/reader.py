"""Reading the data back: stored ticks of a symbol over trading days (raw or roll-adjusted), bars computed from
them inside QuestDB, and the roll factors, as polars frames.

    from datetime import date
    from ghtrader_assets.reader import iter_ticks, read_bars, read_roll_factors, read_ticks
    df = read_ticks("KQ.m@SHFE.cu", date(2024, 1, 2), date(2024, 3, 29))                  # main series, as stored
    pre = read_ticks("KQ.m@SHFE.cu", date(2024, 1, 2), date(2024, 3, 29), adjust="pre")  # back-adjusted (spread)
    raw = read_ticks("SHFE.cu2403", date(2024, 2, 1), date(2024, 2, 1), kind="raw")       # one contract, every tick
    for week in iter_ticks("KQ.m@SHFE.cu", date(2016, 1, 4), date(2025, 12, 31)): ...  # bounded memory
    bars = read_bars("KQ.m@SHFE.cu", date(2024, 1, 2), date(2024, 3, 29), every="1m", adjust="pre")
    factors = read_roll_factors("SHFE.cu")

Ticks: symbol, ts (UTC), datetime_ns (exact epoch ns), seq, trading_day, the 27 tick columns, (main_l5)
underlying_contract, segment_id, schedule_hash, and row_hash, answer_hash, session_hash (raw: flag); sorted
by (ts, seq). Unadjusted, the rows and values are exactly what QuestDB holds (PRD section 7c).

How: the range is read one ISO week of trading days at a time, as Parquet exports of QuestDB (/exp, LZ4),
two at a time (the server refuses a third); the columns that hold one value per day (the symbol; main_l5's
contract, segment and hashes) are not exported but restored from a grouped query (one per 13 weeks) that
also counts each day's rows and row-hash aggregates, against which every export is checked. Closed weeks are
kept in a local cache (io.read_cache) and served from it while every day still matches the ledger's index row
and the stored rows' counts and hashes. `cache`: a directory, False (none), or None: $GHTRADER_READ_CACHE
(`off` for none), else ~/.cache/ghtrader-assets/reads. Connection settings default to the QUESTDB_* variables.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from ghtrader_assets.domain.bars import check_tiling, clamps, every_seconds
from ghtrader_assets.domain.calendar import TradingCalendar
from ghtrader_assets.domain.read_plan import Chunk, plan_chunks
from ghtrader_assets.domain.roll_factors import (
    ADJUSTS,
    METHODS,
    PREV_CLOSE,
    PRICE_COLUMNS,
    REFERENCES,
    Adjustment,
    FactorError,
    adjustments,
)
from ghtrader_assets.domain.symbols import check_symbol, parse_variety
from ghtrader_assets.domain.ticks import hash_aggregates
from ghtrader_assets.futures import calendar as calendar_step
from ghtrader_assets.io import futures_store as store
from ghtrader_assets.io import ledger_store as ledger
from ghtrader_assets.io.questdb import QuestDBClient, QuestDBSettings
from ghtrader_assets.io.questdb_server import cache_dir
from ghtrader_assets.io.read_cache import ReadCache

MAIN_PREFIX = "KQ.m@"
EXPORTS_IN_FLIGHT = 2  # QuestDB runs two Parquet exports at once and refuses a third (HTTP 429)
MANIFEST_WEEKS = 13  # weeks per grouped query: a query over years of day partitions runs out of mappings
BAR_PRICES = ("open", "high", "low", "close")
BAR_COLUMNS = ("symbol", "ts", "trading_day", "underlying_contract", "segment_id", "schedule_hash", *BAR_PRICES,
               "volume", "amount", "open_oi", "close_oi", "ticks")
_UTC = pl.Datetime("us", "UTC")
EMPTY_BARS = {"symbol": pl.String, "ts": _UTC, "trading_day": _UTC, "underlying_contract": pl.String,
              "segment_id": pl.Int32, "schedule_hash": pl.Int64, **{c: pl.Float64 for c in BAR_PRICES},
              "volume": pl.Float64, "amount": pl.Float64, "open_oi": pl.Float64, "close_oi": pl.Float64, "ticks": pl.Int64}


class ReaderError(ValueError):
    """A read that cannot be answered as asked (bad arguments, or an adjusted read of stale days)."""


def read_ticks(symbol: str, start: date, end: date, kind: str = "main_l5", adjust: str = "none",
               method: str = "spread", reference: str = PREV_CLOSE, settings: QuestDBSettings | None = None,
               cache: str | Path | bool | None = None) -> pl.DataFrame:
    """Ticks of `symbol` ('KQ.m@SHFE.cu' for main_l5, a contract for raw) on the trading days in [start, end],
    as one frame. `adjust`: 'none' (default), 'pre' (anchored to the latest segment of the schedule) or
    'post' (anchored to its first); `method`: 'spread' or 'ratio'; `reference`: 'prev_close' (default) or
    'open' (PRD section 7c). Prices are adjusted; volumes, amount, open interest are not."""
    frames = list(iter_ticks(symbol, start, end, kind, adjust, method, reference, settings, cache))
    if len(frames) == 1:
        return frames[0]
    if frames:
        return pl.concat(frames, how="vertical", rechunk=False)
    with QuestDBClient(settings or QuestDBSettings.from_env()) as client:  # no trading day: no rows, every column
        return client.export(f"SELECT * FROM {store.KINDS[kind].name} WHERE symbol = '{symbol}' LIMIT 0")


def iter_ticks(symbol: str, start: date, end: date, kind: str = "main_l5", adjust: str = "none",
               method: str = "spread", reference: str = PREV_CLOSE, settings: QuestDBSettings | None = None,
               cache: str | Path | bool | None = None) -> Iterator[pl.DataFrame]:
    """The same rows as read_ticks, one frame per ISO week of trading days, in order: memory stays bounded by
    a few weeks of ticks whatever the range (a ten-year read included)."""
    _check(symbol, kind, adjust, method, reference)
    with QuestDBClient(settings or QuestDBSettings.from_env()) as client:
        calendar = ledger.read_calendar(client)
        days = calendar.between(start, end)
        if not days:
            return
        prices = _adjustments(client, symbol, adjust, method, reference) if adjust != "none" else None
        root = _cache_root(cache)
        week_cache = ReadCache(root, f"{client.settings.host}_{client.settings.http_port}", kind, symbol) if root else None
        for frame in _TickRead(client, calendar, symbol, kind, days, week_cache).frames():
            yield _adjust(frame, prices, PRICE_COLUMNS) if prices is not None else frame


def read_bars(symbol: str, start: date, end: date, every: str = "1m", adjust: str = "none", method: str = "spread",
              reference: str = PREV_CLOSE, settings: QuestDBSettings | None = None) -> pl.DataFrame:
    """Bars of the main series `symbol` ('KQ.m@SHFE.cu') over the trading days [start, end], computed inside
    QuestDB from the stored ticks (domain.bars has the rules): `every` 1m, 5m, 15m, 30m (1h where the
    sessions allow it). Columns: symbol, ts (bar start, UTC), trading_day, underlying_contract, segment_id,
    schedule_hash, open, high, low, close (adjusted as read_ticks adjusts prices), volume, amount (the bar's
    change of the day's cumulative values), open_oi, close_oi (open interest before and at the end of the
    bar, TqSdk's kline fields) and ticks (the bar's tick count)."""
    _check(symbol, "main_l5", adjust, method, reference)
    if not symbol.startswith(MAIN_PREFIX):
        raise ReaderError(f"bars are read from the main series (KQ.m@<variety>), not {symbol!r}")
    every_seconds(every)
    variety = symbol[len(MAIN_PREFIX):]
    with QuestDBClient(settings or QuestDBSettings.from_env()) as client:
        calendar = ledger.read_calendar(client)
        days = calendar.between(start, end)
        history = calendar_step.session_histories(client, [variety], os.environ.get("GHTRADER_SESSION_HISTORY", ""))[variety]
        prices = _adjustments(client, symbol, adjust, method, reference) if adjust != "none" else None
        frames = []
        for run_days, sessions in _session_runs(days, history.windows):
            check_tiling(sessions, every)
            margins = [(c.lo, c.hi, c.to) for c in clamps(sessions)]
            lo, hi = calendar.bounds_ns(run_days[0])[0], calendar.bounds_ns(run_days[-1])[1]
            frames.append(store.sample_bars(client, symbol, run_days[0], run_days[-1], lo, hi, every, margins))
    if not frames:  # no trading day in the range
        return pl.DataFrame(schema=EMPTY_BARS)
    bars = pl.concat(frames, how="vertical")
    return _bar_columns(_adjust(bars, prices, BAR_PRICES) if prices is not None else bars, symbol)


def read_roll_factors(variety: str, settings: QuestDBSettings | None = None) -> pl.DataFrame:
    """The variety's roll factors as stored (ghtrader_main_roll_factors_v2), one row per switch day."""
    parse_variety(variety)
    with QuestDBClient(settings or QuestDBSettings.from_env()) as client:
        return ledger.roll_factor_rows(client, variety)


# -- ticks ------------------------------------------------------------------------------------------------------
class _TickRead:
    """One read: per block of weeks the day manifest (index rows and grouped counts), then per week a cached
    file or an export."""

    def __init__(self, client: QuestDBClient, calendar: TradingCalendar, symbol: str, kind: str, days: Sequence[date],
                 cache: ReadCache | None) -> None:
        self.client, self.calendar, self.symbol, self.kind, self.cache = client, calendar, symbol, kind, cache
        self.columns = store.stored_columns(client, kind)
        group_columns = store.DAY_GROUP_COLUMNS[kind]
        self.constants = store.DAY_CONSTANT_COLUMNS[kind]
        self._at = [group_columns.index(c) for c in self.constants]
        self.lean = [c for c in self.columns if c not in ("symbol", *self.constants)]
        self.chunks = plan_chunks(calendar, days)
        self.groups: dict[date, list[store.DayGroup]] = {}
        self.index: dict[date, dict] = {}
        self.fingerprints: dict[date, dict] = {}
        self._known = 0  # chunks whose block's manifest has been read

    def _manifest(self, position: int) -> None:
        """Read the manifest of the block of MANIFEST_WEEKS weeks holding chunk `position`, once: one grouped
        query and one index query per block, so no query spans years of partitions."""
        while self._known <= position:
            block = self.chunks[self._known:self._known + MANIFEST_WEEKS]
            first, last = block[0].first, block[-1].last
            lo, hi = self.calendar.bounds_ns(first)[0], self.calendar.bounds_ns(last)[1]
            self.groups.update(store.day_groups(self.client, self.kind, self.symbol, first, last, lo, hi))
            index = ledger.read_index(self.client, self.symbol, first, last, self.kind)
            self.index.update({ts.date(): row for ts, row in zip(index["ts"], index.iter_rows(named=True))})
            self.fingerprints.update({d: self._fingerprint(d) for c in block for d in c.days})
            self._known += len(block)

    def _fingerprint(self, day: date) -> dict:
        row = self.index.get(day)
        keep = ("rows_total", "first_datetime_ns", "last_datetime_ns", "l5_present", "row_hash_min", "row_hash_max",
                "row_hash_sum", "row_hash_sum_abs", "value_sum", "underlying_contract", "segment_id", "schedule_hash",
                "session_hash", "final")
        return {"index": None if row is None else [row.get(k) for k in keep],
                "groups": [[*g.keys, g.rows, g.first_ns, g.last_ns, g.hash_min, g.hash_max, g.hash_sum, g.hash_sum_abs]
                           for g in self.groups.get(day, [])]}

    def _constants(self, day: date) -> tuple | None:
        """The day's values of the day-constant columns (None when its rows disagree on them)."""
        values = {tuple(g.keys[i] for i in self._at) for g in self.groups.get(day, [])}
        return next(iter(values)) if len(values) == 1 else None

    def _cacheable(self, day: date) -> bool:
        """A closed day the ledger indexed as QuestDB holds it now (or a day without rows and without an
        index row of any)."""
        row, groups = self.index.get(day), self.groups.get(day, [])
        if not groups:
            return row is None or not row["rows_total"]
        if row is None or not row["final"] or self._constants(day) is None:
            return False
        indexed = (row["rows_total"], row["first_datetime_ns"], row["last_datetime_ns"], row["row_hash_min"],
                   row["row_hash_max"], row["row_hash_sum"], row["row_hash_sum_abs"])
        if tuple(int(v or 0) for v in indexed) != store.merged_stats(groups):
            return False
        if self.kind == "main_l5":  # built for what the index says (its contract, segment, schedule, sessions)
            built = dict(zip(self.constants, self._constants(day) or ()))
            return all(built[k] == row[k] for k in ("underlying_contract", "segment_id", "schedule_hash", "session_hash"))
        return True

    def _bounds(self, chunk: Chunk) -> tuple[int, int]:
        return self.calendar.bounds_ns(chunk.first)[0], self.calendar.bounds_ns(chunk.last)[1]

    def _lean(self, chunk: Chunk) -> bool:
        return all(self._constants(d) is not None for d in chunk.days if self.groups.get(d))

    def _export(self, chunk: Chunk, lean: bool) -> bytes:
        return store.export_rows(self.client, self.kind, self.symbol, chunk.first, chunk.last, *self._bounds(chunk),
                                 self.lean if lean else self.columns)

    def frames(self) -> Iterator[pl.DataFrame]:
        """One frame per week, in order. The weeks ahead are started in order while there is room: a week
        validly cached is decoded ahead (polars reads without the GIL), EXPORTS_IN_FLIGHT at most; the others
        are exported, EXPORTS_IN_FLIGHT at a time; new cache files are written by a thread of their own.
        Memory: those weeks and the one yielded, whatever the range."""
        exports: dict[str, Future] = {}
        reads: dict[str, Future] = {}
        with ThreadPoolExecutor(EXPORTS_IN_FLIGHT, thread_name_prefix="ghtrader-export") as export_pool, \
                ThreadPoolExecutor(EXPORTS_IN_FLIGHT, thread_name_prefix="ghtrader-cache") as read_pool, \
                ThreadPoolExecutor(1, thread_name_prefix="ghtrader-cache-write") as write_pool:

            def start(position: int) -> bool:
                """Start the week at `position` if its pool has room; False when it must wait."""
                chunk = self.chunks[position]
                self._manifest(position)
                if self.cache is not None and self.cache.valid(chunk, self.fingerprints, self.lean):
                    if len(reads) >= EXPORTS_IN_FLIGHT:
                        return False
                    reads[chunk.key] = read_pool.submit(self.cache.read, chunk)
                elif len(exports) >= EXPORTS_IN_FLIGHT:
                    return False
                else:
                    exports[chunk.key] = export_pool.submit(self._export, chunk, self._lean(chunk))
                return True

            ahead = 0
            try:
                for position, chunk in enumerate(self.chunks):
                    while ahead < len(self.chunks) and start(ahead):
                        ahead += 1
                    if chunk.key in reads:
                        week = reads.pop(chunk.key).result()
                        if week is not None:
                            yield self._restore(week.frame, chunk)
                            continue
                        payload = self._export(chunk, self._lean(chunk))  # the file went away: read QuestDB
                    else:
                        payload = exports.pop(chunk.key).result()
                    yield self._received(chunk, payload, write_pool)
            finally:
                for future in (*exports.values(), *reads.values()):
                    future.cancel()

    def _received(self, chunk: Chunk, payload: bytes, writer: ThreadPoolExecutor) -> pl.DataFrame:
        """An export checked against the day manifest; with the day-constant columns restored, and cached when
        the whole week is closed and indexed as stored. A week that changed since the manifest was read (a
        rewrite in between) is exported again with every column, and not cached."""
        lean = self._lean(chunk)
        frame = pl.read_parquet(payload)
        if not lean:
            return frame.select(self.columns)
        if _day_stats(frame) != {d: store.merged_stats(self.groups[d]) for d in chunk.days if self.groups.get(d)}:
            return pl.read_parquet(self._export(chunk, lean=False)).select(self.columns)
        if self.cache is not None and chunk.whole and all(self._cacheable(d) for d in chunk.days):
            writer.submit(self.cache.store, chunk, payload, self.lean, self.fingerprints)
        return self._restore(frame, chunk)

    def _restore(self, frame: pl.DataFrame, chunk: Chunk) -> pl.DataFrame:
        """The lean columns of one week with the symbol and the day-constant columns put back, in stored
        column order."""
        missing = [c for c in self.lean if c not in frame.columns]
        if missing:
            raise ReaderError(f"a cached week of {self.symbol} lacks {missing}: delete the read cache")
        extra = [pl.lit(self.symbol, dtype=pl.String).alias("symbol")]
        if self.constants and frame.height:
            days, starts = _day_runs(frame)
            counts = np.diff(np.append(starts, frame.height))
            values = [self._constants(d) for d in days]
            if any(v is None for v in values):
                raise ReaderError(f"{self.symbol}: a week read lean holds a day without one value of {self.constants}")
            take = np.repeat(np.arange(len(days)), counts)
            for i, c in enumerate(self.constants):
                column = pl.Series(c, [v[i] for v in values], dtype=store.column_type(self.kind, c))
                extra.append(pl.lit(column[0], dtype=column.dtype).alias(c) if len(days) == 1 else column.gather(take))
        elif self.constants:
            extra += [pl.lit(None, dtype=store.column_type(self.kind, c)).alias(c) for c in self.constants]
        return frame.with_columns(extra).select(self.columns)


def _day_runs(frame: pl.DataFrame) -> tuple[list[date], np.ndarray]:
    """The trading days of a frame in time order and the row where each starts (days are contiguous)."""
    physical = frame["trading_day"].to_physical().to_numpy()
    starts = np.concatenate([[0], np.flatnonzero(np.diff(physical)) + 1])
    days = frame["trading_day"].gather(starts).dt.date().to_list()
    return days, starts


def _day_stats(frame: pl.DataFrame) -> dict[date, tuple[int, ...]]:
    """Per trading day of an export (in time order): rows, first/last datetime_ns, row-hash min/max and the
    wrapping sums, as QuestDB's grouped query gives them."""
    if frame.height == 0:
        return {}
    days, starts = _day_runs(frame)
    edges = np.append(starts, frame.height)
    times, hashes = frame["datetime_ns"], frame["row_hash"]
    out = {}
    for day, lo, hi in zip(days, edges[:-1], edges[1:]):
        h = hash_aggregates(hashes.slice(int(lo), int(hi - lo)))
        t = times.slice(int(lo), int(hi - lo))
        out[day] = (int(hi - lo), int(t.min()), int(t.max()), h["row_hash_min"], h["row_hash_max"],
                    h["row_hash_sum"], h["row_hash_sum_abs"])
    return out


# -- adjustment ---------------------------------------------------------------------------------------------------
def _adjustments(client: QuestDBClient, symbol: str, adjust: str, method: str, reference: str) -> dict[int, Adjustment]:
    """schedule_hash -> the adjustment of that segment's prices, from the stored schedule and factors."""
    variety = symbol[len(MAIN_PREFIX):]
    rows = ledger.read_schedule(client, variety)
    try:
        by_segment = adjustments(rows, ledger.read_roll_factors(client, variety)[reference], adjust, method)
    except FactorError as exc:
        raise ReaderError(f"{symbol}: cannot adjust: {exc}") from exc
    return {schedule_hash: a for (_, schedule_hash), a in by_segment.items()}


def _adjust(frame: pl.DataFrame, by_hash: Mapping[int, Adjustment], columns: Sequence[str]) -> pl.DataFrame:
    """Prices of each row adjusted by its segment's factor (price * multiply + add); a row of a segment the
    schedule no longer holds (a stale day, see `coverage`) is an error."""
    if frame.height == 0:
        return frame
    hashes = set(frame["schedule_hash"].unique().to_list())
    unknown = hashes - set(by_hash)
    if unknown:
        days = frame.filter(pl.col("schedule_hash").is_in(list(unknown)))["trading_day"].dt.date().unique().sort()
        raise ReaderError(f"rows of days {[str(d) for d in days.to_list()[:10]]} were built for a segment the schedule "
                          "no longer holds: rebuild them (ghtrader-assets coverage --fill) before an adjusted read")
    if len(hashes) == 1:  # one segment (most weeks): a constant
        a = by_hash[next(iter(hashes))]
        add, mul = pl.lit(a.add), pl.lit(a.multiply)
    else:
        add = pl.col("schedule_hash").replace_strict({h: by_hash[h].add for h in hashes}, return_dtype=pl.Float64)
        mul = pl.col("schedule_hash").replace_strict({h: by_hash[h].multiply for h in hashes}, return_dtype=pl.Float64)
    spread = all(by_hash[h].multiply == 1.0 for h in hashes)  # a spread read adds, a ratio read multiplies
    return frame.with_columns([(pl.col(c) + add if spread else pl.col(c) * mul).alias(c) for c in columns])


# -- bars ---------------------------------------------------------------------------------------------------------
def _session_runs(days: Sequence[date], windows) -> list[tuple[list[date], list]]:  # noqa: ANN001
    """Consecutive days judged by the same session windows (the version in force, and the other on an
    uncertain day), each with those windows."""
    out: list[tuple[list[date], list]] = []
    for day in days:
        current, other = windows(day)
        sessions = [current] + ([other] if other is not None else [])
        if out and out[-1][1] == sessions:
            out[-1][0].append(day)
        else:
            out.append(([day], sessions))
    return out


def _bar_columns(bars: pl.DataFrame, symbol: str) -> pl.DataFrame:
    """Volume and amount as the bar's change of the day's cumulative values, open_oi as the open interest
    before the bar (TqSdk's kline fields), in the documented column order."""
    by_day = pl.col("trading_day")
    return bars.with_columns(
        pl.lit(symbol, dtype=pl.String).alias("symbol"),
        (pl.col("volume_end") - pl.col("volume_end").shift(1).over(by_day).fill_null(0.0)).alias("volume"),
        (pl.col("amount_end") - pl.col("amount_end").shift(1).over(by_day).fill_null(0.0)).alias("amount"),
        pl.col("close_oi").shift(1).over(by_day).fill_null(pl.col("first_oi")).alias("open_oi"),
    ).select(BAR_COLUMNS)


# -- arguments --------------------------------------------------------------------------------------------------------
def _check(symbol: str, kind: str, adjust: str, method: str, reference: str) -> None:
    if kind not in store.KINDS:
        raise ValueError(f"kind must be one of {sorted(store.KINDS)}, not {kind!r}")
    check_symbol(symbol)
    if adjust not in ADJUSTS:
        raise ReaderError(f"adjust must be one of {ADJUSTS}, not {adjust!r}")
    if method not in METHODS:
        raise ReaderError(f"method must be one of {METHODS}, not {method!r}")
    if reference not in REFERENCES:
        raise ReaderError(f"reference must be one of {REFERENCES}, not {reference!r}")
    if adjust != "none" and (kind != "main_l5" or not symbol.startswith(MAIN_PREFIX)):
        raise ReaderError("only the main series (KQ.m@<variety>, kind main_l5) is roll-adjusted")


def _cache_root(cache: str | Path | bool | None) -> Path | None:
    if cache is False:
        return None
    if cache is None or cache is True:
        env = os.environ.get("GHTRADER_READ_CACHE", "").strip()
        if env.lower() in ("off", "0", "false", "none"):
            return None
        return Path(env).expanduser() if env else cache_dir() / "reads"
    return Path(cache)
