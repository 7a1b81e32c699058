"""Deterministic synthetic universe: US stocks, their SMART option chains and TRADES bars in NYSE sessions."""

from __future__ import annotations

import math
import re
import threading
from bisect import bisect_right
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from hashlib import blake2b
from typing import NamedTuple

import numpy as np

from ghtrader_assets.sim.ib import calendar as cal
from ghtrader_assets.sim.ib.config import GatewayConfig

SLOT = timedelta(minutes=30)  # every bar size is built from 30-minute slots
BAR_MINUTES: dict[str, int] = {"30 mins": 30, "1 hour": 60, "2 hours": 120, "3 hours": 180, "4 hours": 240,
                               "8 hours": 480, "1 day": 0}
RATE = 0.04
# Real IB conIds for the default names; other symbols get a stable hashed id.
KNOWN: dict[str, tuple[int, float, str]] = {
    "AAPL": (265598, 185.0, "NASDAQ"), "MSFT": (272093, 370.0, "NASDAQ"), "SPY": (756733, 470.0, "ARCA"),
    "QQQ": (320227571, 405.0, "NASDAQ"), "NVDA": (4815747, 48.0, "NASDAQ"), "AMZN": (3691937, 150.0, "NASDAQ"),
    "TSLA": (76792991, 245.0, "NASDAQ"), "META": (107113386, 350.0, "NASDAQ"),
    "GOOGL": (208813719, 140.0, "NASDAQ"), "IWM": (9579970, 200.0, "ARCA"), "AMD": (4391, 140.0, "NASDAQ"),
    "NFLX": (15124833, 480.0, "NASDAQ"),
}


class StockSpec(NamedTuple):
    conid: int
    symbol: str
    primary_exchange: str
    currency: str = "USD"


class OptionSpec(NamedTuple):
    conid: int
    symbol: str
    expiry: str  # YYYYMMDD
    right: str  # C or P
    strike: float
    multiplier: str
    trading_class: str
    illiquid: bool = False

    @property
    def local_symbol(self) -> str:
        """OCC symbol, e.g. 'AAPL  261218C00230000'."""
        return f"{self.symbol:<6}{self.expiry[2:]}{self.right}{round(self.strike * 1000):08d}"


class Bar(NamedTuple):
    time: datetime | date  # bar start (UTC) for intraday bars, the session date for daily bars
    open: float
    high: float
    low: float
    close: float
    volume: int
    wap: float
    count: int


def stable_hash(*parts: object) -> int:
    """A 64-bit hash that does not change between runs or Python versions."""
    return int.from_bytes(blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest(), "big")


def option_conid(symbol: str, expiry: str, right: str, strike: float) -> int:
    """conId of an option, from its terms only; wider than IB's 32 bits so collisions stay negligible."""
    return 100_000_000 + stable_hash(symbol, expiry, right, f"{strike:.4f}") % 2**40


def _trades(day: date) -> bool:
    """A session day of the simulated calendar (weekdays beyond its years)."""
    try:
        return cal.is_trading_day(day)
    except ValueError:
        return day.weekday() < 5


def parse_duration(duration: str) -> tuple[int, str]:
    """'6 M' -> (6, 'M'); raises ValueError for anything IB would reject."""
    m = re.fullmatch(r"\s*(\d+)\s+([SDWMY])\s*", duration)
    if not m or int(m.group(1)) <= 0:
        raise ValueError(f"invalid duration {duration!r}")
    return int(m.group(1)), m.group(2)


def _norm_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def black_scholes(spot: float, strike: float, years: float, sigma: float, right: str) -> float:
    """European option value; the synthetic option prices follow the underlying through it."""
    years = max(years, 1e-4)
    sd = sigma * math.sqrt(years)
    d1 = (math.log(spot / strike) + (RATE + 0.5 * sigma * sigma) * years) / sd
    d2 = d1 - sd
    disc = strike * math.exp(-RATE * years)
    if right == "C":
        return spot * _norm_cdf(d1) - disc * _norm_cdf(d2)
    return disc * _norm_cdf(-d2) - spot * _norm_cdf(-d1)


def strike_increment(spot: float) -> float:
    """Listed strike spacing by price level."""
    for limit, inc in ((25, 0.5), (50, 1.0), (200, 2.5), (500, 5.0)):
        if spot < limit:
            return inc
    return 10.0


