"""One process of the concurrent-rewrite test, using only the product's store code against a QuestDB:

    python -m ghtrader_assets_tests.reliability.rewrite_worker '{"role": "rewriter", ...}'

Roles:
- `rewriter`: for `rounds` rounds, rewrites the raw days of two contracts of one variety with answers of
  alternating size (every other answer is shorter, so the stale-row path runs), then main_l5 of the
  variety's KQ.m@ series for each day, alternating between the two contracts (stale rows again).
- `writer`: stores new (contract, day)s, once each, into the same UTC partitions.
- `reader`: polls per-(symbol, day) row counts until the stop file appears; records every drop.
- `pause`: like one rewriter round, but stops dead (sleeps until killed) at `pause_at`, so the test can
  SIGKILL it there.

Every role prints one JSON line at the end (rewriter/writer: what each (symbol, day) must hold now)."""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import date, datetime, timedelta

import polars as pl

from ghtrader_assets.domain.calendar import CST, TradingCalendar
from ghtrader_assets.domain.schedule import build_schedule
from ghtrader_assets.domain.ticks import TICK_COLUMNS, with_row_hash, with_seq
from ghtrader_assets.io import futures_store as store
from ghtrader_assets_tests.store_days import materialize_main_l5, replace_raw_day
from ghtrader_assets.io.questdb import QuestDBClient, QuestDBSettings
from ghtrader_assets.io.questdb_schema import MAIN_L5_TICKS, RAW_TICKS

FIRST = date(2025, 3, 1)
CAL = TradingCalendar.from_flags((FIRST + timedelta(i), (FIRST + timedelta(i)).weekday() < 5) for i in range(40))


def tick_frame(contract: str, day: date, n: int, variant: int) -> pl.DataFrame:
    """n ticks of (contract, day): half in the night session (previous trading day 21:00 Beijing, in the
    previous UTC day), half in the day session; values depend on the variant, so answers differ."""
    night = datetime.combine(CAL.previous_trading_day(day), datetime.min.time()).replace(hour=21, tzinfo=CST)
    morning = datetime.combine(day, datetime.min.time()).replace(hour=9, tzinfo=CST)
    half = n // 2
    times = [int(night.timestamp()) * 10**9 + i * 250_000_000 for i in range(half)]
    times += [int(morning.timestamp()) * 10**9 + i * 250_000_000 for i in range(n - half)]
    base = 1000.0 + 10 * variant + (sum(map(ord, contract)) % 97)
    frame = pl.DataFrame({"symbol": [contract] * n, "datetime_ns": times,
                          **{c: [base + i * 0.5 for i in range(n)] for c in TICK_COLUMNS}})
    return with_seq(with_row_hash(frame)).with_columns(
        pl.from_epoch("datetime_ns", time_unit="ns").alias("ts"),
        pl.lit(datetime(day.year, day.month, day.day)).alias("trading_day"),
    ).select(store.RAW_FRAME_COLUMNS)


def settings(args: dict) -> QuestDBSettings:
    return QuestDBSettings(http_port=args["http_port"], pg_port=args["pg_port"])


def expected(frame: pl.DataFrame) -> dict:
    stats = store.frame_stats(frame).as_dict()
    return {k: stats[k] for k in ("rows_total", "row_hash_sum", "row_hash_sum_abs", "row_hash_min", "row_hash_max")}


def rewriter(args: dict) -> dict:
    variety, contracts, days = args["variety"], args["contracts"], [date.fromisoformat(d) for d in args["days"]]
    state: dict[str, dict] = {}
    rewrites = retired = 0
    with QuestDBClient(settings(args)) as qdb:
        for r in range(args["rounds"]):
            last_raw: dict[tuple[str, date], dict] = {}
            for day in days:
                for j, contract in enumerate(contracts):
                    n = args["long"] if (r + j) % 2 == 0 else args["short"]
                    frame = tick_frame(contract, day, n, variant=r)
                    replace_raw_day(qdb, contract, day, CAL.bounds_ns(day), frame)
                    last_raw[(contract, day)] = expected(frame)
                    state[f"raw|{contract}|{day}"] = last_raw[(contract, day)]
                    rewrites += 1
            for day in days:
                contract = contracts[r % 2]
                row = build_schedule(variety, {day: contract})[0]
                materialize_main_l5(qdb, variety, day, CAL.bounds_ns(day), row)
                state[f"main_l5|KQ.m@{variety}|{day}"] = last_raw[(contract, day)]
                rewrites += 1
        for contract in contracts:
            retired += store.retired_rows(qdb, RAW_TICKS, contract)
        retired += store.retired_rows(qdb, MAIN_L5_TICKS, f"KQ.m@{variety}")
    return {"state": state, "rewrites": rewrites, "retired_rows": retired}


