"""TqSdk access: one TqApi session reused across calls, reopened with backoff after a disconnect.

Where the client connects is TqSdk's own configuration (TQ_AUTH_URL, TQ_MD_URL, TQ_CHINESE_HOLIDAY_URL,
TQ_CONT_TABLE_URL), so the vendor and the local simulator differ only in the environment.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, TypeVar

import polars as pl

from ghtrader_assets.domain.calendar import CST, TradingCalendar
from ghtrader_assets.domain.symbols import main_symbol
from ghtrader_assets.domain.ticks import DEPTH_COLUMNS, TICK_COLUMNS

log = logging.getLogger(__name__)
T = TypeVar("T")

CONT_TABLE_URL = "https://files.shinnytech.com/continuous_table.json"  # TqSdk's default for TQ_CONT_TABLE_URL
DEPTH_2_TO_5 = frozenset(DEPTH_COLUMNS[4:])


class TqSdkError(RuntimeError):
    """TqSdk could not deliver what was asked, after the configured retries."""


class TqSdkAuthError(TqSdkError):
    """Login refused or the account lacks a needed permission: retrying will not help."""


@dataclass(frozen=True)
class TqSettings:
    """Credentials and retry policy. The password never appears in repr or logs."""

    user: str
    password: str = field(repr=False)
    retries: int = 3
    backoff_s: float = 2.0
    # Remove TqSdk's own on-disk tick cache after each download: QuestDB is the one canonical copy,
    # and a re-materialization must re-read the provider rather than a stale local file.
    drop_tqsdk_cache: bool = True
    # TqSdk reconnects silently and waits indefinitely while data keeps trickling in; one day's download
    # gets at most this long before it counts as failed (and is retried on a fresh session).
    download_timeout_s: float = 300.0


@dataclass(frozen=True)
class MainEvents:
    """What a backtest over [start, end] saw of KQ.m@<variety>: the main contract at the start, then each
    change with the Beijing time of the update that carried it."""

    initial: str
    changes: tuple[tuple[int, str], ...]


class TqSdkClient:
    """A TqApi session for market data. Not thread-safe: use it from one thread, close it at the end."""

    def __init__(self, settings: TqSettings, sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self._sleep = sleep
        self._api: Any = None
        self._cache_dir: str | None = None
        self.reconnects = 0

    # -- session ------------------------------------------------------------------------------------
    def _open(self) -> Any:
        from tqsdk import TqApi, TqAuth

        return TqApi(auth=TqAuth(self.settings.user, self.settings.password), disable_print=True)

    def api(self) -> Any:
        if self._api is None:
            self._api = self._open()
        return self._api

    def _use_own_cache(self) -> None:
        """Point TqSdk's on-disk series cache (a module global, keyed by symbol only) at a directory of
        this client's own, so two runs downloading the same contract never read or delete each other's
        files. Set before every download: another client in the same process may have moved it."""
        from tqsdk import data_series

        if not self.settings.drop_tqsdk_cache:
            return  # the user keeps TqSdk's shared cache (~/.tqsdk) on purpose
        if self._cache_dir is None:
            _remove_orphan_caches()
            self._cache_dir = tempfile.mkdtemp(prefix=f"ghtrader-tqsdk-{os.getpid()}-")
        data_series.CACHE_DIR = self._cache_dir

    def close(self) -> None:
        if self._cache_dir is not None:
            shutil.rmtree(self._cache_dir, ignore_errors=True)
            self._cache_dir = None
        if self._api is not None:
            try:
                self._api.close()
            except Exception:  # noqa: BLE001 - a broken session may fail to close; it is dropped either way
                log.debug("closing a broken TqApi session failed", exc_info=True)
            self._api = None

    def __enter__(self) -> "TqSdkClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _with_retries(self, what: str, call: Callable[[Any], T]) -> T:
        """Run `call(api)`; on failure drop the session and retry with exponential backoff."""
        last: BaseException | None = None
        for attempt in range(1, self.settings.retries + 1):
            try:
                return call(self.api())
            except Exception as exc:  # noqa: BLE001 - tqsdk raises bare Exception for most failures
                if _is_auth_failure(exc):
                    self.close()
                    raise TqSdkAuthError(f"TqSdk refused {what}: {_short(exc)}") from exc
                last = exc
                self.close()
                self.reconnects += 1
                if attempt < self.settings.retries:
                    delay = self.settings.backoff_s * 2 ** (attempt - 1)
                    log.warning("TqSdk %s failed (attempt %d/%d): %s; retrying in %.1fs",
                                what, attempt, self.settings.retries, _short(exc), delay)
                    self._sleep(delay)
        raise TqSdkError(f"TqSdk {what} failed after {self.settings.retries} attempts: {_short(last)}") from last

    # -- market data --------------------------------------------------------------------------------
    def trading_calendar(self, start: date, end: date) -> TradingCalendar:
        """The exchange calendar from TqSdk's holiday data; never a weekday-only guess."""

        def fetch(api: Any) -> TradingCalendar:
            forget_vendor_tables()
            df = api.get_trading_calendar(start_dt=start, end_dt=end)
            return TradingCalendar.from_flags((ts.date(), bool(flag)) for ts, flag in zip(df["date"], df["trading"]))

        return self._with_retries(f"trading calendar {start}..{end}", fetch)

    def quote_info(self, symbol: str) -> dict[str, Any]:
        """Static metadata of a quote: trading_time as {'day': [...], 'night': [...]}, underlying_symbol, ..."""

        def fetch(api: Any) -> dict[str, Any]:
            quote = api.get_quote(symbol)
            tt = quote.trading_time
            return {
                "trading_time": {"day": [list(w) for w in tt.day], "night": [list(w) for w in tt.night]},
                "underlying_symbol": quote.underlying_symbol or None,
                "exchange_id": quote.exchange_id,
                "product_id": quote.product_id,
                "price_tick": float(quote.price_tick),
            }

        return self._with_retries(f"quote {symbol}", fetch)

    def ticks(self, contract: str, day: date) -> pl.DataFrame:
        """Every tick of `contract` on trading day `day` (start = end = day: one trading day, night
        session included), as datetime_ns + the 27 tick columns, in provider order."""

        def fetch(api: Any) -> pl.DataFrame:
            self._use_own_cache()
            try:
                df = _download_ticks(api, contract, day, self.settings.download_timeout_s)
            finally:
                if self.settings.drop_tqsdk_cache:
                    _drop_tqsdk_tick_cache(contract)
            return _tick_frame(df, contract)

        return self._with_retries(f"ticks {contract} {day}", fetch)

    def daily_open_interest(self, contract: str, start: date, end: date) -> dict[date, float]:
        """Closing open interest per trading day, from daily klines (for the optional open-interest rule)."""

        def fetch(api: Any) -> dict[date, float]:
            self._use_own_cache()
            try:
                df = api.get_kline_data_series(symbol=contract, duration_seconds=86400, start_dt=start, end_dt=end)
            finally:
                if self.settings.drop_tqsdk_cache:
                    _drop_tqsdk_tick_cache(contract, duration_ns=86400 * 10**9)
            out: dict[date, float] = {}
            for ns, oi in zip(df.get("datetime", []), df.get("close_oi", [])):
                # A daily kline's datetime is 18:00 Beijing of the previous trading day: its day is the next one.
                out[datetime.fromtimestamp(int(ns) / 1e9, CST).date()] = float(oi)
            return out

        return self._with_retries(f"daily klines {contract}", fetch)

    def main_events(self, variety: str, start: date, end: date) -> MainEvents:
        """Run a quote-only TqBacktest over [start, end] trading days and record every change of
        KQ.m@<variety>.underlying_symbol (the vendor's main mapping, switching at the next day's open)."""
        from tqsdk import BacktestFinished, TqApi, TqAuth, TqBacktest

        def run(_: Any) -> MainEvents:
            forget_vendor_tables()
            api = TqApi(backtest=TqBacktest(start_dt=start, end_dt=end),
                        auth=TqAuth(self.settings.user, self.settings.password), disable_print=True)
            changes: list[tuple[int, str]] = []
            try:
                quote = api.get_quote(main_symbol(variety))
                initial = quote.underlying_symbol
                try:
                    while True:
                        api.wait_update()
                        if api.is_changing(quote, "underlying_symbol"):
                            changes.append((_quote_time_ns(quote.datetime), quote.underlying_symbol))
                except BacktestFinished:
                    pass
            finally:
                api.close()
            if not initial:
                raise TqSdkError(f"{main_symbol(variety)} has no underlying_symbol at {start}: unknown variety?")
            return MainEvents(initial, tuple(changes))

        return self._with_retries(f"main-contract backtest {variety} {start}..{end}", run)


