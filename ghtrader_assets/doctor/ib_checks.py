"""Doctor checks of the IB gateway: the API connection (IB_HOST/IB_PORT/IB_CLIENT_ID) and its market-data farms."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from ghtrader_assets.doctor.report import Check, describe, fail, ok, skip
from ghtrader_assets.ibkr_settings import resolve

# What a gateway reports, as error events with reqId -1, about its links to IB's farms (text "...:<farm>").
FARM_OK = {2104: "market data", 2106: "historical data", 2158: "sec-def",
           2107: "historical data (inactive, available on demand)", 2108: "market data (inactive, available on demand)"}
FARM_BROKEN = {2103: "market data", 2105: "historical data", 2157: "sec-def"}
CLIENT_ID_IN_USE = 326
_VENDOR_LOGS = ("ib_insync.client", "ib_insync.wrapper", "ib_insync.ib")


def checks(timeout_s: float) -> Iterator[Check]:
    try:
        gateway = resolve().gateway
    except ValueError as exc:
        yield fail("ib.settings", str(exc), "fix the IB_*/GHTRADER_IB_* variable named")
        return
    from ib_insync import IB

    where = f"{gateway.host}:{gateway.port}"
    ib = IB()
    events: list[tuple[int, str]] = []
    ib.errorEvent += lambda req_id, code, text, _contract: events.append((code, text)) if req_id == -1 else None
    with _quiet_vendor_logs():
        try:
            ib.connect(gateway.host, gateway.port, clientId=gateway.client_id,
                       timeout=min(timeout_s, gateway.connect_timeout_s), readonly=True)
        except Exception as exc:  # noqa: BLE001 - refused, timed out, or closed by the gateway
            yield _connect_failed(where, gateway.client_id, exc, events)
            yield skip("ib.farms", "needs a connection")
            return
        try:
            yield ok("ib.connect", f"{where} as client {gateway.client_id}: server version "
                                   f"{ib.client.serverVersion()}, {len(ib.managedAccounts())} account(s)")
            waited = 0.0
            while not any(code in FARM_OK or code in FARM_BROKEN for code, _ in events) and waited < timeout_s:
                ib.sleep(0.1)  # a gateway reports its farms right after the handshake
                waited += 0.1
            yield farm_check(events)
        finally:
            ib.disconnect()


def farm_check(events: list[tuple[int, str]]) -> Check:
    """The farms' latest state from the gateway's (code, text) messages, in arrival order."""
    latest: dict[str, tuple[int, str]] = {}
    for code, text in events:
        if code in FARM_OK or code in FARM_BROKEN:
            latest[text.rsplit(":", 1)[-1]] = (code, text)
    if not latest:
        return fail("ib.farms", "the gateway reported no market-data farm", "log the gateway in to IB (its login "
                    "screen or IBC), then check again")
    broken = [f"{farm} ({FARM_BROKEN[code]}, {code})" for farm, (code, _) in latest.items() if code in FARM_BROKEN]
    if broken:
        return fail("ib.farms", f"broken: {', '.join(broken)}", "the gateway is up but cannot reach IB's data "
                    "farms: farms usually reconnect within minutes; else check its network and log it in again")
    return ok("ib.farms", ", ".join(f"{farm} ({FARM_OK[code]}) OK" for farm, (code, _) in latest.items()))


def _connect_failed(where: str, client_id: int, exc: BaseException, events: list[tuple[int, str]]) -> Check:
    if any(code == CLIENT_ID_IN_USE for code, _ in events):
        return fail("ib.connect", f"{where}: client id {client_id} is in use by another session",
                    "set IB_CLIENT_ID to an id no other API client of this gateway uses")
    return fail("ib.connect", f"{where}: {describe(exc)}", "start the IB Gateway (or TWS) with the API enabled, "
                "or point IB_HOST/IB_PORT at it (paper gateway 4002, live 4001); allow this host in its trusted IPs")


@contextmanager
def _quiet_vendor_logs() -> Iterator[None]:
    """ib_insync logs a refused connection at ERROR on stderr; the check line says it once."""
    loggers = [logging.getLogger(name) for name in _VENDOR_LOGS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
