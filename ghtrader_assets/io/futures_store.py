"""The futures tables in QuestDB: calendar, sessions, schedule, raw and main_l5 ticks, day index, no-data days.

Re-writing one (symbol, trading day) leaves exactly the new rows and touches no other row. DEDUP UPSERT
makes re-ingesting the same ticks a no-op; a different answer is upserted, then the rows of the day that
it did not replace (another `answer_hash`, or for main_l5 another contract or schedule) are retired by
one UPDATE of their symbol, applied through the table's WAL in order with every other write. A crash at
any point leaves the old rows or the union of old and new, never fewer; the re-run finishes the retire.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import polars as pl

from ghtrader_assets.domain.calendar import TradingCalendar
from ghtrader_assets.domain.schedule import ScheduleRow
from ghtrader_assets.domain.symbols import check_symbol, main_symbol, parse_contract, parse_variety, variety_of
from ghtrader_assets.domain.sessions import Sessions, trading_time_json
from ghtrader_assets.domain.tick_cleaning import KEPT_FLAGS, OK, SESSION_FLAGS, KeepRule
from ghtrader_assets.domain.ticks import L2_TO_L5_PRICE_COLUMNS, TICK_COLUMNS, answer_hash, hash_aggregates, l5_present
from ghtrader_assets.io.questdb import QuestDBClient, QuestDBError
from ghtrader_assets.io.questdb_schema import (  # noqa: F401 - re-exported for callers
    MAIN_L5_TICKS,
    MAIN_SCHEDULE,
    NO_DATA_DAYS,
    RAW_TICKS,
    SESSIONS,
    SYMBOL_DAY_INDEX,
    TRADING_CALENDAR,
    Table,
)

KINDS = {"raw": RAW_TICKS, "main_l5": MAIN_L5_TICKS}
# Rows a rewrite replaced move to this symbol prefix (`~SHFE.cu2403`): out of every per-symbol read,
# still on disk as the record of what the provider served before.
RETIRED_PREFIX = "~"
# What a caller hands `store_days` / `replace_raw_day`: every raw column but answer_hash, which the store
# derives, and the optional `flag` (a frame without it is taken as curated ticks, every one flagged ok).
RAW_FRAME_COLUMNS = tuple(c for c in RAW_TICKS.column_names if c not in ("answer_hash", "flag"))
_KEPT_SQL = ", ".join(f"'{f}'" for f in KEPT_FLAGS)
_SESSION_SQL = ", ".join(f"'{f}'" for f in SESSION_FLAGS)
PROVISIONAL = "+provisional"  # suffix of `source` on schedule rows computed before the source could answer


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day)


def _ts_literal(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _day_filter(symbol: str, day: date, bounds: tuple[int, int]) -> str:
    """WHERE clause for one (symbol, trading day): the ts range prunes partitions (the designated
    timestamp is the tick time); only validated values reach the SQL text."""
    check_symbol(symbol)
    return (
        f"symbol = '{symbol}' AND ts >= '{_ts_literal(bounds[0])}' AND ts < '{_ts_literal(bounds[1])}'"
        f" AND trading_day = '{day.isoformat()}T00:00:00.000000Z'"
    )


# -- calendar, sessions, schedule ---------------------------------------------------------------------
def write_calendar(client: QuestDBClient, calendar: TradingCalendar) -> int:
    days = [calendar.first + timedelta(days=i) for i in range((calendar.last - calendar.first).days + 1)]
    trading = set(calendar.days)
    frame = pl.DataFrame({"ts": [_midnight(d) for d in days], "trading": [d in trading for d in days]})
    client.write(TRADING_CALENDAR, frame)
    client.wait_for_wal(TRADING_CALENDAR)
    return frame.height


def read_calendar(client: QuestDBClient) -> TradingCalendar:
    frame = client.query(f"SELECT ts, trading FROM {TRADING_CALENDAR.name} ORDER BY ts")
    if frame.height == 0:
        raise QuestDBError("the trading calendar is empty: materialize trading_days first")
    return TradingCalendar.from_flags((ts.date(), flag) for ts, flag in frame.iter_rows())


def write_sessions(client: QuestDBClient, variety: str, trading_time: dict, captured: date, l5_depth: bool) -> None:
    sessions = Sessions.parse(trading_time)
    day_windows, night_windows = sessions.normalized()
    frame = pl.DataFrame(
        {
            "variety": [variety],
            "ts": [_midnight(captured)],
            "trading_time_raw": [trading_time_json(trading_time)],
            "day_windows": [day_windows],
            "night_windows": [night_windows],
            "has_night": [sessions.has_night],
            "l5_depth": [l5_depth],
        }
    )
    client.write(SESSIONS, frame)


def read_session_captures(client: QuestDBClient, variety: str) -> list[tuple[date, dict]]:
    """Every captured trading_time of a variety: (capture date, trading_time), oldest first."""
    import json

    parse_variety(variety)
    client.wait_for_wal(SESSIONS)
    frame = client.query(f"SELECT ts, trading_time_raw FROM {SESSIONS.name} WHERE variety = %s ORDER BY ts", (variety,))
    return [(ts.date(), json.loads(raw)) for ts, raw in frame.iter_rows()]


def write_schedule(client: QuestDBClient, variety: str, rows: Sequence[ScheduleRow], source: str) -> int:
    exchange, _ = parse_variety(variety)
    frame = pl.DataFrame(
        {
            "exchange": [exchange] * len(rows),
            "variety": [variety] * len(rows),
            "ts": [_midnight(r.trading_day) for r in rows],
            "main_contract": [r.main_contract for r in rows],
            "segment_id": [r.segment_id for r in rows],
            "schedule_hash": [r.schedule_hash for r in rows],
            # A provisional row is marked in `source` (no extra column: older tables read unchanged).
            "source": [source + PROVISIONAL if r.provisional else source for r in rows],
        },
        schema_overrides={"segment_id": pl.Int32},
    )
    client.write(MAIN_SCHEDULE, frame)
    client.wait_for_wal(MAIN_SCHEDULE)
    return frame.height


def read_schedule(client: QuestDBClient, variety: str) -> list[ScheduleRow]:
    parse_variety(variety)
    frame = client.query(
        f"SELECT ts, main_contract, segment_id, schedule_hash, source FROM {MAIN_SCHEDULE.name} WHERE variety = %s ORDER BY ts",
        (variety,),
    )
    return [ScheduleRow(ts.date(), c, int(s), int(h), bool(src) and src.endswith(PROVISIONAL))
            for ts, c, s, h, src in frame.iter_rows()]


# -- ticks ----------------------------------------------------------------------------------------------
def day_stats(client: QuestDBClient, table: Table, symbol: str, day: date, bounds: tuple[int, int]) -> dict:
    """Rows, first/last tick, L5 presence and row-hash aggregates of what is stored for one day."""
    cols = ", ".join(["datetime_ns", "row_hash", *[c for c in TICK_COLUMNS if c.startswith(("bid_price", "ask_price"))]])
    frame = client.export(f"SELECT {cols} FROM {table.name} WHERE {_day_filter(symbol, day, bounds)}")
    return frame_stats(frame)


def frame_stats(frame: pl.DataFrame) -> dict:
    rows = frame.height
    return {
        "rows_total": rows,
        "first_datetime_ns": int(frame["datetime_ns"].min()) if rows else 0,
        "last_datetime_ns": int(frame["datetime_ns"].max()) if rows else 0,
        "l5_present": l5_present(frame) if rows else False,
        **hash_aggregates(frame["row_hash"] if rows else pl.Series([], dtype=pl.Int64)),
    }


def replace_raw_day(client: QuestDBClient, contract: str, day: date, bounds: tuple[int, int], frame: pl.DataFrame) -> int:
    """Store `frame` (the raw tick columns; `answer_hash` is added when absent) as the raw ticks of
    (contract, day): `store_days` for one day, raw only. On return the rows are applied (visible to
    reads) and are the only current ones of the day; an empty frame changes nothing stored. Raises
    QuestDBError when the stored rows disagree with the frame. Returns the rows stored."""
    parse_contract(contract)
    # Raw only: the schedule row just names the contract (segment and hash are read by main_l5 alone).
    write = DayWrite(variety_of(contract), day, bounds, ScheduleRow(day, contract, -1, 0), frame)
    return _stored_one(store_days(client, [write], main_l5=False), write).raw["rows_total"]


def materialize_main_l5(client: QuestDBClient, variety: str, day: date, bounds: tuple[int, int], row: ScheduleRow) -> int:
    """Copy the scheduled contract's stored raw ticks of `day` into main_l5 inside QuestDB (no round trip
    through Python), tagged with the contract, segment and schedule hash; rows of another contract,
    schedule or raw answer are then retired: `store_days` for one day, not fetched. Returns the rows stored."""
    write = DayWrite(variety, day, bounds, row)
    return _stored_one(store_days(client, [write]), write).main_l5["rows_total"]


def _stored_one(done: dict, write: "DayWrite") -> "DayStored":
    stored = done[(write.variety, write.day)]
    if stored.error:
        raise QuestDBError(stored.error)
    return stored


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
    return (f"UPDATE {RAW_TICKS.name} SET flag = {verdict} WHERE {_day_filter(contract, day, bounds)} "
            f"AND (flag IS NULL OR (flag IN ({_SESSION_SQL}) AND flag != {verdict}))")


def retired_rows(client: QuestDBClient, table: Table, symbol: str) -> int:
    """Rows of `symbol` that a rewrite retired (kept as the record of what was served before)."""
    check_symbol(symbol)
    client.wait_for_wal(table)
    return int(client.scalar(f"SELECT count() FROM {table.name} WHERE symbol = '{RETIRED_PREFIX}{symbol}'"))


def _partition_span(bounds: tuple[int, int]) -> tuple[str, str]:
    lo = datetime.fromtimestamp(bounds[0] / 1e9, timezone.utc).date()
    hi = datetime.fromtimestamp(bounds[1] / 1e9, timezone.utc).date() + timedelta(days=1)
    return lo.isoformat(), hi.isoformat()


def _finish_restage(client: QuestDBClient, table: Table, stage: str, lo: str, hi: str) -> None:
    client.execute(f"ALTER TABLE {table.name} DROP PARTITION WHERE ts >= '{lo}' AND ts < '{hi}'")
    client.execute(f"INSERT INTO {table.name} SELECT * FROM {stage}")
    client.wait_for_wal(table)
    client.execute(f"DROP TABLE {stage}")


def recover_restages(client: QuestDBClient) -> list[str]:
    """Finish a partition rebuild that a release before the retire-by-UPDATE mechanism left behind when
    it crashed: its staging table holds every row to keep. No current code creates staging tables."""
    done = []
    names = client.query("SELECT table_name FROM tables()")["table_name"].to_list()
    for name in names:
        m = re.match(r"^(\w+)__restage_(\d{8})_(\d{8})$", name)
        if not m:
            continue
        table = next((t for t in KINDS.values() if t.name == m.group(1)), None)
        if table is None:
            continue
        lo, hi = (f"{s[:4]}-{s[4:6]}-{s[6:]}" for s in m.group(2, 3))
        _finish_restage(client, table, name, lo, hi)
        done.append(name)
    return done


# -- day index and no-data days ------------------------------------------------------------------------
_INDEX_STATS = ("rows_total", "first_datetime_ns", "last_datetime_ns", "l5_present",
                "row_hash_min", "row_hash_max", "row_hash_sum", "row_hash_sum_abs")


def write_index(client: QuestDBClient, symbol: str, day: date, kind: str, stats: dict, underlying: str | None) -> None:
    check_symbol(symbol)
    frame = pl.DataFrame(
        {
            "symbol": [symbol],
            "ts": [_midnight(day)],
            "ticks_kind": [kind],
            **{k: [stats[k]] for k in _INDEX_STATS},
            "underlying_contract": [underlying],
            "updated_at": [datetime.now(timezone.utc).replace(tzinfo=None)],
        },
        schema_overrides={"underlying_contract": pl.String},
    )
    client.write(SYMBOL_DAY_INDEX, frame)


def write_index_days(client: QuestDBClient, days: Sequence[tuple[DayWrite, dict, dict]]) -> int:
    """The index rows of a batch in one write: per (day, raw stats, main_l5 stats), the raw contract's
    row and the main series' row. Returns the rows sent."""
    rows = []
    for w, raw, main in days:
        rows.append((w.row.main_contract, w.day, "raw", raw, None))
        rows.append((main_symbol(w.variety), w.day, "main_l5", main, w.row.main_contract))
    if not rows:
        return 0
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    frame = pl.DataFrame(
        {
            "symbol": [check_symbol(r[0]) for r in rows],
            "ts": [_midnight(r[1]) for r in rows],
            "ticks_kind": [r[2] for r in rows],
            **{k: [r[3][k] for r in rows] for k in _INDEX_STATS},
            "underlying_contract": [r[4] for r in rows],
            "updated_at": [now] * len(rows),
        },
        schema_overrides={"underlying_contract": pl.String},
    )
    return client.write(SYMBOL_DAY_INDEX, frame)


