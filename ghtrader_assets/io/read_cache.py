"""The reader's local cache: closed weeks of one symbol's ticks as the Parquet files QuestDB exported, each
with a sidecar naming what every day held when it was cached (its ledger index row and the stored rows'
counts and row-hash aggregates). A cached week is served only while every day still matches both, so a
revised, rebuilt or newly filled day is read from QuestDB again; nothing here decides what is current.

Layout: <root>/<host>_<http port>/<kind>/<symbol>/<ISO week>.parquet and .json. The files are written
atomically (temporary name, rename; the sidecar last); deleting the directory at any time is safe.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl

from ghtrader_assets.domain.read_plan import Chunk

FORMAT = 2  # 2: the main series' numeric day constants are restored too
_SAFE = re.compile(r"[^A-Za-z0-9._@-]")


@dataclass(frozen=True)
class CachedWeek:
    """A cached week read back: the rows of the requested days, and the columns the file holds."""

    frame: pl.DataFrame
    columns: tuple[str, ...]


class ReadCache:
    """The cache of one (server, kind, symbol)."""

    def __init__(self, root: Path, server: str, kind: str, symbol: str) -> None:
        self.dir = Path(root) / _SAFE.sub("_", server) / kind / _SAFE.sub("_", symbol)

    def _paths(self, key: str) -> tuple[Path, Path]:
        return self.dir / f"{key}.parquet", self.dir / f"{key}.json"

    def valid(self, chunk: Chunk, fingerprints: Mapping[date, object], columns: Sequence[str]) -> bool:
        """Whether the week is cached with these `columns` and each of the chunk's days' fingerprint (what the
        ledger and QuestDB say the day holds now) equals the one it was cached with. Reads the sidecar only."""
        try:
            sidecar = json.loads(self._paths(chunk.key)[1].read_text())
        except (OSError, ValueError):
            return False
        same_format = sidecar.get("format") == FORMAT and sidecar.get("columns") == list(columns)
        cached = sidecar.get("days", {}) if same_format else {}
        return bool(cached) and all(fingerprints.get(d) is not None and cached.get(d.isoformat()) == _normal(fingerprints[d])
                                    for d in chunk.days)

    def read(self, chunk: Chunk) -> CachedWeek | None:
        """The cached rows of the chunk's days (a whole week's file, filtered when the read asks for part
        of it); None when the file cannot be read (the caller exports the week instead)."""
        data, meta = self._paths(chunk.key)
        try:
            sidecar = json.loads(meta.read_text())
            frame = pl.read_parquet(data)
        except (OSError, ValueError, pl.exceptions.PolarsError):
            return None
        if len(sidecar.get("days", {})) != len(chunk.days):
            frame = frame.filter(pl.col("trading_day").dt.date().is_between(chunk.first, chunk.last))
        return CachedWeek(frame, tuple(sidecar.get("columns", frame.columns)))

    def store(self, chunk: Chunk, payload: bytes, columns: Sequence[str], fingerprints: Mapping[date, object]) -> None:
        """Keep a whole week's export (`payload`, Parquet bytes as QuestDB sent them) with its days'
        fingerprints; a failed write leaves no entry (the cache is an optimisation, never required)."""
        data, meta = self._paths(chunk.key)
        sidecar = {"format": FORMAT, "columns": list(columns),
                   "days": {d.isoformat(): _normal(fingerprints[d]) for d in chunk.days}}
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            meta.unlink(missing_ok=True)  # no sidecar: the entry is absent while the data file is replaced
            _atomic_write(data, payload)
            _atomic_write(meta, json.dumps(sidecar, sort_keys=True).encode())
        except OSError:
            return


def _normal(value: object) -> object:
    """A fingerprint as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(value, sort_keys=True))


def _atomic_write(path: Path, payload: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
