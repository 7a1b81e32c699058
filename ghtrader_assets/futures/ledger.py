"""The ledger as a whole: each variety's facts as QuestDB holds them, its coverage, the re-verification of
stored history, and snapshot manifests. The rules are in domain.ledger and domain.manifest; this module
only reads and writes the tables."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from importlib import metadata
from pathlib import Path

from ghtrader_assets.domain import manifest as manifests
from ghtrader_assets.domain.calendar import CalendarError, TradingCalendar, current_trading_day
from ghtrader_assets.domain.ledger import DayState, VarietyCoverage, VarietyFacts, Verification, coverage
from ghtrader_assets.domain.session_evidence import SessionEvidence, find_evidence, suggested_changes
from ghtrader_assets.domain.session_history import SessionHistory
from ghtrader_assets.domain.symbols import main_symbol, variety_of
from ghtrader_assets.domain.tick_cleaning import keep_rule
from ghtrader_assets.futures.calendar import ChainError
from ghtrader_assets.io import futures_store as store
from ghtrader_assets.io import ledger_store as ledger
from ghtrader_assets.io.questdb import QuestDBClient

VERIFY_CHUNK_DAYS = 61  # days per grouped re-count (about a quarter: small answers, steady progress)


def last_final_day(calendar: TradingCalendar, now: datetime) -> date:
    """The last trading day that has closed at `now`."""
    return calendar.previous_trading_day(current_trading_day(calendar, now))


def variety_facts(
    qdb: QuestDBClient,
    varieties: Sequence[str],
    calendar: TradingCalendar,
    histories: Mapping[str, SessionHistory] | None = None,
    count: tuple[date, date] | None = None,
) -> dict[str, VarietyFacts]:
    """Everything the ledger holds about each variety. With `histories`, each day is also judged by the
    session windows it must be cut with; with `count` (a day range), the main_l5 rows QuestDB holds now are
    counted per day (one grouped count per variety), so rows lost or retired by hand show."""
    windows = ledger.read_windows(qdb)
    no_data = ledger.no_data_records(qdb, "raw")
    out = {}
    for variety in varieties:
        schedule = {r.trading_day: r for r in ledger.read_schedule(qdb, variety)}
        empty = {}
        for record in no_data:
            if variety_of(record.contract) == variety:
                row = schedule.get(record.day)
                if record.day not in empty or (row is not None and row.main_contract == record.contract):
                    empty[record.day] = record
        history = histories.get(variety) if histories else None
        stored = None
        if count is not None:
            days = {d: calendar.bounds_ns(d) for d in calendar.between(*count)}
            stored = store.stored_rows(qdb, "main_l5", main_symbol(variety), days)
        window = windows.get(variety)
        out[variety] = VarietyFacts(
            variety=variety,
            first_day=window.first_day if window else None,
            schedule=schedule,
            index=ledger.index_entries(qdb, main_symbol(variety)),
            no_data=empty,
            verifications=ledger.read_verifications(qdb, main_symbol(variety)),
            schedule_refreshed_at=window.refreshed_at if window else None,
            session_hash=(lambda d, h=history: keep_rule(calendar, h, d).session_hash) if history else None,
            stored_rows=stored,
        )
    return out


@dataclass(frozen=True)
class CoverageResult:
    """One variety's coverage and the session evidence found in its stored raw days."""

    coverage: VarietyCoverage
    evidence: list[SessionEvidence] = field(default_factory=list)
    suggested: list[dict] = field(default_factory=list)  # GHTRADER_SESSION_HISTORY entries

    def as_json(self) -> dict:
        return {**self.coverage.summary(), "session_evidence": [e.describe() for e in self.evidence],
                "suggested_session_history": {"changes": self.suggested} if self.suggested else None}


def coverage_report(
    qdb: QuestDBClient,
    varieties: Sequence[str],
    calendar: TradingCalendar,
    first: date,
    last: date,
    now: datetime,
    histories: Mapping[str, SessionHistory] | None = None,
) -> list[CoverageResult]:
    """Per variety: every expected day of [first, last] classified (stored rows counted), and the session
    evidence in the raw days of the range."""
    facts = variety_facts(qdb, varieties, calendar, histories, count=(first, last))
    out = []
    for variety in varieties:
        cov = coverage(facts[variety], calendar, first, last, now)
        evidence, suggested = [], []
        if histories and cov.statuses:
            days = [s.day for s in cov.statuses]
            contracts = {facts[variety].schedule[d].main_contract for d in days if d in facts[variety].schedule}
            outside = store.outside_session_minutes(qdb, contracts, {d: calendar.bounds_ns(d) for d in days})
            evidence = find_evidence(variety, outside)
            for e in evidence:
                sessions, _ = histories[variety].windows(e.days[0])
                suggested += suggested_changes(e, sessions, calendar, days[-1])
        out.append(CoverageResult(cov, evidence, suggested))
    return out


def format_report(results: Sequence[CoverageResult]) -> str:
    """The coverage report as text, one block per variety."""
    lines = []
    for r in results:
        c = r.coverage
        s = c.summary()
        lines.append(f"{c.variety}: {c.first}..{c.last}" + (f" (window from {c.first_day})" if c.first_day else
                                                          " (main_schedule has not run)"))
        lines.append(f"  expected {s['expected']}  complete {s['complete']}  unverified {s['unverified']}  "
                     f"no-data {s['no_data_retrying']} retrying / {s['no_data_permanent']} permanent  "
                     f"missing {s['missing']}  stale {s['stale']}" + (f"  not listed {s['not_listed']}" if c.not_listed else ""))
        for label, key in (("missing", "missing_days"), ("stale", "stale_days"), ("no data", "no_data_days")):
            if s[key]:
                lines.append(f"  {label}: {', '.join(s[key][:20])}" + (" ..." if len(s[key]) > 20 else ""))
        for status in [x for x in c.statuses if x.state == DayState.STALE][:10]:
            lines.append(f"    {status.day}: {status.reason}")
        for e in r.evidence:
            lines.append(f"  session evidence: {e.describe()}")
        if r.suggested:
            lines.append(f"  suggested GHTRADER_SESSION_HISTORY: {json.dumps({'changes': r.suggested})}")
    return "\n".join(lines)


