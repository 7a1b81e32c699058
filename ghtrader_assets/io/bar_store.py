"""Parquet bar files: path layout, atomic writes, the earlier system's files, quarantine and the locked merge."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from ghtrader_assets.domain.bar_merge import BarSchemaError, conform, from_legacy, merge_bars


class CorruptBarFileError(ValueError):
    """An existing bar file cannot be read or lacks the bar schema."""


class BarWriteError(OSError):
    """A bar file could not be written (disk full, permissions, ...); the message names the file."""


@dataclass(frozen=True)
class StoreResult:
    """Outcome of one merge: rows in the file before/after, whether the file was the earlier system's
    (its rows converted and kept), and where an unreadable file was moved."""

    path: Path
    rows_before: int
    rows_after: int
    quarantined: Path | None = None
    quarantine_reason: str | None = None
    legacy: bool = False


@dataclass(frozen=True)
class StoredExtent:
    """What the planner needs from a stored file, from its Parquet footer only: its last bar start
    (UTC; None when there is no file or no bar) or why it cannot be read."""

    last: datetime | None = None
    broken: str | None = None


def bar_file_name(bar_size: str) -> str:
    """`8 hours` -> `8_hours.parquet` (spaces become underscores)."""
    return bar_size.strip().replace(" ", "_") + ".parquet"


def bar_path(root: Path, scope: str, symbol: str, conid: int, what: str, bar_size: str) -> Path:
    """`root/historical_bars_<scope>/{SYMBOL}/{conId}/{WHAT}/{BAR}.parquet`."""
    return root / f"historical_bars_{scope}" / symbol.upper() / str(conid) / what.upper() / bar_file_name(bar_size)


def path_key(path: Path) -> tuple[str, int, str, str]:
    """(symbol, conid, what, bar size) of a file laid out as `.../{SYMBOL}/{conId}/{WHAT}/{BAR}.parquet`;
    ValueError otherwise."""
    what_dir = path.parent
    try:
        return (what_dir.parent.parent.name, int(what_dir.parent.name), what_dir.name,
                path.name.removesuffix(".parquet").replace("_", " "))
    except ValueError as exc:
        raise ValueError(f"{path}: not laid out as {{SYMBOL}}/{{conId}}/{{WHAT}}/{{BAR}}.parquet") from exc


def read_stored(path: Path) -> tuple[pl.DataFrame, bool]:
    """A stored bar file in BAR_SCHEMA and whether it was the earlier system's (converted with
    bar_merge.from_legacy, key columns it lacks taken from the path). CorruptBarFileError when it
    cannot be read or is neither."""
    try:
        frame = pl.read_parquet(path)
    except FileNotFoundError:
        raise
    except Exception as exc:  # polars/arrow raise several error types for truncated files
        raise CorruptBarFileError(f"{path}: unreadable Parquet ({type(exc).__name__}: {exc})") from exc
    try:
        return conform(frame), False
    except (BarSchemaError, pl.exceptions.PolarsError):
        pass
    try:
        symbol, conid, what, bar_size = path_key(path)
        return from_legacy(frame, symbol, conid, bar_size, what), True
    except (ValueError, pl.exceptions.PolarsError) as exc:
        raise CorruptBarFileError(f"{path}: not a bar file ({exc})") from exc


def read_bars(path: Path) -> pl.DataFrame:
    """Read a stored bar file (ours or the earlier system's) in BAR_SCHEMA; CorruptBarFileError when
    it cannot be read."""
    return read_stored(path)[0]


def stored_extent(path: Path) -> StoredExtent:
    """The file's last bar start from the footer statistics of `ts` (no data page read), or why the
    footer cannot be read; an empty extent when there is no file."""
    try:
        meta = pq.ParquetFile(path).metadata
    except FileNotFoundError:
        return StoredExtent()
    except Exception as exc:  # noqa: BLE001 - truncated or not Parquet at all
        return StoredExtent(broken=f"unreadable Parquet ({type(exc).__name__}: {exc})")
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    if "ts" not in names:
        return StoredExtent(broken="no ts column")
    column = names.index("ts")
    values = []
    for group in range(meta.num_row_groups):
        stats = meta.row_group(group).column(column).statistics
        if stats is None or not stats.has_min_max:
            return StoredExtent(last=last_stored_ts(path))
        values.append(stats.max)
    return StoredExtent(last=_utc(max(values)) if values else None)


def _utc(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return None  # dates (daily bars of the earlier system) and anything else: fetch the full window


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


def merge_into(path: Path, new: pl.DataFrame, incremental: bool = True, new_wins: bool = True) -> StoreResult:
    """Store `new` bars at `path`. Incremental: merge with the existing file, ours or the earlier
    system's (on the key the `new` bar wins, or the stored one with `new_wins=False`). A file that
    cannot be read is moved aside and reported, never merged. Not incremental: overwrite. The
    read-modify-write runs under `file_lock(path)`."""
    with file_lock(path):
        return _merge_locked(path, new, incremental, new_wins)


def _merge_locked(path: Path, new: pl.DataFrame, incremental: bool, new_wins: bool) -> StoreResult:
    existing: pl.DataFrame | None = None
    moved: Path | None = None
    reason: str | None = None
    legacy = False
    if incremental and path.exists():
        try:
            existing, legacy = read_stored(path)
        except CorruptBarFileError as exc:
            moved, reason = quarantine(path), str(exc)
    if existing is None:
        merged = merge_bars(new.clear(), new)
    else:
        merged = merge_bars(existing, new) if new_wins else merge_bars(new, existing)
    write_atomic(merged, path)
    return StoreResult(
        path=path,
        rows_before=0 if existing is None else existing.height,
        rows_after=merged.height,
        quarantined=moved,
        quarantine_reason=reason,
        legacy=legacy,
    )


@dataclass
class LegacyImport:
    """What `import_legacy` found and did: bar files read, their bars, bars new to our tree, files
    written (or that would be), and files left alone with the reason."""

    files: int = 0
    bars_read: int = 0
    bars_added: int = 0
    files_merged: int = 0
    left: list[tuple[Path, str]] = field(default_factory=list)


def import_legacy(root: Path, data_root: Path, scope: str, apply: bool = False) -> LegacyImport:
    """Merge every bar file under `root` laid out as `{SYMBOL}/{conId}/{WHAT}/{BAR}.parquet` (the
    earlier weekend script's tree, or ours) into `data_root/historical_bars_<scope>/`, our bars winning
    on the key (they are IB's later answer) so the earlier files only add what we lack. Dry run unless
    `apply`; the source tree is never changed; an unreadable file is reported and left where it is."""
    report = LegacyImport()
    for path in sorted(root.rglob("*.parquet")):
        try:
            symbol, conid, what, bar_size = path_key(path)
        except ValueError as exc:
            report.left.append((path, str(exc)))
            continue
        try:
            frame, _ = read_stored(path)
        except CorruptBarFileError as exc:
            report.left.append((path, str(exc)))
            continue
        target = bar_path(data_root, scope, symbol, conid, what, bar_size)
        if target.exists() and target.resolve() == path.resolve():
            report.left.append((path, "already in our tree: merged by the next run of its stage"))
            continue
        report.files += 1
        report.bars_read += frame.height
        if apply:
            stored = merge_into(target, frame, incremental=True, new_wins=False)
            added = stored.rows_after - stored.rows_before
        else:
            try:
                ours = read_bars(target)
            except (FileNotFoundError, CorruptBarFileError):
                ours = frame.clear()
            added = merge_bars(ours, frame).height - ours.height
        report.bars_added += added
        report.files_merged += added > 0
    return report
