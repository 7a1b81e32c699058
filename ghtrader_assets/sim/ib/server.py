"""The asyncio gateway simulator: handshake, start-up sync, contracts, chains, history, pacing and faults."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Callable
from zoneinfo import ZoneInfo

from ghtrader_assets.sim.ib import calendar as cal
from ghtrader_assets.sim.ib import wire
from ghtrader_assets.sim.ib.config import GatewayConfig
from ghtrader_assets.sim.ib.pacing import Pacer
from ghtrader_assets.sim.ib.universe import BAR_MINUTES, Bar, OptionSpec, SimUniverse, StockSpec, parse_duration

log = logging.getLogger(__name__)
HMDS = "Historical Market Data Service error message:"
NO_SECDEF = "No security definition has been found for the request"
LOST = "Connectivity between IB and Trader Workstation has been lost."
RESTORED = "Connectivity between IB and Trader Workstation has been restored - data maintained."
CHAIN_EXCHANGES = ("SMART", "CBOE", "AMEX", "ISE", "PHLX")


@dataclass
class SimStats:
    """Counters for tests and benchmarks (written by the simulator thread only)."""

    connections: int = 0
    requests_received: int = 0
    historical_requests: int = 0
    bars_sent: int = 0
    pacing_violations: int = 0
    open_historical: int = 0
    max_open_historical: int = 0
    cancels: int = 0
    errors: Counter[int] = field(default_factory=Counter)


class _Conn:
    """One client socket with its in-flight request tasks."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.client_id: int | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.history: dict[int, asyncio.Task[None]] = {}

    def send(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)


