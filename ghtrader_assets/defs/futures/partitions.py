"""Partitions of the futures chain: variety (static, from settings) x trading day (exactly the trading days)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import dagster as dg

from ghtrader_assets.domain.schedule import parse_variety

# Filled by the trading_days asset (and the daily sensor) from the vendor's calendar, in date order,
# so there is never a weekend or holiday partition.
TRADING_DAY = dg.DynamicPartitionsDefinition(name="trading_day")


def variety_partitions(varieties: tuple[str, ...]) -> dg.StaticPartitionsDefinition:
    for v in varieties:
        parse_variety(v)
    return dg.StaticPartitionsDefinition(list(varieties))


def variety_day_partitions(varieties: tuple[str, ...]) -> dg.MultiPartitionsDefinition:
    return dg.MultiPartitionsDefinition({"trading_day": TRADING_DAY, "variety": variety_partitions(varieties)})


@dataclass(frozen=True, order=True)
class VarietyDay:
    """One partition of the chain, parsed from its key."""

    trading_day: date
    variety: str

    @classmethod
    def parse(cls, key: str | dg.MultiPartitionKey) -> "VarietyDay":
        if isinstance(key, dg.MultiPartitionKey):
            dims = key.keys_by_dimension
        else:  # "2024-01-02|SHFE.cu": values in the alphabetical order of the dimension names
            day, variety = str(key).split("|")
            dims = {"trading_day": day, "variety": variety}
        parse_variety(dims["variety"])
        return cls(date.fromisoformat(dims["trading_day"]), dims["variety"])

    @property
    def key(self) -> dg.MultiPartitionKey:
        return dg.MultiPartitionKey({"trading_day": self.trading_day.isoformat(), "variety": self.variety})
