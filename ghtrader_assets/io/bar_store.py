"""Parquet bar files: path layout, atomic writes, corrupt-file quarantine and the locked incremental merge."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from ghtrader_assets.domain.bar_merge import BarSchemaError, conform, merge_bars


class CorruptBarFileError(ValueError):
    """An existing bar file cannot be read or lacks the bar schema."""


class BarWriteError(OSError):
    """A bar file could not be written (disk full, permissions, ...); the message names the file."""


@dataclass(frozen=True)
class StoreResult:
    """Outcome of one merge: rows in the file before/after, and where a corrupt file was moved."""

    path: Path
    rows_before: int
    rows_after: int
    quarantined: Path | None = None
    quarantine_reason: str | None = None


def bar_file_name(bar_size: str) -> str:
    """`8 hours` -> `8_hours.parquet` (spaces become underscores)."""
    return bar_size.strip().replace(" ", "_") + ".parquet"


def bar_path(root: Path, scope: str, symbol: str, conid: int, what: str, bar_size: str) -> Path:
    """`root/historical_bars_<scope>/{SYMBOL}/{conId}/{WHAT}/{BAR}.parquet`."""
    return root / f"historical_bars_{scope}" / symbol.upper() / str(conid) / what.upper() / bar_file_name(bar_size)


def read_bars(path: Path) -> pl.DataFrame:
    """Read a stored bar file in BAR_SCHEMA; raise CorruptBarFileError when it cannot be read."""
    try:
        frame = pl.read_parquet(path)
    except FileNotFoundError:
        raise
    except Exception as exc:  # polars/arrow raise several error types for truncated files
        raise CorruptBarFileError(f"{path}: unreadable Parquet ({type(exc).__name__}: {exc})") from exc
    try:
        return conform(frame)
    except (BarSchemaError, pl.exceptions.PolarsError) as exc:
        raise CorruptBarFileError(f"{path}: not a bar file ({exc})") from exc


def last_stored_ts(path: Path) -> datetime | None:
    """Latest `ts` in the file, or None when there is no readable file (a corrupt file is handled by
    merge_into, which quarantines it)."""
    try:
        frame = read_bars(path)
    except (FileNotFoundError, CorruptBarFileError):
        return None
    value = frame["ts"].max()
    return value if isinstance(value, datetime) else None


def write_atomic(frame: pl.DataFrame, path: Path) -> None:
    """Write Parquet to a temp file in the same directory, fsync it, rename over `path`, fsync the
    directory: readers see the old file or the new one, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as handle:
            frame.write_parquet(handle, compression="zstd", statistics=True)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    except (OSError, pl.exceptions.PolarsError) as exc:
        # e.g. disk full: polars reports only "underlying IO error"; name the file (the old one is intact)
        raise BarWriteError(f"cannot write {path}: {type(exc).__name__}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def quarantine(path: Path, now: datetime | None = None) -> Path:
    """Move `path` aside to `<name>.corrupt-<UTC timestamp>` and return the new path."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%fZ")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    path.replace(target)
    return target


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock (flock) for merging into `path`, held across processes until exit: a
    CLI run and a Dagster run merging into one file take turns instead of losing a write. The lock
    is taken on the file's directory (`{conId}/{WHAT}/`, one contract), so no lock file is left."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def merge_into(path: Path, new: pl.DataFrame, incremental: bool = True) -> StoreResult:
    """Store `new` bars at `path`. Incremental: merge with the existing file (new bar wins on the
    key). A file that cannot be read is moved aside and reported, never merged. Not incremental:
    overwrite. The read-modify-write runs under `file_lock(path)`."""
    with file_lock(path):
        return _merge_locked(path, new, incremental)


def _merge_locked(path: Path, new: pl.DataFrame, incremental: bool) -> StoreResult:
    existing: pl.DataFrame | None = None
    moved: Path | None = None
    reason: str | None = None
    if incremental and path.exists():
        try:
            existing = read_bars(path)
        except CorruptBarFileError as exc:
            moved, reason = quarantine(path), str(exc)
    merged = merge_bars(existing, new) if existing is not None else merge_bars(new.clear(), new)
    write_atomic(merged, path)
    return StoreResult(
        path=path,
        rows_before=0 if existing is None else existing.height,
        rows_after=merged.height,
        quarantined=moved,
        quarantine_reason=reason,
    )
