"""IBKR partitions: one dynamic partition per underlying symbol of the universe CSV."""

from __future__ import annotations

import dagster as dg

# Kept in step with the universe CSV by sensors.ibkr_universe_sync.
ibkr_symbol_partitions = dg.DynamicPartitionsDefinition(name="ibkr_symbol")
