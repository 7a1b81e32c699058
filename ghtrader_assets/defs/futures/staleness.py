"""Which (variety, day) partitions were built for a schedule assignment the schedule no longer holds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import dagster as dg

from ghtrader_assets.defs.futures.partitions import VarietyDay
from ghtrader_assets.domain.schedule import ScheduleRow

UNDERLYING_TICKS = dg.AssetKey("underlying_ticks")
MAIN_L5 = dg.AssetKey("main_l5")


@dataclass(frozen=True)
class Stale:
    """A partition whose stored main_l5 (and, when the contract changed, raw ticks) follow an old assignment."""

    trading_day: date
    variety: str
    built_with: str  # "contract/segment" of the latest main_l5 materialization
    scheduled: str
    contract_changed: bool

    @property
    def key(self) -> str:
        return str(VarietyDay(self.trading_day, self.variety).key)


def latest_metadata(instance: dg.DagsterInstance, asset_key: dg.AssetKey, partitions: Sequence[str]) -> dict[str, dict]:
    """partition -> metadata values of its latest materialization (partitions never materialized are absent)."""
    if not partitions:
        return {}
    ids = instance.get_latest_storage_id_by_partition(
        asset_key, dg.DagsterEventType.ASSET_MATERIALIZATION, partitions=set(partitions))
    if not ids:
        return {}
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, storage_ids=list(ids.values())), limit=len(ids)).records
    out: dict[str, dict] = {}
    for record in records:
        mat = record.asset_materialization
        if mat is not None and mat.partition is not None:
            out[mat.partition] = {k: v.value for k, v in mat.metadata.items()}
    return out


def stale_partitions(instance: dg.DagsterInstance, variety: str, rows: Sequence[ScheduleRow]) -> list[Stale]:
    """Scheduled days whose latest main_l5 materialization names another contract or segment."""
    by_key = {str(VarietyDay(r.trading_day, variety).key): r for r in rows}
    built = latest_metadata(instance, MAIN_L5, list(by_key))
    out = []
    for key, meta in sorted(built.items()):
        row = by_key[key]
        have = (meta.get("underlying"), meta.get("segment_id"))
        if have != (row.main_contract, row.segment_id):
            out.append(Stale(row.trading_day, variety, f"{have[0]}/{have[1]}", f"{row.main_contract}/{row.segment_id}",
                             have[0] != row.main_contract))
    return out