def writer(args: dict) -> dict:
    state = {}
    with QuestDBClient(settings(args)) as qdb:
        for contract in args["contracts"]:
            for d in args["days"]:
                day = date.fromisoformat(d)
                frame = tick_frame(contract, day, args["n"], variant=0)
                replace_raw_day(qdb, contract, day, CAL.bounds_ns(day), frame)
                state[f"raw|{contract}|{day}"] = expected(frame)
                time.sleep(args.get("pause_s", 0.0))
    return {"state": state}


def reader(args: dict) -> dict:
    watched = args["symbols"]
    listed = ", ".join(f"'{s}'" for s in watched)
    seen: dict[str, int] = {}
    drops: list[str] = []
    polls = 0
    with QuestDBClient(settings(args)) as qdb:
        while not os.path.exists(args["stop_file"]):
            for table in (RAW_TICKS, MAIN_L5_TICKS):
                frame = qdb.query(f"SELECT symbol, trading_day, count() n FROM {table.name} "
                                  f"WHERE symbol IN ({listed}) GROUP BY symbol, trading_day")
                for symbol, day, n in frame.iter_rows():
                    key = f"{table.name}|{symbol}|{day.date()}"
                    if n < seen.get(key, 0):
                        drops.append(f"{key}: {seen[key]} -> {n}")
                    seen[key] = max(seen.get(key, 0), n)
            polls += 1
    return {"polls": polls, "drops": drops, "seen": len(seen)}


def pause(args: dict) -> dict:
    """Rewrite one (contract, day) with a shorter answer, or its main_l5 day with another contract, and
    stop dead at `pause_at`: after_write (new rows written, old ones not yet retired), after_update (the
    UPDATE sent, its WAL apply not awaited) or after_insert (main_l5 rows copied, old ones not retired)."""
    import ghtrader_assets.io.questdb as qdb_module

    point = args["pause_at"]
    real_write, real_execute = qdb_module.QuestDBClient.write, qdb_module.QuestDBClient.execute

    def hold() -> None:
        print(json.dumps({"paused": point}), flush=True)
        time.sleep(3600)

    def write(self, table, frame):  # noqa: ANN001
        sent = real_write(self, table, frame)
        if point == "after_write" and table.name == RAW_TICKS.name:
            self.wait_for_wal(table)
            hold()
        return sent

    def execute(self, sql, params=None):  # noqa: ANN001
        real_execute(self, sql, params)
        if (point == "after_update" and sql.startswith("UPDATE")) or (point == "after_insert" and sql.startswith("INSERT")):
            hold()

    qdb_module.QuestDBClient.write, qdb_module.QuestDBClient.execute = write, execute
    day = date.fromisoformat(args["day"])
    with QuestDBClient(settings(args)) as qdb:
        if point == "after_insert":
            row = build_schedule(args["variety"], {day: args["contract"]})[0]
            materialize_main_l5(qdb, args["variety"], day, CAL.bounds_ns(day), row)
        else:
            frame = tick_frame(args["contract"], day, args["n"], variant=args["variant"])
            replace_raw_day(qdb, args["contract"], day, CAL.bounds_ns(day), frame)
    return {"paused": None}


def main(argv: list[str]) -> int:
    args = json.loads(argv[0])
    result = {"rewriter": rewriter, "writer": writer, "reader": reader, "pause": pause}[args["role"]](args)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
