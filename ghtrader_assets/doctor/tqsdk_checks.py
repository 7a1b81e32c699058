"""Doctor checks of TqSdk: login, the tq_dl grant tick downloads need, the trading calendar and the
continuous table, at the endpoints TqSdk's own variables (TQ_AUTH_URL, TQ_MD_URL, ...) name."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from ghtrader_assets.doctor.report import Check, describe, fail, ok, skip
from ghtrader_assets.domain.calendar import CST
from ghtrader_assets.io.tqsdk_client import (TqSdkAuthError, TqSdkClient, TqSdkError, TqSettings,
                                             continuous_table_varieties)

_CREDENTIALS = "check TQSDK_USER/TQSDK_PASSWORD (a .env line wins over an exported variable)"
_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}


def checks(timeout_s: float) -> Iterator[Check]:
    user, password = os.environ.get("TQSDK_USER", "").strip(), os.environ.get("TQSDK_PASSWORD", "")
    if not user or not password.strip():
        yield skip("tqsdk", "TQSDK_USER/TQSDK_PASSWORD not set (the futures chain needs them)")
        return
    login, auth = _login(user, password, timeout_s)
    yield login
    if auth is None:
        yield skip("tqsdk.tq_dl", "needs a login")
        yield skip("tqsdk.calendar", "needs a login")
    else:
        yield _tick_grant(auth, user)
        yield _calendar(user, password, timeout_s)
    yield _continuous_table(timeout_s)


def _unreachable(url: str, timeout_s: float) -> str | None:
    """Why a TCP connection to the URL's host and port fails within `timeout_s`, or None when it opens:
    TqSdk itself waits 30-60 s for an endpoint that is down."""
    parts = urlsplit(url)
    try:
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 80)
        with socket.create_connection((parts.hostname or "", port), timeout=timeout_s):
            return None
    except (OSError, ValueError) as exc:
        return f"{url} unreachable: {describe(exc)}"


def _login(user: str, password: str, timeout_s: float) -> tuple[Check, Any]:
    """TqSdk's own login (a token from TQ_AUTH_URL); returns the logged-in TqAuth, or None."""
    from tqsdk import TqAuth

    auth = TqAuth(user, password)
    url = auth._auth_url  # TQ_AUTH_URL, else the vendor's server: TqAuth's own choice
    problem = _unreachable(url, timeout_s)
    if problem:
        return fail("tqsdk.login", problem, "check TQ_AUTH_URL (unset: the vendor's server) and the network"), None
    try:
        auth.login()
    except Exception as exc:  # noqa: BLE001 - TqAuth raises bare Exception, with the server's status in the text
        refused = "(401" in str(exc) or "(400" in str(exc)
        fix = _CREDENTIALS if refused else "check TQ_AUTH_URL and the network"
        return fail("tqsdk.login", f"{url} refused the login of {user!r}: {describe(exc)}", fix), None
    return ok("tqsdk.login", f"{user!r} logged in at {url}"), auth


def _tick_grant(auth: Any, user: str) -> Check:
    # the grant TqSdk (and our tick download) checks before any get_tick_data_series
    if auth._has_feature("tq_dl"):
        return ok("tqsdk.tq_dl", f"{user!r} may download ticks (tq_dl granted)")
    return fail("tqsdk.tq_dl", f"{user!r} lacks the tq_dl grant: every tick download is refused",
                "the account needs TqSdk's professional version (tq_dl); or set TQSDK_USER to one that has it")


def _calendar(user: str, password: str, timeout_s: float) -> Check:
    """The calendar the chain reads, from GHTRADER_START_DATE to GHTRADER_NOW (default: today), through a
    TqApi session on TQ_MD_URL with the holiday list of TQ_CHINESE_HOLIDAY_URL."""
    from ghtrader_assets.defs.futures.resources import FuturesSettings

    for variable in ("TQ_MD_URL", "TQ_CHINESE_HOLIDAY_URL"):
        problem = _unreachable(os.environ[variable], timeout_s) if os.environ.get(variable) else None
        if problem:
            return fail("tqsdk.calendar", problem, f"check {variable} (unset: the vendor's) and the network")
    settings = FuturesSettings(start_date=os.environ.get("GHTRADER_START_DATE") or FuturesSettings().start_date,
                               now=os.environ.get("GHTRADER_NOW", ""))
    start, end = settings.start(), settings.clock().astimezone(CST).date()
    with TqSdkClient(TqSettings(user, password, retries=1, backoff_s=0.0)) as client:
        try:
            calendar = client.trading_calendar(start, end)
        except TqSdkAuthError as exc:
            return fail("tqsdk.calendar", str(exc), _CREDENTIALS)
        except TqSdkError as exc:
            return fail("tqsdk.calendar", str(exc), "check TQ_MD_URL and TQ_CHINESE_HOLIDAY_URL (unset: the "
                        "vendor's), the network, and that the holiday list covers the dates")
    return ok("tqsdk.calendar", f"{len(calendar.days)} trading days {start}..{end}")


def _continuous_table(timeout_s: float) -> Check:
    try:
        table = continuous_table_varieties(timeout_s=timeout_s)
    except TqSdkError as exc:
        return fail("tqsdk.cont_table", str(exc), "check TQ_CONT_TABLE_URL (unset: the vendor's) and the network")
    return ok("tqsdk.cont_table", f"{len(table)} varieties listed")