class SimUniverse:
    """Stocks, option chains and bars derived only from the config (seed, as_of, symbols, listing rules)."""

    def __init__(self, config: GatewayConfig | None = None) -> None:
        self.config = config or GatewayConfig()
        self.symbols = tuple(s.upper() for s in self.config.symbols)
        self._days = cal.trading_days(date(cal.FIRST_YEAR, 1, 1), date(cal.LAST_YEAR, 12, 31))
        self._by_conid: dict[int, StockSpec | OptionSpec] = {}
        self._options: dict[tuple[str, date], list[OptionSpec]] = {}
        self._listed: dict[int, date] = {}
        self._illiquid: dict[int, bool] = {}
        self._by_terms: dict[tuple[str, str, str, float], OptionSpec] = {}
        self._close_cache: dict[str, np.ndarray] = {}
        self._lock = threading.RLock()  # the gateway thread and test code share one universe
        for symbol in self.symbols:
            self._by_conid[self.stock(symbol).conid] = self.stock(symbol)
        self._path = lru_cache(maxsize=4096)(self._day_path)

    # ---- contracts
    def stock(self, symbol: str) -> StockSpec:
        """The stock (conid, symbol, primary_exchange, currency)."""
        symbol = symbol.upper()
        if symbol not in self.symbols:
            raise KeyError(symbol)
        conid, _, exchange = KNOWN.get(symbol, (10_000_000 + stable_hash("stk", symbol) % 90_000_000, 0.0, "NYSE"))
        return StockSpec(conid, symbol, exchange)

    def sigma(self, symbol: str) -> float:
        """Annual volatility of the symbol's random walk."""
        return 0.18 + (stable_hash("vol", symbol) % 30) / 100

    def _expiries(self, symbol: str, today: date) -> list[tuple[date, str, date]]:
        """(expiry, kind, listing day) of every expiry listed by `today`, from a year back: Friday weeklies,
        third-Friday monthlies and, for daily_symbols, the daily_weekdays' sessions."""
        c = self.config
        out = []
        monday = today - timedelta(today.weekday())
        for week in range(-53, 4 * c.monthly_expiries + 6):
            friday = monday + timedelta(weeks=week, days=4)
            monthly = 15 <= friday.day <= 21
            listed = friday - (timedelta(days=31 * c.monthly_expiries) if monthly
                               else timedelta(weeks=c.weekly_expiries))
            if listed <= today:
                out.append((cal.expiry_friday(friday), "monthly" if monthly else "weekly", listed))
            if symbol in c.daily_symbols and week <= c.daily_expiry_weeks:
                for weekday in c.daily_weekdays:
                    day = friday - timedelta(days=4 - weekday)
                    listed = day - timedelta(weeks=c.daily_expiry_weeks)
                    if weekday < 4 and listed <= today and _trades(day):
                        out.append((day, "daily", listed))
        return sorted(out)

    def _build(self, symbol: str, today: date) -> list[OptionSpec]:
        specs: list[OptionSpec] = []
        for expiry, kind, listed in self._expiries(symbol, today):
            # strikes are added as the underlying moves: cover every close from listing until today or expiry
            lo, hi = bisect_right(self._days, listed) - 1, bisect_right(self._days, min(today, expiry))
            closes = self._closes(symbol)[max(lo, 0):max(hi, lo + 1, 1)]
            inc = self.config.strike_step or strike_increment(float(closes[0]))
            width = self.config.strike_width or (0.25 if kind == "monthly" else 0.12)
            strikes = [k * inc for k in range(math.ceil(float(closes.min()) * (1 - width) / inc),
                                              math.floor(float(closes.max()) * (1 + width) / inc) + 1)]
            exp = expiry.strftime("%Y%m%d")
            for right in "CP":
                otm_first = sorted(strikes, reverse=right == "C")
                n_illiquid = round(self.config.illiquid_fraction * len(strikes))
                for i, strike in enumerate(otm_first):
                    strike = round(strike, 4)
                    conid = option_conid(symbol, exp, right, strike)
                    # a contract's liquidity is fixed when first listed: strikes added later do not change it
                    illiquid = self._illiquid.setdefault(conid, i < n_illiquid)
                    specs.append(OptionSpec(conid, symbol, exp, right, strike, "100", symbol, illiquid))
                    self._listed[conid] = min(listed, self._listed.get(conid, listed))
        specs.sort(key=lambda o: (o.expiry, o.right, o.strike))
        for spec in specs:
            self._by_conid[spec.conid] = spec
            self._by_terms[(spec.symbol, spec.expiry, spec.right, spec.strike)] = spec
        return specs

    def all_options(self, symbol: str) -> list[OptionSpec]:
        """Every option the simulator knows for the symbol today (simulated clock), expired ones of the
        last year included; strikes listed since earlier days stay known."""
        symbol = self.stock(symbol).symbol
        today = self.config.now().astimezone(cal.NY).date()
        with self._lock:
            if (symbol, today) not in self._options:
                self._options[(symbol, today)] = self._build(symbol, today)
            return self._options[(symbol, today)]

    def option(self, symbol: str, expiry: str, right: str, strike: float) -> OptionSpec | None:
        """The option with exactly these terms (expired ones included), or None."""
        self.all_options(symbol)
        return self._by_terms.get((symbol.upper(), expiry, right, round(strike, 4)))

    def option_chain(self, symbol: str) -> list[OptionSpec]:
        """The listed options IB still serves now, sorted by (expiry, right, strike)."""
        return [o for o in self.all_options(symbol) if not self.expired(o)]

    def expired_at(self, spec: OptionSpec) -> datetime:
        """When IB stops knowing the option: `expired_after` past 16:00 New York on its expiry day."""
        close = datetime.combine(datetime.strptime(spec.expiry, "%Y%m%d").date(), cal.CLOSE, cal.NY)
        return close + self.config.expired_after

    def expired(self, spec: OptionSpec) -> bool:
        """True once the option is gone from IB (see expired_at)."""
        return self.config.now() >= self.expired_at(spec)

    def lookup(self, conid: int) -> StockSpec | OptionSpec | None:
        """The contract with this conId, or None."""
        if conid not in self._by_conid:
            for symbol in self.symbols:
                self.all_options(symbol)
        return self._by_conid.get(conid)

    # ---- prices
    def _closes(self, symbol: str) -> np.ndarray:
        if symbol not in self._close_cache:
            self._close_cache[symbol] = self._daily_walk(symbol)
        return self._close_cache[symbol]

    def _daily_walk(self, symbol: str) -> np.ndarray:
        base = KNOWN.get(symbol, (0, 20.0 + stable_hash("px", symbol) % 480, ""))[1]
        sd = self.sigma(symbol) / math.sqrt(252)
        rng = np.random.default_rng([self.config.seed, stable_hash("daily", symbol)])
        steps = rng.normal(0.0003 - 0.5 * sd * sd, sd, len(self._days))
        return base * np.exp(np.cumsum(steps))

    def close_on(self, symbol: str, day: date) -> float:
        """The stock's closing price of the last session on or before day (first close before the data)."""
        i = bisect_right(self._days, day) - 1
        return float(self._closes(symbol)[max(i, 0)])

    def _day_path(self, symbol: str, day: date) -> tuple[list[datetime], np.ndarray, np.ndarray, np.ndarray,
                                                          np.ndarray]:
        """Slot starts (UTC) and stock prices at slot edges, slot highs, lows and volumes for one session."""
        opened, closed = cal.session(day)  # type: ignore[misc]
        n = int((closed - opened) / SLOT)
        i = self._days.index(day)
        closes = self._closes(symbol)
        prev, last = float(closes[i - 1] if i else closes[0] * 0.995), float(closes[i])
        rng = np.random.default_rng([self.config.seed, stable_hash("intraday", symbol), day.toordinal()])
        sd = self.sigma(symbol) / math.sqrt(252 * n)
        first = math.log(prev) + rng.normal(0, sd)
        walk = np.concatenate([[0.0], np.cumsum(rng.normal(0, sd, n))])
        bridge = walk - np.linspace(0, 1, n + 1) * walk[-1]
        edges = np.exp(np.linspace(first, math.log(last), n + 1) + bridge)
        wick = 1 + np.abs(rng.normal(0, sd / 2, (2, n)))
        highs = np.maximum(edges[:-1], edges[1:]) * wick[0]
        lows = np.minimum(edges[:-1], edges[1:]) / wick[1]
        volumes = rng.integers(50_000, 400_000, n) * (1 + (np.arange(n) == 0) + (np.arange(n) == n - 1))
        starts = [(opened + SLOT * k).astimezone(UTC) for k in range(n)]
        return starts, edges, highs, lows, volumes

    def _slots(self, spec: StockSpec | OptionSpec, day: date) -> list[tuple[datetime, float, float, float, float, int]]:
        """Traded 30-minute slots of one session: (start UTC, open, high, low, close, volume)."""
        starts, edges, highs, lows, volumes = self._path(spec.symbol, day)
        if isinstance(spec, StockSpec):
            return [(t, round(float(edges[k]), 2), round(float(highs[k]), 2), round(float(lows[k]), 2),
                     round(float(edges[k + 1]), 2), int(volumes[k])) for k, t in enumerate(starts)]
        expiry_close = datetime.strptime(spec.expiry + " 16:00", "%Y%m%d %H:%M").replace(tzinfo=cal.NY)
        sigma = self.sigma(spec.symbol)
        rng = np.random.default_rng([self.config.seed, spec.conid, day.toordinal()])
        draws, sizes = rng.random(len(starts)), rng.poisson(40, len(starts))
        out = []
        for k, t in enumerate(starts):
            years = (expiry_close - t).total_seconds() / (365 * 86400)
            spot = float(edges[k + 1])
            if draws[k] > max(0.15, 0.95 - 4 * abs(math.log(spec.strike / spot))):
                continue  # no trade in this slot
            v = [max(0.01, round(black_scholes(s, spec.strike, years, sigma, spec.right), 2))
                 for s in (float(edges[k]), float(highs[k]), float(lows[k]), spot)]
            out.append((t, v[0], max(v), min(v), v[3], 1 + int(sizes[k])))
        return out

    def bars(self, conid: int, bar_size: str, duration: str, end: datetime | None = None,
             use_rth: bool = True) -> list[Bar]:
        """TRADES bars of the contract up to `end` (None: now); the sim has no extended hours, so use_rth does
        not change them. Ground truth whether or not the option has expired since: the gateway
        (server.py) refuses expired options as IB does."""
        spec = self.lookup(conid)
        if spec is None:
            raise KeyError(conid)
        if bar_size not in BAR_MINUTES:
            raise ValueError(f"unsupported bar size {bar_size!r}")
        count, unit = parse_duration(duration)
        now = self.config.now()
        end = min(end.astimezone(UTC), now) if end else now
        if isinstance(spec, OptionSpec) and spec.illiquid:
            return []  # illiquid options never trade
        end_day = end.astimezone(cal.NY).date()
        if unit == "D":
            days = [d for d in cal.trading_days(end_day - timedelta(days=2 * count + 10), end_day)
                    if cal.session(d)[0] < end][-count:]  # type: ignore[index]
            start = cal.session(days[0])[0] if days else end  # type: ignore[index]
        else:
            start = self._minus(end, count, unit)
        if isinstance(spec, OptionSpec):
            listed = datetime.combine(self._listed[spec.conid], datetime.min.time(), cal.NY)
            start = max(start, listed)  # no trades before the option was listed
        days = cal.trading_days(start.astimezone(cal.NY).date(), end_day)
        minutes = BAR_MINUTES[bar_size]
        groups: dict[object, list[tuple[datetime, float, float, float, float, int]]] = {}
        for day in days:
            for slot in self._slots(spec, day):
                if slot[0] >= start and slot[0] + SLOT <= end:
                    local = slot[0].astimezone(cal.NY)
                    key = day if not minutes else (day, (local.hour * 60 + local.minute) // minutes)
                    groups.setdefault(key, []).append(slot)
        return [self._bar(key, slots, minutes) for key, slots in groups.items()]

    @staticmethod
    def _minus(end: datetime, count: int, unit: str) -> datetime:
        if unit == "S":
            return end - timedelta(seconds=count)
        if unit == "W":
            return end - timedelta(weeks=count)
        months = count * (12 if unit == "Y" else 1)
        y, m = divmod(end.year * 12 + end.month - 1 - months, 12)
        day = min(end.day, [31, 29 if y % 4 == 0 else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m])
        return end.replace(year=y, month=m + 1, day=day)

    @staticmethod
    def _bar(key: object, slots: list[tuple[datetime, float, float, float, float, int]], minutes: int) -> Bar:
        volume = sum(s[5] for s in slots)
        wap = sum((s[2] + s[3] + s[4]) / 3 * s[5] for s in slots) / volume
        if minutes:
            day, bucket = key  # type: ignore[misc]
            opened = cal.session(day)[0]  # type: ignore[index]
            midnight = datetime.combine(day, datetime.min.time(), cal.NY)
            label = max(opened, midnight + timedelta(minutes=bucket * minutes))  # IB clips to the session open
            when: datetime | date = label.astimezone(UTC)
        else:
            when = key  # type: ignore[assignment]
        return Bar(when, slots[0][1], max(s[2] for s in slots), min(s[3] for s in slots), slots[-1][4], volume,
                   round(wap, 4), max(1, volume // 7))
