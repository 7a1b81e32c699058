"""aiohttp server in a background thread: TqAuth token endpoint, DIFF websocket, holiday and continuous-table JSON."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from typing import Any

import jwt
from aiohttp import WSMsgType, web

from ghtrader_assets.sim.tq.market import MarketConfig, SimMarket
from ghtrader_assets.sim.tq.protocol import MdSession

TOKEN_PATH = "/auth/realms/shinnytech/protocol/openid-connect/token"
GRANT_PATH = "/auth/realms/shinnytech/rest/get-grant/tq"
MD_PATH = "/t/md/front/mobile"
HOLIDAY_PATH = "/shinny_chinese_holiday.json"
CONT_PATH = "/continuous_table.json"
INS_PATH = "/t/md/symbols/latest.json"
CLOCK_PATH = "/sim/clock"  # GET: the clock; POST {"now": ISO time}: set it (tests in another process)
_CST = timezone(timedelta(hours=8))


class TqSimServer:
    """One local port serving everything tqsdk fetches; start()/stop() or use as a context manager."""

    def __init__(self, cfg: MarketConfig, market: SimMarket | None = None) -> None:
        self.cfg = cfg
        self.market = market or SimMarket(cfg)
        self.stats: dict[str, int] = {k: 0 for k in ("connections", "token_requests", "ins_queries", "set_chart",
                                                     "tick_responses", "ticks_sent", "klines_sent", "drops")}
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._sockets: set[web.WebSocketResponse] = set()
        # (contract, trading day) -> tick downloads started (first set_chart of each download)
        self.downloads: dict[tuple[str, date], int] = {}
        self._clock_lock = threading.Lock()

    # ---- lifecycle ------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://{self.cfg.host}:{self.port}"

    @property
    def auth_url(self) -> str:
        return self.base_url

    @property
    def md_url(self) -> str:
        return f"ws://{self.cfg.host}:{self.port}{MD_PATH}"

    def env(self) -> dict[str, str]:
        """tqsdk's own settings that point the unmodified client here."""
        return {
            "TQ_AUTH_URL": self.auth_url,
            "TQ_MD_URL": self.md_url,
            "TQ_CHINESE_HOLIDAY_URL": self.base_url + HOLIDAY_PATH,
            "TQ_CONT_TABLE_URL": self.base_url + CONT_PATH,
            "TQ_INS_URL": self.base_url + INS_PATH,
        }

    # ---- clock --------------------------------------------------------------------------------
    @property
    def now(self) -> datetime:
        """The simulator's clock (naive Beijing time): nothing after it exists."""
        return self.market.now

    def set_now(self, now: datetime) -> None:
        """Move the clock (forwards or back): ticks, quotes and the continuous table follow it."""
        now = now.astimezone(_CST).replace(tzinfo=None) if now.tzinfo else now
        with self._clock_lock:
            if now != self.market.now:
                self.cfg = replace(self.cfg, now=now)
                self.market = SimMarket(self.cfg)

    def start(self) -> "TqSimServer":
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._serve())
            except BaseException as e:  # surfaced to start()'s caller
                errors.append(e)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup() if self._runner else asyncio.sleep(0))
            loop.close()

        self._thread = threading.Thread(target=run, name="tq-sim-server", daemon=True)
        self._thread.start()
        ready.wait(30)
        if errors:
            raise errors[0]
        return self

    def stop(self) -> None:
        if self._loop and self._thread and self._thread.is_alive():
            async def close_all() -> None:
                for ws in list(self._sockets):
                    await ws.close()
            asyncio.run_coroutine_threadsafe(close_all(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> "TqSimServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_post(TOKEN_PATH, self._token)
        app.router.add_get(GRANT_PATH, self._grant)
        app.router.add_get(HOLIDAY_PATH, self._holidays)
        app.router.add_get(CONT_PATH, self._cont_table)
        app.router.add_get(MD_PATH, self._md)
        app.router.add_get(CLOCK_PATH, self._get_clock)
        app.router.add_post(CLOCK_PATH, self._post_clock)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.cfg.host, self.cfg.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    # ---- HTTP -----------------------------------------------------------------------------------
    def _make_token(self, kind: str) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "exp": now + 86400, "iat": now, "iss": f"{self.base_url}/auth/realms/shinnytech", "aud": "shinny_tq",
            "sub": f"sim-{self.cfg.username}", "typ": kind, "preferred_username": self.cfg.username,
            "grants": {"features": list(self.cfg.features), "accounts": ["*"], "otg_ids": "", "expiry_date": "0"},
        }
        return jwt.encode(claims, "tq-sim-local-signing-key-not-a-secret-0123456789", algorithm="HS256")

    async def _token(self, request: web.Request) -> web.Response:
        self.stats["token_requests"] += 1
        form = await request.post()
        ok = form.get("grant_type") == "refresh_token" or (
            form.get("username") == self.cfg.username and form.get("password") == self.cfg.password)
        if not ok:  # what Keycloak answers for a bad password
            return web.json_response({"error": "invalid_grant", "error_description": "Invalid user credentials"},
                                     status=401)
        return web.json_response({"access_token": self._make_token("Bearer"), "expires_in": 86400,
                                  "refresh_expires_in": 2592000, "refresh_token": self._make_token("Refresh"),
                                  "token_type": "Bearer", "scope": "openid"})

    async def _grant(self, request: web.Request) -> web.Response:
        return web.json_response({"exp": int(time.time()) + 365 * 86400, "daysleft": 365, "account_type": "sim"})

    async def _holidays(self, request: web.Request) -> web.Response:
        return web.json_response([d.isoformat() for d in self.market.holidays()])

    async def _cont_table(self, request: web.Request) -> web.Response:
        return web.json_response(self.market.continuous_table())

    async def _get_clock(self, request: web.Request) -> web.Response:
        return web.json_response({"now": self.now.isoformat()})

    async def _post_clock(self, request: web.Request) -> web.Response:
        """Set the clock from another process: POST {"now": "2024-03-01T20:00:00"} (naive = Beijing)."""
        body = await request.json()
        try:
            self.set_now(datetime.fromisoformat(body["now"]))
        except (KeyError, TypeError, ValueError) as exc:
            return web.json_response({"error": f"bad clock request: {exc}"}, status=400)
        return web.json_response({"now": self.now.isoformat()})

    # ---- DIFF websocket -------------------------------------------------------------------------
    async def _md(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        self.stats["connections"] += 1
        self._sockets.add(ws)
        session = MdSession(lambda: self.market, self.stats, self.downloads)
        faults = self.cfg.faults
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                answered_ticks = session.handle(json.loads(msg.data))
                out = session.flush()
                if out is not None:
                    await ws.send_str(json.dumps(out))
                if not answered_ticks:
                    continue
                self.stats["tick_responses"] += 1
                n = self.stats["tick_responses"]
                if faults.stall_after_tick_responses and n == faults.stall_after_tick_responses:
                    await asyncio.sleep(faults.stall_seconds)
                drop = faults.drop_after_tick_responses
                if drop and n % drop == 0 and self.stats["drops"] < faults.drop_count:
                    self.stats["drops"] += 1
                    # a non-1000 close code: tqsdk treats it as a network failure and reconnects
                    await ws.close(code=1011, message=b"tq-sim: injected disconnect")
                    break
        finally:
            self._sockets.discard(ws)
        return ws
