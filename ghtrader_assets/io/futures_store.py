"""The tick tables in QuestDB: raw (every tick the provider served, flagged) and main_l5 (the curated series).

Re-writing one (symbol, trading day) leaves exactly the new rows and touches no other row. DEDUP UPSERT
makes re-ingesting the same ticks a no-op; a different answer is upserted, then the rows of the day that
it did not replace (another `answer_hash`, or for main_l5 another contract, schedule or session rule) are
retired by one UPDATE of their symbol (`_retire`, the one rule for both tables), applied through the
table's WAL in order with every other write. A crash at any point leaves the old rows or the union of old
and new, never fewer; the re-run finishes the retire. Every figure returned is counted by QuestDB.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import polars as pl

from ghtrader_assets.domain.calendar import TradingCalendar
from ghtrader_assets.domain.ledger import DayStats
from ghtrader_assets.domain.schedule import ScheduleRow
from ghtrader_assets.domain.symbols import check_symbol, main_symbol, parse_contract
from ghtrader_assets.domain.tick_cleaning import KEPT_FLAGS, OK, SESSION_FLAGS, KeepRule
from ghtrader_assets.domain.ticks import (
    L2_TO_L5_PRICE_COLUMNS,
    TICK_COLUMNS,
    VALUE_SCALE,
    answer_hash,
    hash_aggregates,
    l5_present,
    value_checksum,
)
from ghtrader_assets.io.questdb import QuestDBClient, day_literal, identifier, ts_literal
from ghtrader_assets.io.questdb_schema import MAIN_L5_TICKS, RAW_TICKS, Table

KINDS = {"raw": RAW_TICKS, "main_l5": MAIN_L5_TICKS}
# Rows a rewrite replaced move to this symbol prefix (`~SHFE.cu2403`): out of every per-symbol read,
# still on disk as the record of what the provider served before.
RETIRED_PREFIX = "~"
# What a caller hands `store_days`: every raw column but answer_hash, which the store derives, and the
# optional `flag` (a frame without it is taken as curated ticks, every one flagged ok).
RAW_FRAME_COLUMNS = tuple(c for c in RAW_TICKS.column_names if c not in ("answer_hash", "flag"))
_KEPT_SQL = ", ".join(f"'{f}'" for f in KEPT_FLAGS)
_SESSION_SQL = ", ".join(f"'{f}'" for f in SESSION_FLAGS)
_MAIN_KEYS = ("underlying_contract", "segment_id", "schedule_hash", "answer_hash", "session_hash")


def day_filter(symbol: str, day: date, bounds: tuple[int, int]) -> str:
    """WHERE clause for one (symbol, trading day): the ts range prunes partitions (the designated
    timestamp is the tick time); only validated values reach the SQL text."""
    check_symbol(symbol)
    return (f"symbol = '{symbol}' AND ts >= '{ts_literal(bounds[0])}' AND ts < '{ts_literal(bounds[1])}'"
            f" AND trading_day = {day_literal(day)}")


def _range_filter(symbols: set[str], days: dict[date, tuple[int, int]]) -> str:
    for s in symbols:
        check_symbol(s)
    lo = min(b[0] for b in days.values())
    hi = max(b[1] for b in days.values())
    return (f"symbol IN ({', '.join(repr(s) for s in sorted(symbols))}) AND ts >= '{ts_literal(lo)}' "
            f"AND ts < '{ts_literal(hi)}' AND trading_day IN ({', '.join(day_literal(d) for d in sorted(days))})")


# -- reading -------------------------------------------------------------------------------------------
def frame_stats(frame: pl.DataFrame) -> DayStats:
    """The stats of a frame holding datetime_ns, row_hash and the 27 tick columns (what QuestDB counts)."""
    if frame.height == 0:
        return DayStats()
    values = frame.select([pl.col(c).cast(pl.Float64) for c in TICK_COLUMNS]).to_numpy()
    return DayStats(frame.height, int(frame["datetime_ns"].min()), int(frame["datetime_ns"].max()), l5_present(frame),
                    **hash_aggregates(frame["row_hash"]), value_sum=value_checksum(values))


def day_stats(client: QuestDBClient, table: Table, symbol: str, day: date, bounds: tuple[int, int]) -> DayStats:
    """The stats of what is stored for one day, computed here from the exported rows (a check independent
    of the grouped query the write path uses)."""
    cols = ", ".join(["datetime_ns", "row_hash", *TICK_COLUMNS])
    return frame_stats(client.export(f"SELECT {cols} FROM {table.name} WHERE {day_filter(symbol, day, bounds)}"))


# domain.ticks.value_checksum in SQL: long arithmetic wraps like numpy's, a NaN or out-of-range cast is null (0).
_VALUE_SUM_SQL = "sum(" + " + ".join(
    f"coalesce(cast({c} * {VALUE_SCALE} as long), 0) * {i}" for i, c in enumerate(TICK_COLUMNS, 1)) + ")"
_STATS_SQL = (
    "count() n, min(datetime_ns) first_ns, max(datetime_ns) last_ns, min(row_hash) hmin, max(row_hash) hmax, "
    "sum(row_hash) hsum, sum(abs(row_hash)) habs, sum(CASE WHEN "
    + " OR ".join(f"{c} > 0" for c in L2_TO_L5_PRICE_COLUMNS) + f" THEN 1 ELSE 0 END) l5, {_VALUE_SUM_SQL} vsum"
)


def _wrap(value: int) -> int:
    """An int64 sum as numpy's wrapping sum gives it (QuestDB's long sum may carry past 64 bits)."""
    return (int(value) + 2**63) % 2**64 - 2**63


def _merge_stats(groups: list[dict]) -> DayStats:
    if not groups:
        return DayStats()
    return DayStats(
        rows_total=sum(int(g["n"]) for g in groups),
        first_datetime_ns=min(int(g["first_ns"]) for g in groups),
        last_datetime_ns=max(int(g["last_ns"]) for g in groups),
        l5_present=any(int(g["l5"] or 0) > 0 for g in groups),
        row_hash_min=min(int(g["hmin"]) for g in groups),
        row_hash_max=max(int(g["hmax"]) for g in groups),
        row_hash_sum=_wrap(sum(int(g["hsum"]) for g in groups)),
        row_hash_sum_abs=_wrap(sum(int(g["habs"]) for g in groups)),
        value_sum=_wrap(sum(int(g["vsum"] or 0) for g in groups)),
    )


def _groups(client: QuestDBClient, table: Table, symbols: set[str], days: dict[date, tuple[int, int]],
            keys: tuple[str, ...]) -> dict[tuple[str, date], list[dict]]:
    """Per (symbol, trading day) of `days`: the stats of each group of `keys` values, one query."""
    group = ", ".join(("symbol", "trading_day", *keys))
    frame = client.query(f"SELECT {group}, {_STATS_SQL} FROM {table.name} WHERE {_range_filter(symbols, days)} GROUP BY {group}")
    out: dict[tuple[str, date], list[dict]] = {}
    for g in frame.iter_rows(named=True):
        out.setdefault((g["symbol"], g["trading_day"].date()), []).append(g)
    return out


def stats_by_day(client: QuestDBClient, kind: str, symbol: str, days: dict[date, tuple[int, int]]) -> dict[date, DayStats]:
    """Rows, first/last tick, L5 presence and row-hash aggregates per stored trading day of `symbol`,
    computed inside QuestDB from the stored rows; one query for the whole range. `days`: day -> bounds."""
    if not days:
        return {}
    table = KINDS[kind]
    client.wait_for_wal(table)
    found = _groups(client, table, {symbol}, days, ())
    return {d: _merge_stats(found.get((symbol, d), [])) for d in days}


def stored_rows(client: QuestDBClient, kind: str, symbol: str, days: dict[date, tuple[int, int]]) -> dict[date, int]:
    """Rows stored per trading day of `symbol` (days without rows are absent); one grouped count."""
    if not days:
        return {}
    table = KINDS[kind]
    client.wait_for_wal(table)
    frame = client.query(f"SELECT trading_day, count() n FROM {table.name} WHERE {_range_filter({symbol}, days)} "
                         "GROUP BY trading_day")
    return {ts.date(): int(n) for ts, n in frame.iter_rows()}


def outside_session_minutes(client: QuestDBClient, contracts: set[str], days: dict[date, tuple[int, int]]) -> dict[date, dict[int, int]]:
    """Raw ticks flagged outside_session per trading day and Beijing clock minute (session evidence)."""
    if not days or not contracts:
        return {}
    client.wait_for_wal(RAW_TICKS)
    frame = client.query(
        f"SELECT trading_day, (datetime_ns / 60000000000 + 480) % 1440 minute, count() n FROM {RAW_TICKS.name} "
        f"WHERE {_range_filter(contracts, days)} AND flag = 'outside_session' GROUP BY trading_day, minute")
    out: dict[date, dict[int, int]] = {}
    for ts, minute, n in frame.iter_rows():
        out.setdefault(ts.date(), {})[int(minute)] = int(n)
    return out


def read_ticks(client: QuestDBClient, symbol: str, days: Sequence[date], calendar: TradingCalendar, kind: str) -> pl.DataFrame:
    """Stored ticks of `symbol` over the given trading days, in time order, as one columnar export."""
    table = KINDS[kind]
    check_symbol(symbol)
    if not days:
        return client.export(f"SELECT * FROM {table.name} WHERE symbol = '{symbol}' LIMIT 0")
    bounds = {d: calendar.bounds_ns(d) for d in days}
    return client.export(f"SELECT * FROM {table.name} WHERE {_range_filter({symbol}, bounds)} ORDER BY ts, seq")


# -- the reader's queries: a day manifest, chunk exports, bars ----------------------------------------------
# The columns a read groups each day's rows by to see what is stored (what a rewrite of the day changes:
# main_l5's contract, segment, schedule, answer and session rule; raw's answer and cleaning flags), and of
# those the ones that hold one value per (symbol, trading day) in the current rows. A read exports the
# latter only for a day holding more than one value: they are restored from the grouped query (QuestDB's
# Parquet export writes text without dictionary encoding, which costs more to produce and to decode than
# the rest of a tick row). `symbol` is the read's own.
DAY_GROUP_COLUMNS = {"raw": ("answer_hash", "flag"),
                     "main_l5": ("underlying_contract", "segment_id", "schedule_hash", "answer_hash", "session_hash")}
DAY_CONSTANT_COLUMNS = {"raw": (), "main_l5": DAY_GROUP_COLUMNS["main_l5"]}
EXPORT_CODEC = "LZ4_RAW"  # the cheapest codec for QuestDB to write and polars to read (measured: bench/bench_reader.py)
_LIGHT_STATS_SQL = ("count() n, min(datetime_ns) first_ns, max(datetime_ns) last_ns, min(row_hash) hmin, "
                    "max(row_hash) hmax, sum(row_hash) hsum, sum(abs(row_hash)) habs")


@dataclass(frozen=True)
class DayGroup:
    """The stored rows of one (symbol, trading day) sharing the values of DAY_GROUP_COLUMNS, as QuestDB counts
    them now: rows, first/last tick and row-hash aggregates (cheap: no tick value is read)."""

    day: date
    keys: tuple  # the DAY_GROUP_COLUMNS values
    rows: int
    first_ns: int
    last_ns: int
    hash_min: int
    hash_max: int
    hash_sum: int
    hash_sum_abs: int


_POLARS_TYPES = {"SYMBOL": pl.String, "VARCHAR": pl.String, "INT": pl.Int32, "LONG": pl.Int64, "DOUBLE": pl.Float64}


def column_type(kind: str, column: str) -> pl.DataType:
    """The polars type an export gives a tick-table column (for the columns a read restores itself)."""
    return _POLARS_TYPES[dict(KINDS[kind].columns)[column]]


def merged_stats(groups: Sequence[DayGroup]) -> tuple[int, ...]:
    """One day's groups as (rows, first ns, last ns, row-hash min, max, wrapping sum, wrapping sum of |h|)."""
    if not groups:
        return (0, 0, 0, 0, 0, 0, 0)
    return (sum(g.rows for g in groups), min(g.first_ns for g in groups), max(g.last_ns for g in groups),
            min(g.hash_min for g in groups), max(g.hash_max for g in groups), _wrap(sum(g.hash_sum for g in groups)),
            _wrap(sum(g.hash_sum_abs for g in groups)))


