"""Which session windows were in force on a trading day: captured trading_time values, known past changes, exceptions.

A version is in force from its effective day until the next version's. Known changes (below, and the
user's file) carry their effective day (a known version whose start its source does not give reaches back
as far as the history does). A captured `quote.trading_time` only proves what held on its
capture date: the first capture of a variety is taken to hold since always (unless a known change says
otherwise), and a capture that differs from the version in force starts a new version on its capture
date, the days since the previous evidence being uncertain: there a tick inside either version is kept
(and counted as flagged when it lies outside the older one). So a tick is never dropped only because of
sessions that came into force after its day.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from ghtrader_assets.domain.calendar import TradingCalendar
from ghtrader_assets.domain.sessions import Sessions, SessionSpecError

_COMMODITY_DAY = [["09:00:00", "10:15:00"], ["10:30:00", "11:30:00"], ["13:30:00", "15:00:00"]]

# Known past changes of session hours: (variety, first trading day of the version or None = as far back as
# the source reaches, trading_time, source). Only changes an exchange notice states; add others (or older
# versions) in the GHTRADER_SESSION_HISTORY file. Ticks that no version explains are kept in raw, flagged
# `outside_session` and reported as session evidence (domain.session_evidence), never lost.
_DCE_2019 = ("DCE notice of 25 Mar 2019 (English: Mondo Visione, 'Dalian Commodity Exchange Adds The Products For "
             "And Adjusted The Time Of After-Hours Trading'): night close moved from 23:30 to 23:00 from the night "
             "of 29 Mar 2019 (trading day 1 Apr 2019); the notice does not say since when 23:30 held")
# The DCE futures with a night session before that notice (it lists the 16 products after the change).
_DCE_NIGHT_2019 = ("a", "b", "i", "j", "jm", "m", "p", "y")
KNOWN_CHANGES: tuple[tuple[str, date | None, dict, str], ...] = tuple(
    change
    for product in _DCE_NIGHT_2019
    for change in (
        (f"DCE.{product}", None, {"day": _COMMODITY_DAY, "night": [["21:00:00", "23:30:00"]]}, _DCE_2019),
        (f"DCE.{product}", date(2019, 4, 1), {"day": _COMMODITY_DAY, "night": [["21:00:00", "23:00:00"]]}, _DCE_2019),
    )
)

# Exchange exceptions to the night-session rule: (exchange or variety, trading day, has night, reason).
KNOWN_NIGHT_EXCEPTIONS: tuple[tuple[str, date, bool, str], ...] = ()


@dataclass(frozen=True)
class SessionVersion:
    effective_from: date | None  # None: since always
    sessions: Sessions
    source: str  # known | file | captured
    uncertain_from: date | None = None  # days in [uncertain_from, effective_from) may follow either version


@dataclass(frozen=True)
class SessionHistory:
    """The session versions of one variety, oldest first, and its night-session exceptions."""

    variety: str
    versions: tuple[SessionVersion, ...]
    night_exceptions: dict[date, bool] = field(default_factory=dict)

    @classmethod
    def single(cls, sessions: Sessions, variety: str = "") -> "SessionHistory":
        return cls(variety, (SessionVersion(None, sessions, "captured"),))

    @classmethod
    def build(
        cls,
        variety: str,
        captures: Iterable[tuple[date, dict]],
        changes: Iterable[tuple] = KNOWN_CHANGES,
        exceptions: Iterable[tuple[str, date, bool, str]] = KNOWN_NIGHT_EXCEPTIONS,
    ) -> "SessionHistory":
        """From the captured trading_time values (capture date, value) and the known changes of `variety`
        ((variety, first trading day or None, trading_time[, source]) each)."""
        versions = [SessionVersion(d, Sessions.parse(tt), "known")
                    for v, d, tt, *_ in sorted(changes, key=lambda c: c[1] or date.min) if v == variety]
        evidence = [v.effective_from for v in versions if v.effective_from is not None]
        for captured, tt in sorted(captures, key=lambda c: c[0]):
            sessions = Sessions.parse(tt)
            current = _in_force(versions, captured)
            if current is None:
                versions.insert(0, SessionVersion(None, sessions, "captured"))
            elif current.sessions != sessions:
                last = max([d for d in evidence if d <= captured], default=None)
                versions.append(SessionVersion(captured, sessions, "captured",
                                               last + timedelta(days=1) if last else None))
                versions.sort(key=lambda v: (v.effective_from is not None, v.effective_from or date.min))
            evidence.append(captured)
        if not versions:
            raise SessionSpecError(f"no trading_time known for {variety}")
        exchange = variety.split(".")[0]
        nights = {d: has for scope, d, has, _ in exceptions if scope in (variety, exchange)}
        return cls(variety, tuple(versions), nights)

    def windows(self, day: date) -> tuple[Sessions, Sessions | None]:
        """The sessions in force on `day`, and the other version when `day` is uncertain (else None)."""
        current = _in_force(list(self.versions), day) or self.versions[0]
        later = [v for v in self.versions if v.effective_from is not None and v.effective_from > day]
        if later and later[0].uncertain_from is not None and later[0].uncertain_from <= day:
            return current.sessions, later[0].sessions
        return current.sessions, None

    def has_night_session(self, calendar: TradingCalendar, day: date) -> bool:
        return self.night_exceptions.get(day, calendar.has_night_session(day))

    def intervals_ns(self, calendar: TradingCalendar, day: date) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """[start, end] epoch-ns windows of `day` in force, and those of the uncertain alternative ([] if none)."""
        current, other = self.windows(day)
        night = self.has_night_session(calendar, day)
        return _intervals(current, calendar, day, night), (_intervals(other, calendar, day, night) if other else [])


def _in_force(versions: Sequence[SessionVersion], day: date) -> SessionVersion | None:
    keys = [v.effective_from or date.min for v in versions]
    i = bisect.bisect_right(keys, day)
    return versions[i - 1] if i else None


def _intervals(sessions: Sessions, calendar: TradingCalendar, day: date, night: bool) -> list[tuple[int, int]]:
    out = sessions.intervals_ns(calendar, day)
    if night == calendar.has_night_session(day):
        return out
    if not night:  # an exception cancelled the night: keep the day windows only
        return out[len(sessions.night):]
    bare = Sessions(sessions.day, ())
    eve = Sessions(sessions.night, ())  # night windows anchored on the previous trading day's evening
    return [*(_night(eve, calendar, day)), *bare.intervals_ns(calendar, day)]


def _night(eve: Sessions, calendar: TradingCalendar, day: date) -> list[tuple[int, int]]:
    from ghtrader_assets.domain.sessions import _interval

    prev = calendar.previous_trading_day(day)
    return [_interval(prev, w) for w in eve.day]


def parse_session_file(text: str, name: str) -> tuple[list[tuple], list[tuple[str, date, bool, str]]]:
    """The user's additions (the GHTRADER_SESSION_HISTORY file `name`): {"changes": [{"variety",
    "effective_from", "trading_time"[, "source"]}], "night_exceptions": [{"scope" (exchange or variety),
    "day", "night" (bool), "reason"}]}. A malformed file is an error naming the file and what is wrong."""
    try:
        data = json.loads(text)
        changes = [(c["variety"], date.fromisoformat(c["effective_from"]), c["trading_time"], c.get("source", name))
                   for c in data.get("changes", [])]
        exceptions = [(e["scope"], date.fromisoformat(e["day"]), bool(e["night"]), e.get("reason", ""))
                      for e in data.get("night_exceptions", [])]
        for _, _, trading_time, _ in changes:
            Sessions.parse(trading_time)
    except (ValueError, KeyError, TypeError, AttributeError, SessionSpecError) as exc:
        raise SessionSpecError(f"{name}: not a session-history file ({type(exc).__name__}: {exc})") from exc
    return changes, exceptions
