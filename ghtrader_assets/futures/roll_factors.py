"""The roll factors of a variety's main schedule, without Dagster: compute the factors of the switches whose
stored row no longer fits the schedule (reference prices from the vendor's daily klines), reuse the others,
retire the rows of switches the schedule no longer holds, and check the stored table against the schedule."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date

from ghtrader_assets.domain.calendar import TradingCalendar
from ghtrader_assets.domain.roll_factors import (
    OPEN,
    PREV_CLOSE,
    RollFactor,
    Switch,
    factor,
    switches,
    with_cumulative,
)
from ghtrader_assets.domain.schedule import ScheduleRow
from ghtrader_assets.io import ledger_store as ledger
from ghtrader_assets.io.questdb import QuestDBClient
from ghtrader_assets.io.tqsdk_client import TqSdkClient

log = logging.getLogger(__name__)
SOURCE = "tqsdk_daily_kline"


@dataclass(frozen=True)
class FactorsResult:
    """What one refresh did for a variety."""

    variety: str
    switches: list[Switch]
    computed: list[Switch] = field(default_factory=list)  # their reference prices fetched by this run
    retired: list[date] = field(default_factory=list)  # switch days the schedule no longer holds
    kline_requests: int = 0  # daily-kline requests made (one per contract involved)
    written: int = 0  # rows upserted (every row when anything changed: the cumulative factors move)
    without_prices: list[str] = field(default_factory=list)  # switches a reference price is missing for
    factors: dict[str, list[RollFactor]] = field(default_factory=dict)  # reference -> factors, switch order


def refresh_roll_factors(tq: TqSdkClient, qdb: QuestDBClient, variety: str, calendar: TradingCalendar) -> FactorsResult:
    """Bring the variety's factor rows in line with its stored schedule. A stored row's reference prices are
    kept when it names the same switch day and contracts (its segments are updated if a revision moved
    them); every other switch is computed from the two contracts' daily klines (closes of the day before,
    opens of the day); rows of switch days that are no longer switches are retired. Rows are rewritten only
    when something changed (a new switch changes the pre-direction cumulative factors of every earlier
    row). Provisional schedule days count like the others: a later revision of one is a changed switch."""
    rows = ledger.read_schedule(qdb, variety)
    wanted = switches(rows)
    stored = ledger.read_roll_factors(qdb, variety)
    # A stored switch's prices serve while its day and contracts are the same (a revision earlier in the
    # schedule may still move the segments it names: the row is rewritten, nothing is fetched).
    kept = {_prices_key(f.switch): (f, o) for f, o in zip(stored[PREV_CLOSE], stored[OPEN]) if f.finite and o.finite}
    todo = [s for s in wanted if _prices_key(s) not in kept]
    retired = sorted({f.switch.day for f in stored[PREV_CLOSE]} - {s.day for s in wanted})
    prices, requests = _reference_prices(tq, todo, calendar)
    pairs = []
    for s in wanted:
        if s in todo:
            pairs.append((factor(s, PREV_CLOSE, calendar, prices[PREV_CLOSE]), factor(s, OPEN, calendar, prices[OPEN])))
        else:
            close_factor, open_factor = kept[_prices_key(s)]
            pairs.append((replace(close_factor, switch=s), replace(open_factor, switch=s)))
    changed = bool(todo or retired) or [p[0].switch for p in pairs] != [f.switch for f in stored[PREV_CLOSE]]
    close = with_cumulative([p[0] for p in pairs])
    opened = with_cumulative([p[1] for p in pairs])
    without = [f"{f.switch.day} {f.switch.from_contract}->{f.switch.to_contract} ({f.reference} {f.reference_day})"
               for f in (*close, *opened) if not f.finite]
    for line in without:
        log.warning("%s: no reference price for the switch %s", variety, line)
    written = 0
    if changed:
        ledger.retire_roll_factors(qdb, variety, retired)
        written = ledger.write_roll_factors(qdb, variety, list(zip(close, opened)), SOURCE)
    return FactorsResult(variety, wanted, todo, retired, requests, written, without,
                         {PREV_CLOSE: close, OPEN: opened})


def _prices_key(s: Switch) -> tuple[date, str, str]:
    return s.day, s.from_contract, s.to_contract


def _reference_prices(tq: TqSdkClient, todo: Sequence[Switch],
                      calendar: TradingCalendar) -> tuple[dict[str, dict[tuple[str, date], float]], int]:
    """Closes (for prev_close) and opens (for open) of the contracts of `todo` on the days their switches
    read; one daily-kline request per contract, over the span of the days it is needed for."""
    needed: dict[str, set[date]] = {}
    for s in todo:
        for contract in (s.from_contract, s.to_contract):
            needed.setdefault(contract, set()).update({s.reference_day(PREV_CLOSE, calendar), s.day})
    closes: dict[tuple[str, date], float] = {}
    opens: dict[tuple[str, date], float] = {}
    for contract, days in sorted(needed.items()):
        bars = tq.daily_bars(contract, min(days), max(days))
        for day, bar in bars.items():
            if day in days:
                closes[(contract, day)] = bar.close
                opens[(contract, day)] = bar.open
    return {PREV_CLOSE: closes, OPEN: opens}, len(needed)


def check_factors(qdb: QuestDBClient, variety: str, rows: Sequence[ScheduleRow] | None = None) -> list[str]:
    """What disagrees between the stored factor rows and the stored schedule: a switch day without a row, a
    row whose contracts, segments or hashes are not those the schedule holds, a row of a day that is no
    switch, a missing reference price or a cumulative factor that does not follow from the factors."""
    rows = rows if rows is not None else ledger.read_schedule(qdb, variety)
    wanted = {s.day: s for s in switches(rows)}
    stored = ledger.read_roll_factors(qdb, variety)
    problems = []
    by_day = {f.switch.day: f for f in stored[PREV_CLOSE]}
    for day, s in sorted(wanted.items()):
        f = by_day.get(day)
        if f is None:
            problems.append(f"{day}: the switch {s.from_contract}->{s.to_contract} has no factor row")
        elif f.switch != s:
            problems.append(f"{day}: the row names {f.switch.from_contract}->{f.switch.to_contract} "
                            f"(segment {f.switch.segment_id}), the schedule {s.from_contract}->{s.to_contract} "
                            f"(segment {s.segment_id})")
    for day in sorted(set(by_day) - set(wanted)):
        problems.append(f"{day}: a factor row, but no switch in the schedule")
    for reference, factors in stored.items():
        expected = with_cumulative(factors)
        for got, want in zip(sorted(factors, key=lambda f: f.switch.day), expected):
            if not got.finite:
                problems.append(f"{got.switch.day}: no {reference} reference price")
            elif not all(_close(a, b) for a, b in ((got.pre_spread, want.pre_spread), (got.pre_ratio, want.pre_ratio),
                                                    (got.post_spread, want.post_spread), (got.post_ratio, want.post_ratio))):
                problems.append(f"{got.switch.day}: the {reference} cumulative factors do not follow from the factors")
    return problems


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-9)
