"""TqSdk access: one TqApi login reused across calls, reopened with backoff after a disconnect.

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
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

import polars as pl

from ghtrader_assets.domain.calendar import CST, TradingCalendar
from ghtrader_assets.domain.symbols import main_symbol
from ghtrader_assets.domain.ticks import TICK_COLUMNS

log = logging.getLogger(__name__)
T = TypeVar("T")

CONT_TABLE_URL = "https://files.shinnytech.com/continuous_table.json"  # TqSdk's default for TQ_CONT_TABLE_URL
TICK_CHART_WIDTH = 2000  # ticks per window request, as TqSdk's own downloader asks


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
    # Ticks are collected in memory (see _download_ticks); klines go through TqSdk's DataSeries, which caches
    # them on disk keyed by symbol only: keep that cache per client and remove it after each download, so a
    # re-run re-reads the provider rather than a stale local file.
    drop_tqsdk_cache: bool = True
    # TqSdk reconnects silently and waits indefinitely while data keeps trickling in; one day's download
    # gets at most this long before it counts as failed (and is retried on a fresh login).
    download_timeout_s: float = 300.0


@dataclass(frozen=True)
class MainEvents:
    """What a backtest over [start, end] saw of KQ.m@<variety>: the main contract at the start, then each
    change with the Beijing time of the update that carried it."""

    initial: str
    changes: tuple[tuple[int, str], ...]


@dataclass(frozen=True)
class DailyBar:
    """One daily kline of a contract (TqSdk's fields): prices of the trading day, its volume, and the open
    interest at its start and close."""

    open: float
    high: float
    low: float
    close: float
    volume: float
    open_oi: float
    close_oi: float


def kline_trading_day(datetime_ns: int) -> date:
    """The trading day a daily kline stands for. TqSdk stamps it with the trading day's start (18:00
    Beijing on the weekday before it, `tqsdk.datetime._get_trading_day_start_time`); a stamp at midnight
    of the day itself is read the same way: from 18:00 on, the next weekday."""
    local = datetime.fromtimestamp(datetime_ns / 1e9, CST)
    day = local.date()
    if local.hour >= 18:
        day += timedelta(days=1)
        while day.weekday() >= 5:
            day += timedelta(days=1)
    return day


class TqSdkClient:
    """A TqApi login for market data. Not thread-safe: use it from one thread, close it at the end."""

    def __init__(self, settings: TqSettings, sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self._sleep = sleep
        self._api: Any = None
        self._cache_dir: str | None = None

    # -- login --------------------------------------------------------------------------------------
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
            except Exception:  # noqa: BLE001 - a broken login may fail to close; it is dropped either way
                log.debug("closing a broken TqApi login failed", exc_info=True)
            self._api = None

    def __enter__(self) -> "TqSdkClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _with_retries(self, what: str, call: Callable[[Any], T]) -> T:
        """Run `call(api)`; on failure drop the login and retry with exponential backoff."""
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
        """Every tick the vendor serves for `contract` on trading day `day` (the window TqSdk's
        get_tick_data_series(contract, day, day) asks for: one trading day, night session included), as
        symbol, datetime_ns and the 27 tick columns, in provider order, with every depth level the vendor
        sent (a level it did not send is NaN). Nothing is written to disk."""

        def fetch(api: Any) -> pl.DataFrame:
            return _tick_frame(_download_ticks(api, contract, day, self.settings.download_timeout_s), contract)

        return self._with_retries(f"ticks {contract} {day}", fetch)

    def daily_bars(self, contract: str, start: date, end: date) -> dict[date, DailyBar]:
        """The contract's daily klines over trading days [start, end], by trading day: one
        get_kline_data_series(contract, 86400, start, end) request (TqSdk's DataSeries; needs the tq_dl
        grant), which walks the kline chart 2,000 bars per window, so a few daily bars cost one round trip.
        A kline's datetime is the start of its trading day (18:00 Beijing on the weekday before it, night
        session included); a day without trades has no bar."""

        def fetch(api: Any) -> dict[date, DailyBar]:
            self._use_own_cache()
            try:
                df = api.get_kline_data_series(symbol=contract, duration_seconds=86400, start_dt=start, end_dt=end)
            finally:
                if self.settings.drop_tqsdk_cache:
                    _drop_tqsdk_tick_cache(contract, duration_ns=86400 * 10**9)
            out: dict[date, DailyBar] = {}
            columns = [df.get(c, []) for c in ("datetime", "open", "high", "low", "close", "volume", "open_oi", "close_oi")]
            for ns, *values in zip(*columns):
                out[kline_trading_day(int(ns))] = DailyBar(*(float(v) for v in values))
            return out

        return self._with_retries(f"daily klines {contract}", fetch)

    def daily_open_interest(self, contract: str, start: date, end: date) -> dict[date, float]:
        """Closing open interest per trading day, from daily klines (for the optional open-interest rule)."""
        return {day: bar.close_oi for day, bar in self.daily_bars(contract, start, end).items()}

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


def _tick_frame(columns: dict[str, list], contract: str) -> pl.DataFrame:
    schema = {"datetime_ns": pl.Int64, **{c: pl.Float64 for c in TICK_COLUMNS}}
    frame = pl.DataFrame(columns, schema=schema)
    return frame.select(pl.lit(contract, dtype=pl.String).alias("symbol"), *schema)


def _download_ticks(api: Any, contract: str, day: date, timeout_s: float) -> dict[str, list]:
    """The ticks the vendor serves for `contract` over the window get_tick_data_series(contract, day, day)
    asks for, as columns (datetime_ns and the 27 tick columns), in provider order, within a time budget.

    It speaks the same requests as TqSdk 3.10's DataSeries (pinned): a tick chart focused on the window's
    start, walked id by id, re-requested from the next id until an id is missing or a tick reaches the
    window's end. Unlike DataSeries it keeps every depth level the server sent (DataSeries keeps five only
    for SHFE, SSE and SZSE and drops INE's levels 2-5), keeps no disk cache, and its wait is bounded:
    TqSdk itself only gives up after 30 s without any update, and keeps waiting through reconnects."""
    if not api._auth._has_feature("tq_dl"):
        raise TqSdkAuthError("the TqSdk account lacks the tq_dl (professional data download) permission")
    from tqsdk.datetime import _convert_user_input_to_nano

    api._ensure_symbol([contract])
    start_ns, end_ns = _convert_user_input_to_nano(day, day)  # end inclusive: the trading day's last ns
    columns: dict[str, list] = {"datetime_ns": [], **{c: [] for c in TICK_COLUMNS}}
    task = api.create_task(_collect_ticks(api, contract, start_ns, end_ns + 1, columns))
    deadline = time.monotonic() + timeout_s
    while not task.done():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            task.cancel()
            raise TqSdkError(f"tick download of {contract} {day} did not finish within {timeout_s:.0f}s")
        api.wait_update(deadline=time.time() + min(remaining, 5.0), _task=task)
    task.result()  # raises what the download raised
    _forget_received_ticks(api, contract, end_ns + 1)
    return columns


async def _collect_ticks(api: Any, symbol: str, start_ns: int, end_ns: int, columns: dict[str, list]) -> None:
    """Append the served ticks from the first at or after start_ns up to (not including) the first at or
    after end_ns to `columns`, in id order; a value the server did not send (or sent as text) is NaN."""
    from tqsdk.diff import _get_obj
    from tqsdk.utils import _generate_uuid

    chart_info = {"aid": "set_chart", "chart_id": _generate_uuid("PYSDK_data_series"), "ins_list": symbol,
                  "duration": 0, "view_width": TICK_CHART_WIDTH, "focus_datetime": int(start_ns), "focus_position": 0}
    api._send_chan.send_nowait(dict(chart_info))
    chart = _get_obj(api._data, ["charts", chart_info["chart_id"]])
    serial = _get_obj(api._data, ["ticks", symbol])
    times, values = columns["datetime_ns"], [(c, columns[c]) for c in TICK_COLUMNS]
    nan = float("nan")
    current_id = None
    try:
        async with api.register_update_notify() as updates:
            async for _ in updates:
                if not (chart_info.items() <= _get_obj(chart, ["state"]).items()) or not chart.get("ready", False):
                    continue  # the answer to the latest request is not complete yet
                if serial.get("last_id", -1) == -1:
                    return  # the contract has no ticks at all
                right_id = chart.get("right_id", -1)
                if current_id is None:
                    current_id = max(chart.get("left_id", -1), 0)
                data = serial["data"]
                while current_id <= right_id:
                    item = data.get(str(current_id))
                    fields = vars(item) if item is not None else {}
                    when = fields.get("datetime", 0)
                    if not when or when >= end_ns:
                        return
                    times.append(int(when))
                    for name, out in values:
                        v = fields.get(name)
                        out.append(v if type(v) is float else (float(v) if isinstance(v, int) else nan))
                    current_id += 1
                chart_info.pop("focus_datetime", None)
                chart_info.pop("focus_position", None)
                chart_info["left_kline_id"] = current_id
                await api._send_chan.send(dict(chart_info))
    finally:
        await api._send_chan.send({"aid": "set_chart", "chart_id": chart_info["chart_id"], "ins_list": "",
                                   "duration": 0, "view_width": TICK_CHART_WIDTH})


def _forget_received_ticks(api: Any, contract: str, end_ns: int) -> None:
    """Drop the login's copies of the ticks just downloaded; over a range backfill they are gigabytes.
    TqApi keeps every tick it received, as one Python dict each, and, because every wait of a download
    passes `_task` (as TqSdk's own get_tick_data_series does), it also keeps every DIFF pack received in
    `_sync_diffs`, which only a wait without `_task` resets (about 100 MB per real-density day). That list
    only serves `is_changing` in synchronous code, which a download login never calls; it is emptied.
    Only ticks before the day's end go; a few the server sent past it stay, in case the next day's
    download counts on them. A later download of the same day runs on a fresh login (see _with_retries)."""
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