def forget_vendor_tables() -> None:
    """Drop TqSdk's per-process copies of the continuous table and the holiday list (module and class
    attributes filled on first use, never refreshed), so a long-lived process sees the vendor's updates:
    the next backtest and calendar call download them again."""
    from tqsdk import calendar as tq_calendar

    tq_calendar.TqContCalendar.continuous = None
    tq_calendar.rest_days_df = None
    tq_calendar.chinese_holidays_range = None


def continuous_table_varieties(url: str | None = None, timeout_s: float = 30.0) -> dict[str, list]:
    """The vendor's whole continuous table ({variety: [[YYYYMMDD, contract], ...]}), from the URL TqSdk
    itself uses (TQ_CONT_TABLE_URL)."""
    import requests

    url = url or os.getenv("TQ_CONT_TABLE_URL", CONT_TABLE_URL)
    try:
        response = requests.get(url, timeout=timeout_s)
        response.raise_for_status()
        table = response.json()
    except (requests.RequestException, ValueError) as exc:
        raise TqSdkError(f"cannot read the continuous table at {url}: {exc}") from exc
    if not isinstance(table, dict):
        raise TqSdkError(f"the continuous table at {url} is not a JSON object")
    return table


def continuous_table(variety: str, url: str | None = None) -> list[tuple[date, str]]:
    """One variety's (effective trading day, main contract) change points from the continuous table."""
    table = continuous_table_varieties(url)
    if variety not in table:
        raise TqSdkError(f"unknown variety {variety!r}: TqSdk's continuous table does not list it")
    return [(datetime.strptime(day, "%Y%m%d").date(), contract) for day, contract in table[variety]]


