"""Reading the data back: stored main_l5 (or raw) ticks of a symbol over trading days, as one polars frame.

    from datetime import date
    from ghtrader_assets.reader import read_ticks
    df = read_ticks("KQ.m@SHFE.cu", date(2024, 1, 2), date(2024, 3, 29))          # main series
    raw = read_ticks("SHFE.cu2403", date(2024, 2, 1), date(2024, 2, 1), kind="raw")

Columns: symbol, ts (UTC), datetime_ns (exact epoch ns), seq, trading_day, the 27 tick columns,
(main_l5 only) underlying_contract, segment_id, schedule_hash, and row_hash; sorted by time. The rows
arrive in one columnar (Parquet) export, never row by row. Connection settings default to the
QUESTDB_* environment variables.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from ghtrader_assets.io import futures_store as store
from ghtrader_assets.io import ledger_store as ledger
from ghtrader_assets.io.questdb import QuestDBClient, QuestDBSettings


def read_ticks(
    symbol: str, start: date, end: date, kind: str = "main_l5", settings: QuestDBSettings | None = None
) -> pl.DataFrame:
    """Ticks of `symbol` ('KQ.m@SHFE.cu' for main_l5, a contract for raw) on the trading days in [start, end]."""
    if kind not in store.KINDS:
        raise ValueError(f"kind must be one of {sorted(store.KINDS)}, not {kind!r}")
    store.check_symbol(symbol)
    with QuestDBClient(settings or QuestDBSettings.from_env()) as client:
        calendar = ledger.read_calendar(client)
        return store.read_ticks(client, symbol, calendar.between(start, end), calendar, kind)
