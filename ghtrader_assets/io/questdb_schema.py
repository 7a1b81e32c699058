"""Every QuestDB table of the project: columns, designated timestamp, DEDUP keys, and their DDL."""

from __future__ import annotations

from dataclasses import dataclass

from ghtrader_assets.domain.ticks import TICK_COLUMNS


@dataclass(frozen=True)
class Table:
    """One WAL table partitioned by day on its designated timestamp `ts`, deduplicated on `dedup_keys`."""

    name: str
    columns: tuple[tuple[str, str], ...]
    dedup_keys: tuple[str, ...]
    partition_by: str = "DAY"
    # Columns a write may leave out (stored as NULL).
    optional: tuple[str, ...] = ()

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    @property
    def symbol_columns(self) -> tuple[str, ...]:
        return tuple(name for name, kind in self.columns if kind == "SYMBOL")

    def ddl(self) -> str:
        cols = ",\n  ".join(f"{name} {kind}" for name, kind in self.columns)
        return (
            f"CREATE TABLE IF NOT EXISTS {self.name} (\n  {cols}\n) TIMESTAMP(ts) PARTITION BY {self.partition_by} WAL\n"
            f"DEDUP UPSERT KEYS({', '.join(self.dedup_keys)})"
        )


_TICK_VALUES = tuple((c, "DOUBLE") for c in TICK_COLUMNS)

# ts is the tick time in microseconds (QuestDB's TIMESTAMP); datetime_ns keeps the exact nanoseconds.
# seq separates ticks of one symbol that share a datetime_ns. trading_day is 00:00 UTC of the trading day.
# answer_hash names the provider answer a row came from (domain.ticks.answer_hash): a rewrite of a
# (symbol, day) retires, by one UPDATE, exactly the rows whose answer is not the new one. Raw holds every
# tick the provider served; `flag` is the cleaning rule's verdict on it (domain.tick_cleaning.FLAGS), and
# main_l5 takes the rows flagged ok or session_uncertain. Rows stored before flags existed have none
# (they were the kept ticks); a rebuild of their day flags them.
RAW_TICKS = Table(
    "ghtrader_ticks_raw_v2",
    (
        ("symbol", "SYMBOL"),
        ("ts", "TIMESTAMP"),
        ("datetime_ns", "LONG"),
        ("seq", "INT"),
        ("trading_day", "TIMESTAMP"),
        *_TICK_VALUES,
        ("row_hash", "LONG"),
        ("answer_hash", "LONG"),
        ("flag", "SYMBOL"),
    ),
    ("ts", "symbol", "datetime_ns", "seq"),
    optional=("answer_hash", "flag"),
)

# session_hash names the session windows the day was cut with (domain.tick_cleaning.KeepRule): a corrected
# session history makes other rows current, and the rows it no longer keeps are retired like a revision.
MAIN_L5_TICKS = Table(
    "ghtrader_ticks_main_l5_v2",
    (
        ("symbol", "SYMBOL"),
        ("ts", "TIMESTAMP"),
        ("datetime_ns", "LONG"),
        ("seq", "INT"),
        ("trading_day", "TIMESTAMP"),
        *_TICK_VALUES,
        ("underlying_contract", "SYMBOL"),
        ("segment_id", "INT"),
        ("schedule_hash", "LONG"),
        ("row_hash", "LONG"),
        ("answer_hash", "LONG"),
        ("session_hash", "LONG"),
    ),
    ("ts", "symbol", "datetime_ns", "seq"),
    optional=("answer_hash", "session_hash"),
)

# Calendar days (ts = 00:00 UTC of the date) with whether the exchanges trade that day.
TRADING_CALENDAR = Table(
    "ghtrader_trading_calendar_v2",
    (("ts", "TIMESTAMP"), ("trading", "BOOLEAN")),
    ("ts",),
    partition_by="YEAR",
)

# One row per variety and capture day: quote.trading_time as served, and normalised windows.
SESSIONS = Table(
    "ghtrader_sessions_v2",
    (
        ("variety", "SYMBOL"),
        ("ts", "TIMESTAMP"),
        ("trading_time_raw", "VARCHAR"),
        ("day_windows", "VARCHAR"),
        ("night_windows", "VARCHAR"),
        ("has_night", "BOOLEAN"),
        ("l5_depth", "BOOLEAN"),
    ),
    ("ts", "variety"),
    partition_by="YEAR",
)

MAIN_SCHEDULE = Table(
    "ghtrader_main_schedule_v2",
    (
        ("exchange", "SYMBOL"),
        ("variety", "SYMBOL"),
        ("ts", "TIMESTAMP"),
        ("main_contract", "SYMBOL"),
        ("segment_id", "INT"),
        ("schedule_hash", "LONG"),
        ("source", "SYMBOL"),
    ),
    ("ts", "exchange", "variety"),
    partition_by="YEAR",
)

# The ledger of what is stored: one row per (symbol, trading day, kind) with the stored rows' stats and, for
# main_l5, what the day was built for (contract, segment, schedule hash, session windows) and whether the
# day had closed (`final`). Rows written before those columns existed have them null.
SYMBOL_DAY_INDEX = Table(
    "ghtrader_symbol_day_index_v2",
    (
        ("symbol", "SYMBOL"),
        ("ts", "TIMESTAMP"),
        ("ticks_kind", "SYMBOL"),
        ("rows_total", "LONG"),
        ("first_datetime_ns", "LONG"),
        ("last_datetime_ns", "LONG"),
        ("l5_present", "BOOLEAN"),
        ("row_hash_min", "LONG"),
        ("row_hash_max", "LONG"),
        ("row_hash_sum", "LONG"),
        ("row_hash_sum_abs", "LONG"),
        ("underlying_contract", "SYMBOL"),
        ("updated_at", "TIMESTAMP"),
        ("segment_id", "INT"),
        ("schedule_hash", "LONG"),
        ("session_hash", "LONG"),
        ("final", "BOOLEAN"),
        ("value_sum", "LONG"),
    ),
    ("ts", "symbol", "ticks_kind"),
    partition_by="YEAR",
    optional=("segment_id", "schedule_hash", "session_hash", "final", "value_sum"),
)

