"""Deterministic synthetic futures market: contracts, open interest, main-contract rule, ticks and klines."""

from __future__ import annotations

import threading
import zlib
from dataclasses import dataclass, field
from datetime import date, datetime, time
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from ghtrader_assets.sim.tq import calendar as cal
from ghtrader_assets.sim.tq.specs import (
    NS,
    SPECS,
    VarietySpec,
    contract_code,
    hms_ns,
    midnight_ns,
    ns_to_bj_str,
    trading_day_start_ns,
)

TICK_NS = NS // 2  # exchanges publish at most one snapshot per 500 ms
DAY_NS = 86400 * NS  # a daily kline's duration
_OI_BASE = {"SHFE.cu": 200_000, "SHFE.rb": 2_000_000, "DCE.m": 1_500_000, "CFFEX.IF": 150_000}
_OI_DEFAULT = 500_000
_OI_WIDTH_DAYS = 40.0


@dataclass(frozen=True)
class Faults:
    """Injected faults. Tick responses are counted server-wide over set_chart answers with duration 0."""

    no_tick_days: tuple[tuple[str, date], ...] = ()  # (contract, trading day) without any tick
    no_night_days: tuple[date, ...] = ()  # trading days whose night session is missing (all varieties)
    drop_after_tick_responses: int | None = None  # close the md websocket right after the N-th tick response
    drop_count: int = 1  # how many times to drop (every N responses)
    stall_after_tick_responses: int | None = None  # stop answering after the N-th tick response ...
    stall_seconds: float = 0.0  # ... for this long
    # (contract, trading day, until): the provider answers that day empty until the clock reaches `until`
    # (naive Beijing time), then serves its ticks: a transient empty answer.
    empty_until: tuple[tuple[str, date, datetime], ...] = ()
    # (contract, trading day) served dirty: besides its real ticks, copies of one tick with a bad last price
    # (0, -5, NaN), exact duplicates of DIRTY_DUPES ticks, DIRTY_SWAPS neighbour pairs in swapped order and
    # ticks outside every session (a lunch-break tick and one before the day's first session), all
    # within the day's request window (see SimMarket.dirt).
    dirty_days: tuple[tuple[str, date], ...] = ()
    # (contract, trading day, levels): the day is served with this many depth levels instead of its exchange's
    depth_days: tuple[tuple[str, date, int], ...] = ()


@dataclass(frozen=True)
class MarketConfig:
    seed: int = 1
    start: date = date(2024, 1, 2)
    end: date = date(2024, 6, 28)
    varieties: tuple[str, ...] = ("SHFE.cu", "SHFE.rb", "DCE.m", "CFFEX.IF")
    density: float = 0.25  # P(a 500 ms slot has a tick) for the main contract
    far_density: float = 0.05  # same for every other contract
    now: datetime | None = None  # naive Beijing time; default: end 17:00
    faults: Faults = field(default_factory=Faults)
    # Beijing time on trading day P at which the vendor publishes the next trading day's row of the
    # continuous table (and so the backtest's main mapping): the switch for day D exists from P at this time.
    publish_time: time = time(20, 0)
    # Vendor errata: (variety, true roll day, shift, corrected_at). Until `corrected_at` (naive Beijing
    # time) the table publishes that roll `shift` trading days late; from then on the true day.
    errata: tuple[tuple[str, date, int, datetime], ...] = ()
    # Session changes: (variety, first trading day, day windows, night windows) replacing the variety's
    # trading_time from that trading day on (hours past 24 mean after midnight).
    session_changes: tuple[tuple[str, date, tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]], ...] = ()
    # (variety, first trading day): a product listed inside the window. Before that day it has no ticks and
    # the continuous table (the vendor's mapping) starts on it.
    listings: tuple[tuple[str, date], ...] = ()
    username: str = "sim"
    password: str = "sim"
    # The account's grants in its auth token: tick and kline downloads need "tq_dl" (the professional version).
    features: tuple[str, ...] = ("futr", "tq_dl", "sec", "lmt_idx", "tq_ma", "adv", "opt", "cmb")
    host: str = "127.0.0.1"
    port: int = 0

    @property
    def now_dt(self) -> datetime:
        return self.now or datetime.combine(self.end, time(17, 0))


