"""Latest status per contract: a small per-(stage, symbol) state folded from summary records (stored by io/ibkr_state).

Layout: `state_dir/latest/<stage>/<SYMBOL>.json` =
`{"symbol": str, "stage": str, "symbol_error": Entry | null, "contracts": {"<conid>": Entry}}` with
Entry = `{"status", "window", "run_id", "at" (UTC ISO), "error", "expiry", "through"}` (`through`: the last
session through which the contract's data is complete, from its latest OK or EMPTY outcome). The JSONL
summaries stay the audit log; this file is what resume, rerun and the counts read, so their cost follows the
symbol being run, not the history on disk.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from ghtrader_assets.domain.expiry import Coverage, ExpiryRule, coverage, is_served
from ghtrader_assets.domain.run_summary import Status, SummaryRecord, window_session

_CONTRACT_PURPOSES = frozenset({"bars", "discovery"})


@dataclass(frozen=True)
class Entry:
    """The latest non-skipped outcome of one contract (or of the symbol itself), the option's expiry
    and the last session through which its data is complete (kept across later failures)."""

    status: Status
    window: str
    run_id: str
    at: str
    error: str | None = None
    expiry: date | None = None
    through: date | None = None

    def to_json(self) -> dict[str, Any]:
        return {"status": str(self.status), "window": self.window, "run_id": self.run_id, "at": self.at,
                "error": self.error, "expiry": _day(self.expiry), "through": _day(self.through)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Entry:
        return cls(Status(data["status"]), data.get("window", ""), data.get("run_id", ""), data.get("at", ""),
                   data.get("error"), _parse_day(data.get("expiry")), _parse_day(data.get("through")))

    @classmethod
    def of(cls, record: SummaryRecord, before: Entry | None = None) -> Entry:
        """The entry after `record`; `before` is the contract's earlier entry (its expiry and coverage)."""
        message = (record.error_message or "")[:300] or None  # the summary keeps the full text
        through = before.through if before else None
        if record.status in (Status.OK, Status.EMPTY):  # EMPTY: IB has no trade in the window, still complete
            covered = window_session(record.window)
            through = max(through, covered) if through and covered else covered or through
        return cls(record.status, record.window, record.run_id, record.recorded_at.isoformat(), message,
                   record.expiry or (before.expiry if before else None), through)


def _day(value: date | None) -> str | None:
    return value.isoformat() if value else None


def _parse_day(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


@dataclass
class SymbolStatus:
    """Latest status of one symbol in one stage. `symbol_error`: a symbol-level ERR (missing cache,
    gateway unreachable, failed discovery) not yet followed by any later outcome of the symbol."""

    symbol: str
    stage: str
    symbol_error: Entry | None = None
    contracts: dict[int, Entry] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"symbol": self.symbol, "stage": self.stage,
                "symbol_error": self.symbol_error.to_json() if self.symbol_error else None,
                "contracts": {str(k): v.to_json() for k, v in sorted(self.contracts.items())}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SymbolStatus:
        error = data.get("symbol_error")
        return cls(data["symbol"], data["stage"], Entry.from_json(error) if error else None,
                   {int(k): Entry.from_json(v) for k, v in (data.get("contracts") or {}).items()})

    def ok_conids(self, window: str) -> set[int]:
        """Contracts whose latest outcome is OK under `window`: the resume skip set."""
        return {c for c, e in self.contracts.items() if e.status is Status.OK and e.window == window}

    def failing(self, statuses: Iterable[Status]) -> tuple[bool, set[int]]:
        """(whole symbol to rerun, conids to rerun) for latest outcomes in `statuses`."""
        wanted = set(statuses)
        whole = self.symbol_error is not None and self.symbol_error.status in wanted
        return whole, {c for c, e in self.contracts.items() if e.status in wanted}

    def coverage(self, as_of: datetime, rule: ExpiryRule) -> Coverage:
        """Expiry coverage of the contracts with a known expiry (see expiry.coverage)."""
        return coverage(((c, e.expiry, e.through) for c, e in self.contracts.items() if e.expiry), as_of, rule)

    def held(self, as_of: datetime, rule: ExpiryRule) -> dict[int, date]:
        """Contracts the stage has requested before that IB still serves (conid -> expiry): followed
        until their last session even when the latest cache or subset no longer lists them."""
        return {c: e.expiry for c, e in self.contracts.items() if e.expiry and is_served(e.expiry, as_of, rule)}

    def counts(self, window: str | None = None) -> dict[str, int]:
        """Latest status counts over the contracts (of `window` when given; every status present)."""
        out = {str(s): 0 for s in Status}
        for entry in self.contracts.values():
            if window is None or entry.window == window:
                out[str(entry.status)] += 1
        return out


def apply(state: SymbolStatus, record: SummaryRecord) -> bool:
    """Fold one record into `state`; True when it changed. SKIPPED and reference records change
    nothing; a symbol-level ERR is kept until any later outcome of the symbol clears it; a contract's
    latest outcome replaces its earlier one (a later OK clears an ERR)."""
    if record.status is Status.SKIPPED or record.purpose == "reference":
        return False
    if record.purpose == "symbol" or (record.purpose == "discovery" and record.status is Status.ERR):
        state.symbol_error = Entry.of(record)
        return True
    if record.purpose in _CONTRACT_PURPOSES:
        state.symbol_error = None
        if record.conid is not None:
            state.contracts[record.conid] = Entry.of(record, state.contracts.get(record.conid))
        return True
    return False


def fold(symbol: str, stage: str, records: Iterable[SummaryRecord]) -> SymbolStatus:
    """The state after `records` (in recorded order) of one symbol and stage."""
    state = SymbolStatus(symbol, stage)
    for record in sorted(records, key=lambda r: r.recorded_at):
        if record.symbol == symbol and record.stage == stage:
            apply(state, record)
    return state


def rerun_entries(records: Iterable[SummaryRecord],
                  statuses: Iterable[Status] = (Status.ERR, Status.EMPTY)) -> dict[str, tuple[bool, set[int]]]:
    """Per (stage, symbol) folded from `records` with the same rule as the state files: symbol ->
    (rerun the whole symbol, conids to rerun), for latest outcomes in `statuses`; symbols with
    nothing to rerun are left out."""
    wanted = list(statuses)
    grouped: dict[tuple[str, str], list[SummaryRecord]] = {}
    for record in records:
        grouped.setdefault((record.stage, record.symbol), []).append(record)
    out: dict[str, tuple[bool, set[int]]] = {}
    for (stage, symbol), recs in sorted(grouped.items()):
        whole, conids = fold(symbol, stage, recs).failing(wanted)
        if whole or conids:
            prior = out.get(symbol, (False, set()))
            out[symbol] = (prior[0] or whole, prior[1] | conids)
    return out


def status_dir(state_dir: Path, stage: str) -> Path:
    """`state_dir/latest/<stage>`."""
    return state_dir / "latest" / stage


def status_path(state_dir: Path, stage: str, symbol: str) -> Path:
    """`state_dir/latest/<stage>/<SYMBOL>.json`."""
    return status_dir(state_dir, stage) / f"{symbol.upper()}.json"
