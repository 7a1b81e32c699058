"""Single-day wrappers around futures_store.store_days, for tests that write one (contract, day) at a time."""

from __future__ import annotations

from datetime import date

import polars as pl

from ghtrader_assets.domain.schedule import ScheduleRow
from ghtrader_assets.domain.symbols import parse_contract, variety_of
from ghtrader_assets.io import futures_store as store
from ghtrader_assets.io.questdb import QuestDBClient, QuestDBError


def _stored_one(done: dict, write: store.DayWrite) -> store.DayStored:
    stored = done[(write.variety, write.day)]
    if stored.error:
        raise QuestDBError(stored.error)
    return stored


def replace_raw_day(client: QuestDBClient, contract: str, day: date, bounds: tuple[int, int], frame: pl.DataFrame) -> int:
    """Store `frame` as the raw ticks of (contract, day): `store_days` for one day, raw only. On return the
    rows are applied and are the only current ones of the day. Returns the rows stored."""
    parse_contract(contract)
    # Raw only: the schedule row just names the contract (segment and hash are read by main_l5 alone).
    write = store.DayWrite(variety_of(contract), day, bounds, ScheduleRow(day, contract, -1, 0), frame)
    return _stored_one(store.store_days(client, [write], main_l5=False), write).raw.rows_total


def materialize_main_l5(client: QuestDBClient, variety: str, day: date, bounds: tuple[int, int], row: ScheduleRow) -> int:
    """Cut the stored raw day of the scheduled contract into main_l5: `store_days` for one day, not fetched."""
    write = store.DayWrite(variety, day, bounds, row)
    return _stored_one(store.store_days(client, [write]), write).main_l5.rows_total