def _stable_hash(text: str) -> int:
    """A seed component that is the same in every process (unlike hash())."""
    return zlib.crc32(text.encode())


def _month_index(year: int, month: int) -> int:
    return year * 12 + month - 1


@dataclass(frozen=True)
class Contract:
    symbol: str
    variety: str
    month: int  # delivery month index (year*12 + month-1)
    list_day: date
    last_day: date


class SimMarket:
    """Ground truth of the simulated market; every value is a pure function of the config."""

    def __init__(self, cfg: MarketConfig) -> None:
        unknown = set(cfg.varieties) - set(SPECS)
        if unknown:
            raise ValueError(f"unknown varieties {sorted(unknown)}; known: {sorted(SPECS)}")
        if not (cal.CAL_START <= cfg.start <= cfg.end <= cal.CAL_END):
            raise ValueError("start/end must lie within the 2023-2026 calendar")
        self.cfg = cfg
        self._all_days = cal.trading_days()
        self._day_pos = {d: i for i, d in enumerate(self._all_days)}
        now = cfg.now_dt
        self.now = now
        self.now_ns = midnight_ns(now.date()) + (now.hour * 3600 + now.minute * 60 + now.second) * NS
        now_day = cal.trading_day_of(now.date(), now.hour) or cal.prev_trading_day(now.date())
        self.now_day: date = now_day if now_day is not None else cfg.start
        self._data_days = cal.trading_days(cfg.start, min(cfg.end, self.now_day))
        self._contracts: dict[str, list[Contract]] = {}
        self._by_symbol: dict[str, Contract] = {}
        self._oi: dict[str, np.ndarray] = {}  # variety -> [contract, calendar day] closing open interest
        self._main: dict[str, np.ndarray] = {}  # variety -> contract index per calendar day
        for variety in cfg.varieties:
            self._build_variety(variety)
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, date], int] = {}
        self._series: dict[tuple[str, int], Series] = {}
        self._real_ticks = lru_cache(maxsize=256)(self._generate_ticks)
        self._tick_frame = lru_cache(maxsize=256)(self._served_ticks)
        self._bar_frame = lru_cache(maxsize=2048)(self._generate_bars)

    # ---- calendar -------------------------------------------------------------------------------
    def trading_days(self) -> list[date]:
        return cal.trading_days(self.cfg.start, self.cfg.end)

    def data_days(self) -> list[date]:
        """Trading days that have data: [start, min(end, trading day of now)]."""
        return list(self._data_days)

    def holidays(self) -> list[date]:
        return list(cal.holidays())

    def trading_time(self, variety: str, day: date | None = None) -> dict[str, list[list[str]]]:
        """quote.trading_time in force on trading day `day` (default: the trading day of now)."""
        day_windows, night_windows = self._windows(variety, day or self.now_day)
        return {"day": [list(w) for w in day_windows], "night": [list(w) for w in night_windows]}

    def _windows(self, variety: str, day: date) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
        spec = SPECS[variety]
        windows = (spec.day, spec.night)
        for changed, first_day, day_windows, night_windows in sorted(self.cfg.session_changes, key=lambda c: c[1]):
            if changed == variety and first_day <= day:
                windows = (day_windows, night_windows)
        return windows

    def session_history(self, variety: str) -> list[tuple[date, dict[str, list[list[str]]]]]:
        """(first trading day, trading_time) of every session version the market had (the first from its start)."""
        history = [(self._all_days[0], self.trading_time(variety, self._all_days[0]))]
        for changed, first_day, _, _ in sorted(self.cfg.session_changes, key=lambda c: c[1]):
            if changed == variety:
                history.append((first_day, self.trading_time(variety, first_day)))
        return history

    def spec(self, variety: str) -> VarietySpec:
        return SPECS[variety]

    # ---- contracts, open interest, main rule ----------------------------------------------------
    def _build_variety(self, variety: str) -> None:
        spec = SPECS[variety]
        contracts: list[Contract] = []
        for month_index in range(_month_index(2023, 1), _month_index(2027, 12) + 1):
            year, month0 = divmod(month_index, 12)
            # past the calendar the 15th stands in for the last trading day (never reached)
            last_day = (cal.prev_trading_day(date(year, month0 + 1, 16)) if year <= cal.CAL_END.year
                        else date(year, month0 + 1, 15))
            list_year, list_month0 = divmod(month_index - 12, 12)  # listed a year before delivery
            list_day = cal.next_trading_day(date(list_year, list_month0 + 1, 15)) or self._all_days[0]
            if last_day is None or last_day < self._all_days[0]:
                continue
            symbol = contract_code(spec, year, month0 + 1)
            contracts.append(Contract(symbol, variety, month_index, max(list_day, self._all_days[0]), last_day))
        rng = np.random.default_rng([self.cfg.seed, _stable_hash(variety), 7])
        peak_day: dict[int, float] = {}  # main delivery month -> ordinal of its open-interest peak
        month_index = _month_index(2023, 1)
        while month_index <= _month_index(2027, 12):  # main months 1 or 2 months apart -> rolls every 1-2 months
            year, month0 = divmod(month_index, 12)
            peak_day[month_index] = date(year, month0 + 1, 1).toordinal() - 45 + int(rng.integers(-3, 4))
            month_index += int(rng.choice([1, 2]))
        day_ordinals = np.array([d.toordinal() for d in self._all_days], dtype=float)
        open_interest = np.zeros((len(contracts), len(day_ordinals)))
        for row, contract in enumerate(contracts):
            year, month0 = divmod(contract.month, 12)
            peak = peak_day.get(contract.month, date(year, month0 + 1, 1).toordinal() - 45)
            amplitude = 1.0 if contract.month in peak_day else 0.3
            noise_rng = np.random.default_rng([self.cfg.seed, _stable_hash(contract.symbol), 1])
            noise = noise_rng.normal(size=len(day_ordinals))
            shape = amplitude * np.exp(-(((day_ordinals - peak) / _OI_WIDTH_DAYS) ** 2)) + 0.01
            live = (day_ordinals >= contract.list_day.toordinal()) & (day_ordinals <= contract.last_day.toordinal())
            open_interest[row] = np.where(live, np.round(_OI_BASE.get(variety, _OI_DEFAULT) * shape * (1 + 0.03 * noise)), 0.0)
        main = np.zeros(len(day_ordinals), dtype=int)
        main[0] = int(np.argmax(open_interest[:, 0]))
        for day_index in range(len(day_ordinals) - 1):
            current = main[day_index]
            leader = int(np.argmax(open_interest[:, day_index]))  # decided at T's close, effective T+1, never back
            following = leader if contracts[leader].month > contracts[current].month else current
            if self._all_days[day_index + 1] > contracts[following].last_day:
                later = [row for row, c in enumerate(contracts) if c.month > contracts[following].month]
                if later:
                    following = max(later, key=lambda row: open_interest[row, day_index + 1])
            main[day_index + 1] = following
        self._contracts[variety] = contracts
        self._by_symbol.update({c.symbol: c for c in contracts})
        self._oi[variety] = open_interest
        self._main[variety] = main

    def contracts(self, variety: str) -> list[str]:
        """Contracts trading at some point in [start, end]."""
        return [c.symbol for c in self._contracts[variety]
                if c.list_day <= self.cfg.end and c.last_day >= self.cfg.start]

    def contract(self, symbol: str) -> Contract:
        return self._by_symbol[symbol]

    def has_symbol(self, symbol: str) -> bool:
        return symbol in self._by_symbol or (symbol.startswith("KQ.m@") and symbol[5:] in self._contracts)

    def open_interest(self, contract: str, day: date) -> float:
        """Closing open interest of a contract on a trading day (0 when not listed)."""
        found = self._by_symbol[contract]
        return float(self._oi[found.variety][self._contracts[found.variety].index(found), self._day_pos[day]])

    def main_contract(self, variety: str, day: date) -> str:
        return self._contracts[variety][self._main[variety][self._day_pos[day]]].symbol

    def roll_days(self, variety: str) -> list[tuple[date, str]]:
        """(first trading day, main contract) for start and every switch within [start, end]."""
        rolls: list[tuple[date, str]] = []
        for day in self.trading_days():
            main = self.main_contract(variety, day)
            if not rolls or rolls[-1][1] != main:
                rolls.append((day, main))
        return rolls

    def published_through(self) -> date:
        """The last trading day whose continuous-table row is published at now: day D's row appears at
        `publish_time` Beijing on the previous trading day."""
        day = cal.next_trading_day(self.now.date()) or self.now.date()
        while True:
            prev = cal.prev_trading_day(day)
            if prev is None or datetime.combine(prev, self.cfg.publish_time) <= self.now:
                return day
            day = prev

    def published_rolls(self, variety: str) -> list[tuple[date, str]]:
        """The roll days as the vendor's table states them at now (errata not yet corrected shift them; a variety
        listed inside the window starts on its listing day)."""
        rolls = self.roll_days(variety)
        listed = self.listed_from(variety)
        if listed is not None:
            rolls = [(listed, self.main_contract(variety, listed))] + [(d, c) for d, c in rolls if d > listed]
        for erratum_variety, roll_day, shift, corrected_at in self.cfg.errata:
            if erratum_variety == variety and self.now < corrected_at:
                rolls = [(self._all_days[self._day_pos[d] + shift] if d == roll_day else d, contract)
                         for d, contract in rolls]
        return rolls

    def continuous_table(self) -> dict[str, list[list[str]]]:
        """The vendor's continuous_table.json: change points per variety, as published at now."""
        end = min(self.cfg.end, self.published_through())
        return {variety: [[day.strftime("%Y%m%d"), contract] for day, contract in self.published_rolls(variety)
                          if day <= end]
                for variety in self.cfg.varieties}

    # ---- ticks ----------------------------------------------------------------------------------
    def sessions(self, variety: str, day: date) -> list[tuple[int, int]]:
        """[start, end) epoch-ns intervals of trading day `day`, night session (previous evening) first."""
        day_windows, night_windows = self._windows(variety, day)
        intervals: list[tuple[int, int]] = []
        prev = cal.prev_trading_day(day)
        if night_windows and prev and cal.has_night_session(day) and day not in self.cfg.faults.no_night_days:
            intervals += [(midnight_ns(prev) + hms_ns(start), midnight_ns(prev) + hms_ns(end))
                          for start, end in night_windows]
        intervals += [(midnight_ns(day) + hms_ns(start), midnight_ns(day) + hms_ns(end)) for start, end in day_windows]
        return intervals

    def _density(self, contract: Contract, day: date) -> float:
        is_main = self.main_contract(contract.variety, day) == contract.symbol
        return self.cfg.density if is_main else self.cfg.far_density

    def listed_from(self, variety: str) -> date | None:
        """The first trading day of a variety listed inside the window (None: listed before it)."""
        return next((d for v, d in self.cfg.listings if v == variety), None)

    def _has_data(self, contract: Contract, day: date) -> bool:
        faults = self.cfg.faults
        listed = self.listed_from(contract.variety)
        return (day in self._day_pos and self.cfg.start <= day <= min(self.cfg.end, self.now_day)
                and (listed is None or day >= listed)
                and contract.list_day <= day <= contract.last_day and (contract.symbol, day) not in faults.no_tick_days
                and not any(symbol == contract.symbol and empty_day == day and self.now < until
                            for symbol, empty_day, until in faults.empty_until))

    def _generate_ticks(self, symbol: str, day: date) -> dict[str, np.ndarray]:
        contract = self._by_symbol[symbol]
        spec = SPECS[contract.variety]
        if not self._has_data(contract, day):
            return {"datetime": np.zeros(0, dtype=np.int64)}
        slots = np.concatenate([np.arange(start, end, TICK_NS, dtype=np.int64)
                                for start, end in self.sessions(contract.variety, day)])
        rng = np.random.default_rng([self.cfg.seed, _stable_hash(symbol), day.toordinal()])
        keep = rng.random(len(slots)) < self._density(contract, day)
        times = slots[keep]
        times = times[times <= self.now_ns]
        count = len(times)
        tick = spec.price_tick
        phase = (_stable_hash(contract.variety) % 628) / 100
        anchor = (spec.base_price * (1 + 0.08 * np.sin(day.toordinal() / 19.0 + phase))
                  + 3 * tick * (contract.month % 12))
        steps = rng.choice(np.array([-1, 0, 1]), size=count, p=[0.3, 0.4, 0.3])
        last = np.round((np.round(anchor / tick) + np.cumsum(steps)) * tick, spec.price_decs)
        volume_steps = rng.integers(1, 30, size=count).astype(float)
        volume = np.cumsum(volume_steps)
        amount = np.cumsum(volume_steps * last * spec.multiple)
        prev = cal.prev_trading_day(day)
        close_oi = self.open_interest(symbol, day)
        prev_close_oi = self.open_interest(symbol, prev) if prev and prev >= self._all_days[0] else close_oi
        progress = np.arange(1, count + 1) / max(count, 1)
        open_interest = np.round(prev_close_oi + (close_oi - prev_close_oi) * progress
                                 + rng.integers(-3, 4, size=count))
        if count:
            open_interest[-1] = close_oi  # the day's last snapshot carries the closing open interest
        bid1 = np.round(last - tick * rng.integers(0, 2, size=count), spec.price_decs)
        columns: dict[str, np.ndarray] = {
            "datetime": times, "last_price": last, "highest": np.maximum.accumulate(last) if count else last,
            "lowest": np.minimum.accumulate(last) if count else last,
            "average": np.round(amount / volume / spec.multiple, 6) if count else last,
            "volume": volume, "amount": amount, "open_interest": np.maximum(open_interest, 0.0),
        }
        depth = rng.integers(1, 100, size=(count, 10)).astype(float)
        for level in range(1, 6):
            quoted = level <= self.levels(symbol, day)
            nan, zero = np.full(count, np.nan), np.zeros(count)
            columns[f"bid_price{level}"] = np.round(bid1 - (level - 1) * tick, spec.price_decs) if quoted else nan
            columns[f"bid_volume{level}"] = depth[:, 2 * level - 2] if quoted else zero
            columns[f"ask_price{level}"] = np.round(bid1 + level * tick, spec.price_decs) if quoted else nan
            columns[f"ask_volume{level}"] = depth[:, 2 * level - 1] if quoted else zero
        return columns

    def levels(self, contract: str, day: date) -> int:
        """Depth levels served for the contract's day: its exchange's, unless Faults.depth_days says otherwise."""
        for symbol, depth_day, levels in self.cfg.faults.depth_days:
            if symbol == contract and depth_day == day:
                return levels
        return SPECS[self._by_symbol[contract].variety].levels

    def tick_count(self, symbol: str, day: date) -> int:
        key = (symbol, day)
        with self._lock:
            if key in self._counts:
                return self._counts[key]
        count = len(self._tick_frame(symbol, day)["datetime"])
        with self._lock:
            self._counts[key] = count
        return count

    DIRTY_DUPES, DIRTY_SWAPS = 5, 2
    BAD_PRICES = (0.0, -5.0, float("nan"))

    def _served_ticks(self, symbol: str, day: date) -> dict[str, np.ndarray]:
        """What the server serves for the day, in id order: the real ticks, with the dirt of a dirty day."""
        real = self._real_ticks(symbol, day)
        dirt = self.dirt(symbol, day)
        return real if dirt is None else self._apply_dirt(real, dirt)

    def dirt(self, symbol: str, day: date) -> dict[str, Any] | None:
        """The dirt of a dirty (contract, day) (Faults.dirty_days), or None: `order`, the served rows as
        indices into the real ticks (-1: the next injected row), `injected`, the injected rows as (kind, real
        row copied, datetime or None) with kind bad_price / duplicate / outside_session, and `swaps`, the
        real rows i served after row i + 1."""
        if (symbol, day) not in self.cfg.faults.dirty_days:
            return None
        real = self._real_ticks(symbol, day)
        times = real["datetime"]
        n = len(times)
        if n < 200:
            return None
        rows = list(range(n))
        swaps = [i for i in range(100, n - 2, 97) if times[i - 1] < times[i] < times[i + 1] < times[i + 2]][: self.DIRTY_SWAPS]
        for i in swaps:
            rows[i], rows[i + 1] = rows[i + 1], rows[i]
        sessions = self.sessions(self.contract(symbol).variety, day)
        lunch = sessions[-1][0] - 30 * 60 * NS  # half an hour before the day's last session: a break
        early = sessions[0][0] - 60 * 60 * NS  # an hour before the day's first session
        middle = n // 2
        extra = [("bad_price", middle, None)] * len(self.BAD_PRICES) + [
            ("outside_session", middle, lunch), ("outside_session", middle, early)]
        dupes = set(range(10, 10 + 7 * self.DIRTY_DUPES, 7))
        order: list[int] = []
        injected: list[tuple[str, int, int | None]] = []
        for position, i in enumerate(rows):
            order.append(i)
            if position in dupes:
                order.append(-1)
                injected.append(("duplicate", i, None))
            if position == 50:
                order += [-1] * len(extra)
                injected += extra
        return {"order": order, "injected": injected, "swaps": swaps}

    def _apply_dirt(self, real: dict[str, np.ndarray], dirt: dict[str, Any]) -> dict[str, np.ndarray]:
        out: dict[str, list] = {k: [] for k in real}
        injected = iter(dirt["injected"])
        bad = iter(self.BAD_PRICES)
        for i in dirt["order"]:
            if i >= 0:
                for k in real:
                    out[k].append(real[k][i])
                continue
            kind, source, when = next(injected)
            for k in real:
                out[k].append(real[k][source])
            if kind == "bad_price":
                out["last_price"][-1] = next(bad)
            elif kind == "outside_session":
                out["datetime"][-1] = when
        return {k: np.asarray(v, dtype=real[k].dtype) for k, v in out.items()}

    def tick_columns(self, symbol: str) -> list[str]:
        """tqsdk's DataSeries columns: five levels only for SHFE/SSE/SZSE symbols (its own rule)."""
        columns = ["last_price", "highest", "lowest", "average", "volume", "amount", "open_interest"]
        levels = 5 if symbol.split(".")[0] in {"SHFE", "SSE", "SZSE"} else 1
        for level in range(1, levels + 1):
            columns += [f"bid_price{level}", f"bid_volume{level}", f"ask_price{level}", f"ask_volume{level}"]
        return columns

    def served(self, contract: str, day: date) -> pd.DataFrame:
        """Every tick the server serves for the request window of trading day `day`, in id order, with each
        depth level the exchange publishes (levels it does not publish are absent from the wire: NaN here),
        dirt included: the ground truth of what the vendor answered (empty DataFrame when no ticks)."""
        series = self.series(contract, 0)
        frame = self._tick_frame(contract, day)
        if len(frame["datetime"]) == 0:
            return pd.DataFrame()
        first = series.first_id_of(day)
        df = pd.DataFrame()
        df["id"] = np.arange(first, first + len(frame["datetime"]), dtype=np.int64)
        df["datetime"] = frame["datetime"].astype(np.int64)
        for column in [k for k in frame if k != "datetime"]:
            df[column] = frame[column].astype(np.float64)
        df["symbol"] = contract
        df["duration"] = 0
        return df

    def real_ticks(self, contract: str, day: date) -> pd.DataFrame:
        """The day's real ticks (no dirt), in time order, as `served` gives columns."""
        frame = self._real_ticks(contract, day)
        df = pd.DataFrame({"datetime": frame["datetime"].astype(np.int64)})
        for column in [k for k in frame if k != "datetime"]:
            df[column] = frame[column].astype(np.float64)
        return df

    def ticks(self, contract: str, day: date) -> pd.DataFrame:
        """Exactly what tqsdk's own get_tick_data_series(contract, day, day) returns: `served` with the columns
        its DataSeries keeps (five levels only for SHFE/SSE/SZSE; empty DataFrame when no ticks)."""
        df = self.served(contract, day)
        if df.empty:
            return df
        return df[["id", "datetime", *self.tick_columns(contract), "symbol", "duration"]]

    def trading_day_of_ns(self, ns: int) -> date | None:
        """Trading day of an epoch-ns moment (Beijing rule of the calendar)."""
        local = datetime(1970, 1, 1) + pd.Timedelta(ns + 8 * 3600 * NS, "ns").to_pytimedelta()
        return cal.trading_day_of(local.date(), local.hour)

    # ---- klines ---------------------------------------------------------------------------------
    def underlying_on(self, symbol: str, day: date) -> str:
        return self.main_contract(symbol[5:], day) if symbol.startswith("KQ.m@") else symbol

    def _generate_bars(self, symbol: str, dur: int, day: date) -> dict[str, np.ndarray]:
        """Bars of `dur` ns built from the day's ticks of the contract behind `symbol`."""
        contract = self.underlying_on(symbol, day)
        ticks = self._real_ticks(contract, day)
        times = ticks["datetime"]
        if len(times) == 0:
            return {"datetime": np.zeros(0, dtype=np.int64)}
        if dur == DAY_NS:
            return self._daily_bar(ticks, day)
        variety = self._by_symbol[contract].variety
        starts = np.unique(np.concatenate([np.arange(start // dur * dur, end, dur, dtype=np.int64)
                                           for start, end in self.sessions(variety, day)]))
        starts = starts[starts <= self.now_ns]
        first = np.searchsorted(times, starts, "left")  # index of each bar's first tick
        last = np.searchsorted(times, starts + dur, "left") - 1  # ... and last tick (first > last: no tick)
        price, volume, open_interest = ticks["last_price"], ticks["volume"], ticks["open_interest"]
        close = price[np.maximum(last, 0)]
        has_ticks = first <= last
        open_ = np.where(has_ticks, price[np.minimum(first, len(times) - 1)], close)
        high, low = open_.copy(), open_.copy()
        for bar in np.nonzero(has_ticks)[0]:  # bars per day are few (<500); the per-bar slice is cheap
            high[bar] = price[first[bar]:last[bar] + 1].max()
            low[bar] = price[first[bar]:last[bar] + 1].min()
        volume_at_end = np.where(last >= 0, volume[np.maximum(last, 0)], 0.0)
        volume_before = np.where(first >= 1, volume[np.maximum(first - 1, 0)], 0.0)
        open_oi = np.where(first >= 1, open_interest[np.maximum(first - 1, 0)], open_interest[0])
        close_oi = np.where(last >= 0, open_interest[np.maximum(last, 0)], open_oi)
        return {"datetime": starts, "open": open_, "high": high, "low": low, "close": close,
                "volume": volume_at_end - volume_before, "open_oi": open_oi, "close_oi": close_oi}

    def _daily_bar(self, ticks: dict[str, np.ndarray], day: date) -> dict[str, np.ndarray]:
        """The trading day's one daily kline (night session included), stamped as TqSdk stamps it: the
        trading day's start, 18:00 Beijing on the weekday before it. volume is the day's (ticks carry the
        trading day's cumulative volume); open_oi the first tick's open interest, close_oi the last's."""
        price, oi = ticks["last_price"], ticks["open_interest"]
        return {"datetime": np.array([trading_day_start_ns(day)], dtype=np.int64), "open": price[:1], "high": price.max(keepdims=True),
                "low": price.min(keepdims=True), "close": price[-1:], "volume": ticks["volume"][-1:], "open_oi": oi[:1],
                "close_oi": oi[-1:]}

    def daily_bars(self, contract: str) -> dict[date, dict[str, float]]:
        """Ground truth: the contract's daily klines by trading day (open, high, low, close, volume, open_oi,
        close_oi), from its real ticks; days without ticks have none."""
        out = {}
        for day in self.series_days(contract):
            bar = self._bar_frame(contract, DAY_NS, day)
            if len(bar["datetime"]):
                out[day] = {k: float(v[0]) for k, v in bar.items() if k != "datetime"}
        return out

    def minute_bars(self, contract: str, day: date, minutes: int = 1) -> dict[str, np.ndarray]:
        """Ground truth: the day's bars of `minutes` as the kline series serves them (every bar of the
        sessions, those without a tick included: volume 0, prices the previous close)."""
        return self._bar_frame(contract, minutes * 60 * NS, day)

    # ---- id-addressed series (what set_chart windows read) -------------------------------------
    def series(self, symbol: str, dur: int) -> "Series":
        key = (symbol, dur)
        if key not in self._series:
            self._series[key] = Series(self, symbol, dur)
        return self._series[key]

    def frame(self, symbol: str, dur: int, day: date) -> dict[str, np.ndarray]:
        return self._tick_frame(symbol, day) if dur == 0 else self._bar_frame(symbol, dur, day)

    def series_days(self, symbol: str) -> list[date]:
        if symbol.startswith("KQ.m@"):
            return list(self._data_days)
        contract = self._by_symbol[symbol]
        return [d for d in self._data_days if contract.list_day <= d <= contract.last_day]

    # ---- live quote -----------------------------------------------------------------------------
    def quote_fields(self, symbol: str) -> dict[str, Any]:
        """Latest market fields at `now` (the last tick at or before now, searching back over data days)."""
        contract = self.underlying_on(symbol, self.now_day) if symbol.startswith("KQ.m@") else symbol
        spec = SPECS[self._by_symbol[contract].variety]
        for day in reversed(self.series_days(contract)):
            ticks = self._real_ticks(contract, day)
            if len(ticks["datetime"]):
                quote: dict[str, Any] = {"datetime": ns_to_bj_str(int(ticks["datetime"][-1]))}
                for name in ("last_price", "highest", "lowest", "average", "volume", "amount", "open_interest"):
                    quote[name] = float(ticks[name][-1])
                for level in range(1, spec.levels + 1):
                    for name in ("bid_price", "bid_volume", "ask_price", "ask_volume"):
                        quote[f"{name}{level}"] = float(ticks[f"{name}{level}"][-1])
                quote["open"] = float(ticks["last_price"][0])
                return quote
        return {"datetime": ns_to_bj_str(self.now_ns)}


class Series:
    """Contiguous ids over a symbol's data days (ticks: dur 0; klines: dur in ns)."""

    def __init__(self, market: SimMarket, symbol: str, dur: int) -> None:
        self.market, self.symbol, self.dur = market, symbol, dur
        self.days = market.series_days(symbol)
        if dur == 0:
            counts = [market.tick_count(symbol, d) for d in self.days]
        else:
            counts = [len(market.frame(symbol, dur, d)["datetime"]) for d in self.days]
        self.offsets = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])  # first id of each day, then the end
        self.last_id = int(self.offsets[-1]) - 1

    def first_id_of(self, day: date) -> int:
        return int(self.offsets[self.days.index(day)])

    def locate(self, ns: int) -> int:
        """Id of the first row with datetime >= ns (last_id + 1 when none)."""
        for i, day in enumerate(self.days):
            times = self.market.frame(self.symbol, self.dur, day)["datetime"]
            if len(times) and times[-1] >= ns:
                return int(self.offsets[i]) + int(np.searchsorted(times, ns, "left"))
        return self.last_id + 1

    def rows(self, lo: int, hi: int) -> dict[str, dict[str, Any]]:
        """Rows with ids in [lo, hi] as DIFF items; level-1-only exchanges omit levels 2-5 (tqsdk fills NaN/0)."""
        lo, hi = max(lo, 0), min(hi, self.last_id)
        items: dict[str, dict[str, Any]] = {}
        if lo > hi:
            return items
        variety = self.symbol[5:] if self.symbol.startswith("KQ.m@") else self.market.contract(self.symbol).variety
        first_day = int(np.searchsorted(self.offsets, lo, "right")) - 1
        for i in range(first_day, len(self.days)):
            day_first_id = int(self.offsets[i])
            if day_first_id > hi:
                break
            frame = self.market.frame(self.symbol, self.dur, self.days[i])
            start, end = max(lo - day_first_id, 0), min(hi - day_first_id, len(frame["datetime"]) - 1)
            if start > end:
                continue
            # a name ending in a digit is a depth level: bid_price3 is level 3
            levels = self.market.levels(self.symbol, self.days[i]) if self.dur == 0 else SPECS[variety].levels
            columns = [k for k in frame if k != "datetime" and not (k[-1].isdigit() and int(k[-1]) > levels)]
            values = {k: frame[k][start:end + 1].tolist() for k in columns}
            times = frame["datetime"][start:end + 1].tolist()
            for j in range(end - start + 1):
                item: dict[str, Any] = {"datetime": times[j]}
                for k in columns:
                    item[k] = values[k][j]
                items[str(day_first_id + start + j)] = item
        return items