def _tick_frame(df: Any, contract: str) -> pl.DataFrame:
    if df is None or len(df) == 0:
        return pl.DataFrame(
            {"symbol": [], "datetime_ns": [], **{c: [] for c in TICK_COLUMNS}},
            schema={"symbol": pl.String, "datetime_ns": pl.Int64, **{c: pl.Float64 for c in TICK_COLUMNS}},
        )
    # Level-1-only exchanges come without the level 2-5 columns: they are stored as NaN (null).
    missing = [c for c in ("datetime", *TICK_COLUMNS) if c not in df.columns and c not in DEPTH_2_TO_5]
    if missing:
        raise TqSdkError(f"TqSdk tick frame for {contract} lacks columns {missing}")
    present = [c for c in TICK_COLUMNS if c in df.columns]
    frame = pl.from_pandas(df[["datetime", *present]])
    return frame.select(
        pl.lit(contract).alias("symbol"),
        pl.col("datetime").cast(pl.Int64).alias("datetime_ns"),
        *[(pl.col(c) if c in present else pl.lit(float("nan"))).cast(pl.Float64).alias(c) for c in TICK_COLUMNS],
    )


def _download_ticks(api: Any, contract: str, day: date, timeout_s: float) -> Any:
    """What `api.get_tick_data_series(contract, day, day)` returns, within a time budget. It runs the same
    steps as that method (TqSdk 3.10, pinned) so the wait can be bounded: TqSdk itself only gives up
    after 30 s without any update, and keeps waiting through reconnects."""
    if not api._auth._has_feature("tq_dl"):
        raise TqSdkAuthError("the TqSdk account lacks the tq_dl (professional data download) permission")
    from tqsdk.data_series import DataSeries
    from tqsdk.datetime import _convert_user_input_to_nano

    api._ensure_symbol([contract])
    start_ns, end_ns = _convert_user_input_to_nano(day, day)
    series = DataSeries(api, [contract], 0, start_ns, end_ns)
    deadline = time.monotonic() + timeout_s
    while not series._task.done():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            series._task.cancel()
            raise TqSdkError(f"tick download of {contract} {day} did not finish within {timeout_s:.0f}s")
        api.wait_update(deadline=time.time() + min(remaining, 5.0), _task=series._task)
    df = series.df
    _forget_received_ticks(api, contract, end_ns)
    return df


def _forget_received_ticks(api: Any, contract: str, end_ns: int) -> None:
    """Drop the session's copies of the ticks just downloaded; over a range backfill they are gigabytes.
    TqApi keeps every tick it received, as one Python dict each, and, because every wait of a download
    passes `_task` (as TqSdk's own get_tick_data_series does), it also keeps every DIFF pack received in
    `_sync_diffs`, which only a wait without `_task` resets (about 100 MB per real-density day). That list
    only serves `is_changing` in synchronous code, which a download session never calls; it is emptied.
    Only ticks before the day's end go; a few the server sent past it stay, in case the next day's
    download counts on them. A later download of the same day runs on a fresh session (see _with_retries)."""
    api._sync_diffs = []
    serial = api._data.get("ticks", {}).get(contract, {})
    data = serial.get("data") if hasattr(serial, "get") else None
    if not data:
        return
    for key in [k for k, item in data.items() if 0 < item.get("datetime", 0) < end_ns]:
        del data[key]


def _quote_time_ns(text: str) -> int:
    """Quote datetimes are Beijing wall-clock strings like '2024-01-15 21:00:00.000000'."""
    return int(datetime.strptime(text[:26], "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=CST).timestamp() * 10**6) * 1000


def _remove_orphan_caches() -> None:
    """Remove the cache directories of clients whose process is gone (a killed run cannot clean up)."""
    for path in glob.glob(os.path.join(tempfile.gettempdir(), "ghtrader-tqsdk-*-*")):
        pid = os.path.basename(path).split("-")[2]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:
            pass


def _drop_tqsdk_tick_cache(symbol: str, duration_ns: int = 0) -> None:
    from tqsdk import data_series  # CACHE_DIR is this client's own directory (see _use_own_cache)

    for path in glob.glob(os.path.join(data_series.CACHE_DIR, f"{glob.escape(symbol)}.{duration_ns}.*")):
        try:
            os.remove(path)
        except OSError:
            pass


def _is_auth_failure(exc: BaseException) -> bool:
    text = str(exc)
    return any(s in text for s in ("认证失败", "用户权限", "专业版", "invalid_grant", "Invalid user credentials"))


def _short(exc: BaseException | None) -> str:
    text = " ".join(str(exc).split()) if exc else "unknown error"
    return (text[:300] + "...") if len(text) > 300 else text or type(exc).__name__