def read_index(client: QuestDBClient, symbol: str, start: date, end: date, kind: str) -> pl.DataFrame:
    """The day index rows of `symbol` and kind over [start, end], every committed write included."""
    check_symbol(symbol)
    client.wait_for_wal(SYMBOL_DAY_INDEX)
    return client.query(
        f"SELECT * FROM {SYMBOL_DAY_INDEX.name} WHERE symbol = %s AND ticks_kind = %s AND ts >= %s AND ts <= %s ORDER BY ts",
        (symbol, kind, _midnight(start), _midnight(end)),
    )


def write_no_data(
    client: QuestDBClient, symbol: str, day: date, kind: str, reason: str, resolved: bool,
    attempts: int = 1, next_retry: datetime | None = None, status: str | None = None,
) -> None:
    """Record (or, with resolved=True, close) a provider-empty day. Upserted on (ts, symbol, kind).
    `status`: retrying (asked again at `next_retry`, naive UTC), permanent, or resolved."""
    check_symbol(symbol)
    status = status or ("resolved" if resolved else "retrying")
    frame = pl.DataFrame(
        {
            "symbol": [symbol],
            "ts": [_midnight(day)],
            "ticks_kind": [kind],
            "reason": [reason],
            "resolved": [resolved],
            "updated_at": [datetime.now(timezone.utc).replace(tzinfo=None)],
            "attempts": [attempts],
            "next_retry": [next_retry.astimezone(timezone.utc).replace(tzinfo=None) if next_retry else None],
            "status": [status],
        },
        schema_overrides={"attempts": pl.Int32, "next_retry": pl.Datetime("us")},
    )
    client.write(NO_DATA_DAYS, frame)


