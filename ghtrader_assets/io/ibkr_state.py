"""The IBKR state files on disk: contracts caches, run summaries (JSONL), latest status per symbol and universe CSVs.

Their layouts and rules live in domain/ (contracts_cache, run_summary, latest_status, universe); this module
only reads and writes them, atomically where a reader could see a torn file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from datetime import date
from pathlib import Path

from ghtrader_assets.domain.contracts_cache import (
    ContractsCacheError,
    OptionContract,
    cache_name_day,
    cache_path,
    dump_cache,
    parse_cache,
)
from ghtrader_assets.domain.latest_status import SymbolStatus, fold, status_dir, status_path
from ghtrader_assets.domain.run_summary import Stage, SummaryRecord, summary_dir
from ghtrader_assets.domain.universe import UniverseEntry, UniverseError, format_universe, parse_universe


def cache_files(cache_dir: Path, symbol: str) -> list[tuple[date, Path]]:
    """Every cache file of `symbol` under `cache_dir`, oldest first."""
    if not cache_dir.is_dir():
        return []
    found: list[tuple[date, Path]] = []
    for path in cache_dir.iterdir():
        day = cache_name_day(path.name, symbol)
        if day is not None:
            found.append((day, path))
    return sorted(found)


def latest_cache_path(cache_dir: Path, symbol: str) -> Path:
    """The newest cache file of `symbol` (the latest trading day it was discovered on).
    Raises ContractsCacheError when there is none: a missing cache is never rebuilt implicitly."""
    files = cache_files(cache_dir, symbol)
    if not files:
        raise ContractsCacheError(
            f"{cache_dir / (symbol.upper() + '_YYYY-MM-DD.json')}: missing contracts cache for "
            f"{symbol.upper()} (run the contracts stage or drop a cache in)"
        )
    return files[-1][1]


def read_cache(path: Path, symbol: str | None = None) -> tuple[OptionContract, ...]:
    """Read and validate one cache file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ContractsCacheError(f"{path}: missing contracts cache") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ContractsCacheError(f"{path}: cannot read contracts cache: {exc}") from exc
    return parse_cache(text, str(path), symbol)


def read_latest_cache(cache_dir: Path, symbol: str) -> tuple[Path, tuple[OptionContract, ...]]:
    """The newest cache of `symbol` and its contracts; errors as in latest_cache_path / parse_cache."""
    path = latest_cache_path(cache_dir, symbol)
    return path, read_cache(path, symbol)


def write_cache(cache_dir: Path, symbol: str, day: date, contracts: Sequence[OptionContract]) -> Path:
    """Write `cache_dir/{SYMBOL}_{day}.json` atomically (temp file, fsync, rename)."""
    if not contracts:
        raise ContractsCacheError(f"{cache_path(cache_dir, symbol, day)}: refusing to write an empty cache")
    path = cache_path(cache_dir, symbol, day)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(dump_cache(contracts))
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)
    return path


def find_contracts(cache_dir: Path, symbol: str, conids: Iterable[int]) -> dict[int, OptionContract]:
    """The contracts with these conids from the symbol's caches, newest cache first (each file read
    until all are found); an unreadable older cache is passed over."""
    wanted = set(conids)
    found: dict[int, OptionContract] = {}
    for _, path in reversed(cache_files(cache_dir, symbol)):
        if not wanted:
            break
        try:
            contracts = read_cache(path, symbol)
        except ContractsCacheError:
            continue
        for contract in contracts:
            if contract.conid in wanted:
                found[contract.conid] = contract
                wanted.discard(contract.conid)
    return found


class SummaryWriter:
    """Append-only JSONL writer; each record is flushed at once so a crash keeps what was done."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = path.open("a", encoding="utf-8")

    def write(self, record: SummaryRecord) -> None:
        self._handle.write(json.dumps(record.to_json(), separators=(",", ":")) + "\n")
        self._handle.flush()

    def close(self) -> None:
        if not self._handle.closed:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()

    def __enter__(self) -> SummaryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_records(paths: Iterable[Path]) -> list[SummaryRecord]:
    """Records of the given JSONL files in recorded order; a torn last line (crash mid-write) is skipped."""
    records: list[SummaryRecord] = []
    for path in paths:
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                records.append(SummaryRecord.from_json(json.loads(line)))
            except (json.JSONDecodeError, KeyError, ValueError):
                continue
    return sorted(records, key=lambda r: r.recorded_at)


def read_stage_records(state_dir: Path, stage: Stage) -> list[SummaryRecord]:
    """Every record of every summary file of `stage`."""
    directory = summary_dir(state_dir, stage)
    return read_records(sorted(directory.glob("summary_*.jsonl"))) if directory.is_dir() else []


def read_status(state_dir: Path, stage: str, symbol: str) -> SymbolStatus:
    """The stored state, empty when there is none; an unreadable file counts as empty (the JSONL
    audit log can rebuild it: see `rebuild`)."""
    path = status_path(state_dir, stage, symbol)
    try:
        return SymbolStatus.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (FileNotFoundError, json.JSONDecodeError, KeyError, ValueError, TypeError):
        return SymbolStatus(symbol.upper(), stage)


def write_status(state_dir: Path, state: SymbolStatus) -> Path:
    """Replace the state file atomically (temp file in the same directory, then rename)."""
    path = status_path(state_dir, state.stage, state.symbol)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state.to_json(), separators=(",", ":")), encoding="utf-8")
    tmp.replace(path)
    return path


def stored_symbols(state_dir: Path, stage: str) -> list[str]:
    """Symbols with a state file in `stage`, sorted."""
    directory = status_dir(state_dir, stage)
    return sorted(p.stem for p in directory.glob("*.json")) if directory.is_dir() else []


def rebuild(state_dir: Path, stage: str, records: Iterable[SummaryRecord]) -> list[Path]:
    """Rewrite every symbol's state of `stage` from summary records (e.g. after deleting `latest/`)."""
    by_symbol: dict[str, list[SummaryRecord]] = {}
    for record in records:
        if record.stage == stage:
            by_symbol.setdefault(record.symbol, []).append(record)
    return [write_status(state_dir, fold(symbol, stage, recs)) for symbol, recs in sorted(by_symbol.items())]


def read_universe(path: Path) -> tuple[UniverseEntry, ...]:
    """Read and validate a universe CSV file (UTF-8)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UniverseError(f"{path}: cannot read universe file: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise UniverseError(f"{path}: not a UTF-8 text file (byte {exc.start}): expected 'symbol,conid' CSV") from exc
    return parse_universe(text, str(path))


def write_universe(path: Path, entries: Iterable[UniverseEntry], comment: str | None = None) -> Path:
    """Write a universe CSV (creating parent directories) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(format_universe(entries, comment), encoding="utf-8")
    tmp.replace(path)
    return path