class GatewaySim:
    """A local IB Gateway on host:port that the unmodified ib_insync.IB client can use."""

    def __init__(self, config: GatewayConfig | None = None, **overrides: Any) -> None:
        self.config = replace(config or GatewayConfig(), **overrides)
        self.universe = SimUniverse(self.config)
        self.stats = SimStats()
        self.host, self.port = self.config.host, self.config.port
        self._pacer = Pacer(self.config)
        self._conns: set[_Conn] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._farm_up: asyncio.Event | None = None
        self._dropped = False
        self._handlers: dict[int, Callable[[_Conn, dict[str, str]], Any]] = {
            71: self._start_api, 5: self._simple("open_order_end"), 99: self._simple("completed_orders_end"),
            61: self._simple("position_end"), 6: self._account_updates, 7: self._req_end("exec_details_end"),
            76: self._req_end("account_update_multi_end"), 62: self._req_end("account_summary_end"),
            8: self._next_id, 49: self._current_time, 9: self._contract_details, 78: self._secdef,
            20: self._historical, 25: self._cancel_historical,
        }

    # ---- lifecycle (called from other threads)
    def start(self) -> GatewaySim:
        """Start listening in a background thread with its own event loop."""
        ready = threading.Event()
        errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, args=(ready, errors), name="ib-gateway-sim", daemon=True)
        self._thread.start()
        ready.wait(10)
        if errors:
            raise errors[0]
        return self

    def stop(self) -> None:
        """Close every client connection, cancel all work and join the thread."""
        if self._loop and self._thread and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._thread = None

    def __enter__(self) -> GatewaySim:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def drop_connections(self) -> None:
        """Close every client socket now, like a gateway restart; the server keeps listening."""
        self._call(self._drop)

    def connectivity_lost(self) -> None:
        """Send error 1100 to every client; historical answers wait until connectivity_restored()."""
        self._call(self._lost)

    def connectivity_restored(self) -> None:
        """Send error 1102 to every client and release held historical answers."""
        self._call(self._restored)

    def start_pacing_storm(self, count: int) -> None:
        """Answer the next `count` historical requests with pacing violations."""
        self._call(lambda: setattr(self._pacer, "storm_left", count))

    def _call(self, fn: Callable[[], None]) -> None:
        if self._loop is None:
            raise RuntimeError("simulator not started")
        done = threading.Event()
        self._loop.call_soon_threadsafe(lambda: (fn(), done.set()))
        done.wait(5)

    def _run(self, ready: threading.Event, errors: list[BaseException]) -> None:
        loop = self._loop = asyncio.new_event_loop()
        try:
            self._farm_up = asyncio.Event()
            self._farm_up.set()
            self._server = loop.run_until_complete(asyncio.start_server(self._serve, self.host, self.port))
            self.host, self.port = self._server.sockets[0].getsockname()[:2]
        except BaseException as exc:  # noqa: BLE001 - handed to start()
            errors.append(exc)
            ready.set()
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._shutdown())
            loop.close()

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        self._drop()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()

    # ---- connection handling
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Conn(writer)
        self._conns.add(conn)
        self.stats.connections += 1
        try:
            if await reader.readexactly(4) != b"API\0":
                return
            await wire.read_frame(reader)  # "v157..176": we answer 176 whatever the client offers
            conn.send(wire.frame([wire.SERVER_VERSION, self._now().astimezone(cal.NY).strftime("%Y%m%d %H:%M:%S %Z")]))
            while True:
                msg_id, msg = wire.parse(await wire.read_frame(reader))
                self.stats.requests_received += 1
                handler = self._handlers.get(msg_id)
                result = handler(conn, msg) if handler else None
                if asyncio.iscoroutine(result):
                    task = asyncio.create_task(result)
                    conn.tasks.add(task)
                    task.add_done_callback(conn.tasks.discard)
                    if msg_id == 20:
                        conn.history[int(msg["reqId"])] = task
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # a cancelled handler must end quietly: asyncio 3.11 logs task.exception() of a cancelled one
        finally:
            self._conns.discard(conn)
            for task in list(conn.tasks):
                task.cancel()
            writer.close()

    def _drop(self) -> None:
        for conn in list(self._conns):
            conn.writer.close()

    def _now(self) -> datetime:
        return self.config.now()

    def _error(self, conn: _Conn, req_id: int, code: int, msg: str) -> None:
        self.stats.errors[code] += 1
        conn.send(wire.reply("error", req_id, code, msg, ""))

    def _broadcast_error(self, code: int, msg: str) -> None:
        for conn in list(self._conns):
            if conn.client_id is not None:
                self._error(conn, -1, code, msg)

    def _lost(self) -> None:
        assert self._farm_up is not None
        self._farm_up.clear()
        self._broadcast_error(1100, LOST)

    def _restored(self) -> None:
        assert self._farm_up is not None
        self._farm_up.set()
        self._broadcast_error(1102, RESTORED)

    # ---- start-up sync and small requests
    def _start_api(self, conn: _Conn, m: dict[str, str]) -> None:
        client_id = int(m.get("clientId") or 0)
        if any(c.client_id == client_id for c in self._conns):
            self._error(conn, -1, 326, "Unable to connect as the client id is already in use. "
                                        "Retry with a unique client id.")
            conn.writer.close()
            return
        conn.client_id = client_id
        conn.send(wire.reply("next_valid_id", 1) + wire.reply("managed_accounts", self.config.account))
        for code, text in self.config.farm_status:
            self._error(conn, -1, code, text)

    @staticmethod
    def _simple(name: str) -> Callable[[_Conn, dict[str, str]], None]:
        return lambda conn, m: conn.send(wire.reply(name))

    @staticmethod
    def _req_end(name: str) -> Callable[[_Conn, dict[str, str]], None]:
        return lambda conn, m: conn.send(wire.reply(name, m.get("reqId", "")))

    def _account_updates(self, conn: _Conn, m: dict[str, str]) -> None:
        if m.get("subscribe") == "1":
            conn.send(wire.reply("account_download_end", m.get("account", "")))

    def _next_id(self, conn: _Conn, m: dict[str, str]) -> None:
        conn.send(wire.reply("next_valid_id", 1))

    def _current_time(self, conn: _Conn, m: dict[str, str]) -> None:
        conn.send(wire.reply("current_time", int(self._now().timestamp())))

    # ---- contracts and chains
    def _match(self, m: dict[str, str]) -> list[StockSpec | OptionSpec]:
        """Contracts matching the request's contract fields, as reqContractDetails would list them. An
        expired option is unknown whatever includeExpired says: IB keeps no expired options (the flag
        reaches expired futures only), so it answers error 200 like for a contract that never existed."""
        u = self.universe
        if int(m.get("conId") or 0):
            spec = u.lookup(int(m["conId"]))
            ok = spec is not None and (isinstance(spec, StockSpec) or not u.expired(spec))
            return [spec] if ok and spec is not None else []
        symbol, sec_type = m.get("symbol", "").upper(), m.get("secType", "")
        if symbol not in u.symbols or m.get("currency", "") not in ("", "USD"):
            return []
        if sec_type == "STK":
            return [u.stock(symbol)]
        if sec_type != "OPT" or m.get("exchange", "") not in ("", *CHAIN_EXCHANGES):
            return []
        expiry, right = m.get("lastTradeDateOrContractMonth", ""), m.get("right", "")[:1].upper()
        strike = float(m.get("strike") or 0)
        if len(expiry) == 8 and right and strike:  # fully specified: index lookup instead of a chain scan
            exact = u.option(symbol, expiry, right, strike)
            pool = [exact] if exact and not u.expired(exact) else []
        else:
            pool = u.option_chain(symbol)
        return [o for o in pool
                if o.expiry.startswith(expiry) and (not right or o.right == right)
                and (not strike or abs(o.strike - strike) < 1e-6)
                and m.get("tradingClass", "") in ("", o.trading_class)
                and m.get("multiplier", "") in ("", o.multiplier)
                and m.get("localSymbol", "") in ("", o.local_symbol)]

    def _hours(self) -> str:
        """tradingHours/liquidHours for the coming week, e.g. '20261120:0930-20261120:1600;20261121:CLOSED'."""
        today = self._now().astimezone(cal.NY).date()
        parts = []
        for day in (today + timedelta(n) for n in range(7)):
            try:
                sess = cal.session(day)
            except ValueError:
                break
            d = day.strftime("%Y%m%d")
            parts.append(f"{d}:{sess[0]:%H%M}-{d}:{sess[1]:%H%M}" if sess else f"{d}:CLOSED")
        return ";".join(parts)

    def _details(self, req_id: int, spec: StockSpec | OptionSpec, exchange: str) -> bytes:
        hours = self._hours()
        if isinstance(spec, StockSpec):
            return wire.reply(
                "contract_details", req_id, spec.symbol, "STK", "", 0, "", exchange or "SMART", spec.currency,
                spec.symbol, "NMS", "NMS", spec.conid, 0.01, "", "LMT,MKT,STP", f"SMART,{spec.primary_exchange}",
                1, 0, f"{spec.symbol} SIMULATED INC", spec.primary_exchange, "", "Technology", "Computers",
                "Computers", "US/Eastern", hours, hours, "", "", 0, 1, "", "", "26", "", "COMMON", 1, 1, 100)
        under = self.universe.stock(spec.symbol).conid
        return wire.reply(
            "contract_details", req_id, spec.symbol, "OPT", spec.expiry, spec.strike, spec.right,
            exchange or "SMART", "USD", spec.local_symbol, spec.trading_class, spec.trading_class, spec.conid, 0.01,
            spec.multiplier, "LMT,MKT", ",".join(CHAIN_EXCHANGES), 1, under, f"{spec.symbol} SIMULATED INC", "",
            spec.expiry[:6], "Technology", "Computers", "Computers", "US/Eastern", hours, hours, "", "", 0, 2,
            spec.symbol, "STK", "32", spec.expiry, "", 1, 1, 1)

    async def _contract_details(self, conn: _Conn, m: dict[str, str]) -> None:
        await asyncio.sleep(self.config.latency_s)
        req_id = int(m["reqId"])
        specs = self._match(m)
        if not specs:
            return self._error(conn, req_id, 200, NO_SECDEF)
        exchange = m.get("exchange", "")
        details = b"".join(self._details(req_id, s, exchange) for s in specs)
        conn.send(details + wire.reply("contract_details_end", req_id))

    async def _secdef(self, conn: _Conn, m: dict[str, str]) -> None:
        await asyncio.sleep(self.config.latency_s)
        req_id, symbol = int(m["reqId"]), m.get("symbol", "").upper()
        under = int(m.get("underConId") or 0)
        if symbol not in self.universe.symbols or under not in (0, self.universe.stock(symbol).conid):
            return self._error(conn, req_id, 200, NO_SECDEF)
        chain = self.universe.option_chain(symbol)
        expiries = sorted({o.expiry for o in chain})
        strikes = sorted({o.strike for o in chain})  # IB lists the union: not every expiry has every strike
        stock_id = self.universe.stock(symbol).conid
        wanted = m.get("futFopExchange", "")
        out = [wire.reply("secdef_chain", req_id, ex, stock_id, symbol, "100", len(expiries), *expiries,
                          len(strikes), *strikes) for ex in CHAIN_EXCHANGES if wanted in ("", ex)]
        conn.send(b"".join(out) + wire.reply("secdef_end", req_id))

    # ---- historical data
    def _parse_end(self, text: str) -> datetime | None:
        """endDateTime: '' (now), 'YYYYMMDD HH:MM:SS [zone]', 'YYYYMMDD-HH:MM:SS' (UTC) or 'YYYYMMDD'."""
        text = text.strip()
        if not text:
            return None
        if "-" in text:
            return datetime.strptime(text, "%Y%m%d-%H:%M:%S").replace(tzinfo=UTC)
        if len(text) == 8:
            return datetime.strptime(text, "%Y%m%d").replace(hour=23, minute=59, second=59, tzinfo=cal.NY)
        day, clock, *zone = text.split()
        tz = ZoneInfo(zone[0]) if zone and zone[0] != "UTC" else (UTC if zone else cal.NY)
        return datetime.strptime(f"{day} {clock}", "%Y%m%d %H:%M:%S").replace(tzinfo=tz)

    @staticmethod
    def _stamp(when: datetime | date, format_date: str) -> str:
        if not isinstance(when, datetime):
            return when.strftime("%Y%m%d")  # daily bars are dates whatever formatDate says
        if format_date == "2":
            return str(int(when.timestamp()))
        return when.astimezone(cal.NY).strftime("%Y%m%d %H:%M:%S US/Eastern")

    async def _historical(self, conn: _Conn, m: dict[str, str]) -> None:
        c, stats = self.config, self.stats
        req_id = int(m["reqId"])
        stats.historical_requests += 1
        n = stats.historical_requests
        if c.pacing_storm and n == c.pacing_storm[0] + 1:
            self._pacer.storm_left = c.pacing_storm[1]
        if c.connectivity_blip and n == c.connectivity_blip[0] + 1:
            self._lost()
            asyncio.get_running_loop().call_later(c.connectivity_blip[1], self._restored)
        if c.drop_after_requests is not None and n > c.drop_after_requests and not self._dropped:
            self._dropped = True
            return self._drop()
        try:
            end = self._parse_end(m.get("endDateTime", ""))
            parse_duration(m.get("duration", ""))
            if m.get("barSize") not in BAR_MINUTES:
                raise ValueError(f"bar size {m.get('barSize')!r} is not supported by the simulator")
            if m.get("whatToShow") != "TRADES" or m.get("keepUpToDate") == "1":
                raise ValueError("the simulator serves TRADES without keepUpToDate only")
        except (ValueError, KeyError) as exc:
            return self._error(conn, req_id, 321, f"Error validating request.-'bP' : cause - {exc}")
        contract = (m.get("conId"), m.get("symbol"), m.get("secType"), m.get("lastTradeDateOrContractMonth"),
                    m.get("strike"), m.get("right"))
        request = (*contract, m["endDateTime"], m["barSize"], m["duration"], m.get("useRTH"), m["whatToShow"])
        reason = self._pacer.check(request, contract, asyncio.get_running_loop().time())
        if reason:
            stats.pacing_violations += 1
            log.debug("pacing violation for reqId %s: %s", req_id, reason)
            return self._error(conn, req_id, 162, HMDS + "Historical data request pacing violation")
        self._pacer.open += 1
        stats.open_historical = self._pacer.open
        stats.max_open_historical = max(stats.max_open_historical, self._pacer.open)
        released = False

        def release() -> None:  # the request stops being open just before its answer goes out
            nonlocal released
            if not released:
                released = True
                self._pacer.open -= 1
                stats.open_historical = self._pacer.open
                conn.history.pop(req_id, None)

        try:
            await self._answer_history(conn, req_id, m, end, n, release)
        finally:
            release()

    async def _answer_history(self, conn: _Conn, req_id: int, m: dict[str, str], end: datetime | None,
                              n: int, release: Callable[[], None]) -> None:
        assert self._farm_up is not None
        await asyncio.sleep(self.config.latency_s)
        await self._farm_up.wait()  # during a 1100 outage answers are held, not lost
        specs = self._match(m)  # an expired option: error 200, as IB answers
        if len(specs) == 1 and (specs[0].conid in self.config.hang_conids or n in self.config.hang_requests):
            await asyncio.Future()  # never answered; released by cancelHistoricalData or disconnect
        release()
        if len(specs) != 1:
            return self._error(conn, req_id, 200, NO_SECDEF)
        spec = specs[0]
        bars: list[Bar] = self.universe.bars(spec.conid, m["barSize"], m["duration"], end, m.get("useRTH") == "1")
        if not bars:
            name = spec.local_symbol if isinstance(spec, OptionSpec) else spec.symbol
            return self._error(conn, req_id, 162, f"{HMDS}HMDS query returned no data: {name}@SMART Trades")
        fmt = m.get("formatDate", "1")
        now = self._now()
        start = now if not bars else bars[0].time
        fields: list[object] = [req_id, self._stamp(start, fmt), self._stamp(min(end or now, now), fmt), len(bars)]
        for b in bars:
            fields += [self._stamp(b.time, fmt), b.open, b.high, b.low, b.close, b.volume, b.wap, b.count]
        self.stats.bars_sent += len(bars)  # counted before the answer leaves, so a client never sees it first
        conn.send(wire.frame([*wire.REPLIES["historical_data"], *fields]))
        await conn.writer.drain()

    def _cancel_historical(self, conn: _Conn, m: dict[str, str]) -> None:
        task = conn.history.pop(int(m["reqId"]), None)
        if task:
            self.stats.cancels += 1
            task.cancel()