# The latest re-count of each stored (symbol, trading day, kind) against its index row (upserted).
DAY_VERIFICATIONS = Table(
    "ghtrader_day_verifications_v2",
    (
        ("symbol", "SYMBOL"),
        ("ts", "TIMESTAMP"),
        ("ticks_kind", "SYMBOL"),
        ("verified_at", "TIMESTAMP"),
        ("ok", "BOOLEAN"),
        ("detail", "VARCHAR"),
    ),
    ("ts", "symbol", "ticks_kind"),
    partition_by="YEAR",
)

# One row per main_schedule run and variety (ts = when it ran): the variety's window (its first trading day,
# from the vendor's listing or the user's start) and the schedule source. The latest row is the current one.
VARIETY_WINDOWS = Table(
    "ghtrader_variety_windows_v2",
    (
        ("variety", "SYMBOL"),
        ("ts", "TIMESTAMP"),
        ("first_day", "TIMESTAMP"),
        ("window_source", "SYMBOL"),
        ("schedule_source", "SYMBOL"),
    ),
    ("ts", "variety"),
    partition_by="YEAR",
)

# Snapshot manifests (also written as JSON files): a variety complete through a day, with digests.
MANIFESTS = Table(
    "ghtrader_manifests_v2",
    (
        ("variety", "SYMBOL"),
        ("ts", "TIMESTAMP"),
        ("first_day", "TIMESTAMP"),
        ("through", "TIMESTAMP"),
        ("days_complete", "INT"),
        ("no_data_days", "INT"),
        ("rows_total", "LONG"),
        ("index_digest", "VARCHAR"),
        ("schedule_digest", "VARCHAR"),
        ("version", "VARCHAR"),
        ("path", "VARCHAR"),
    ),
    ("ts", "variety"),
    partition_by="YEAR",
)

# A (symbol, trading day, kind) the provider answered empty for. `resolved` flips to true (by upsert)
# once a later run finds data, so the record is never a permanent verdict.
NO_DATA_DAYS = Table(
    "ghtrader_no_data_days_v2",
    (
        ("symbol", "SYMBOL"),
        ("ts", "TIMESTAMP"),
        ("ticks_kind", "SYMBOL"),
        ("reason", "VARCHAR"),
        ("resolved", "BOOLEAN"),
        ("updated_at", "TIMESTAMP"),
        ("attempts", "INT"),  # empty answers so far
        ("next_retry", "TIMESTAMP"),  # when the daily update asks again (null: resolved or permanent)
        ("status", "SYMBOL"),  # retrying | permanent | resolved
    ),
    ("ts", "symbol", "ticks_kind"),
    partition_by="YEAR",
)

# Roll-adjustment factors (domain.roll_factors): one row per switch day of a variety's main schedule, with
# the reference prices of both contracts under both references (prev_close: closes on the trading day
# before the switch, the default; open: opens on the switch day), each reference's own spread and ratio,
# and the cumulative factors applied to the prices of the segment the switch opens, under adjust=pre
# (over the later switches) and adjust=post (over this one and the earlier ones). A switch the schedule no
# longer holds is retired by renaming its variety to `~<variety>`.
ROLL_FACTORS = Table(
    "ghtrader_main_roll_factors_v2",
    (
        ("variety", "SYMBOL"),
        ("ts", "TIMESTAMP"),  # the switch day: the first trading day of the new contract
        ("from_contract", "SYMBOL"),
        ("to_contract", "SYMBOL"),
        ("segment_id", "INT"),  # the segment the switch opens
        ("schedule_hash", "LONG"),
        ("from_segment_id", "INT"),  # the segment it closes
        ("from_schedule_hash", "LONG"),
        ("close_day", "TIMESTAMP"),  # the trading day before the switch
        ("from_close", "DOUBLE"),
        ("to_close", "DOUBLE"),
        ("spread", "DOUBLE"),  # to_close - from_close
        ("ratio", "DOUBLE"),  # to_close / from_close
        ("pre_spread", "DOUBLE"),
        ("pre_ratio", "DOUBLE"),
        ("post_spread", "DOUBLE"),
        ("post_ratio", "DOUBLE"),
        ("from_open", "DOUBLE"),  # opens on the switch day: the `open` reference
        ("to_open", "DOUBLE"),
        ("open_spread", "DOUBLE"),
        ("open_ratio", "DOUBLE"),
        ("open_pre_spread", "DOUBLE"),
        ("open_pre_ratio", "DOUBLE"),
        ("open_post_spread", "DOUBLE"),
        ("open_post_ratio", "DOUBLE"),
        ("source", "SYMBOL"),  # where the reference prices came from (tqsdk daily klines)
        ("updated_at", "TIMESTAMP"),
    ),
    ("ts", "variety"),
    partition_by="YEAR",
)

ALL_TABLES: tuple[Table, ...] = (
    TRADING_CALENDAR,
    SESSIONS,
    MAIN_SCHEDULE,
    RAW_TICKS,
    MAIN_L5_TICKS,
    SYMBOL_DAY_INDEX,
    NO_DATA_DAYS,
    DAY_VERIFICATIONS,
    VARIETY_WINDOWS,
    MANIFESTS,
    ROLL_FACTORS,
)
