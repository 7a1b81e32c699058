"""The ledger tables in QuestDB: calendar, sessions, main schedule, variety windows, the day index, no-data
days, verifications and manifests. Everything needed to say whether a (variety, trading day) is complete
lives here; reads return the domain's typed records (domain.ledger)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import polars as pl

from ghtrader_assets.domain.calendar import TradingCalendar
from ghtrader_assets.domain.ledger import STAT_FIELDS, DayStats, IndexEntry, NoDataRecord, Verification
from ghtrader_assets.domain.roll_factors import OPEN, PREV_CLOSE, RollFactor, Switch
from ghtrader_assets.domain.schedule import ScheduleRow
from ghtrader_assets.domain.sessions import Sessions, trading_time_json
from ghtrader_assets.domain.symbols import check_symbol, parse_variety
from ghtrader_assets.io.questdb import QuestDBClient, QuestDBError, midnight
from ghtrader_assets.io.questdb_schema import (
    DAY_VERIFICATIONS,
    MAIN_SCHEDULE,
    MANIFESTS,
    NO_DATA_DAYS,
    ROLL_FACTORS,
    SESSIONS,
    SYMBOL_DAY_INDEX,
    TRADING_CALENDAR,
    VARIETY_WINDOWS,
)

RETIRED_PREFIX = "~"  # a factor row of a switch the schedule no longer holds moves to variety `~<variety>`
PROVISIONAL = "+provisional"  # suffix of `source` on schedule rows computed before the source could answer


def _utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc).replace(tzinfo=None) if moment.tzinfo else moment


def _aware(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=timezone.utc) if moment is not None else None


# -- calendar and sessions -------------------------------------------------------------------------------
def write_calendar(client: QuestDBClient, calendar: TradingCalendar) -> int:
    days = [calendar.first + timedelta(days=i) for i in range((calendar.last - calendar.first).days + 1)]
    trading = set(calendar.days)
    frame = pl.DataFrame({"ts": [midnight(d) for d in days], "trading": [d in trading for d in days]})
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
    client.write(SESSIONS, pl.DataFrame({
        "variety": [variety], "ts": [midnight(captured)], "trading_time_raw": [trading_time_json(trading_time)],
        "day_windows": [day_windows], "night_windows": [night_windows], "has_night": [sessions.has_night],
        "l5_depth": [l5_depth]}))


def read_session_captures(client: QuestDBClient, variety: str) -> list[tuple[date, dict]]:
    """Every captured trading_time of a variety: (capture date, trading_time), oldest first."""
    parse_variety(variety)
    client.wait_for_wal(SESSIONS)
    frame = client.query(f"SELECT ts, trading_time_raw FROM {SESSIONS.name} WHERE variety = %s ORDER BY ts", (variety,))
    return [(ts.date(), json.loads(raw)) for ts, raw in frame.iter_rows()]


# -- schedule and windows ----------------------------------------------------------------------------------
def write_schedule(client: QuestDBClient, variety: str, rows: Sequence[ScheduleRow], source: str) -> int:
    exchange, _ = parse_variety(variety)
    frame = pl.DataFrame(
        {
            "exchange": [exchange] * len(rows),
            "variety": [variety] * len(rows),
            "ts": [midnight(r.trading_day) for r in rows],
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


@dataclass(frozen=True)
class VarietyWindow:
    """A variety's window as the last main_schedule run decided it."""

    variety: str
    first_day: date
    window_source: str  # vendor (its first listed day) | user (the start the user gave)
    schedule_source: str
    refreshed_at: datetime  # aware UTC: when main_schedule ran


def write_window(client: QuestDBClient, window: VarietyWindow) -> None:
    client.write(VARIETY_WINDOWS, pl.DataFrame({
        "variety": [window.variety], "ts": [_naive_utc(window.refreshed_at)], "first_day": [midnight(window.first_day)],
        "window_source": [window.window_source], "schedule_source": [window.schedule_source]}))
    client.wait_for_wal(VARIETY_WINDOWS)


def read_windows(client: QuestDBClient) -> dict[str, VarietyWindow]:
    """The latest window of every variety that has one."""
    client.wait_for_wal(VARIETY_WINDOWS)
    frame = client.query(f"SELECT variety, ts, first_day, window_source, schedule_source FROM {VARIETY_WINDOWS.name} ORDER BY ts")
    return {v: VarietyWindow(v, first.date(), ws, ss, _aware(ts)) for v, ts, first, ws, ss in frame.iter_rows()}


