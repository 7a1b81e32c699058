"""Configuration of the simulated IB Gateway: data universe, latency, pacing rules and injected faults."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

DEFAULT_SYMBOLS: tuple[str, ...] = (
    "AAPL", "MSFT", "SPY", "QQQ", "NVDA", "AMZN", "TSLA", "META", "GOOGL", "IWM", "AMD", "NFLX",
)

# The market-data farm messages a gateway sends each client right after the API handshake (error events with
# reqId -1): 2104/2106/2158 say the market data, historical data (HMDS) and sec-def farms are connected ...
FARM_OK: tuple[tuple[int, str], ...] = (
    (2104, "Market data farm connection is OK:usfarm"),
    (2106, "HMDS data farm connection is OK:ushmds"),
    (2158, "Sec-def data farm connection is OK:secdefnj"),
)
# ... and 2103/2105/2157 that they are broken (the gateway is up, its link to IB's servers is not).
FARM_BROKEN: tuple[tuple[int, str], ...] = (
    (2103, "Market data farm connection is broken:usfarm"),
    (2105, "HMDS data farm connection is broken:ushmds"),
    (2157, "Sec-def data farm connection is broken:secdefnj"),
)


class SimClock:
    """A settable simulated clock, shared by the simulator and the test or benchmark that moves it
    (a simulated month runs in seconds)."""

    def __init__(self, start: datetime) -> None:
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, when: datetime) -> None:
        with self._lock:
            self._now = when.astimezone(UTC)


@dataclass(frozen=True)
class GatewayConfig:
    """Everything that shapes the simulator; the defaults behave like a healthy gateway with real IB limits."""

    seed: int = 7
    as_of: datetime | None = None  # simulated "now"; None follows the real clock
    clock: SimClock | None = None  # a moving simulated "now" (wins over as_of)
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    host: str = "127.0.0.1"
    port: int = 0  # 0 picks a free port
    account: str = "DU1234567"
    farm_status: tuple[tuple[int, str], ...] = FARM_OK  # (code, text) sent to every client after the handshake
    # data universe
    illiquid_fraction: float = 0.1  # share of far-OTM options per (expiry, right) that never trade
    weekly_expiries: int = 6  # weeklies are listed this many weeks ahead
    monthly_expiries: int = 9  # monthlies (third Fridays) are listed this many months ahead
    strike_step: float | None = None  # listed strike spacing; None: by price level (0.5 .. 10)
    strike_width: float | None = None  # strikes listed within close x (1 +/- width); None: 0.25 monthly, 0.12 weekly
    # underlyings with daily expiries on these weekdays (0 = Monday) besides the Friday weeklies, listed
    # daily_expiry_weeks ahead (SPY and QQQ list an expiry every session; Mon/Wed keeps the chains small)
    daily_symbols: tuple[str, ...] = ("SPY", "QQQ")
    daily_weekdays: tuple[int, ...] = (0, 2)
    daily_expiry_weeks: int = 2
    # IB keeps no expired option: from this long after 16:00 New York on the expiry day (default: the end
    # of that day) a request for it is answered as for an unknown contract (error 200), never with bars
    expired_after: timedelta = timedelta(hours=8)
    # latency and pacing
    latency_s: float = 0.0  # delay before answering contract, chain and history requests
    max_open: int = 50  # simultaneous open historical requests
    identical_window_s: float = 15.0  # an identical historical request within this window is a violation
    same_contract_window_s: float = 2.0
    same_contract_max: int = 5  # more requests than this for one contract within the window is a violation
    soft_rate_per_s: float | None = None  # historical requests per second over soft_window_s
    soft_window_s: float = 1.0
    # injected faults (request counts are historical requests, 1-based)
    drop_after_requests: int | None = None  # after this many requests, close every client socket (once)
    hang_conids: tuple[int, ...] = ()  # historical requests for these conIds are never answered
    hang_requests: tuple[int, ...] = ()  # these historical requests are never answered
    pacing_storm: tuple[int, int] | None = None  # (after N requests, answer the next M with pacing violations)
    connectivity_blip: tuple[int, float] | None = None  # (after N requests send 1100, send 1102 after S seconds)

    def now(self) -> datetime:
        """The simulated current time (UTC)."""
        if self.clock is not None:
            return self.clock.now()
        return self.as_of.astimezone(UTC) if self.as_of else datetime.now(UTC)
