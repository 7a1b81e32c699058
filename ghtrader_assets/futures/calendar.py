"""The trading calendar and each variety's sessions: fetched from the vendor, stored in QuestDB."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path

from ghtrader_assets.domain.calendar import CST, TradingCalendar, current_trading_day
from ghtrader_assets.domain.session_history import KNOWN_CHANGES, KNOWN_NIGHT_EXCEPTIONS, SessionHistory, parse_session_file
from ghtrader_assets.domain.sessions import Sessions
from ghtrader_assets.domain.symbols import has_l5_depth, main_symbol, parse_variety
from ghtrader_assets.io import ledger_store as ledger
from ghtrader_assets.io.questdb import QuestDBClient
from ghtrader_assets.io.tqsdk_client import TqSdkClient, continuous_table_varieties


class ChainError(RuntimeError):
    """A step of the chain that cannot proceed; the message names the variety and day."""


@dataclass(frozen=True)
class CalendarResult:
    calendar: TradingCalendar
    trading_days: list[date]  # from the start date through the current (unfinished) trading day
    current_day: date
    sessions: dict[str, dict]


def refresh_calendar(
    tq: TqSdkClient, qdb: QuestDBClient, varieties: tuple[str, ...], start: date, now: datetime
) -> CalendarResult:
    """Fetch the vendor calendar (a month before `start` through the end of next month) and every
    variety's trading_time; store both. An unreachable calendar is an error, never a weekday guess."""
    for v in varieties:
        parse_variety(v)
    listed = continuous_table_varieties()
    unknown = [v for v in varieties if v not in listed]
    if unknown:
        raise ChainError(f"unknown varieties {unknown}: TqSdk's continuous table does not list them")
    local_now = now.astimezone(CST)
    end = (local_now.date().replace(day=1) + timedelta(days=62)).replace(day=1) - timedelta(days=1)
    calendar = _fetch_calendar(tq, start - timedelta(days=31), end)
    ledger.write_calendar(qdb, calendar)
    current = current_trading_day(calendar, now)
    days = [d for d in calendar.between(start, min(current, calendar.last)) if d <= current]
    sessions = {}
    for v in varieties:
        info = tq.quote_info(main_symbol(v))
        if not info["trading_time"]["day"]:
            raise ChainError(f"TqSdk has no trading_time for {main_symbol(v)}: is {v} a listed variety?")
        ledger.write_sessions(qdb, v, info["trading_time"], local_now.date(), has_l5_depth(v))
        sessions[v] = info["trading_time"]
    return CalendarResult(calendar, days, current, sessions)


def _fetch_calendar(tq: TqSdkClient, start: date, end: date) -> TradingCalendar:
    try:
        return tq.trading_calendar(start, end)
    except Exception as exc:
        # The holiday file covers whole years; shrink the end to the last day it can answer for, once.
        if "交易日历可以处理的范围" in str(exc) or "range" in str(exc):
            return tq.trading_calendar(start, date(end.year - 1, 12, 31))
        raise


def session_opens(qdb: QuestDBClient, variety: str) -> tuple[time | None, time]:
    """The variety's night open (None without night session) and day open, from its latest capture."""
    captures = ledger.read_session_captures(qdb, variety)
    if not captures:
        return time(21, 0), time(9, 0)
    sessions = Sessions.parse(captures[-1][1])
    night = time.fromisoformat(sessions.night[0].label()[:8]) if sessions.night else None
    return night, time.fromisoformat(sessions.day[0].label()[:8])


def has_sessions(qdb: QuestDBClient, variety: str) -> bool:
    """Whether trading_days has captured the variety's sessions."""
    return bool(ledger.read_session_captures(qdb, variety))


def session_histories(qdb: QuestDBClient, varieties: Iterable[str], extra_file: str) -> dict[str, SessionHistory]:
    """Each variety's session history: every captured trading_time, the known past changes and the user's
    file (GHTRADER_SESSION_HISTORY)."""
    changes, exceptions = list(KNOWN_CHANGES), list(KNOWN_NIGHT_EXCEPTIONS)
    if extra_file:
        try:
            text = Path(extra_file).read_text()
        except OSError as exc:
            raise ChainError(f"cannot read the GHTRADER_SESSION_HISTORY file {extra_file}: {exc}") from exc
        more_changes, more_exceptions = parse_session_file(text, extra_file)
        changes += more_changes
        exceptions += more_exceptions
    out = {}
    for variety in sorted(set(varieties)):
        captures = ledger.read_session_captures(qdb, variety)
        if not captures:
            raise ChainError(f"no session metadata for {variety}: materialize trading_days first")
        out[variety] = SessionHistory.build(variety, captures, changes, exceptions)
    return out
