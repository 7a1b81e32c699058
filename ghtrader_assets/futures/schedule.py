"""The main schedule and each variety's window: which contract is main on each trading day, from the
vendor's mapping (a TqBacktest of KQ.m@, its continuous table, or the open-interest rule), from the day the
variety is first listed (or the user's start for it)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime

from ghtrader_assets.domain.calendar import TradingCalendar, current_trading_day
from ghtrader_assets.domain.schedule import (
    Revision,
    ScheduleError,
    ScheduleRow,
    ScheduleRules,
    build_schedule,
    day_contracts_from_change_points,
    day_contracts_from_events,
    day_contracts_from_open_interest,
    diff_schedule,
    disagreements,
    parse_variety,
)
from ghtrader_assets.futures.calendar import ChainError
from ghtrader_assets.io import ledger_store as ledger
from ghtrader_assets.io.questdb import QuestDBClient
from ghtrader_assets.io.tqsdk_client import TqSdkClient, continuous_table

log = logging.getLogger(__name__)

SCHEDULE_SOURCES = ("backtest", "continuous_table", "open_interest")


@dataclass(frozen=True)
class ScheduleResult:
    variety: str
    rows: list[ScheduleRow]
    new_days: int
    source: str
    window: ledger.VarietyWindow
    revisions: list[Revision] = field(default_factory=list)  # applied: settled days now assigned differently
    pending: list[Revision] = field(default_factory=list)  # not applied: older than the confirmation age
    changed_days: list[date] = field(default_factory=list)  # stored days whose contract/segment changed
    provisional_days: list[date] = field(default_factory=list)


def variety_window(variety: str, calendar: TradingCalendar, start: date, user_start: date | None) -> tuple[date, str]:
    """The first trading day of the variety's window and why: the vendor's first listed day (the continuous
    table's first change point) when it is later than the chain's start, the user's start for the variety
    when that is later still; else the chain's start (GHTRADER_START_DATE)."""
    table = continuous_table(variety)
    if not table:
        raise ChainError(f"TqSdk's continuous table lists no main contract for {variety}")
    candidates = [(start, "start"), (table[0][0], "vendor")]
    if user_start is not None:
        candidates.append((user_start, "user"))
    first, why = max(candidates, key=lambda c: c[0])
    if first > calendar.last:
        raise ChainError(f"{variety}'s window starts on {first}, after the trading calendar ends ({calendar.last})")
    trading = calendar.between(first, calendar.last)
    if not trading:
        raise ChainError(f"no trading day from {first} within the trading calendar")
    return trading[0], why


def refresh_schedule(
    tq: TqSdkClient,
    qdb: QuestDBClient,
    variety: str,
    calendar: TradingCalendar,
    days: list[date],
    source: str = "backtest",
    rebuild: bool = False,
    rules: ScheduleRules | None = None,
    user_start: date | None = None,
    now: datetime | None = None,
) -> ScheduleResult:
    """Decide the variety's window (see `variety_window`), extend its schedule over the days of `days`
    within it and re-ask the source for every provisional day and the last `recheck_days` settled ones
    (all of them for the cheap continuous table, or with `rebuild`). A day is provisional while the source
    cannot answer for it yet (see ScheduleRules.decidable); a settled day the source now assigns differently
    is a revision: applied and reported, or, for days older than `confirm_older_than` trading days,
    reported as pending confirmation. The window and the run's clock are stored (the ledger's
    `schedule_refreshed_at`)."""
    rules = rules or ScheduleRules()
    parse_variety(variety)
    if source not in SCHEDULE_SOURCES:
        raise ChainError(f"unknown schedule source {source!r}; choose one of {SCHEDULE_SOURCES}")
    if not days:
        raise ChainError(f"no trading days to schedule for {variety}: materialize trading_days first")
    first, why = variety_window(variety, calendar, days[0], user_start)
    if first > days[-1]:
        raise ChainError(f"{variety}'s window starts on {first}, after the last trading day ({days[-1]})")
    days = [d for d in days if d >= first]
    wanted = set(days)
    stored = {r.trading_day: r for r in ledger.read_schedule(qdb, variety) if r.trading_day in wanted}
    settled_prefix: list[date] = []
    for d in days:
        if d not in stored or stored[d].provisional:
            break
        settled_prefix.append(d)
    recheck = len(settled_prefix) if (rebuild or source == "continuous_table") else rules.recheck_days
    keep = settled_prefix[: max(len(settled_prefix) - recheck, 0)]
    ask = days[len(keep):]
    base = {d: stored[d].main_contract for d in keep}
    mapping = dict(base)
    if ask:
        mapping.update(_source_mapping(tq, variety, calendar, ask, source, base))
    provisional = [d for d in days if not rules.decidable(calendar, d)]
    rows = build_schedule(variety, mapping, provisional)
    to_write, revisions = diff_schedule(stored, rows)
    pending: list[Revision] = []
    if rules.confirm_older_than and not rules.confirmed and revisions and rules.now is not None:
        recent = calendar.between(calendar.first, current_trading_day(calendar, rules.now))[-rules.confirm_older_than:]
        pending = [r for r in revisions if r.trading_day < recent[0]]
        if pending:
            for r in pending:
                mapping[r.trading_day] = r.old.main_contract
            rows = build_schedule(variety, mapping, provisional)
            to_write, revisions = diff_schedule(stored, rows)
            pending = [p for p in pending if p.trading_day not in {r.trading_day for r in revisions}]
    for r in revisions:
        log.warning("%s: the source revised %s", variety, r.describe())
    if to_write:
        ledger.write_schedule(qdb, variety, to_write, source)
    window = ledger.VarietyWindow(variety, first, why, source, now or datetime.now().astimezone())
    ledger.write_window(qdb, window)
    changed = [r.trading_day for r in to_write if r.trading_day in stored and not r.same_assignment(stored[r.trading_day])]
    new_days = sum(1 for d in days if d not in stored)
    return ScheduleResult(variety, rows, new_days, source, window, revisions=revisions, pending=pending,
                          changed_days=changed, provisional_days=provisional)


def _source_mapping(
    tq: TqSdkClient, variety: str, calendar: TradingCalendar, todo: list[date], source: str, existing: dict[date, str]
) -> dict[date, str]:
    if source == "continuous_table":
        return day_contracts_from_change_points(todo, continuous_table(variety))
    if source == "open_interest":
        table = continuous_table(variety)  # the contracts ever main; their daily open interest decides
        contracts = sorted({c for _, c in table})
        oi: dict[date, dict[str, float]] = {}
        for contract in contracts:
            for d, value in tq.daily_open_interest(contract, todo[0], todo[-1]).items():
                oi.setdefault(d, {})[contract] = value
        return day_contracts_from_open_interest(todo, oi)
    # The backtest starts on the last scheduled day when there is one, so its initial contract is known.
    start = max(existing) if existing else todo[0]
    events = tq.main_events(variety, start, todo[-1])
    changes = [(calendar.trading_day_of(ns), contract) for ns, contract in events.changes]
    if existing and events.initial != existing[start]:
        log.warning("%s: backtest starts on %s with %s but the stored schedule says %s",
                    variety, start, events.initial, existing[start])
    return day_contracts_from_events(todo, events.initial, changes)


def compare_with_continuous_table(variety: str, rows: list[ScheduleRow]) -> list[tuple[date, str | None, str | None]]:
    """Days on which the stored schedule and the vendor's continuous table disagree."""
    days = [r.trading_day for r in rows]
    try:
        table = day_contracts_from_change_points(days, continuous_table(variety))
    except ScheduleError as exc:
        raise ChainError(f"{variety}: the continuous table does not cover the schedule: {exc}") from exc
    return disagreements({r.trading_day: r.main_contract for r in rows}, table)
