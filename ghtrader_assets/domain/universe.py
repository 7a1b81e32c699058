"""IBKR universe CSV (`symbol,conid`): parse, validate, write and slice into stable batches."""

from __future__ import annotations

import csv
import io
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# Upper-case tickers with the separators IB uses in US symbols ("BRK B", "BF.B"). No "/" and no "..":
# the symbol names a directory and a file of the bar store and the contracts cache.
_SYMBOL_RE = re.compile(r"^(?!.*\.\.)[A-Z0-9][A-Z0-9. -]{0,18}[A-Z0-9]$|^[A-Z0-9]$")


def check_symbol(symbol: str) -> str:
    """Return the upper-case symbol if it is a valid ticker, else raise UniverseError naming it."""
    upper = symbol.strip().upper() if isinstance(symbol, str) else ""
    if not _SYMBOL_RE.fullmatch(upper):
        raise UniverseError(f"invalid symbol {symbol!r}: expected 1-20 of A-Z, 0-9, '.', '-', ' ' (no '/' or '..')")
    return upper


class UniverseError(ValueError):
    """The universe CSV cannot be used; the message names the file, the line and the problem."""


@dataclass(frozen=True, order=True)
class UniverseEntry:
    """One underlying: its upper-case symbol and, when known, the IB conId of the stock."""

    symbol: str
    conid: int | None = None


def parse_universe(text: str, source: str = "<universe>") -> tuple[UniverseEntry, ...]:
    """Parse `symbol,conid` CSV text: `#` comments and blank lines ignored, symbols upper-cased,
    conid optional. Duplicate symbols are an error. Returns entries sorted by symbol."""
    rows = [
        (number, line)
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not rows:
        return ()
    header_number, header_line = rows[0]
    header = [cell.strip().lower() for cell in next(csv.reader([header_line]))]
    if not header or header[0] != "symbol" or any(h not in ("symbol", "conid") for h in header):
        raise UniverseError(
            f"{source}:{header_number}: header must be 'symbol,conid' (conid optional), got {header_line!r}"
        )
    entries: dict[str, UniverseEntry] = {}
    for number, line in rows[1:]:
        cells = [cell.strip() for cell in next(csv.reader([line]))]
        if len(cells) > len(header):
            raise UniverseError(f"{source}:{number}: {len(cells)} fields, header has {len(header)}")
        values = dict(zip(header, cells, strict=False))
        symbol = values.get("symbol", "").upper()
        if not _SYMBOL_RE.fullmatch(symbol):
            raise UniverseError(f"{source}:{number}: invalid symbol {values.get('symbol', '')!r}")
        conid = _parse_conid(values.get("conid", ""), source, number)
        if symbol in entries:
            raise UniverseError(f"{source}:{number}: duplicate symbol {symbol!r}")
        entries[symbol] = UniverseEntry(symbol, conid)
    return tuple(sorted(entries.values()))


def _parse_conid(raw: str, source: str, number: int) -> int | None:
    if raw == "":
        return None
    if not raw.isdigit() or int(raw) <= 0:
        raise UniverseError(f"{source}:{number}: conid must be a positive integer or blank, got {raw!r}")
    return int(raw)


def format_universe(entries: Iterable[UniverseEntry], comment: str | None = None) -> str:
    """Render entries as universe CSV text (sorted by symbol, blank conid when unknown)."""
    out = io.StringIO()
    if comment:
        for line in comment.splitlines():
            out.write(f"# {line}\n")
    out.write("symbol,conid\n")
    for entry in sorted(set(entries)):
        out.write(f"{entry.symbol},{'' if entry.conid is None else entry.conid}\n")
    return out.getvalue()


def batch_of(symbol: str, batch_count: int) -> int:
    """Batch index of a symbol: CRC-32 of the upper-case symbol modulo batch_count, so a symbol's
    batch never moves when other symbols are added to or removed from the universe."""
    return zlib.crc32(symbol.upper().encode("utf-8")) % batch_count


def select_batch(
    entries: Sequence[UniverseEntry], batch_count: int, batch_index: int
) -> tuple[UniverseEntry, ...]:
    """The entries of batch `batch_index` (0-based) out of `batch_count`, sorted by symbol."""
    if batch_count < 1:
        raise ValueError(f"batch_count must be >= 1, got {batch_count}")
    if not 0 <= batch_index < batch_count:
        raise ValueError(f"batch_index must be in [0, {batch_count}), got {batch_index}")
    return tuple(sorted(e for e in entries if batch_of(e.symbol, batch_count) == batch_index))


def select_symbols(
    entries: Sequence[UniverseEntry], symbols: Iterable[str]
) -> tuple[UniverseEntry, ...]:
    """Entries for the given symbols (case-insensitive); symbols absent from `entries` are added
    with an unknown conid."""
    by_symbol = {e.symbol: e for e in entries}
    wanted = {s.strip().upper() for s in symbols if s.strip()}
    for symbol in wanted:
        if not _SYMBOL_RE.fullmatch(symbol):
            raise UniverseError(f"invalid symbol {symbol!r}")
    return tuple(sorted(by_symbol.get(s, UniverseEntry(s)) for s in wanted))