def read_filter(symbol: str, first: date, last: date, lo_ns: int, hi_ns: int) -> str:
    """The rows of `symbol` on trading days [first, last] whose tick time lies in [lo_ns, hi_ns) (the days'
    bounds): the designated-timestamp range prunes partitions."""
    check_symbol(symbol)
    return (f"symbol = '{symbol}' AND ts >= '{ts_literal(lo_ns)}' AND ts < '{ts_literal(hi_ns)}' "
            f"AND trading_day >= {day_literal(first)} AND trading_day <= {day_literal(last)}")


def stored_columns(client: QuestDBClient, kind: str) -> list[str]:
    """The tick table's columns in stored order (what `SELECT *` returns)."""
    table = KINDS[kind]
    return client.query(f"SELECT \"column\" FROM table_columns('{table.name}')")["column"].to_list()


def day_groups(client: QuestDBClient, kind: str, symbol: str, first: date, last: date, lo_ns: int,
               hi_ns: int) -> dict[date, list[DayGroup]]:
    """Per trading day of [first, last]: its stored rows grouped by DAY_GROUP_COLUMNS, with their counts and
    row-hash aggregates; one grouped query that reads no tick value."""
    table = KINDS[kind]
    columns = DAY_GROUP_COLUMNS[kind]
    keys = ", ".join(("trading_day", *columns))
    frame = client.query(f"SELECT {keys}, {_LIGHT_STATS_SQL} FROM {table.name} WHERE "
                         f"{read_filter(symbol, first, last, lo_ns, hi_ns)} GROUP BY {keys}")
    out: dict[date, list[DayGroup]] = {}
    for g in frame.iter_rows(named=True):
        day = g["trading_day"].date()
        out.setdefault(day, []).append(DayGroup(
            day, tuple(g[c] for c in columns), int(g["n"]), int(g["first_ns"]), int(g["last_ns"]),
            int(g["hmin"]), int(g["hmax"]), _wrap(int(g["hsum"])), _wrap(int(g["habs"]))))
    for groups in out.values():
        groups.sort(key=lambda g: (g.first_ns, g.rows, repr(g.keys)))
    return out


