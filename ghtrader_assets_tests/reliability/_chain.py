"""Shared helpers of the reliability suite: build/run the futures chain and compare QuestDB with the
simulator's ground truth (row counts and row-hash aggregates, raw and main_l5, day by day)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import dagster as dg

from ghtrader_assets.defs.futures.assets import build_futures_assets
from ghtrader_assets.defs.futures.resources import FuturesSettings, TqSdkResource
from ghtrader_assets.defs.resources import QuestDBResource
from ghtrader_assets.domain.schedule import main_symbol
from ghtrader_assets.io import futures_store as store
from ghtrader_assets.io import questdb_schema as schema
from ghtrader_assets.io import ledger_store as ledger
from ghtrader_assets.io.questdb import QuestDBClient, QuestDBSettings
from ghtrader_assets.sim.tq import SimMarket, TqSimServer
from ghtrader_assets_tests.fixtures.tq_sim import tq_env
from ghtrader_assets_tests.truth import materializations, truth_frame, truth_stats  # noqa: F401 - used by the tests here

SIM_NOW = "2024-04-12T17:00:00+08:00"  # the simulator's default "now": 17:00 Beijing on its last day
TICK_ASSETS = ["underlying_ticks", "main_l5", "day_index"]


def questdb_resource(settings: QuestDBSettings, **timeouts: float) -> QuestDBResource:
    return QuestDBResource(host=settings.host, http_port=settings.http_port, pg_port=settings.pg_port,
                           user=settings.user, password=settings.password, **timeouts)


def resources(qdb: QuestDBResource, market: SimMarket, tq: TqSdkResource | None = None) -> dict:
    return {
        "questdb": qdb,
        "tqsdk": tq or TqSdkResource(user="sim", password="sim", backoff_s=0.2),
        # continuous_table: one HTTP GET instead of a TqBacktest per variety (the schedule is not under test)
        "futures": FuturesSettings(start_date=str(market.cfg.start), now=SIM_NOW, schedule_source="continuous_table"),
    }


@dataclass
class Chain:
    srv: TqSimServer
    instance: dg.DagsterInstance
    resources: dict
    varieties: tuple[str, ...]
    assets: list = field(default_factory=list)
    days: list[date] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.assets = build_futures_assets(self.varieties)

    @property
    def market(self) -> SimMarket:
        return self.srv.market

    def materialize(self, selection: list[str], srv: TqSimServer | None = None, **kwargs) -> dg.ExecuteInProcessResult:
        with tq_env(srv or self.srv):
            return dg.materialize(self.assets, selection=selection, resources=self.resources,
                                  instance=self.instance, raise_on_error=False, **kwargs)

    def prepare(self) -> "Chain":
        """trading_days, then main_schedule of every variety."""
        result = self.materialize(["trading_days"])
        assert result.success, failure_message(result)
        self.days = [date.fromisoformat(k) for k in self.instance.get_dynamic_partitions("trading_day")]
        for variety in self.varieties:
            result = self.materialize(["main_schedule"], partition_key=variety)
            assert result.success, failure_message(result)
        return self

    def backfill(self, variety: str, first: date, last: date, srv: TqSimServer | None = None) -> dg.ExecuteInProcessResult:
        return self.materialize(TICK_ASSETS, srv=srv, tags=range_tags(variety, first, last))


def range_tags(variety: str, first: date, last: date) -> dict[str, str]:
    """The tags a single-run backfill over a key range carries."""
    return {"dagster/asset_partition_range_start": f"{first}|{variety}",
            "dagster/asset_partition_range_end": f"{last}|{variety}"}


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    return str(failures[0].event_specific_data.error) if failures else ""


def assert_stored_equals_truth(qdb: QuestDBClient, market: SimMarket, variety: str, days: list[date]) -> int:
    """Raw ticks of the scheduled contract (every tick the simulator served) and the main_l5 series (its
    real ticks), each day: same row count and row-hash aggregates as the simulator (so nothing lost,
    nothing duplicated), and the day index agrees. Returns the number of stored rows compared."""
    qdb.wait_for_wal(store.RAW_TICKS)
    qdb.wait_for_wal(store.MAIN_L5_TICKS)
    qdb.wait_for_wal(schema.SYMBOL_DAY_INDEX)
    calendar = ledger.read_calendar(qdb)
    index = ledger.read_index(qdb, main_symbol(variety), days[0], days[-1], "main_l5")
    by_day = {ts.date(): row for ts, row in zip(index["ts"], index.iter_rows(named=True))}
    compared = 0
    for day in days:
        contract = market.main_contract(variety, day)
        bounds = calendar.bounds_ns(day)
        for table, symbol, kind in ((store.RAW_TICKS, contract, "raw"), (store.MAIN_L5_TICKS, main_symbol(variety), "main_l5")):
            truth = truth_stats(market, contract, day, kind)
            got = store.day_stats(qdb, table, symbol, day, bounds).as_dict()
            assert {k: got[k] for k in truth} == truth, (table.name, symbol, day)
            # no duplicated key either (a duplicate with another hash would still change the sums)
            keys = qdb.export(f"SELECT datetime_ns, seq FROM {table.name} WHERE {store.day_filter(symbol, day, bounds)}")
            assert keys.height == truth["rows_total"] and not keys.is_duplicated().any(), (table.name, symbol, day)
            compared += got["rows_total"]
        assert day in by_day, f"no day index row for {variety} {day}"
        assert {k: by_day[day][k] for k in truth} == truth, day
    return compared