# -- day index ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class IndexWrite:
    """One index row to write: the stored stats of (symbol, day, kind) and, for main_l5, what it was built for."""

    symbol: str
    day: date
    kind: str  # raw | main_l5
    stats: DayStats
    contract: str | None = None
    segment_id: int | None = None
    schedule_hash: int | None = None
    session_hash: int | None = None
    final: bool | None = None


def write_index(client: QuestDBClient, rows: Sequence[IndexWrite]) -> int:
    """Index rows in one write (upserted on (day, symbol, kind)). Returns the rows sent."""
    if not rows:
        return 0
    now = _utc_now()
    frame = pl.DataFrame(
        {
            "symbol": [check_symbol(r.symbol) for r in rows],
            "ts": [midnight(r.day) for r in rows],
            "ticks_kind": [r.kind for r in rows],
            **{k: [getattr(r.stats, k) for r in rows] for k in STAT_FIELDS},
            "underlying_contract": [r.contract for r in rows],
            "updated_at": [now] * len(rows),
            "segment_id": [r.segment_id for r in rows],
            "schedule_hash": [r.schedule_hash for r in rows],
            "session_hash": [r.session_hash for r in rows],
            "final": [r.final for r in rows],
        },
        schema_overrides={"underlying_contract": pl.String, "segment_id": pl.Int32, "schedule_hash": pl.Int64,
                          "session_hash": pl.Int64, "final": pl.Boolean},
    )
    return client.write(SYMBOL_DAY_INDEX, frame)


def read_index(client: QuestDBClient, symbol: str, start: date, end: date, kind: str) -> pl.DataFrame:
    """The day index rows of `symbol` and kind over [start, end], every committed write included."""
    check_symbol(symbol)
    client.wait_for_wal(SYMBOL_DAY_INDEX)
    return client.query(
        f"SELECT * FROM {SYMBOL_DAY_INDEX.name} WHERE symbol = %s AND ticks_kind = %s AND ts >= %s AND ts <= %s ORDER BY ts",
        (symbol, kind, midnight(start), midnight(end)),
    )


def index_entries(client: QuestDBClient, symbol: str, kind: str = "main_l5") -> dict[date, IndexEntry]:
    """Every index row of `symbol` and kind, as typed entries by trading day."""
    check_symbol(symbol)
    client.wait_for_wal(SYMBOL_DAY_INDEX)
    frame = client.query(
        f"SELECT ts, {', '.join(STAT_FIELDS)}, underlying_contract, segment_id, schedule_hash, session_hash, final, "
        f"updated_at FROM {SYMBOL_DAY_INDEX.name} WHERE symbol = %s AND ticks_kind = %s", (symbol, kind))
    out = {}
    for row in frame.iter_rows(named=True):
        day = row["ts"].date()
        out[day] = IndexEntry(day, DayStats.of(row), row["underlying_contract"], row["segment_id"], row["schedule_hash"],
                              row["session_hash"], row["final"], _aware(row["updated_at"]))
    return out


# -- no-data days -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NoDataWrite:
    """A provider-empty (symbol, day, kind) to record, or with resolved=True to close."""

    symbol: str
    day: date
    kind: str
    reason: str
    resolved: bool
    attempts: int = 1
    next_retry: datetime | None = None
    status: str | None = None  # retrying | permanent | resolved (default from `resolved`)


def write_no_data(client: QuestDBClient, records: Sequence[NoDataWrite]) -> int:
    """No-data records in one write, upserted on (day, symbol, kind)."""
    if not records:
        return 0
    now = _utc_now()
    frame = pl.DataFrame(
        {
            "symbol": [check_symbol(r.symbol) for r in records],
            "ts": [midnight(r.day) for r in records],
            "ticks_kind": [r.kind for r in records],
            "reason": [r.reason for r in records],
            "resolved": [r.resolved for r in records],
            "updated_at": [now] * len(records),
            "attempts": [r.attempts for r in records],
            "next_retry": [_naive_utc(r.next_retry) if r.next_retry else None for r in records],
            "status": [r.status or ("resolved" if r.resolved else "retrying") for r in records],
        },
        schema_overrides={"attempts": pl.Int32, "next_retry": pl.Datetime("us")},
    )
    return client.write(NO_DATA_DAYS, frame)


