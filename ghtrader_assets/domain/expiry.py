"""Option expiry: until when IB serves a contract's bars, its last session, the daily capture set and what expiry truncated.

IB serves no history for expired options (TWS API documentation, "Unavailable Historical Data"; the
`includeExpired` flag reaches expired futures only). Its documentation names no moment at which an
option stops being served; we take `served_hours_after_close` (8 h: the end of the expiry day in New
York) after the 16:00 close of the expiry day, and capture at `capture_time` (16:30), when the last
session's bars are whole.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from ghtrader_assets.domain.contracts_cache import OptionContract
from ghtrader_assets.domain.us_sessions import CLOSE, NEW_YORK, is_session

WEEKEND_RUN = (5, time(6, 0))  # the weekend schedule: Saturday 06:00 New York (defs/ibkr/schedules.py)
_CLOCK_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True)
class ExpiryRule:
    """`served_hours_after_close`: hours after 16:00 New York on the expiry day during which IB still
    serves the option's bars (0..8); `capture_time`: New York `HH:MM` of the daily capture run on
    each NYSE session; `capture_lead_days`: the capture also takes contracts expiring within this many
    calendar days (0: only those that expire before the next weekend run)."""

    served_hours_after_close: float = 8.0
    capture_time: str = "16:30"
    capture_lead_days: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.served_hours_after_close <= 8:
            raise ValueError(f"served_hours_after_close must be in 0..8, got {self.served_hours_after_close}")
        if not _CLOCK_RE.match(self.capture_time):
            raise ValueError(f"capture_time must be HH:MM (New York), got {self.capture_time!r}")
        if self.capture_lead_days < 0:
            raise ValueError(f"capture_lead_days must be >= 0, got {self.capture_lead_days}")

    @property
    def capture_clock(self) -> time:
        hour, minute = self.capture_time.split(":")
        return time(int(hour), int(minute))


def _expiry(contract: OptionContract | date) -> date:
    return contract.expiry if isinstance(contract, OptionContract) else contract


def last_session(contract: OptionContract | date) -> date:
    """The option's (or expiry date's) last trading session: the expiry date, or the session before
    when that is closed."""
    day = _expiry(contract)
    while not is_session(day):
        day -= timedelta(days=1)
    return day


def served_until(contract: OptionContract | date, rule: ExpiryRule) -> datetime:
    """The moment (New York) from which IB no longer serves the option's (expiry date's) bars."""
    close = datetime.combine(_expiry(contract), CLOSE, NEW_YORK)
    return close + timedelta(hours=rule.served_hours_after_close)


def is_served(contract: OptionContract | date, as_of: datetime, rule: ExpiryRule) -> bool:
    """True while IB still serves the option (`as_of` time-zone aware)."""
    return as_of < served_until(contract, rule)


def served(contracts: Iterable[OptionContract], as_of: datetime, rule: ExpiryRule) -> tuple[OptionContract, ...]:
    """The contracts IB still serves at `as_of`: requesting the others only produces errors."""
    return tuple(c for c in contracts if is_served(c, as_of, rule))


def next_weekend_run(after: datetime) -> datetime:
    """The first weekend-schedule time (Saturday 06:00 New York) strictly after `after`."""
    local = after.astimezone(NEW_YORK)
    weekday, clock = WEEKEND_RUN
    day = local.date() + timedelta(days=(weekday - local.weekday()) % 7)
    run = datetime.combine(day, clock, NEW_YORK)
    return run if run > local else run + timedelta(days=7)


def capture_set(contracts: Iterable[OptionContract], as_of: datetime, rule: ExpiryRule) -> tuple[OptionContract, ...]:
    """What the daily capture requests at `as_of`: the served contracts that stop being served before
    the next weekend run (so their last days would be lost), or that expire within capture_lead_days."""
    weekend = next_weekend_run(as_of)
    lead = as_of.astimezone(NEW_YORK).date() + timedelta(days=rule.capture_lead_days)
    return tuple(c for c in served(contracts, as_of, rule)
                 if served_until(c, rule) <= weekend or c.expiry <= lead)


def sessions_between(after: date, through: date) -> int:
    """NYSE sessions in (after, through]."""
    days = (after + timedelta(days=n) for n in range(1, (through - after).days + 1))
    return sum(1 for d in days if is_session(d))


@dataclass(frozen=True)
class Coverage:
    """Expiry coverage of one symbol in one stage: contracts followed (with a known expiry), those IB no
    longer serves, and of these the ones whose data is complete only up to a session before their
    last ("truncated by expiry"), with the sessions so lost (a contract never complete counts none)."""

    followed: int = 0
    expired: int = 0
    truncated: int = 0
    lost_sessions: int = 0
    truncated_conids: tuple[int, ...] = ()

    def __add__(self, other: Coverage) -> Coverage:
        return Coverage(self.followed + other.followed, self.expired + other.expired,
                        self.truncated + other.truncated, self.lost_sessions + other.lost_sessions,
                        self.truncated_conids + other.truncated_conids)

    def text(self) -> str:
        return (f"{self.truncated} of {self.expired} expired contracts truncated by expiry "
                f"({self.lost_sessions} sessions lost), {self.followed} followed")


def coverage(contracts: Iterable[tuple[int, date, date | None]], as_of: datetime, rule: ExpiryRule) -> Coverage:
    """Coverage over (conid, expiry, complete-through session or None) triples: an expired contract is
    truncated when its data is complete through a session before its last one (or through none)."""
    followed = expired = truncated = lost = 0
    conids: list[int] = []
    for conid, expiry, through in contracts:
        followed += 1
        if is_served(expiry, as_of, rule):
            continue
        expired += 1
        last = last_session(expiry)
        if through is None or through < last:
            truncated += 1
            conids.append(conid)
            lost += sessions_between(through, last) if through is not None else 0  # never complete: unknown
    return Coverage(followed, expired, truncated, lost, tuple(sorted(conids)))