def open_no_data_days(client: QuestDBClient, symbol: str | None = None) -> set[tuple[str, date]]:
    """(symbol, trading day) pairs with an unresolved no-data record, for one symbol or all."""
    client.wait_for_wal(NO_DATA_DAYS)
    where, params = "resolved = false", ()
    if symbol is not None:
        where, params = "resolved = false AND symbol = %s", (check_symbol(symbol),)
    frame = client.query(f"SELECT symbol, ts FROM {NO_DATA_DAYS.name} WHERE {where}", params)
    return {(s, ts.date()) for s, ts in frame.iter_rows()}


def no_data_records(client: QuestDBClient, kind: str = "raw") -> list[dict]:
    """Unresolved no-data records of one kind: symbol, day, reason, attempts, next_retry (aware UTC), status."""
    client.wait_for_wal(NO_DATA_DAYS)
    frame = client.query(
        f"SELECT symbol, ts, reason, attempts, next_retry, status FROM {NO_DATA_DAYS.name} "
        "WHERE resolved = false AND ticks_kind = %s ORDER BY ts", (kind,))
    return [{"symbol": s, "day": ts.date(), "reason": r, "attempts": int(a or 0),
             "next_retry": n.replace(tzinfo=timezone.utc) if n is not None else None, "status": st}
            for s, ts, r, a, n, st in frame.iter_rows()]


