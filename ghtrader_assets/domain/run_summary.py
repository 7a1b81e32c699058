"""Run summary records (one JSONL line per request): statuses, resume keys and the rerun universe."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal


Stage = str  # a name of stage_table.STAGE_TABLE
Purpose = Literal["bars", "reference", "discovery", "symbol", "coverage"]


class Status(StrEnum):
    """OK: bars stored. EMPTY: the gateway said there is no data (error 162 'HMDS query returned no
    data'). ERR: error, timeout, disconnect, or pacing that never cleared. SKIPPED: not requested
    (already OK for this stage and window, or dry run)."""

    OK = "OK"
    EMPTY = "EMPTY"
    ERR = "ERR"
    SKIPPED = "SKIPPED"


@dataclass(frozen=True)
class SummaryRecord:
    """One request's outcome. `purpose`: bars (a contract's bars), reference (the underlying close
    for the minutes subset), discovery (a symbol's contracts; `bars` = contracts qualified,
    `requests` = gateway requests it took), symbol (a symbol-level failure such as a missing
    cache), coverage (a symbol's expiry coverage at the end of a run: `bars` = contracts truncated by
    expiry, `requests` = sessions so lost, the text in error_message). `expiry` is the option's expiry
    date (bars records). Times are UTC; `elapsed_s` in seconds."""

    run_id: str
    stage: Stage
    purpose: Purpose
    symbol: str
    window: str
    status: Status
    conid: int | None = None
    bar_size: str | None = None
    what: str | None = None
    duration: str | None = None
    bars: int = 0
    first: datetime | None = None
    last: datetime | None = None
    error_code: int | None = None
    error_message: str | None = None
    output_path: str | None = None
    elapsed_s: float = 0.0
    attempts: int = 0
    requests: int = 0
    expiry: date | None = None
    recorded_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_json(self) -> dict[str, Any]:
        """The JSONL layout (seed field names: conId, barSize, what, elapsed)."""
        return {
            "run_id": self.run_id,
            "stage": self.stage,
            "purpose": self.purpose,
            "status": str(self.status),
            "symbol": self.symbol,
            "conId": self.conid,
            "barSize": self.bar_size,
            "what": self.what,
            "duration": self.duration,
            "window": self.window,
            "bars": self.bars,
            "first": _iso(self.first),
            "last": _iso(self.last),
            "error_code": self.error_code,
            "error_message": self.error_message,
            "output_path": self.output_path,
            "elapsed": round(self.elapsed_s, 4),
            "attempts": self.attempts,
            "requests": self.requests,
            "expiry": self.expiry.isoformat() if self.expiry else None,
            "recorded_at": _iso(self.recorded_at),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SummaryRecord:
        """Inverse of to_json."""
        return cls(
            run_id=data["run_id"],
            stage=data["stage"],
            purpose=data.get("purpose", "bars"),
            status=Status(data["status"]),
            symbol=data["symbol"],
            conid=data.get("conId"),
            bar_size=data.get("barSize"),
            what=data.get("what"),
            duration=data.get("duration"),
            window=data.get("window", ""),
            bars=int(data.get("bars") or 0),
            first=_parse(data.get("first")),
            last=_parse(data.get("last")),
            error_code=data.get("error_code"),
            error_message=data.get("error_message"),
            output_path=data.get("output_path"),
            elapsed_s=float(data.get("elapsed") or 0.0),
            attempts=int(data.get("attempts") or 0),
            requests=int(data.get("requests") or 0),
            expiry=date.fromisoformat(data["expiry"]) if data.get("expiry") else None,
            recorded_at=_parse(data.get("recorded_at")) or datetime.min.replace(tzinfo=UTC),
        )


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def _parse(value: str | None) -> datetime | None:
    return None if not value else datetime.fromisoformat(value)


def window_key(stage: Stage, bar_size: str, duration: str, what: str, use_rth: bool, end_day: date) -> str:
    """Resume window: a contract OK under the same key is not requested again unless forced.
    `end_day` is the last completed regular session the request covers
    (us_sessions.last_completed_session of its end), so every run of one weekend, and any resume
    after a crash, shares the key."""
    return f"{stage}|{bar_size}|{duration}|{what}|{'rth' if use_rth else 'all'}|{end_day.isoformat()}"


def window_session(window: str) -> date | None:
    """The last completed session a window key covers (its last field), or None."""
    try:
        return date.fromisoformat(window.rsplit("|", 1)[-1])
    except ValueError:
        return None


def summary_dir(state_dir: Path, stage: Stage) -> Path:
    """`state_dir/run_logs/<stage>`."""
    return state_dir / "run_logs" / stage


def summary_path(state_dir: Path, stage: Stage, run_id: str) -> Path:
    """`state_dir/run_logs/<stage>/summary_<run-id>.jsonl`."""
    return summary_dir(state_dir, stage) / f"summary_{run_id}.jsonl"


def count_by_status(records: Iterable[SummaryRecord]) -> dict[str, int]:
    """Number of records per status (every status present, zero when absent)."""
    counts = {str(status): 0 for status in Status}
    for record in records:
        counts[str(record.status)] += 1
    return counts
