"""Async IB Gateway client around ib_insync.IB: reconnecting session, SMART option discovery, paced historical bars."""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from datetime import time as dtime
from typing import Any, TypeVar

import polars as pl
from ib_insync import IB, Contract, Option, Stock

from ghtrader_assets.domain.bar_merge import BAR_SCHEMA, empty_bars
from ghtrader_assets.domain.contracts_cache import OptionContract
from ghtrader_assets.domain.discovery_bounds import Chain, DiscoveryBounds, candidates
from ghtrader_assets.domain.run_summary import Status
from ghtrader_assets.domain.stage_table import REFERENCE_SPEC, BarSpec
from ghtrader_assets.domain.us_sessions import NEW_YORK, last_completed_session

MAX_OPEN_HISTORICAL = 50  # IB's cap on simultaneously open historical requests
# Error codes: 162 historical data service (no data, or pacing violation in the text);
# 2100-2199 and these are informational warnings that end no request.
_WARNING_CODES = frozenset({110, 165, 202, 366, 399, 404, 434, 492, 10167})
_BACKOFF_CAP_S = 60.0

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger(__name__)


class GatewayUnavailableError(ConnectionError):
    """The gateway could not be (re)connected within the configured attempts."""


class DiscoveryError(RuntimeError):
    """Option discovery failed for a symbol (stock unknown, no SMART chain, timeouts)."""