def no_data_attempts(client: QuestDBClient, symbol: str, day: date, kind: str) -> int:
    """Empty answers recorded so far for an unresolved (symbol, day, kind); 0 when none."""
    check_symbol(symbol)
    client.wait_for_wal(NO_DATA_DAYS)
    value = client.scalar(
        f"SELECT attempts FROM {NO_DATA_DAYS.name} WHERE symbol = %s AND ts = %s AND ticks_kind = %s AND resolved = false",
        (symbol, _midnight(day), kind))
    return int(value or 0)


def read_ticks(client: QuestDBClient, symbol: str, days: Sequence[date], calendar: TradingCalendar, kind: str) -> pl.DataFrame:
    """Stored ticks of `symbol` over the given trading days, in time order, as one columnar export."""
    table = KINDS[kind]
    check_symbol(symbol)
    if not days:
        return client.export(f"SELECT * FROM {table.name} WHERE symbol = '{symbol}' LIMIT 0")
    lo = calendar.bounds_ns(min(days))[0]
    hi = calendar.bounds_ns(max(days))[1]
    wanted = ", ".join(f"'{d.isoformat()}T00:00:00.000000Z'" for d in sorted(days))
    return client.export(
        f"SELECT * FROM {table.name} WHERE symbol = '{symbol}' AND ts >= '{_ts_literal(lo)}' "
        f"AND ts < '{_ts_literal(hi)}' AND trading_day IN ({wanted}) ORDER BY ts, seq"
    )


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


