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
from ghtrader_assets.sim.tq.specs import NS, SPECS, VarietySpec, hms_ns, midnight_ns, ns_to_bj_str

TICK_NS = NS // 2  # exchanges publish at most one snapshot per 500 ms
_OI_BASE = {"SHFE.cu": 200_000, "SHFE.rb": 2_000_000, "DCE.m": 1_500_000, "CFFEX.IF": 150_000}
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
    username: str = "sim"
    password: str = "sim"
    host: str = "127.0.0.1"
    port: int = 0

    @property
    def now_dt(self) -> datetime:
        return self.now or datetime.combine(self.end, time(17, 0))


def _crc(s: str) -> int:
    return zlib.crc32(s.encode())


def _month_index(y: int, m: int) -> int:
    return y * 12 + m - 1


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
        for v in cfg.varieties:
            self._build_variety(v)
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, date], int] = {}
        self._series: dict[tuple[str, int], Series] = {}
        self._frame = lru_cache(maxsize=256)(self._gen_ticks)
        self._bars = lru_cache(maxsize=2048)(self._gen_bars)

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
        day_w, night_w = self._windows(variety, day or self.now_day)
        return {"day": [list(p) for p in day_w], "night": [list(p) for p in night_w]}

    def _windows(self, variety: str, day: date) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
        spec = SPECS[variety]
        out = (spec.day, spec.night)
        for v, first, day_w, night_w in sorted(self.cfg.session_changes, key=lambda c: c[1]):
            if v == variety and first <= day:
                out = (day_w, night_w)
        return out

    def session_history(self, variety: str) -> list[tuple[date, dict[str, list[list[str]]]]]:
        """(first trading day, trading_time) of every session version the market had (the first from its start)."""
        out = [(self._all_days[0], self.trading_time(variety, self._all_days[0]))]
        for v, first, _, _ in sorted(self.cfg.session_changes, key=lambda c: c[1]):
            if v == variety:
                out.append((first, self.trading_time(variety, first)))
        return out

    def spec(self, variety: str) -> VarietySpec:
        return SPECS[variety]

    # ---- contracts, open interest, main rule ----------------------------------------------------
    def _build_variety(self, v: str) -> None:
        spec = SPECS[v]
        contracts: list[Contract] = []
        for mi in range(_month_index(2023, 1), _month_index(2027, 12) + 1):
            y, m = divmod(mi, 12)
            # past the calendar the 15th stands in for the last trading day (never reached)
            last = cal.prev_trading_day(date(y, m + 1, 16)) if y <= cal.CAL_END.year else date(y, m + 1, 15)
            ly, lm = divmod(mi - 12, 12)
            first = cal.next_trading_day(date(ly, lm + 1, 15)) or self._all_days[0]
            if last is None or last < self._all_days[0]:
                continue
            sym = f"{spec.exchange}.{spec.product}{y % 100:02d}{m + 1:02d}"
            contracts.append(Contract(sym, v, mi, max(first, self._all_days[0]), last))
        rng = np.random.default_rng([self.cfg.seed, _crc(v), 7])
        mains: dict[int, float] = {}
        mi = _month_index(2023, 1)
        while mi <= _month_index(2027, 12):  # main months 1 or 2 months apart -> rolls every 1-2 months
            y, m = divmod(mi, 12)
            mains[mi] = date(y, m + 1, 1).toordinal() - 45 + int(rng.integers(-3, 4))
            mi += int(rng.choice([1, 2]))
        x = np.array([d.toordinal() for d in self._all_days], dtype=float)
        oi = np.zeros((len(contracts), len(x)))
        for k, c in enumerate(contracts):
            y, m = divmod(c.month, 12)
            center = mains.get(c.month, date(y, m + 1, 1).toordinal() - 45)
            amp = 1.0 if c.month in mains else 0.3
            noise = np.random.default_rng([self.cfg.seed, _crc(c.symbol), 1]).normal(size=len(x))
            shape = amp * np.exp(-(((x - center) / _OI_WIDTH_DAYS) ** 2)) + 0.01
            live = (x >= c.list_day.toordinal()) & (x <= c.last_day.toordinal())
            oi[k] = np.where(live, np.round(_OI_BASE[v] * shape * (1 + 0.03 * noise)), 0.0)
        main = np.zeros(len(x), dtype=int)
        main[0] = int(np.argmax(oi[:, 0]))
        for t in range(len(x) - 1):
            cur = main[t]
            leader = int(np.argmax(oi[:, t]))  # decided at T's close, effective T+1, never back
            nxt = leader if contracts[leader].month > contracts[cur].month else cur
            if self._all_days[t + 1] > contracts[nxt].last_day:
                later = [k for k, c in enumerate(contracts) if c.month > contracts[nxt].month]
                nxt = max(later, key=lambda k: oi[k, t + 1]) if later else nxt
            main[t + 1] = nxt
        self._contracts[v] = contracts
        self._by_symbol.update({c.symbol: c for c in contracts})
        self._oi[v] = oi
        self._main[v] = main

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
        c = self._by_symbol[contract]
        return float(self._oi[c.variety][self._contracts[c.variety].index(c), self._day_pos[day]])

    def main_contract(self, variety: str, day: date) -> str:
        return self._contracts[variety][self._main[variety][self._day_pos[day]]].symbol

    def roll_days(self, variety: str) -> list[tuple[date, str]]:
        """(first trading day, main contract) for start and every switch within [start, end]."""
        out: list[tuple[date, str]] = []
        for d in self.trading_days():
            m = self.main_contract(variety, d)
            if not out or out[-1][1] != m:
                out.append((d, m))
        return out

    def published_through(self) -> date:
        """The last trading day whose continuous-table row is published at now: day D's row appears at
        `publish_time` Beijing on the previous trading day."""
        d = cal.next_trading_day(self.now.date()) or self.now.date()
        while True:
            prev = cal.prev_trading_day(d)
            if prev is None or datetime.combine(prev, self.cfg.publish_time) <= self.now:
                return d
            d = prev

    def published_rolls(self, variety: str) -> list[tuple[date, str]]:
        """The roll days as the vendor's table states them at now (errata not yet corrected shift them)."""
        rolls = self.roll_days(variety)
        for v, day, shift, corrected_at in self.cfg.errata:
            if v == variety and self.now < corrected_at:
                rolls = [(self._all_days[self._day_pos[d] + shift] if d == day else d, c) for d, c in rolls]
        return rolls

    def continuous_table(self) -> dict[str, list[list[str]]]:
        """The vendor's continuous_table.json: change points per variety, as published at now."""
        end = min(self.cfg.end, self.published_through())
        return {v: [[d.strftime("%Y%m%d"), s] for d, s in self.published_rolls(v) if d <= end]
                for v in self.cfg.varieties}

    # ---- ticks ----------------------------------------------------------------------------------
    def sessions(self, variety: str, day: date) -> list[tuple[int, int]]:
        """[start, end) epoch-ns intervals of trading day `day`, night session (previous evening) first."""
        day_w, night_w = self._windows(variety, day)
        out: list[tuple[int, int]] = []
        prev = cal.prev_trading_day(day)
        if night_w and prev and cal.has_night_session(day) and day not in self.cfg.faults.no_night_days:
            out += [(midnight_ns(prev) + hms_ns(a), midnight_ns(prev) + hms_ns(b)) for a, b in night_w]
        out += [(midnight_ns(day) + hms_ns(a), midnight_ns(day) + hms_ns(b)) for a, b in day_w]
        return out

    def _density(self, c: Contract, day: date) -> float:
        return self.cfg.density if self.main_contract(c.variety, day) == c.symbol else self.cfg.far_density

    def _has_data(self, c: Contract, day: date) -> bool:
        return (day in self._day_pos and self.cfg.start <= day <= min(self.cfg.end, self.now_day)
                and c.list_day <= day <= c.last_day and (c.symbol, day) not in self.cfg.faults.no_tick_days
                and not any(s == c.symbol and d == day and self.now < u for s, d, u in self.cfg.faults.empty_until))

    def _gen_ticks(self, symbol: str, day: date) -> dict[str, np.ndarray]:
        c = self._by_symbol[symbol]
        spec = SPECS[c.variety]
        if not self._has_data(c, day):
            return {"datetime": np.zeros(0, dtype=np.int64)}
        slots = np.concatenate([np.arange(a, b, TICK_NS, dtype=np.int64) for a, b in self.sessions(c.variety, day)])
        rng = np.random.default_rng([self.cfg.seed, _crc(symbol), day.toordinal()])
        keep = rng.random(len(slots)) < self._density(c, day)
        dt = slots[keep]
        dt = dt[dt <= self.now_ns]
        n = len(dt)
        tick = spec.price_tick
        phase = (_crc(c.variety) % 628) / 100
        anchor = spec.base_price * (1 + 0.08 * np.sin(day.toordinal() / 19.0 + phase)) + 3 * tick * (c.month % 12)
        steps = rng.choice(np.array([-1, 0, 1]), size=n, p=[0.3, 0.4, 0.3])
        last = np.round((np.round(anchor / tick) + np.cumsum(steps)) * tick, spec.price_decs)
        dv = rng.integers(1, 30, size=n).astype(float)
        vol = np.cumsum(dv)
        amount = np.cumsum(dv * last * spec.multiple)
        prev = cal.prev_trading_day(day)
        oi1 = self.open_interest(symbol, day)
        oi0 = self.open_interest(symbol, prev) if prev and prev >= self._all_days[0] else oi1
        oi = np.round(oi0 + (oi1 - oi0) * np.arange(1, n + 1) / max(n, 1) + rng.integers(-3, 4, size=n))
        if n:
            oi[-1] = oi1  # the day's last snapshot carries the closing open interest
        bid1 = np.round(last - tick * rng.integers(0, 2, size=n), spec.price_decs)
        out: dict[str, np.ndarray] = {
            "datetime": dt, "last_price": last, "highest": np.maximum.accumulate(last) if n else last,
            "lowest": np.minimum.accumulate(last) if n else last,
            "average": np.round(amount / vol / spec.multiple, 6) if n else last,
            "volume": vol, "amount": amount, "open_interest": np.maximum(oi, 0.0),
        }
        depth = rng.integers(1, 100, size=(n, 10)).astype(float)
        for i in range(1, 6):
            lvl = i <= spec.levels
            out[f"bid_price{i}"] = np.round(bid1 - (i - 1) * tick, spec.price_decs) if lvl else np.full(n, np.nan)
            out[f"bid_volume{i}"] = depth[:, 2 * i - 2] if lvl else np.zeros(n)
            out[f"ask_price{i}"] = np.round(bid1 + i * tick, spec.price_decs) if lvl else np.full(n, np.nan)
            out[f"ask_volume{i}"] = depth[:, 2 * i - 1] if lvl else np.zeros(n)
        return out

    def tick_count(self, symbol: str, day: date) -> int:
        key = (symbol, day)
        with self._lock:
            if key in self._counts:
                return self._counts[key]
        n = len(self._frame(symbol, day)["datetime"])
        with self._lock:
            self._counts[key] = n
        return n

    def tick_columns(self, symbol: str) -> list[str]:
        """tqsdk's DataSeries columns: five levels only for SHFE/SSE/SZSE symbols (its own rule)."""
        cols = ["last_price", "highest", "lowest", "average", "volume", "amount", "open_interest"]
        levels = 5 if symbol.split(".")[0] in {"SHFE", "SSE", "SZSE"} else 1
        for i in range(1, levels + 1):
            cols += [f"bid_price{i}", f"bid_volume{i}", f"ask_price{i}", f"ask_volume{i}"]
        return cols

    def ticks(self, contract: str, day: date) -> pd.DataFrame:
        """Exactly what get_tick_data_series(contract, day, day) returns (empty DataFrame when no ticks)."""
        series = self.series(contract, 0)
        f = self._frame(contract, day)
        if len(f["datetime"]) == 0:
            return pd.DataFrame()
        first = series.first_id_of(day)
        df = pd.DataFrame()
        df["id"] = np.arange(first, first + len(f["datetime"]), dtype=np.int64)
        df["datetime"] = f["datetime"].astype(np.int64)
        for col in self.tick_columns(contract):
            df[col] = f[col].astype(np.float64)
        df["symbol"] = contract
        df["duration"] = 0
        return df

    def trading_day_of_ns(self, ns: int) -> date | None:
        """Trading day of an epoch-ns moment (Beijing rule of the calendar)."""
        local = datetime(1970, 1, 1) + pd.Timedelta(ns + 8 * 3600 * NS, "ns").to_pytimedelta()
        return cal.trading_day_of(local.date(), local.hour)

    # ---- klines ---------------------------------------------------------------------------------
    def underlying_on(self, symbol: str, day: date) -> str:
        return self.main_contract(symbol[5:], day) if symbol.startswith("KQ.m@") else symbol

    def _gen_bars(self, symbol: str, dur: int, day: date) -> dict[str, np.ndarray]:
        contract = self.underlying_on(symbol, day)
        f = self._frame(contract, day)
        t = f["datetime"]
        if len(t) == 0:
            return {"datetime": np.zeros(0, dtype=np.int64)}
        c = self._by_symbol[contract]
        starts = np.unique(np.concatenate([np.arange(a // dur * dur, b, dur, dtype=np.int64)
                                           for a, b in self.sessions(c.variety, day)]))
        starts = starts[starts <= self.now_ns]
        first = np.searchsorted(t, starts, "left")
        last = np.searchsorted(t, starts + dur, "left") - 1
        price, vol, oi = f["last_price"], f["volume"], f["open_interest"]
        close = price[np.maximum(last, 0)]
        has = first <= last
        opn = np.where(has, price[np.minimum(first, len(t) - 1)], close)
        hi, lo = opn.copy(), opn.copy()
        for b in np.nonzero(has)[0]:  # bars per day are few (<500); the per-bar slice is cheap
            hi[b], lo[b] = price[first[b]:last[b] + 1].max(), price[first[b]:last[b] + 1].min()
        cum_end = np.where(last >= 0, vol[np.maximum(last, 0)], 0.0)
        cum_start = np.where(first >= 1, vol[np.maximum(first - 1, 0)], 0.0)
        open_oi = np.where(first >= 1, oi[np.maximum(first - 1, 0)], oi[0])
        close_oi = np.where(last >= 0, oi[np.maximum(last, 0)], open_oi)
        return {"datetime": starts, "open": opn, "high": hi, "low": lo, "close": close,
                "volume": cum_end - cum_start, "open_oi": open_oi, "close_oi": close_oi}

    # ---- id-addressed series (what set_chart windows read) -------------------------------------
    def series(self, symbol: str, dur: int) -> "Series":
        key = (symbol, dur)
        if key not in self._series:
            self._series[key] = Series(self, symbol, dur)
        return self._series[key]

    def frame(self, symbol: str, dur: int, day: date) -> dict[str, np.ndarray]:
        return self._frame(symbol, day) if dur == 0 else self._bars(symbol, dur, day)

    def series_days(self, symbol: str) -> list[date]:
        if symbol.startswith("KQ.m@"):
            return list(self._data_days)
        c = self._by_symbol[symbol]
        return [d for d in self._data_days if c.list_day <= d <= c.last_day]

    # ---- live quote -----------------------------------------------------------------------------
    def quote_fields(self, symbol: str) -> dict[str, Any]:
        """Latest market fields at `now` (the last tick at or before now, searching back over data days)."""
        contract = self.underlying_on(symbol, self.now_day) if symbol.startswith("KQ.m@") else symbol
        c = self._by_symbol[contract]
        spec = SPECS[c.variety]
        for d in reversed(self.series_days(contract)):
            f = self._frame(contract, d)
            if len(f["datetime"]):
                i = -1
                q: dict[str, Any] = {"datetime": ns_to_bj_str(int(f["datetime"][i]))}
                for k in ("last_price", "highest", "lowest", "average", "volume", "amount", "open_interest"):
                    q[k] = float(f[k][i])
                for lv in range(1, spec.levels + 1):
                    for k in ("bid_price", "bid_volume", "ask_price", "ask_volume"):
                        q[f"{k}{lv}"] = float(f[f"{k}{lv}"][i])
                q["open"] = float(f["last_price"][0])
                return q
        return {"datetime": ns_to_bj_str(self.now_ns)}


class Series:
    """Contiguous ids over a symbol's data days (ticks: dur 0; klines: dur in ns)."""

    def __init__(self, market: SimMarket, symbol: str, dur: int) -> None:
        self.m, self.symbol, self.dur = market, symbol, dur
        self.days = market.series_days(symbol)
        if dur == 0:
            counts = [market.tick_count(symbol, d) for d in self.days]
        else:
            counts = [len(market.frame(symbol, dur, d)["datetime"]) for d in self.days]
        self.offsets = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
        self.last_id = int(self.offsets[-1]) - 1

    def first_id_of(self, day: date) -> int:
        return int(self.offsets[self.days.index(day)])

    def locate(self, ns: int) -> int:
        """Id of the first row with datetime >= ns (last_id + 1 when none)."""
        for i, d in enumerate(self.days):
            t = self.m.frame(self.symbol, self.dur, d)["datetime"]
            if len(t) and t[-1] >= ns:
                return int(self.offsets[i]) + int(np.searchsorted(t, ns, "left"))
        return self.last_id + 1

    def rows(self, lo: int, hi: int) -> dict[str, dict[str, Any]]:
        """Rows with ids in [lo, hi] as DIFF items; level-1-only exchanges omit levels 2-5 (tqsdk fills NaN/0)."""
        lo, hi = max(lo, 0), min(hi, self.last_id)
        out: dict[str, dict[str, Any]] = {}
        if lo > hi:
            return out
        levels = SPECS[self.symbol[5:] if self.symbol.startswith("KQ.m@") else self.m.contract(self.symbol).variety].levels
        first_day = int(np.searchsorted(self.offsets, lo, "right")) - 1
        for i in range(first_day, len(self.days)):
            base = int(self.offsets[i])
            if base > hi:
                break
            f = self.m.frame(self.symbol, self.dur, self.days[i])
            a, b = max(lo - base, 0), min(hi - base, len(f["datetime"]) - 1)
            if a > b:
                continue
            cols = [k for k in f if k != "datetime" and not (k[-1].isdigit() and int(k[-1]) > levels)]
            arrays = {k: f[k][a:b + 1].tolist() for k in cols}
            dts = f["datetime"][a:b + 1].tolist()
            for j in range(b - a + 1):
                item: dict[str, Any] = {"datetime": dts[j]}
                for k in cols:
                    item[k] = arrays[k][j]
                out[str(base + a + j)] = item
        return out