def open_no_data_days(client: QuestDBClient, symbol: str | None = None) -> set[tuple[str, date]]:
    """(symbol, trading day) pairs with an unresolved no-data record, for one symbol or all."""
    client.wait_for_wal(NO_DATA_DAYS)
    where, params = "resolved = false", ()
    if symbol is not None:
        where, params = "resolved = false AND symbol = %s", (check_symbol(symbol),)
    frame = client.query(f"SELECT symbol, ts FROM {NO_DATA_DAYS.name} WHERE {where}", params)
    return {(s, ts.date()) for s, ts in frame.iter_rows()}


def no_data_records(client: QuestDBClient, kind: str = "raw") -> list[NoDataRecord]:
    """Unresolved no-data records of one kind, oldest day first."""
    client.wait_for_wal(NO_DATA_DAYS)
    frame = client.query(
        f"SELECT symbol, ts, reason, attempts, next_retry, status FROM {NO_DATA_DAYS.name} "
        "WHERE resolved = false AND ticks_kind = %s ORDER BY ts", (kind,))
    return [NoDataRecord(s, ts.date(), st or "retrying", int(a or 0), _aware(n), r or "")
            for s, ts, r, a, n, st in frame.iter_rows()]


def no_data_attempts(client: QuestDBClient, symbol: str, day: date, kind: str) -> int:
    """Empty answers recorded so far for an unresolved (symbol, day, kind); 0 when none."""
    check_symbol(symbol)
    client.wait_for_wal(NO_DATA_DAYS)
    value = client.scalar(
        f"SELECT attempts FROM {NO_DATA_DAYS.name} WHERE symbol = %s AND ts = %s AND ticks_kind = %s AND resolved = false",
        (symbol, midnight(day), kind))
    return int(value or 0)


# -- verifications -------------------------------------------------------------------------------------------
def write_verifications(client: QuestDBClient, symbol: str, kind: str, results: Sequence[Verification]) -> int:
    """The latest verification of each day (upserted on (day, symbol, kind))."""
    if not results:
        return 0
    check_symbol(symbol)
    frame = pl.DataFrame({
        "symbol": [symbol] * len(results), "ts": [midnight(v.day) for v in results], "ticks_kind": [kind] * len(results),
        "verified_at": [_naive_utc(v.at) for v in results], "ok": [v.ok for v in results],
        "detail": [v.detail for v in results]})
    return client.write(DAY_VERIFICATIONS, frame)


def read_verifications(client: QuestDBClient, symbol: str, kind: str = "main_l5") -> dict[date, Verification]:
    check_symbol(symbol)
    client.wait_for_wal(DAY_VERIFICATIONS)
    frame = client.query(f"SELECT ts, verified_at, ok, detail FROM {DAY_VERIFICATIONS.name} "
                         "WHERE symbol = %s AND ticks_kind = %s", (symbol, kind))
    return {ts.date(): Verification(ts.date(), _aware(at), bool(ok), detail or "") for ts, at, ok, detail in frame.iter_rows()}


# -- manifests ------------------------------------------------------------------------------------------------
def write_manifest_row(client: QuestDBClient, manifest: dict, path: str) -> None:
    """The QuestDB row of a manifest (the file is the full record; see domain.manifest)."""
    client.write(MANIFESTS, pl.DataFrame({
        "variety": [manifest["variety"]], "ts": [_naive_utc(datetime.fromisoformat(manifest["created_at"]))],
        "first_day": [midnight(date.fromisoformat(manifest["first_day"]))],
        "through": [midnight(date.fromisoformat(manifest["through"]))],
        "days_complete": [manifest["days_complete"]], "no_data_days": [len(manifest["no_data_days"])],
        "rows_total": [manifest["rows_total"]], "index_digest": [manifest["index_digest"]],
        "schedule_digest": [manifest["schedule_digest"]], "version": [manifest["version"]], "path": [path]},
        schema_overrides={"days_complete": pl.Int32, "no_data_days": pl.Int32}))
    client.wait_for_wal(MANIFESTS)


# -- roll factors -----------------------------------------------------------------------------------------
# Column prefixes of each reference in ROLL_FACTORS ('' for the default, prev_close).
_REFERENCE_COLUMNS = {PREV_CLOSE: ("", "from_close", "to_close"), OPEN: ("open_", "from_open", "to_open")}