@dataclass(frozen=True)
class DayStored:
    """What one day of a batch left in QuestDB, as QuestDB counts it (see `stats_by_day`): the raw day (the
    whole answer), its kept rows (what main_l5 must equal) and the main_l5 day."""

    raw: dict
    main_l5: dict | None = None
    error: str = ""  # set when this day failed; the other days of the batch are unaffected
    raw_kept: dict | None = None


_STATS_SQL = (
    "count() n, min(datetime_ns) first_ns, max(datetime_ns) last_ns, min(row_hash) hmin, max(row_hash) hmax, "
    "sum(row_hash) hsum, sum(abs(row_hash)) habs, sum(CASE WHEN "
    + " OR ".join(f"{c} > 0" for c in L2_TO_L5_PRICE_COLUMNS) + " THEN 1 ELSE 0 END) l5"
)
_EMPTY_STATS = {"rows_total": 0, "first_datetime_ns": 0, "last_datetime_ns": 0, "l5_present": False,
                "row_hash_min": 0, "row_hash_max": 0, "row_hash_sum": 0, "row_hash_sum_abs": 0}


def _wrap(value: int) -> int:
    """An int64 sum as numpy's wrapping sum gives it (QuestDB's long sum may carry past 64 bits)."""
    return (int(value) + 2**63) % 2**64 - 2**63


def _merge_stats(groups: list[dict]) -> dict:
    if not groups:
        return dict(_EMPTY_STATS)
    return {
        "rows_total": sum(int(g["n"]) for g in groups),
        "first_datetime_ns": min(int(g["first_ns"]) for g in groups),
        "last_datetime_ns": max(int(g["last_ns"]) for g in groups),
        "l5_present": any(int(g["l5"] or 0) > 0 for g in groups),
        "row_hash_min": min(int(g["hmin"]) for g in groups),
        "row_hash_max": max(int(g["hmax"]) for g in groups),
        "row_hash_sum": _wrap(sum(int(g["hsum"]) for g in groups)),
        "row_hash_sum_abs": _wrap(sum(int(g["habs"]) for g in groups)),
    }


