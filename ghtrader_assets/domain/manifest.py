"""Snapshot manifests: a variety complete through a day, with order-independent digests of its day index and
schedule, so the same data can be recognised (or found changed) later.

    {"format": 1, "variety": "SHFE.cu", "first_day": "2024-01-02", "through": "2024-04-11",
     "days_expected": 66, "days_complete": 65, "no_data_days": [{"day": "2024-02-19", "reason": "..."}],
     "rows_total": 201234, "index_digest": "9f3c...", "schedule_digest": "51aa...",
     "version": "ghtrader-assets 0.1.0", "created_at": "2026-12-03T10:00:00+00:00"}

Digests are hex FNV-1a 64 values combined by a wrapping sum, so the order in which days are read never
matters: the index digest covers each day's stats (rows, first/last tick, L5 presence, row-hash aggregates
and the value checksum), the schedule digest each day's contract, segment and schedule hash.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime

from ghtrader_assets.domain.ledger import STAT_FIELDS, DayStats
from ghtrader_assets.domain.schedule import ScheduleRow

FORMAT = 1
_MASK = (1 << 64) - 1


def _fnv(text: str) -> int:
    h = 0xCBF29CE484222325
    for byte in text.encode():
        h = ((h ^ byte) * 0x100000001B3) & _MASK
    return h


def index_digest(days: Mapping[date, DayStats]) -> str:
    total = 0
    for day, stats in days.items():
        total = (total + _fnv("|".join([day.isoformat(), *(str(getattr(stats, k)) for k in STAT_FIELDS)]))) & _MASK
    return f"{total:016x}"


def schedule_digest(rows: Iterable[ScheduleRow]) -> str:
    total = 0
    for r in rows:
        total = (total + _fnv(f"{r.trading_day}|{r.main_contract}|{r.segment_id}|{r.schedule_hash}")) & _MASK
    return f"{total:016x}"


def build(variety: str, first_day: date, through: date, days_expected: int, stats: Mapping[date, DayStats],
          no_data: Mapping[date, str], schedule: Iterable[ScheduleRow], version: str, created_at: datetime) -> dict:
    """The manifest of a window with nothing missing or stale: `stats` holds every stored day (no-data days
    with zero rows), `no_data` the reason of each provider-empty day."""
    return {
        "format": FORMAT,
        "variety": variety,
        "first_day": first_day.isoformat(),
        "through": through.isoformat(),
        "days_expected": days_expected,
        "days_complete": sum(1 for d, s in stats.items() if s.rows_total > 0),
        "no_data_days": [{"day": d.isoformat(), "reason": r} for d, r in sorted(no_data.items())],
        "rows_total": sum(s.rows_total for s in stats.values()),
        "index_digest": index_digest(stats),
        "schedule_digest": schedule_digest(schedule),
        "version": version,
        "created_at": created_at.isoformat(),
    }


def compare(manifest: Mapping, recomputed: Mapping) -> list[str]:
    """What differs between a manifest and the same manifest recomputed from the store now."""
    def value(m: Mapping, k: str) -> object:
        # a no-data day's reason may be reworded by a later ask (attempt counts); the days are what matters
        return [d["day"] for d in m.get(k) or []] if k == "no_data_days" else m.get(k)

    keys = ("variety", "first_day", "through", "days_expected", "days_complete", "no_data_days", "rows_total",
            "index_digest", "schedule_digest")
    return [f"{k}: manifest {value(manifest, k)!r}, store now {value(recomputed, k)!r}" for k in keys
            if value(manifest, k) != value(recomputed, k)]
