"""The pure planning step of a bar stage: which contracts, which requests, and the plan a dry run prints."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from ghtrader_assets.domain.bar_merge import fetch_duration
from ghtrader_assets.domain.contracts_cache import OptionContract
from ghtrader_assets.domain.expiry import ExpiryRule, capture_set, served
from ghtrader_assets.domain.option_subset import near_the_money
from ghtrader_assets.domain.stage_table import BarSpec, StageDef
from ghtrader_assets.io.bar_store import StoredExtent

CLOSE_SOURCE = "underlying close"
FALLBACK_SOURCE = "median strike (no underlying close)"


@dataclass(frozen=True)
class SubsetSpec:
    """Near-the-money subset: the first `expiries` served expiries, `strikes_per_right` strikes
    per (expiry, right) nearest the reference price."""

    expiries: int = 2
    strikes_per_right: int = 5


@dataclass(frozen=True)
class PlannedRequest:
    """One bar request: the contract, the duration asked (the full window, or from the overlap before
    the last stored bar) and the file it is merged into."""

    contract: OptionContract
    duration: str
    target: Path
    note: str | None = None


@dataclass
class SymbolPlan:
    """What a bar stage does for one symbol: its cache, reference price (subset stages), the chosen
    contracts (`held` of them followed from earlier runs), the requests and the contracts skipped as
    already OK for the window; `error` when the symbol cannot be planned."""

    symbol: str
    cache_path: Path | None = None
    cache_day: date | None = None
    reference_price: float | None = None
    reference_source: str | None = None
    chosen: tuple[OptionContract, ...] = ()
    held: int = 0
    requests: list[PlannedRequest] = field(default_factory=list)
    skipped: list[OptionContract] = field(default_factory=list)
    error: str | None = None

    def subset_text(self) -> str:
        """`2026-11-27 C 225,230 P 225,230; ...`: the chosen contracts by expiry and right."""
        groups: dict[date, dict[str, list[float]]] = {}
        for c in self.chosen:
            groups.setdefault(c.expiry, {}).setdefault(c.right, []).append(c.strike)
        return "; ".join(f"{e} " + " ".join(f"{r} " + ",".join(f"{k:g}" for k in sorted(ks))
                                            for r, ks in sorted(rights.items()))
                         for e, rights in sorted(groups.items()))

    def to_json(self) -> dict[str, Any]:
        return {"cache": str(self.cache_path) if self.cache_path else None,
                "cache_date": self.cache_day.isoformat() if self.cache_day else None,
                "reference_price": self.reference_price, "reference_source": self.reference_source,
                "chosen": len(self.chosen), "held": self.held, "planned": len(self.requests),
                "skipped": len(self.skipped), "error": self.error, "subset": self.subset_text(),
                "requests": [{"conid": r.contract.conid, "expiry": r.contract.expiry.isoformat(),
                              "right": r.contract.right, "strike": r.contract.strike, "duration": r.duration}
                             for r in self.requests]}


def choose_contracts(
    stage: StageDef,
    cached: Sequence[OptionContract],
    held: Sequence[OptionContract],
    as_of: datetime,
    rule: ExpiryRule,
    subset: SubsetSpec,
    reference: float | None,
    capture: bool,
    only: frozenset[int] | None = None,
) -> tuple[OptionContract, ...]:
    """The stage's contracts at `as_of`: the served contracts of the latest cache (every one, or the
    near-the-money subset around `reference`), plus the `held` contracts the stage followed before
    and IB still serves (so a contract once requested reaches its last session); the daily capture
    keeps those about to expire (expiry.capture_set); `only` restricts to those conids (reruns).
    Sorted by (expiry, right, strike, conid)."""
    live = served(cached, as_of, rule)
    if stage.subset == "near_the_money" and reference is not None:
        live = near_the_money(live, as_of, reference, subset.expiries, subset.strikes_per_right, rule)
    chosen = {c.conid: c for c in (*served(held, as_of, rule), *live)}
    picked = capture_set(chosen.values(), as_of, rule) if capture else tuple(chosen.values())
    if only is not None:
        picked = tuple(c for c in picked if c.conid in only)
    return tuple(sorted(picked, key=lambda c: (c.expiry, c.right, c.strike, c.conid)))


def plan_requests(
    chosen: Sequence[OptionContract],
    spec: BarSpec,
    done: set[int],
    extents: Mapping[int, StoredExtent],
    now: datetime,
    incremental: bool,
    overlap: timedelta,
    target: Callable[[OptionContract], Path],
) -> tuple[list[PlannedRequest], list[OptionContract]]:
    """(requests, skipped): a contract OK for this window (`done`) is skipped unless its stored file
    is now unreadable; the others are requested over the full window, or incrementally from
    `overlap` before their last stored bar."""
    requests: list[PlannedRequest] = []
    skipped: list[OptionContract] = []
    for contract in chosen:
        extent = extents.get(contract.conid, StoredExtent())
        if contract.conid in done and extent.broken is None:
            skipped.append(contract)
            continue
        note = f"stored file unreadable ({extent.broken}): fetching it again" if extent.broken else None
        last = extent.last if incremental and extent.broken is None else None
        requests.append(PlannedRequest(contract, fetch_duration(spec.duration, now, last, overlap),
                                       target(contract), note))
    return requests, skipped