def _day_literal(day: date) -> str:
    return f"'{day.isoformat()}T00:00:00.000000Z'"


def _groups(client: QuestDBClient, table: Table, symbols: set[str], days: dict[date, tuple[int, int]],
            keys: tuple[str, ...]) -> dict[tuple[str, date], list[dict]]:
    """Per (symbol, trading day) of `days`: the stats of each group of `keys` values, one query."""
    for s in symbols:
        check_symbol(s)
    lo = min(b[0] for b in days.values())
    hi = max(b[1] for b in days.values())
    names = ", ".join(f"'{s}'" for s in sorted(symbols))
    group = ", ".join(("symbol", "trading_day", *keys))
    frame = client.query(
        f"SELECT {group}, {_STATS_SQL} FROM {table.name} WHERE symbol IN ({names}) AND ts >= '{_ts_literal(lo)}' "
        f"AND ts < '{_ts_literal(hi)}' AND trading_day IN ({', '.join(_day_literal(d) for d in sorted(days))}) "
        f"GROUP BY {group}"
    )
    out: dict[tuple[str, date], list[dict]] = {}
    for g in frame.iter_rows(named=True):
        out.setdefault((g["symbol"], g["trading_day"].date()), []).append(g)
    return out


def stats_by_day(client: QuestDBClient, kind: str, symbol: str, days: dict[date, tuple[int, int]]) -> dict[date, dict]:
    """Rows, first/last tick, L5 presence and row-hash aggregates per stored trading day of `symbol`,
    computed inside QuestDB from the stored rows; one query for the whole range. `days`: day -> bounds."""
    if not days:
        return {}
    table = KINDS[kind]
    client.wait_for_wal(table)
    found = _groups(client, table, {symbol}, days, ())
    return {d: _merge_stats(found.get((symbol, d), [])) for d in days}


def _answers(groups: list[dict]) -> set[int | None]:
    return {g["answer_hash"] for g in groups}


def _kept(groups: list[dict]) -> list[dict]:
    return [g for g in groups if g["flag"] in KEPT_FLAGS]


def store_days(client: QuestDBClient, batch: Sequence[DayWrite], main_l5: bool = True) -> dict[tuple[str, date], DayStored]:
    """Store a batch of days: the fetched raw answers in one write and one WAL barrier (a stored day not
    fetched is re-flagged by its rule instead), then (with `main_l5`) each day's kept rows copied into the
    main series inside QuestDB, one barrier. Rows of an older answer, contract, schedule or session rule are
    then retired by one UPDATE per day and table. Every figure returned is counted by QuestDB from the
    stored rows. A day whose stored rows disagree with its answer is reported with an error; a QuestDB
    failure raises (no day of the batch is then known to be stored)."""
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
    reflag = [w for w in batch if main_l5 and w.rule is not None and (w.row.main_contract, w.day) not in expected]
    for w in reflag:  # a stored day judged again by today's session history, inside QuestDB
        client.execute(_reflag_sql(w.row.main_contract, w.day, w.bounds, w.rule))
    client.wait_for_wal(RAW_TICKS)
    contracts = {w.row.main_contract for w in batch}
    raw = _groups(client, RAW_TICKS, contracts, days, ("answer_hash", "flag"))
    # A fetched day keeps only its answer. An empty answer changes nothing stored (it may be transient:
    # the day is asked again, see domain.no_data).
    stale = [(c, d) for (c, d) in expected if _answers(raw.get((c, d), [])) - {answers[(c, d)]}]
    if stale:
        for contract, day in stale:
            client.execute(f"UPDATE {RAW_TICKS.name} SET symbol = '{RETIRED_PREFIX}{contract}' "
                           f"WHERE {_day_filter(contract, day, days[day])} AND NOT (answer_hash = {answers[(contract, day)]})")
        client.wait_for_wal(RAW_TICKS)
        raw = _groups(client, RAW_TICKS, contracts, days, ("answer_hash", "flag"))
    for w in batch:
        key = (w.row.main_contract, w.day)
        groups = raw.get(key, [])
        stats = _merge_stats(groups)
        if key in expected and (stats["rows_total"] != expected[key] or len(_answers(groups)) != 1):
            errors[(w.variety, w.day)] = (f"{RAW_TICKS.name} {w.row.main_contract} {w.day}: {stats['rows_total']} rows "
                                          f"stored in {len(_answers(groups))} answers, expected {expected[key]} of one")
        elif len(_answers(groups)) > 1:
            errors[(w.variety, w.day)] = (f"{w.row.main_contract} {w.day}: raw rows of more than one provider "
                                          "answer; re-materialize underlying_ticks")
        done[(w.variety, w.day)] = DayStored(raw=stats, raw_kept=_merge_stats(_kept(groups)))
    if main_l5:
        _store_main_days([w for w in batch if (w.variety, w.day) not in errors], raw, done, errors, client)
    for key, message in errors.items():
        done[key] = DayStored(raw=done[key].raw if key in done else dict(_EMPTY_STATS), error=message,
                              raw_kept=done[key].raw_kept if key in done else None)
    return done


