"""TWS API framing plus table-driven layouts of the messages the simulator reads and writes."""

from __future__ import annotations

import asyncio
import struct

SERVER_VERSION = 176  # every layout below is the one ib_insync 0.9.86 uses at this server version
CONTRACT = ("conId", "symbol", "secType", "lastTradeDateOrContractMonth", "strike", "right", "multiplier",
            "exchange", "primaryExchange", "currency", "localSymbol", "tradingClass")

# Incoming requests: message id -> names of the fields after the id.
REQUESTS: dict[int, tuple[str, ...]] = {
    71: ("version", "clientId", "optCapab"),  # startApi
    5: ("version",),  # reqOpenOrders
    6: ("version", "subscribe", "account"),  # reqAccountUpdates
    7: ("version", "reqId"),  # reqExecutions (filter fields ignored)
    8: ("version", "numIds"),  # reqIds
    9: ("version", "reqId", *CONTRACT, "includeExpired", "secIdType", "secId", "issuerId"),  # reqContractDetails
    20: ("reqId", *CONTRACT, "includeExpired", "endDateTime", "barSize", "duration", "useRTH", "whatToShow",
         "formatDate", "keepUpToDate", "chartOptions"),  # reqHistoricalData (no BAG legs)
    25: ("version", "reqId"),  # cancelHistoricalData
    49: ("version",),  # reqCurrentTime
    61: ("version",),  # reqPositions
    62: ("version", "reqId", "group", "tags"),  # reqAccountSummary (sent by ib_insync after error 1102)
    76: ("version", "reqId", "account", "modelCode", "ledgerAndNLV"),  # reqAccountUpdatesMulti
    78: ("reqId", "symbol", "futFopExchange", "secType", "underConId"),  # reqSecDefOptParams
    99: ("apiOnly",),  # reqCompletedOrders
}

# Outgoing messages: name -> leading fields (message id and, where the decoder expects one, a version).
REPLIES: dict[str, tuple[int, ...]] = {
    "error": (4, 2),
    "next_valid_id": (9, 1),
    "contract_details": (10,),
    "managed_accounts": (15, 1),
    "historical_data": (17,),
    "current_time": (49, 1),
    "contract_details_end": (52, 1),
    "open_order_end": (53, 1),
    "account_download_end": (54, 1),
    "exec_details_end": (55, 1),
    "position_end": (62, 1),
    "account_summary_end": (64, 1),
    "account_update_multi_end": (74, 1),
    "secdef_chain": (75,),
    "secdef_end": (76,),
    "completed_orders_end": (102,),
}


def field(value: object) -> str:
    """One field as IB writes it: bools as 1/0, None as empty, floats without trailing zeros."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:.10g}"
    return str(value)


def frame(fields: tuple[object, ...] | list[object]) -> bytes:
    """4-byte big-endian length prefix, then NUL-terminated UTF-8 fields."""
    body = b"".join(field(f).encode() + b"\0" for f in fields)
    return struct.pack(">I", len(body)) + body


def reply(name: str, *fields: object) -> bytes:
    """Encode an outgoing message by name."""
    return frame((*REPLIES[name], *fields))


async def read_frame(reader: asyncio.StreamReader) -> list[str]:
    """Read one framed message and split it into fields."""
    (size,) = struct.unpack(">I", await reader.readexactly(4))
    body = (await reader.readexactly(size)).decode(errors="backslashreplace")
    return body.split("\0")[:-1]


def parse(fields: list[str]) -> tuple[int, dict[str, str]]:
    """(message id, named fields) of a request; unknown ids yield no names."""
    msg_id = int(fields[0])
    names = REQUESTS.get(msg_id, ())
    return msg_id, dict(zip(names, fields[1:]))