def export_rows(client: QuestDBClient, kind: str, symbol: str, first: date, last: date, lo_ns: int, hi_ns: int,
                columns: Sequence[str]) -> bytes:
    """The stored rows of `symbol` on trading days [first, last] in time order (ts, seq), as one Parquet
    file (QuestDB's /exp, EXPORT_CODEC), with only `columns`."""
    table = KINDS[kind]
    for c in columns:
        identifier(c)
    return client.export_parquet(f"SELECT {', '.join(columns)} FROM {table.name} WHERE "
                                 f"{read_filter(symbol, first, last, lo_ns, hi_ns)} ORDER BY ts, seq", EXPORT_CODEC)


def sample_bars(client: QuestDBClient, symbol: str, first: date, last: date, lo_ns: int, hi_ns: int, every: str,
                clamps: Sequence[tuple[int, int, int]]) -> pl.DataFrame:
    """Bars of `every` (QuestDB's SAMPLE BY unit: 1m, 5m, 15m, 30m, 1h) of the main series, computed inside QuestDB (SAMPLE BY on the tick time, the
    ticks of the session margins restamped first: `clamps` are (lo, hi, to) Beijing times of day in µs, a
    tick in [lo, hi) is stamped `to`, see domain.bars), one row per (bar, trading day, segment): open, high,
    low, close of last_price, the last cumulative volume and amount, the first and last open interest, and
    the tick count. Ordered by time."""
    check_symbol(symbol)
    tod = "((cast(ts as long) + 28800000000) % 86400000000)"
    day_us = 86_400_000_000
    cases = []
    for lo, hi, to in clamps:
        shift = to + (day_us if to < lo - day_us // 2 else -day_us if to > hi + day_us // 2 else 0)
        cases.append(f"WHEN {tod} >= {int(lo)} AND {tod} < {int(hi)} THEN cast(cast(ts as long) - {tod} + {int(shift)} as timestamp)")
    stamp = f"CASE {' '.join(cases)} ELSE ts END" if cases else "ts"
    inner = (f"SELECT {stamp} ts, trading_day, underlying_contract, segment_id, schedule_hash, last_price, volume, amount, "
             f"open_interest FROM {MAIN_L5_TICKS.name} WHERE {read_filter(symbol, first, last, lo_ns, hi_ns)}")
    sql = (f"SELECT ts, trading_day, underlying_contract, segment_id, schedule_hash, first(last_price) open, "
           f"max(last_price) high, min(last_price) low, last(last_price) close, last(volume) volume_end, "
           f"last(amount) amount_end, first(open_interest) first_oi, last(open_interest) close_oi, count() ticks "
           f"FROM ({inner}) timestamp(ts) SAMPLE BY {_sample_unit(every)} ALIGN TO CALENDAR")
    return pl.read_parquet(io.BytesIO(client.export_parquet(sql, EXPORT_CODEC)))


def _sample_unit(every: str) -> str:
    number, unit = every[:-1], every[-1:]
    if not number.isdigit() or unit not in ("m", "h"):
        raise ValueError(f"not a bar size: {every!r}")
    return f"{int(number)}{unit}"


def retired_rows(client: QuestDBClient, table: Table, symbol: str) -> int:
    """Rows of `symbol` that a rewrite retired (kept as the record of what was served before)."""
    check_symbol(symbol)
    client.wait_for_wal(table)
    return int(client.scalar(f"SELECT count() FROM {table.name} WHERE symbol = '{RETIRED_PREFIX}{symbol}'"))


# -- a batch of days: one write and one WAL barrier per table, stats computed inside QuestDB ----------------
@dataclass(frozen=True)
class DayWrite:
    """One (variety, trading day) of a batch: its schedule row, the day's bounds, the session windows it is
    judged by and, when this run fetched it, the provider's answer as a raw frame (RAW_FRAME_COLUMNS and
    `flag`; no rows = the provider sent none)."""

    variety: str
    day: date
    bounds: tuple[int, int]
    row: ScheduleRow
    frame: pl.DataFrame | None = None  # None: not fetched by this run; main_l5 is built from the stored day
    # The day's session windows: a stored day (frame None) is re-flagged by them before main_l5 is cut, and
    # main_l5 rows carry their hash. None: the stored flags stand (session_hash 0).
    rule: KeepRule | None = None

    @property
    def session_hash(self) -> int:
        return self.rule.session_hash if self.rule is not None else 0


@dataclass(frozen=True)
class DayStored:
    """What one day of a batch left in QuestDB, as QuestDB counts it: the raw day (the whole answer), its
    kept rows (what main_l5 must equal) and the main_l5 day (None when not built by this call)."""

    raw: DayStats
    raw_kept: DayStats
    main_l5: DayStats | None = None
    error: str = ""  # set when this day failed; the other days of the batch are unaffected


def _copy_to_main_sql(symbol: str, row: ScheduleRow, raw_where: str, session_hash: int) -> str:
    """The statement copying the kept raw rows (flag ok or session_uncertain) of the scheduled contract
    selected by `raw_where` into main_l5."""
    values = ", ".join(TICK_COLUMNS)
    parse_contract(row.main_contract)
    return (f"INSERT INTO {MAIN_L5_TICKS.name} (symbol, ts, datetime_ns, seq, trading_day, {values}, "
            f"underlying_contract, segment_id, schedule_hash, row_hash, answer_hash, session_hash) "
            f"SELECT '{check_symbol(symbol)}', ts, datetime_ns, seq, trading_day, {values}, "
            f"'{row.main_contract}', {int(row.segment_id)}, {int(row.schedule_hash)}, row_hash, answer_hash, "
            f"{int(session_hash)} FROM {RAW_TICKS.name} WHERE {raw_where} AND flag IN ({_KEPT_SQL})")


def _reflag_sql(contract: str, day: date, bounds: tuple[int, int], rule: KeepRule) -> str:
    """The UPDATE giving the stored raw rows of (contract, day) the session flags `rule` assigns: only rows
    whose flag is a session verdict (or missing, from before flags) and differs from the rule's."""
    def inside(intervals: tuple[tuple[int, int], ...]) -> str:
        return " OR ".join(f"(datetime_ns >= {int(lo)} AND datetime_ns <= {int(hi)})" for lo, hi in intervals) or "false"

    verdict = (f"CASE WHEN {inside(rule.in_force)} THEN 'ok' WHEN {inside(rule.other)} THEN 'session_uncertain' "
               "ELSE 'outside_session' END")
    return (f"UPDATE {RAW_TICKS.name} SET flag = {verdict} WHERE {day_filter(contract, day, bounds)} "
            f"AND (flag IS NULL OR (flag IN ({_SESSION_SQL}) AND flag != {verdict}))")


def _retire(client: QuestDBClient, table: Table, symbol: str, day: date, bounds: tuple[int, int], current: dict) -> None:
    """Move the day's rows that are not current (their `current` column values differ) to the retired
    symbol; an empty `current` retires every row of the day."""
    keep = " AND ".join(f"{k} = '{v}'" if isinstance(v, str) else f"{k} = {int(v)}" for k, v in current.items()) or "false"
    client.execute(f"UPDATE {table.name} SET symbol = '{RETIRED_PREFIX}{symbol}' "
                   f"WHERE {day_filter(symbol, day, bounds)} AND NOT ({keep})")


def _answers(groups: list[dict]) -> set[int | None]:
    return {g["answer_hash"] for g in groups}


def _kept(groups: list[dict]) -> list[dict]:
    return [g for g in groups if g["flag"] in KEPT_FLAGS]


def store_days(client: QuestDBClient, batch: Sequence[DayWrite], main_l5: bool = True) -> dict[tuple[str, date], DayStored]:
    """Store a batch of days: the fetched raw answers in one write and one WAL barrier (a stored day not
    fetched is re-flagged by its rule instead), then (with `main_l5`) each day's kept rows copied into the
    main series inside QuestDB, one barrier. Rows of an older answer, contract, schedule or session rule are
    then retired by one UPDATE per day and table. A day whose stored rows disagree with its answer is
    reported with an error; a QuestDB failure raises (no day of the batch is then known to be stored)."""
    done: dict[tuple[str, date], DayStored] = {}
    errors: dict[tuple[str, date], str] = {}
    fetched = [w for w in batch if w.frame is not None and w.frame.height]
    frames = []
    for w in fetched:
        frame = w.frame if "flag" in w.frame.columns else w.frame.with_columns(pl.lit(OK).alias("flag"))
        if "answer_hash" not in frame.columns:
            frame = frame.with_columns(pl.lit(answer_hash(frame["row_hash"].to_numpy()), dtype=pl.Int64).alias("answer_hash"))
        elif frame["answer_hash"].n_unique() != 1 or frame["answer_hash"][0] is None:
            raise ValueError(f"{w.row.main_contract} {w.day}: a raw frame carries exactly one answer_hash")
        frames.append(frame)
    answers = {(w.row.main_contract, w.day): int(f["answer_hash"][0]) for w, f in zip(fetched, frames)}
    expected = {(w.row.main_contract, w.day): f.height for w, f in zip(fetched, frames)}
    if frames:
        client.write(RAW_TICKS, pl.concat(frames, how="vertical_relaxed"))
    days = {w.day: w.bounds for w in batch}
    for w in batch:  # a stored day not fetched is judged again by today's session history, inside QuestDB
        if main_l5 and w.rule is not None and (w.row.main_contract, w.day) not in expected:
            client.execute(_reflag_sql(w.row.main_contract, w.day, w.bounds, w.rule))
    client.wait_for_wal(RAW_TICKS)
    contracts = {w.row.main_contract for w in batch}
    raw = _groups(client, RAW_TICKS, contracts, days, ("answer_hash", "flag"))
    # A fetched day keeps only its answer. An empty answer changes nothing stored (it may be transient:
    # the day is asked again, see domain.no_data).
    stale = [(c, d) for (c, d) in expected if _answers(raw.get((c, d), [])) - {answers[(c, d)]}]
    for contract, day in stale:
        _retire(client, RAW_TICKS, contract, day, days[day], {"answer_hash": answers[(contract, day)]})
    if stale:
        client.wait_for_wal(RAW_TICKS)
        raw = _groups(client, RAW_TICKS, contracts, days, ("answer_hash", "flag"))
    for w in batch:
        key = (w.row.main_contract, w.day)
        groups = raw.get(key, [])
        stats = _merge_stats(groups)
        if key in expected and (stats.rows_total != expected[key] or len(_answers(groups)) != 1):
            errors[(w.variety, w.day)] = (f"{RAW_TICKS.name} {w.row.main_contract} {w.day}: {stats.rows_total} rows "
                                          f"stored in {len(_answers(groups))} answers, expected {expected[key]} of one")
        elif len(_answers(groups)) > 1:
            errors[(w.variety, w.day)] = (f"{w.row.main_contract} {w.day}: raw rows of more than one provider "
                                          "answer; re-materialize underlying_ticks")
        done[(w.variety, w.day)] = DayStored(raw=stats, raw_kept=_merge_stats(_kept(groups)))
    if main_l5:
        _store_main_days([w for w in batch if (w.variety, w.day) not in errors], raw, done, errors, client)
    for key, message in errors.items():
        previous = done.get(key, DayStored(DayStats(), DayStats()))
        done[key] = DayStored(previous.raw, previous.raw_kept, previous.main_l5, error=message)
    return done


def _store_main_days(batch: list[DayWrite], raw: dict, done: dict, errors: dict, client: QuestDBClient) -> None:
    if not batch:
        return
    current: dict[tuple[str, date], dict] = {}
    for w in batch:
        symbol, contract, row = main_symbol(w.variety), w.row.main_contract, w.row
        groups = raw.get((contract, w.day), [])
        current[(symbol, w.day)] = {} if not groups else {
            "underlying_contract": contract, "segment_id": int(row.segment_id), "schedule_hash": int(row.schedule_hash),
            "answer_hash": groups[0]["answer_hash"], "session_hash": w.session_hash}
        if _kept(groups):
            client.execute(_copy_to_main_sql(symbol, row, day_filter(contract, w.day, w.bounds), w.session_hash))
    days = {w.day: w.bounds for w in batch}
    symbols = {main_symbol(w.variety) for w in batch}
    client.wait_for_wal(MAIN_L5_TICKS)
    main = _groups(client, MAIN_L5_TICKS, symbols, days, _MAIN_KEYS)

    def is_current(key: tuple[str, date], g: dict) -> bool:
        want = current[key]
        return bool(want) and all(g[k] == want[k] for k in _MAIN_KEYS)

    stale = [key for key in current if any(not is_current(key, g) for g in main.get(key, []))]
    for symbol, day in stale:
        _retire(client, MAIN_L5_TICKS, symbol, day, days[day], current[(symbol, day)])
    if stale:
        client.wait_for_wal(MAIN_L5_TICKS)
        main = _groups(client, MAIN_L5_TICKS, symbols, days, _MAIN_KEYS)
    for w in batch:
        key = (main_symbol(w.variety), w.day)
        groups = main.get(key, [])
        if any(not is_current(key, g) for g in groups):
            errors[(w.variety, w.day)] = f"main_l5 {key[0]} {w.day}: rows of another contract, answer or session rule remain"
        previous = done[(w.variety, w.day)]
        done[(w.variety, w.day)] = DayStored(previous.raw, previous.raw_kept, _merge_stats(groups))