_MAIN_KEYS = ("underlying_contract", "segment_id", "schedule_hash", "answer_hash", "session_hash")


def _store_main_days(batch: list[DayWrite], raw: dict, done: dict, errors: dict, client: QuestDBClient) -> None:
    if not batch:
        return
    current: dict[tuple[str, date], dict] = {}
    for w in batch:
        symbol, contract, row = main_symbol(w.variety), w.row.main_contract, w.row
        groups = raw.get((contract, w.day), [])
        answer = groups[0]["answer_hash"] if groups else None
        session_hash = w.rule.session_hash if w.rule is not None else 0
        current[(symbol, w.day)] = {"underlying_contract": contract, "segment_id": int(row.segment_id),
                                    "schedule_hash": int(row.schedule_hash), "answer_hash": answer,
                                    "session_hash": session_hash}
        if _kept(groups):
            client.execute(_copy_to_main_sql(symbol, row, _day_filter(contract, w.day, w.bounds), session_hash))
    days = {w.day: w.bounds for w in batch}
    symbols = {main_symbol(w.variety) for w in batch}
    client.wait_for_wal(MAIN_L5_TICKS)
    main = _groups(client, MAIN_L5_TICKS, symbols, days, _MAIN_KEYS)

    def is_current(key: tuple[str, date], g: dict) -> bool:
        want = current[key]
        return want["answer_hash"] is not None and all(g[k] == want[k] for k in _MAIN_KEYS)

    stale = [key for key in current if any(not is_current(key, g) for g in main.get(key, []))]
    if stale:
        for symbol, day in stale:
            want = current[(symbol, day)]
            keep = ("false" if want["answer_hash"] is None else
                    " AND ".join(f"{k} = '{v}'" if isinstance(v, str) else f"{k} = {int(v)}" for k, v in want.items()))
            client.execute(f"UPDATE {MAIN_L5_TICKS.name} SET symbol = '{RETIRED_PREFIX}{symbol}' "
                           f"WHERE {_day_filter(symbol, day, days[day])} AND NOT ({keep})")
        client.wait_for_wal(MAIN_L5_TICKS)
        main = _groups(client, MAIN_L5_TICKS, symbols, days, _MAIN_KEYS)
    for w in batch:
        key = (main_symbol(w.variety), w.day)
        groups = main.get(key, [])
        stats = _merge_stats(groups)
        if any(not is_current(key, g) for g in groups):
            errors[(w.variety, w.day)] = f"main_l5 {key[0]} {w.day}: rows of another contract, answer or session rule remain"
        previous = done[(w.variety, w.day)]
        done[(w.variety, w.day)] = DayStored(raw=previous.raw, main_l5=stats, raw_kept=previous.raw_kept)
