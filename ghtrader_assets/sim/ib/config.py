"""Configuration of the simulated IB Gateway: data universe, latency, pacing rules and injected faults."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

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


@dataclass(frozen=True)
class GatewayConfig:
    """Everything that shapes the simulator; the defaults behave like a healthy gateway with real IB limits."""

    seed: int = 7
    as_of: datetime | None = None  # simulated "now"; None follows the real clock
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
        return self.as_of.astimezone(UTC) if self.as_of else datetime.now(UTC)