def write_roll_factors(client: QuestDBClient, variety: str, factors: Sequence[tuple[RollFactor, RollFactor]],
                       source: str) -> int:
    """One row per switch (its prev_close and open factors, same switch), upserted on (switch day, variety)."""
    parse_variety(variety)
    if not factors:
        return 0
    now = _utc_now()
    columns: dict[str, list] = {"variety": [], "ts": [], "from_contract": [], "to_contract": [], "segment_id": [],
                                "schedule_hash": [], "from_segment_id": [], "from_schedule_hash": [], "close_day": []}
    for reference, (prefix, price_from, price_to) in _REFERENCE_COLUMNS.items():
        for name in (price_from, price_to, *(prefix + c for c in ("spread", "ratio", "pre_spread", "pre_ratio",
                                                                   "post_spread", "post_ratio"))):
            columns[name] = []
    for close, opened in factors:
        sw = close.switch
        if opened.switch != sw or (close.reference, opened.reference) != (PREV_CLOSE, OPEN):
            raise ValueError(f"{variety} {sw.day}: a row pairs the prev_close and open factors of one switch")
        for name, value in (("variety", variety), ("ts", midnight(sw.day)), ("from_contract", sw.from_contract),
                            ("to_contract", sw.to_contract), ("segment_id", sw.segment_id),
                            ("schedule_hash", sw.schedule_hash), ("from_segment_id", sw.from_segment_id),
                            ("from_schedule_hash", sw.from_schedule_hash), ("close_day", midnight(close.reference_day))):
            columns[name].append(value)
        for f in (close, opened):
            prefix, price_from, price_to = _REFERENCE_COLUMNS[f.reference]
            for name, value in ((price_from, f.price_from), (price_to, f.price_to), (prefix + "spread", f.spread),
                                (prefix + "ratio", f.ratio), (prefix + "pre_spread", f.pre_spread),
                                (prefix + "pre_ratio", f.pre_ratio), (prefix + "post_spread", f.post_spread),
                                (prefix + "post_ratio", f.post_ratio)):
                columns[name].append(float(value))
    n = len(factors)
    frame = pl.DataFrame({**columns, "source": [source] * n, "updated_at": [now] * n},
                         schema_overrides={"segment_id": pl.Int32, "from_segment_id": pl.Int32})
    client.write(ROLL_FACTORS, frame)
    client.wait_for_wal(ROLL_FACTORS)
    return n


def read_roll_factors(client: QuestDBClient, variety: str) -> dict[str, list[RollFactor]]:
    """The variety's current factors (retired rows left out), per reference, in switch order."""
    parse_variety(variety)
    client.wait_for_wal(ROLL_FACTORS)
    frame = client.query(f"SELECT * FROM {ROLL_FACTORS.name} WHERE variety = %s ORDER BY ts", (variety,))
    out: dict[str, list[RollFactor]] = {PREV_CLOSE: [], OPEN: []}
    for row in frame.iter_rows(named=True):
        sw = Switch(row["ts"].date(), row["from_contract"], row["to_contract"], int(row["segment_id"]),
                    int(row["schedule_hash"]), int(row["from_segment_id"]), int(row["from_schedule_hash"]))
        day = row["close_day"].date()
        for reference, (prefix, price_from, price_to) in _REFERENCE_COLUMNS.items():
            out[reference].append(RollFactor(
                sw, reference, day if reference == PREV_CLOSE else sw.day, _float(row[price_from]), _float(row[price_to]),
                _float(row[prefix + "pre_spread"]), _float(row[prefix + "pre_ratio"]),
                _float(row[prefix + "post_spread"]), _float(row[prefix + "post_ratio"])))
    return out


def roll_factor_rows(client: QuestDBClient, variety: str) -> pl.DataFrame:
    """The variety's current factor rows as stored (one per switch day), for display and export."""
    parse_variety(variety)
    client.wait_for_wal(ROLL_FACTORS)
    return client.query(f"SELECT * FROM {ROLL_FACTORS.name} WHERE variety = %s ORDER BY ts", (variety,))


def retire_roll_factors(client: QuestDBClient, variety: str, days: Sequence[date]) -> None:
    """Move the factor rows of switch days the schedule no longer holds to variety `~<variety>`: kept on
    disk as the record, out of every read."""
    parse_variety(variety)
    if not days:
        return
    listed = ", ".join(f"'{midnight(d).isoformat()}.000000Z'" for d in sorted(days))
    client.execute(f"UPDATE {ROLL_FACTORS.name} SET variety = '{RETIRED_PREFIX}{variety}' "
                   f"WHERE variety = '{variety}' AND ts IN ({listed})")
    client.wait_for_wal(ROLL_FACTORS)


def _float(value: object) -> float:
    return float("nan") if value is None else float(value)
