"""DIFF protocol of one market-data websocket session: requests in, merge-patch diffs out."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from typing import Any

from ghtrader_assets.sim.tq.market import SimMarket
from ghtrader_assets.sim.tq.specs import NS, SPECS

_QUERY_SYMBOLS = re.compile(r"instrument_id:\s*\[([^\]]*)\]")


def symbol_node(market: SimMarket, symbol: str) -> dict[str, Any] | None:
    """A multi_symbol_info GraphQL node: the contract metadata tqsdk turns into quote fields."""
    if not market.has_symbol(symbol):
        return None
    if symbol.startswith("KQ.m@"):
        variety = symbol[5:]
        spec = SPECS[variety]
        under = market.underlying_on(symbol, market.now_day)
        node = _base_node(market, variety, symbol, "CONT")
        node.update({"instrument_name": f"{spec.product} main", "expired": False, "expire_datetime": None,
                     "underlying": {"count": 1, "edges": [{"underlying_multiple": 1,
                                                           "node": symbol_node(market, under)}]}})
        return node
    c = market.contract(symbol)
    y, m = divmod(c.month, 12)
    expire = datetime(c.last_day.year, c.last_day.month, c.last_day.day, 15, tzinfo=timezone(timedelta(hours=8)))
    node = _base_node(market, c.variety, symbol, "FUTURE")
    node.update({"instrument_name": symbol.split(".")[1], "delivery_year": y, "delivery_month": m + 1,
                 "expire_datetime": int(expire.timestamp()) * NS, "expired": c.last_day < market.now_day})
    return node


def quote_meta(market: SimMarket, symbol: str) -> dict[str, Any]:
    """The same metadata under quote field names, for the subscribe_quote patch."""
    node = symbol_node(market, symbol) or {}
    meta = {k: v for k, v in node.items() if k not in ("__typename", "class", "underlying", "expire_datetime")}
    meta["ins_class"] = node.get("class", "")
    if node.get("expire_datetime"):
        meta["expire_datetime"] = node["expire_datetime"] / NS
    if node.get("underlying"):
        meta["underlying_symbol"] = node["underlying"]["edges"][0]["node"]["instrument_id"]
    return meta


def _base_node(market: SimMarket, variety: str, symbol: str, cls: str) -> dict[str, Any]:
    spec = SPECS[variety]
    return {
        "__typename": "Future" if cls == "FUTURE" else "Continuous", "instrument_id": symbol,
        "exchange_id": spec.exchange, "product_id": spec.product, "class": cls,
        "price_tick": spec.price_tick, "price_decs": spec.price_decs, "volume_multiple": spec.multiple,
        "trading_time": market.trading_time(variety), "max_limit_order_volume": 500, "max_market_order_volume": 30,
        "min_limit_order_volume": 1, "min_market_order_volume": 1, "open_limit": 0,
    }


class MdSession:
    """State of one websocket: pending diffs are flushed as one rtn_data per peek_message."""

    def __init__(self, market: SimMarket | Callable[[], SimMarket], stats: dict[str, int],
                 downloads: dict[tuple[str, date], int] | None = None) -> None:
        self._market = market
        self.stats = stats
        self.downloads = downloads if downloads is not None else {}
        self.pending: list[dict[str, Any]] = [{"mdhis_more_data": False}]
        self.peeking = False
        self.subscribed: set[str] = set()

    def handle(self, pack: dict[str, Any]) -> bool:
        """Apply one client pack; returns True when it was a tick set_chart that got answered."""
        aid = pack.get("aid")
        if aid == "peek_message":
            self.peeking = True
        elif aid == "subscribe_quote":
            self._subscribe(pack.get("ins_list", ""))
        elif aid == "ins_query" and pack.get("query"):
            self._query(pack)
        elif aid == "set_chart":
            return self._set_chart(pack)
        return False

    @property
    def market(self) -> SimMarket:
        """The market at the server's current clock (a callable follows clock changes mid-session)."""
        return self._market() if callable(self._market) else self._market

    def flush(self) -> dict[str, Any] | None:
        if not (self.peeking and self.pending):
            return None
        self.peeking = False
        out, self.pending = {"aid": "rtn_data", "data": self.pending}, []
        return out

    def _subscribe(self, ins_list: str) -> None:
        symbols = [s for s in ins_list.split(",") if s]
        quotes: dict[str, Any] = {}
        for s in symbols:
            if s not in self.subscribed and self.market.has_symbol(s):
                quotes[s] = {**quote_meta(self.market, s), **self.market.quote_fields(s)}
        self.subscribed = set(symbols)
        # echoing ins_list matters: tqsdk's reconnect handler waits for it to match its subscription
        self.pending.append({"ins_list": ins_list, "quotes": quotes})

    def _query(self, pack: dict[str, Any]) -> None:
        self.stats["ins_queries"] += 1
        symbols = list((pack.get("variables") or {}).get("instrument_id") or [])
        match = _QUERY_SYMBOLS.search(pack["query"])
        if match:
            symbols += re.findall(r'"([^"]+)"', match.group(1))
        nodes = [n for n in (symbol_node(self.market, s) for s in symbols) if n is not None]
        reply = {k: v for k, v in pack.items() if k in ("query", "variables")}
        reply["result"] = {"multi_symbol_info": nodes}
        self.pending.append({"symbols": {pack["query_id"]: reply}})

    def _set_chart(self, pack: dict[str, Any]) -> bool:
        chart_id = pack["chart_id"]
        symbol = (pack.get("ins_list") or "").split(",")[0]
        if not symbol:
            return False  # chart released
        self.stats["set_chart"] += 1
        dur = int(pack.get("duration", 0))
        width = int(pack.get("view_width", 0))
        known = self.market.has_symbol(symbol) and (dur == 0 or (dur % (60 * NS) == 0 and dur < 86400 * NS) or dur == 86400 * NS)
        if known and dur == 0 and symbol.startswith("KQ.m@"):
            known = False  # no tick series for the continuous symbol
        series = self.market.series(symbol, dur) if known else None
        if dur == 0 and "focus_datetime" in pack:  # the first request of one tick download
            key = (symbol, self.market.trading_day_of_ns(int(pack["focus_datetime"])))
            self.downloads[key] = self.downloads.get(key, 0) + 1
        last_id = series.last_id if series else -1
        if "left_kline_id" in pack:
            left = int(pack["left_kline_id"])
        elif "focus_datetime" in pack and series is not None:
            left = series.locate(int(pack["focus_datetime"])) - int(pack.get("focus_position", 0))
        else:
            left = last_id - width + 1
        right = left + width - 1  # the window edge, not clamped to last_id: clients find the end by a missing id
        left = max(left, 0)
        data = series.rows(left, right) if series else {}
        body = {"last_id": last_id, "data": data}
        if dur == 0:
            diff: dict[str, Any] = {"ticks": {symbol: body}}
            self.stats["ticks_sent"] += len(data)
        else:
            diff = {"klines": {symbol: {str(dur): body}}}
            self.stats["klines_sent"] += len(data)
        diff["charts"] = {chart_id: {"state": pack, "left_id": left, "right_id": right,
                                     "ready": True, "more_data": False}}
        self.pending.append(diff)
        return dur == 0