@dataclass(frozen=True)
class GatewaySettings:
    """Connection and pacing settings. Times in seconds; `max_in_flight` open historical requests
    (1..50, IB's cap); `rate_per_s` historical requests per second (token bucket of `burst`
    tokens); `client_msg_rate` is ib_insync's own message throttle per second (0 disables it, for
    simulators); `request_attempts` re-issues after gateway drops; `pacing_retries` retries of one
    request after pacing violations; the session shares one backoff (from `pacing_backoff_s`,
    doubling up to 8 x that, at most 60 s) so a storm slows every request, not each separately;
    `unreachable_timeout_s` bounds the time spent (re)connecting before giving up."""

    host: str = "127.0.0.1"
    port: int = 4002
    client_id: int = 17
    connect_timeout_s: float = 10.0
    request_timeout_s: float = 60.0
    max_in_flight: int = 40  # below IB's 50: other clients of the same gateway count too
    rate_per_s: float = 10.0
    burst: int = 1
    pacing_retries: int = 6
    pacing_backoff_s: float = 2.0
    reconnect_attempts: int = 8
    reconnect_backoff_s: float = 1.0
    unreachable_timeout_s: float = 20.0
    request_attempts: int = 4
    client_msg_rate: int = 45
    qualify_batch_size: int = 50
    quiet_vendor_logs: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.max_in_flight <= MAX_OPEN_HISTORICAL:
            raise ValueError(f"max_in_flight must be in 1..{MAX_OPEN_HISTORICAL}, got {self.max_in_flight}")
        for name in ("connect_timeout_s", "request_timeout_s", "rate_per_s", "unreachable_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("burst", "request_attempts", "reconnect_attempts", "qualify_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.pacing_retries < 0 or self.client_msg_rate < 0:
            raise ValueError("pacing_retries and client_msg_rate must be >= 0")


@dataclass(frozen=True)
class StockRef:
    """An underlying stock on SMART; conid optional (qualified on first use)."""

    symbol: str
    conid: int | None = None
    currency: str = "USD"


@dataclass(frozen=True)
class BarQuery:
    """One historical request: the bar request `spec` (bar size, duration, whatToShow, useRTH) ending
    at `end` (None means now)."""

    spec: BarSpec
    end: datetime | None = None


@dataclass(frozen=True)
class BarFetch:
    """Result of one historical request, classified. `bars` has BAR_SCHEMA (ts in UTC)."""

    status: Status
    bars: pl.DataFrame
    error_code: int | None
    error_message: str | None
    elapsed_s: float
    attempts: int
    query: BarQuery | None = None

    @property
    def first(self) -> datetime | None:
        """Start (UTC) of the first bar, None without bars."""
        value = self.bars["ts"].min() if self.bars.height else None
        return value if isinstance(value, datetime) else None

    @property
    def last(self) -> datetime | None:
        """Start (UTC) of the last bar, None without bars."""
        value = self.bars["ts"].max() if self.bars.height else None
        return value if isinstance(value, datetime) else None


@dataclass(frozen=True)
class Discovery:
    """Discovery of one symbol: the stock's conId, the qualified contracts, how many bounded
    candidates IB did not know, the band centre (`close`, None: the chain's median strike), the
    gateway requests it took (stock qualify, SecDef, daily close, one per candidate) and its time."""

    underlying_conid: int
    contracts: tuple[OptionContract, ...]
    unknown: int
    candidates: int = 0
    chain_size: int = 0
    close: float | None = None
    requests: int = 0
    elapsed_s: float = 0.0


@dataclass
class GatewayStats:
    """Counters of one client session."""

    requests: int = 0
    pacing_violations: int = 0
    timeouts: int = 0
    reconnects: int = 0
    disconnects: int = 0
    max_in_flight_seen: int = 0
    pacing_pauses: int = 0


class SharedBackoff:
    """One pacing backoff for the session. A violation answered to a request issued after the last
    pause doubles the pause (from `base` up to `cap`) and stops the token bucket for everyone; the
    violations of requests already in flight at that pause do not escalate again. The first success
    of a request issued after the last pause resets the level."""

    def __init__(self, bucket: TokenBucket, base: float, cap: float = _BACKOFF_CAP_S) -> None:
        self._bucket, self._base, self._cap = bucket, base, cap
        self._level = 0
        self._paused_at = float("-inf")

    def violation(self, issued_at: float) -> bool:
        """Record a violation of a request issued at `issued_at` (monotonic); True when it paused."""
        if issued_at < self._paused_at:
            return False
        delay = min(self._base * 2 ** self._level, self._cap)
        self._level += 1
        self._paused_at = time.monotonic()
        self._bucket.pause(delay)
        return True

    def success(self, issued_at: float) -> None:
        if issued_at >= self._paused_at:
            self._level = 0


class TokenBucket:
    """Token bucket: `rate` tokens per second, at most `burst` saved; callers wait in FIFO order.
    `pause(seconds)` stops issuing tokens for a while (pacing backoff for everyone)."""

    def __init__(self, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._last = time.monotonic()
        self._paused_until = 0.0
        self._lock = asyncio.Lock()

    def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)
        self._tokens = 0.0

    async def take(self) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                if now < self._paused_until:
                    await asyncio.sleep(self._paused_until - now)
                    self._last = time.monotonic()
                    continue
                self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
                self._last = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return
                await asyncio.sleep((1.0 - self._tokens) / self._rate)


def classify(bar_count: int, error: tuple[int, str] | None, timed_out: bool) -> tuple[Status, bool]:
    """(status, is_pacing) of a finished request. ib_insync ends errored and timed-out requests
    with an empty list, so the errorEvent for the reqId decides: 162 'no data' -> EMPTY, a
    'pacing violation' text -> retry, any other error or a timeout -> ERR."""
    if error is not None:
        code, message = error
        text = message.lower()
        if "pacing violation" in text:
            return Status.ERR, True
        if code == 162 and ("no data" in text or "returned no data" in text):
            return Status.EMPTY, False
        return (Status.OK if bar_count else Status.ERR), False
    if timed_out:
        return Status.ERR, False
    return (Status.OK if bar_count else Status.EMPTY), False


class IBGatewayClient:
    """One API session. Use as `async with IBGatewayClient(settings) as gw:`. Every request has a
    timeout; historical requests are capped at `max_in_flight` open at once, issued through the
    token bucket, retried with backoff on pacing violations, and re-issued after a reconnect when
    the gateway drops."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.stats = GatewayStats()
        if settings.quiet_vendor_logs:
            # ib_insync logs every unknown chain candidate (error 200) and every no-data answer at
            # ERROR; each outcome is classified and recorded in the run summary instead.
            for name in ("ib_insync.wrapper", "ib_insync.ib", "ib_insync.client"):
                logging.getLogger(name).setLevel(logging.CRITICAL)
        self._ib = IB()
        self._ib.client.MaxRequests = settings.client_msg_rate
        self._ib.errorEvent += self._on_error
        self._ib.disconnectedEvent += self._on_disconnected
        self._sessions = 0
        self._errors: dict[int, tuple[int, str]] = {}
        self._slots = asyncio.Semaphore(settings.max_in_flight)
        self._in_flight = 0
        self._bucket = TokenBucket(settings.rate_per_s, settings.burst)
        # a sustained storm is probed every 8 x base (16 s by default), at most every 60 s
        self._backoff = SharedBackoff(self._bucket, settings.pacing_backoff_s,
                                      min(_BACKOFF_CAP_S, 8 * settings.pacing_backoff_s))
        self._connect_lock = asyncio.Lock()
        self._closed = False

    async def __aenter__(self) -> IBGatewayClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def _on_disconnected(self) -> None:
        if not self._closed:
            self.stats.disconnects += 1

    def _on_error(self, req_id: int, code: int, message: str, _contract: Any) -> None:
        if req_id > 0 and code not in _WARNING_CODES and not 2100 <= code < 2200:
            self._errors[req_id] = (code, message)

    async def connect(self) -> None:
        """Connect, retrying with exponential backoff for at most `reconnect_attempts` attempts and
        `unreachable_timeout_s` seconds; raises GatewayUnavailableError."""
        async with self._connect_lock:
            if self._ib.isConnected():
                return
            delay = self.settings.reconnect_backoff_s
            last: BaseException | None = None
            deadline = time.monotonic() + self.settings.unreachable_timeout_s
            attempt = 0
            while attempt < self.settings.reconnect_attempts:
                attempt += 1
                try:
                    await self._ib.connectAsync(
                        self.settings.host,
                        self.settings.port,
                        clientId=self.settings.client_id,
                        timeout=max(0.1, min(self.settings.connect_timeout_s, deadline - time.monotonic())),
                        readonly=True,
                    )
                    # reqIds restart on a new session: old error entries would be mis-matched.
                    self._errors.clear()
                    self._sessions += 1
                    if self._sessions > 1:
                        self.stats.reconnects += 1
                        log.warning("IB gateway reconnected (%d reconnects)", self.stats.reconnects)
                    return
                except (TimeoutError, OSError, ConnectionError) as exc:
                    last = exc
                    log.warning("IB connect attempt %d to %s:%d failed: %r", attempt, self.settings.host,
                                self.settings.port, exc)
                pause = delay * (1 + random.random() * 0.1)
                if attempt >= self.settings.reconnect_attempts or time.monotonic() + pause >= deadline:
                    break
                await asyncio.sleep(pause)
                delay = min(delay * 2, _BACKOFF_CAP_S)
            raise GatewayUnavailableError(
                f"IB gateway {self.settings.host}:{self.settings.port} unreachable after "
                f"{attempt} attempts (limit {self.settings.reconnect_attempts} attempts, "
                f"{self.settings.unreachable_timeout_s:g} s): {last!r}"
            )

    def close(self) -> None:
        self._closed = True
        if self._ib.isConnected():
            self._ib.disconnect()

    async def _session(self) -> None:
        if not self._ib.isConnected():
            await self.connect()

    async def _call(self, make: Callable[[], Awaitable[T]], what: str) -> T:
        """Run one non-historical request with the request timeout, reconnecting and re-issuing
        it after a gateway drop."""
        for attempt in range(1, self.settings.request_attempts + 1):
            await self._session()
            try:
                return await asyncio.wait_for(make(), self.settings.request_timeout_s)
            except ConnectionError:
                if attempt == self.settings.request_attempts:
                    raise
            except TimeoutError as exc:
                self.stats.timeouts += 1
                raise DiscoveryError(f"{what}: no answer within {self.settings.request_timeout_s}s") from exc
        raise AssertionError("unreachable")

    async def qualify_stock(self, stock: StockRef) -> int:
        """The stock's conId (given, or qualified on SMART)."""
        if stock.conid:
            return stock.conid
        contract = Stock(stock.symbol, "SMART", stock.currency)
        await self._call(lambda: self._ib.qualifyContractsAsync(contract), f"qualify {stock.symbol}")
        if not contract.conId:
            raise DiscoveryError(f"{stock.symbol}: IB does not know the stock on SMART")
        return int(contract.conId)

    async def discover(self, stock: StockRef, today: date, bounds: DiscoveryBounds | None = None,
                       end: datetime | None = None) -> Discovery:
        """SMART option chain via reqSecDefOptParams, the underlying's last completed daily close
        (before `end`, None = now), then only the bounded candidates (discovery_bounds.candidates)
        qualified in batches of `qualify_batch_size`; reqContractDetails is never called directly
        (IB's 2025 discovery rule)."""
        bounds = bounds or DiscoveryBounds()
        started = time.monotonic()
        requests = 0 if stock.conid else 1
        under = await self.qualify_stock(stock)
        chains = await self._call(
            lambda: self._ib.reqSecDefOptParamsAsync(stock.symbol, "", "STK", under),
            f"reqSecDefOptParams {stock.symbol}",
        )
        requests += 1
        smart = [Chain(c.tradingClass, str(c.multiplier), tuple(c.expirations), tuple(float(k) for k in c.strikes))
                 for c in chains if c.exchange == "SMART"]
        if not smart:
            raise DiscoveryError(f"{stock.symbol}: no SMART option chain (got {len(chains)} other chains)")
        close = None
        if not bounds.unbounded:
            close = await self.completed_close(StockRef(stock.symbol, under, stock.currency), end)
            requests += 1
        wanted = candidates(smart, stock.symbol, today, close, bounds)
        options = [Option(stock.symbol, c.expiry, c.strike, c.right, "SMART", multiplier=c.multiplier,
                          currency=stock.currency, tradingClass=c.trading_class) for c in wanted]
        size = self.settings.qualify_batch_size
        for start in range(0, len(options), size):
            batch = options[start:start + size]

            def qualify(batch: list[Option] = batch) -> Awaitable[list[Contract]]:
                return self._ib.qualifyContractsAsync(*batch)

            # ib_insync sets conId on the inputs in place; that check also holds for ib_async.
            await self._call(qualify, f"qualify {stock.symbol} batch {start // size}")
        requests += len(options)
        contracts = tuple(_to_option_contract(c, stock.symbol) for c in options if c.conId)
        chain_size = sum(len(c.expiries) * len(c.strikes) * 2 for c in smart)
        return Discovery(under, contracts, len(options) - len(contracts), len(options), chain_size, close,
                         requests, time.monotonic() - started)

    async def completed_close(self, stock: StockRef, end: datetime | None) -> float | None:
        """Close of the last completed regular session at `end` (None = now) from `1 day` bars, or
        None when IB has none; today's unfinished daily bar is never used."""
        result = await self.fetch_bars(stock, BarQuery(REFERENCE_SPEC, end))
        return completed_close(result, end)

    async def fetch_bars(self, target: OptionContract | StockRef, query: BarQuery) -> BarFetch:
        """One historical request, classified (see `classify`). Never raises for gateway errors:
        a drop that outlasts the reconnect attempts is ERR."""
        contract = _to_ib_contract(target)
        started = time.monotonic()
        pacing_left = self.settings.pacing_retries
        drops = 0
        attempts = 0
        while True:
            attempts += 1
            try:
                await self._session()
            except GatewayUnavailableError as exc:
                return self._result(query, Status.ERR, None, None, str(exc), started, attempts)
            try:
                bars, error, timed_out, issued_at = await self._historical(contract, query)
            except ConnectionError as exc:
                drops += 1
                if drops >= self.settings.request_attempts:
                    return self._result(query, Status.ERR, None, None, f"disconnected: {exc}", started, attempts)
                continue
            status, pacing = classify(len(bars), error, timed_out)
            if pacing:
                self.stats.pacing_violations += 1
                if pacing_left == 0:
                    return self._result(query, Status.ERR, None, error[0] if error else None,
                                        f"pacing violation never cleared: {error[1] if error else ''}",
                                        started, attempts)
                pacing_left -= 1
                if self._backoff.violation(issued_at):
                    self.stats.pacing_pauses += 1
                continue
            self._backoff.success(issued_at)
            if timed_out and error is None:
                self.stats.timeouts += 1
                return self._result(query, status, None, None, f"timeout after {self.settings.request_timeout_s}s",
                                    started, attempts)
            frame = _bars_frame(bars, target, query) if status is Status.OK else None
            code: int | None = error[0] if error else None
            message: str | None = error[1] if error else None
            if status is Status.EMPTY and message is None:
                message = "no bars returned"
            return self._result(query, status, frame, code, message, started, attempts)

    async def _historical(
        self, contract: Contract, query: BarQuery
    ) -> tuple[list[Any], tuple[int, str] | None, bool, float]:
        async with self._slots:
            await self._bucket.take()
            issued_at = time.monotonic()
            self._in_flight += 1
            self.stats.max_in_flight_seen = max(self.stats.max_in_flight_seen, self._in_flight)
            self.stats.requests += 1
            started = time.monotonic()
            try:
                bars = await self._ib.reqHistoricalDataAsync(
                    contract,
                    endDateTime=query.end or "",
                    durationStr=query.spec.duration,
                    barSizeSetting=query.spec.bar_size,
                    whatToShow=query.spec.what,
                    useRTH=query.spec.use_rth,
                    formatDate=2,  # epoch seconds: parsed as UTC-aware datetimes
                    timeout=self.settings.request_timeout_s,
                )
            finally:
                self._in_flight -= 1
        error = self._errors.pop(bars.reqId, None)
        timed_out = not bars and time.monotonic() - started >= self.settings.request_timeout_s * 0.99
        return list(bars), error, timed_out, issued_at

    @staticmethod
    def _result(query: BarQuery, status: Status, frame: pl.DataFrame | None, code: int | None, message: str | None,
                started: float, attempts: int) -> BarFetch:
        return BarFetch(status, frame if frame is not None else empty_bars(), code, message,
                        time.monotonic() - started, attempts, query)


@dataclass(frozen=True)
class _Failed:
    """A handler that raised: re-raised in the consumer's thread."""

    error: Exception


class IBGatewaySession:
    """Synchronous facade over IBGatewayClient for the stage runner: the client lives on a private
    event loop in a thread of its own, so callers never touch asyncio. Open with
    `IBGatewaySession.open(settings)` (raises GatewayUnavailableError) and use as a context manager.
    Results come back to the caller's thread in the caller's order (`fetch_all`, `discover_all`); no
    callback into the caller runs on another thread."""

    def __init__(self, settings: GatewaySettings) -> None:
        self._settings = settings
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name="ib-gateway-session", daemon=True)
        self._thread.start()
        self._client: IBGatewayClient = self._call(self._make_client())

    def _run_loop(self) -> None:
        # ib_insync finds its loop through the policy, not the running loop: make ours current here.
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    async def _make_client(self) -> IBGatewayClient:
        return IBGatewayClient(self._settings)

    def _call(self, coro: Awaitable[T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()  # type: ignore[arg-type]

    @classmethod
    def open(cls, settings: GatewaySettings) -> IBGatewaySession:
        session = cls(settings)
        try:
            session._call(session._client.connect())
        except BaseException:
            session.close()
            raise
        return session

    @property
    def stats(self) -> GatewayStats:
        return self._client.stats

    def discover_all(
        self,
        stocks: Sequence[StockRef],
        today: date,
        workers: int = 4,
        bounds: DiscoveryBounds | None = None,
        end: datetime | None = None,
    ) -> Iterator[Discovery | Exception]:
        """Discover each stock (see IBGatewayClient.discover), `workers` symbols at a time; yields, in
        the order of `stocks`, the Discovery or the DiscoveryError/ConnectionError that ended it."""

        async def one(stock: StockRef) -> Discovery | Exception:
            try:
                return await self._client.discover(stock, today, bounds, end)
            except (DiscoveryError, ConnectionError) as exc:
                return exc

        return self._stream(stocks, workers, one)

    def fetch_all(self, requests: Sequence[tuple[OptionContract | StockRef, BarQuery]]) -> Iterator[BarFetch]:
        """The results of `requests` (contract, query), in their order, while the next ones are in
        flight under the client's cap, bucket and retries."""

        async def one(request: tuple[OptionContract | StockRef, BarQuery]) -> BarFetch:
            return await self._client.fetch_bars(*request)

        return self._stream(requests, self._settings.max_in_flight, one)

    def _stream(self, items: Sequence[T], workers: int, handle: Callable[[T], Awaitable[R]]) -> Iterator[R]:
        """Run `handle` over `items` on the loop, `workers` at once and at most `4 x workers` ahead of
        the consumer (bounded memory); yield the results in item order."""
        results: dict[int, R | _Failed] = {}
        ready = threading.Condition()
        ahead = asyncio.Semaphore(4 * max(1, workers))  # used on the loop only (bound there at first use)
        order = iter(range(len(items)))

        async def worker() -> None:
            for i in order:
                await ahead.acquire()
                try:
                    result: R | _Failed = await handle(items[i])
                except Exception as exc:  # noqa: BLE001 - handed to the consumer, who re-raises it
                    result = _Failed(exc)
                with ready:
                    results[i] = result
                    ready.notify()

        async def run() -> None:
            await asyncio.gather(*(worker() for _ in range(max(1, min(workers, len(items))))))

        future = asyncio.run_coroutine_threadsafe(run(), self._loop)
        try:
            for i in range(len(items)):
                with ready:
                    while i not in results:
                        if future.done() and future.exception() is not None:
                            raise future.exception()  # type: ignore[misc]
                        ready.wait(0.5)
                    result = results.pop(i)
                self._loop.call_soon_threadsafe(ahead.release)
                if isinstance(result, _Failed):
                    raise result.error
                yield result
        finally:
            future.cancel()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            if self._thread.is_alive():
                self._call(self._shutdown())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()

    async def _shutdown(self) -> None:
        self._client.close()
        await self._loop.shutdown_asyncgens()

    def __enter__(self) -> IBGatewaySession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def completed_close(result: BarFetch, end: datetime | None) -> float | None:
    """The close of the last daily bar whose session is complete at `end` (None = now), if positive."""
    if result.status is not Status.OK or not result.bars.height:
        return None
    last = last_completed_session(end or datetime.now(UTC))
    days = result.bars.select(pl.col("ts").dt.convert_time_zone("America/New_York").dt.date().alias("day"),
                              "close").filter(pl.col("day") <= last)
    if not days.height:
        return None
    close = float(days["close"][-1])
    return close if close > 0 else None


def _to_ib_contract(target: OptionContract | StockRef) -> Contract:
    if isinstance(target, StockRef):
        return Stock(target.symbol, "SMART", target.currency, conId=target.conid or 0)
    return Option(
        target.symbol, target.expiry.strftime("%Y%m%d"), target.strike, target.right, "SMART",
        multiplier=target.multiplier, currency=target.currency, tradingClass=target.trading_class,
        conId=target.conid,
    )


def _to_option_contract(contract: Option, symbol: str) -> OptionContract:
    return OptionContract(
        conid=int(contract.conId),
        symbol=symbol,
        expiry=datetime.strptime(contract.lastTradeDateOrContractMonth[:8], "%Y%m%d").date(),
        right="C" if contract.right.upper().startswith("C") else "P",
        strike=float(contract.strike),
        multiplier=str(contract.multiplier or "100"),
        exchange="SMART",
        trading_class=contract.tradingClass,
        currency=contract.currency or "USD",
    )


def _bar_ts(value: date | datetime) -> datetime:
    # Daily and larger bars come as dates (the New York session date); intraday as UTC datetimes.
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.combine(value, dtime(0), NEW_YORK).astimezone(UTC)


def _bars_frame(bars: Sequence[Any], target: OptionContract | StockRef, query: BarQuery) -> pl.DataFrame:
    conid = target.conid or 0
    rows: dict[str, list[Any]] = {name: [] for name in BAR_SCHEMA}
    for bar in bars:
        rows["ts"].append(_bar_ts(bar.date))
        rows["open"].append(float(bar.open))
        rows["high"].append(float(bar.high))
        rows["low"].append(float(bar.low))
        rows["close"].append(float(bar.close))
        rows["volume"].append(float(bar.volume))
        rows["wap"].append(float(bar.average))
        rows["bar_count"].append(int(bar.barCount))
    n = len(bars)
    rows["symbol"] = [target.symbol] * n
    rows["conid"] = [conid] * n
    rows["bar_size"] = [query.spec.bar_size] * n
    rows["what_to_show"] = [query.spec.what] * n
    return pl.DataFrame(rows, schema=BAR_SCHEMA)