# -- re-verification ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VerifyResult:
    variety: str
    days: int  # stored days re-counted
    rows: int  # rows re-counted
    mismatches: list[str]  # one line per day that disagrees with its index row
    seconds: float

    @property
    def bad_days(self) -> int:
        return len(self.mismatches)


def verify_days(qdb: QuestDBClient, calendar: TradingCalendar, variety: str, days: Sequence[date],
                at: datetime | None = None) -> VerifyResult:
    """Re-count the stored main_l5 days of the variety inside QuestDB (rows, first/last tick, L5 presence,
    row-hash aggregates, value checksum: one grouped query per chunk of days) and compare each with its index
    row; the result of each day goes to the ledger (ghtrader_day_verifications_v2), where a mismatch makes
    the day stale until it is rebuilt."""
    started = time.monotonic()
    at = at or datetime.now(timezone.utc)
    symbol = main_symbol(variety)
    index = ledger.index_entries(qdb, symbol)
    wanted = sorted(set(days))
    results: list[Verification] = []
    mismatches: list[str] = []
    rows = 0
    for i in range(0, len(wanted), VERIFY_CHUNK_DAYS):
        chunk = wanted[i:i + VERIFY_CHUNK_DAYS]
        counted = store.stats_by_day(qdb, "main_l5", symbol, {d: calendar.bounds_ns(d) for d in chunk})
        for day in chunk:
            stats, entry = counted[day], index.get(day)
            rows += stats.rows_total
            if entry is None:
                if stats.rows_total:
                    mismatches.append(f"{symbol} {day}: {stats.rows_total} rows stored without an index row")
                continue
            diff = entry.stats.differences(stats)
            detail = "; ".join(f"{k} index={a} stored={b}" for k, (a, b) in diff.items())
            if diff:
                mismatches.append(f"{symbol} {day}: {detail}")
            results.append(Verification(day, at, not diff, detail))
    ledger.write_verifications(qdb, symbol, "main_l5", results)
    return VerifyResult(variety, len(results), rows, mismatches, time.monotonic() - started)


# -- manifests -------------------------------------------------------------------------------------------------
def software_version() -> str:
    try:
        return f"ghtrader-assets {metadata.version('ghtrader-assets')}"
    except metadata.PackageNotFoundError:
        return "ghtrader-assets (not installed)"


def _recompute(qdb: QuestDBClient, calendar: TradingCalendar, variety: str, first_day: date, through: date,
               created_at: datetime, version: str) -> dict:
    days = calendar.between(first_day, through)
    bounds = {d: calendar.bounds_ns(d) for d in days}
    stats = {}
    for i in range(0, len(days), VERIFY_CHUNK_DAYS):
        chunk = {d: bounds[d] for d in days[i:i + VERIFY_CHUNK_DAYS]}
        stats.update(store.stats_by_day(qdb, "main_l5", main_symbol(variety), chunk))
    schedule = [r for r in ledger.read_schedule(qdb, variety) if first_day <= r.trading_day <= through]
    contracts = {r.trading_day: r.main_contract for r in schedule}
    no_data = {r.day: r.reason for r in ledger.no_data_records(qdb, "raw")
               if first_day <= r.day <= through and contracts.get(r.day) == r.contract}
    return manifests.build(variety, first_day, through, len(days), stats, no_data, schedule, version, created_at)


def write_manifest(qdb: QuestDBClient, calendar: TradingCalendar, variety: str, through: date, now: datetime,
                   directory: Path, histories: Mapping[str, SessionHistory] | None = None) -> tuple[Path, dict]:
    """Write the manifest of the variety's window through `through` (file and QuestDB row); refused unless
    nothing of the window is missing or stale."""
    window = ledger.read_windows(qdb).get(variety)
    if window is None:
        raise ChainError(f"{variety}: main_schedule has not run, no window to describe")
    [result] = coverage_report(qdb, [variety], calendar, window.first_day, through, now, histories)
    cov = result.coverage
    if not cov.clean:
        raise ChainError(f"{variety}: no manifest through {through}: {cov.count(DayState.MISSING)} days missing and "
                         f"{cov.count(DayState.STALE)} stale (run `ghtrader-assets coverage {variety}`)")
    created = now.astimezone(timezone.utc)
    built = _recompute(qdb, calendar, variety, cov.first_day, through, created, software_version())
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{variety}_{cov.first_day}_{through}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(built, indent=2) + "\n")
    tmp.replace(path)
    ledger.write_manifest_row(qdb, built, str(path))
    return path, built


def verify_manifest(qdb: QuestDBClient, calendar: TradingCalendar, path: Path) -> list[str]:
    """Recompute a manifest from the store now; the differences (empty: the data still matches)."""
    saved = json.loads(Path(path).read_text())
    try:
        first, through = date.fromisoformat(saved["first_day"]), date.fromisoformat(saved["through"])
        variety = saved["variety"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ChainError(f"{path}: not a manifest of this project ({exc})") from exc
    try:
        now = _recompute(qdb, calendar, variety, first, through, datetime.now(timezone.utc), saved.get("version", ""))
    except CalendarError as exc:
        raise ChainError(f"{path}: the stored calendar cannot answer for {first}..{through}: {exc}") from exc
    return manifests.compare(saved, now)
