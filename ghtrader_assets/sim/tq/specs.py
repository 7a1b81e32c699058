"""Variety specifications (sessions, depth, tick size, multiplier) and Beijing-time helpers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

NS = 1_000_000_000
_EPOCH = date(1970, 1, 1)
_BJ_OFFSET_NS = 8 * 3600 * NS


@dataclass(frozen=True)
class VarietySpec:
    exchange: str
    product: str
    day: tuple[tuple[str, str], ...]
    night: tuple[tuple[str, str], ...]
    levels: int  # depth levels the exchange publishes (5 = L5)
    price_tick: float
    multiple: int
    base_price: float

    @property
    def price_decs(self) -> int:
        s = repr(self.price_tick)
        return len(s.split(".")[1].rstrip("0")) if "." in s else 0

    def trading_time(self) -> dict[str, list[list[str]]]:
        return {"day": [list(p) for p in self.day], "night": [list(p) for p in self.night]}


_DAY_COMMODITY = (("09:00:00", "10:15:00"), ("10:30:00", "11:30:00"), ("13:30:00", "15:00:00"))

SPECS: dict[str, VarietySpec] = {
    "SHFE.cu": VarietySpec("SHFE", "cu", _DAY_COMMODITY, (("21:00:00", "25:00:00"),), 5, 10.0, 5, 70000.0),
    "SHFE.rb": VarietySpec("SHFE", "rb", _DAY_COMMODITY, (("21:00:00", "23:00:00"),), 5, 1.0, 10, 3800.0),
    "DCE.m": VarietySpec("DCE", "m", _DAY_COMMODITY, (("21:00:00", "23:00:00"),), 1, 1.0, 10, 3200.0),
    "CFFEX.IF": VarietySpec("CFFEX", "IF", (("09:30:00", "11:30:00"), ("13:00:00", "15:00:00")), (), 1, 0.2, 300, 3500.0),
    # One variety of each other exchange shape: CZCE's 3-digit contract codes, a night to 02:30 (Friday nights
    # run into Saturday), INE's five levels, a day-only GFEX product, a DCE night (see MarketConfig.session_changes).
    "CZCE.TA": VarietySpec("CZCE", "TA", _DAY_COMMODITY, (("21:00:00", "23:00:00"),), 1, 2.0, 5, 5800.0),
    "SHFE.au": VarietySpec("SHFE", "au", _DAY_COMMODITY, (("21:00:00", "26:30:00"),), 5, 0.02, 1000, 480.0),
    "INE.sc": VarietySpec("INE", "sc", _DAY_COMMODITY, (("21:00:00", "26:30:00"),), 5, 0.1, 1000, 560.0),
    "GFEX.si": VarietySpec("GFEX", "si", _DAY_COMMODITY, (), 1, 5.0, 5, 13000.0),
    "DCE.i": VarietySpec("DCE", "i", _DAY_COMMODITY, (("21:00:00", "23:00:00"),), 1, 0.5, 100, 900.0),
    "SHFE.ni": VarietySpec("SHFE", "ni", _DAY_COMMODITY, (("21:00:00", "25:00:00"),), 5, 10.0, 1, 130000.0),
    "GFEX.lc": VarietySpec("GFEX", "lc", _DAY_COMMODITY, (), 1, 50.0, 1, 100000.0),
    "SHFE.al": VarietySpec("SHFE", "al", _DAY_COMMODITY, (("21:00:00", "25:00:00"),), 5, 5.0, 5, 19000.0),
}


def contract_code(spec: VarietySpec, year: int, month: int) -> str:
    """The exchange's contract symbol: CZCE writes the year with one digit (CZCE.TA405), the others with two."""
    digits = f"{year % 10}" if spec.exchange == "CZCE" else f"{year % 100:02d}"
    return f"{spec.exchange}.{spec.product}{digits}{month:02d}"


def hms_ns(s: str) -> int:
    h, m, sec = (int(x) for x in s.split(":"))
    return (h * 3600 + m * 60 + sec) * NS


def midnight_ns(d: date) -> int:
    """Epoch ns of Beijing midnight starting calendar day d."""
    return (d - _EPOCH).days * 86400 * NS - _BJ_OFFSET_NS


def trading_day_start_ns(d: date) -> int:
    """tqsdk.datetime._get_trading_day_start_time: 18:00 Beijing on the calendar day before trading day d,
    moved back to Friday when that is a weekend (a daily kline's datetime)."""
    start = d - timedelta(days=1)
    while start.weekday() >= 5:
        start -= timedelta(days=1)
    return midnight_ns(start) + 18 * 3600 * NS


def ns_to_bj_str(ns: int) -> str:
    """tqsdk's quote.datetime format, Beijing time."""
    dt = datetime.fromtimestamp(0, tz=timezone(timedelta(hours=8))) + timedelta(microseconds=ns // 1000)
    return dt.strftime("%Y-%m-%d %H:%M:%S.%f")
