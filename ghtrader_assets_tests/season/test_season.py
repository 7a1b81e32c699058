"""A season of operation: the daily sensor every 15 simulated minutes around the critical times for 66
trading days, against the simulator with an advancing clock, then compared with a clean backfill.

Faults: the first roll's switch published one day late and corrected nine trading days later (a vendor
revision of an earlier roll), every roll published only at 20:00 the evening before, two transient empty
days (one lasting longer than the lookback), the night session cut to 23:00 mid-window, a QuestDB restart.
"""

from __future__ import annotations

import json
import time as wall
from collections import Counter
from datetime import date, datetime, time, timedelta
from pathlib import Path

import dagster as dg
import pytest

from ghtrader_assets.defs.futures.assets import build_futures_assets
from ghtrader_assets.defs.futures.resources import FuturesSettings, TqSdkResource
from ghtrader_assets.defs.futures.sensors import CALENDAR_JOB, SCHEDULE_JOB, build_daily_update_sensor
from ghtrader_assets.defs.resources import QuestDBResource
from ghtrader_assets.domain.calendar import CST
from ghtrader_assets.domain.schedule import main_symbol
from ghtrader_assets.io import futures_store as store
from ghtrader_assets.io import questdb_schema as schema
from ghtrader_assets.io import ledger_store as ledger
from ghtrader_assets.io.questdb import QuestDBClient, QuestDBSettings
from ghtrader_assets.io.questdb_server import QuestDBServer, ServerPorts
from ghtrader_assets.sim.tq import Faults, MarketConfig, TqSimServer
from ghtrader_assets.sim.tq import calendar as cal
from ghtrader_assets_tests.fixtures.tq_sim import tq_env

VARIETY = "SHFE.cu"
START, END = date(2024, 1, 2), date(2024, 4, 12)
LAST_CLOCK = datetime(2024, 4, 12, 19, 0)  # Beijing: the last day is final and due
DAY_WINDOWS = (("09:00:00", "10:15:00"), ("10:30:00", "11:30:00"), ("13:30:00", "15:00:00"))
# Evaluated every 15 minutes inside these windows (Beijing: the close, the day's end, the evening
# publication, the night open, after midnight); between them the clock jumps to the next window.
CRITICAL = ((time(14, 45), time(15, 15)), (time(17, 45), time(18, 30)), (time(19, 45), time(20, 15)),
            (time(20, 45), time(21, 15)), (time(0, 45), time(1, 0)))
TICKS = ["underlying_ticks", "main_l5", "day_index"]


def market_config() -> MarketConfig:
    return MarketConfig(
        seed=1, start=START, end=END, varieties=(VARIETY,), density=0.004, far_density=0.002,
        now=datetime.combine(START, time(8, 0)),
        errata=((VARIETY, date(2024, 1, 19), 1, datetime(2024, 2, 1, 12, 0)),),
        session_changes=((VARIETY, date(2024, 3, 6), DAY_WINDOWS, (("21:00:00", "23:00:00"),)),),
        faults=Faults(empty_until=(("SHFE.cu2402", date(2024, 1, 12), datetime(2024, 1, 14, 12, 0)),
                                   ("SHFE.cu2404", date(2024, 2, 21), datetime(2024, 3, 4, 12, 0)))),
    )


def next_clock(t: datetime) -> datetime:
    if not cal.is_trading_day(t.date()) and t.time() >= time(1, 0):
        return t + timedelta(hours=6)  # weekends and holidays (after Friday's night): step faster
    for a, b in CRITICAL:
        if a <= t.time() < b:
            return t + timedelta(minutes=15)
    starts = [datetime.combine(t.date() + timedelta(days=k), a) for k in (0, 1) for a, _ in CRITICAL]
    return min(s for s in starts if s > t)


class Operator:
    """Dagster and the store as a user would leave them running: a sensor, runs executed in order."""

    def __init__(self, srv: TqSimServer, qdb: QuestDBResource, instance: dg.DagsterInstance, session_file: str = ""):
        self.srv, self.qdb, self.instance, self.session_file = srv, qdb, instance, session_file
        self.assets = build_futures_assets((VARIETY,))
        self.sensor = build_daily_update_sensor((VARIETY,))
        self.cursor: str | None = None
        self.figures: Counter[str] = Counter()
        self.sensor_seconds = 0.0

    def resources(self, now: datetime) -> dict:
        return {"questdb": self.qdb,
                "tqsdk": TqSdkResource(user="sim", password="sim", backoff_s=0.2, retries=2),
                "futures": FuturesSettings(start_date=str(START), now=now.replace(tzinfo=CST).isoformat(),
                                           schedule_source="continuous_table", lookback_days=5,
                                           session_history_file=self.session_file)}

    def materialize(self, now: datetime, selection: list[str], **kwargs) -> bool:
        t0 = wall.monotonic()
        self.srv.set_now(now)
        with tq_env(self.srv, clear_cache=False):
            result = dg.materialize(self.assets, selection=selection, resources=self.resources(now),
                                    instance=self.instance, raise_on_error=False, **kwargs)
        self.figures["runs"] += 1
        self.figures["run_seconds"] += round(wall.monotonic() - t0)
        self.figures["failed_runs"] += 0 if result.success else 1
        return result.success

    def evaluate(self, now: datetime) -> None:
        self.figures["evaluations"] += 1
        t0 = wall.monotonic()
        try:
            with dg.build_sensor_context(instance=self.instance, resources=self.resources(now), cursor=self.cursor) as ctx:
                result = self.sensor(ctx)
                cursor = ctx.cursor
            self.sensor_seconds += wall.monotonic() - t0
        except Exception:  # noqa: BLE001 - e.g. QuestDB down: the next evaluation tries again
            self.figures["sensor_errors"] += 1
            return
        if not isinstance(result, dg.SensorResult):
            self.cursor = cursor
            return
        self.cursor = result.cursor or cursor
        for req in result.dynamic_partitions_requests or []:
            known = set(self.instance.get_dynamic_partitions("trading_day"))
            self.instance.add_dynamic_partitions("trading_day", [k for k in req.partition_keys if k not in known])
        for req in result.run_requests or []:
            if req.job_name == CALENDAR_JOB.name:
                self.materialize(now, ["trading_days"], tags=req.tags)
            elif req.job_name == SCHEDULE_JOB.name:
                self.materialize(now, ["main_schedule"], partition_key=req.partition_key, tags=req.tags)
            else:
                selection = [k.to_user_string() for k in req.asset_selection] if req.asset_selection else TICKS
                self.materialize(now, selection, partition_key=str(req.partition_key), tags=req.tags)


def day_figures(qdb: QuestDBClient, days: list[date]) -> dict[date, dict]:
    """Per day: schedule row, raw stats of the scheduled contract, main_l5 stats, index rows."""
    for t in (store.RAW_TICKS, store.MAIN_L5_TICKS, schema.SYMBOL_DAY_INDEX, schema.MAIN_SCHEDULE):
        qdb.wait_for_wal(t)
    calendar = ledger.read_calendar(qdb)
    schedule = {r.trading_day: r for r in ledger.read_schedule(qdb, VARIETY)}
    out = {}
    main_index = ledger.read_index(qdb, main_symbol(VARIETY), days[0], days[-1], "main_l5")
    index = {ts.date(): {k: row[k] for k in ("rows_total", "row_hash_sum", "row_hash_sum_abs", "row_hash_min",
                                             "row_hash_max", "underlying_contract")}
             for ts, row in zip(main_index["ts"], main_index.iter_rows(named=True))}
    for day in days:
        row = schedule.get(day)
        bounds = calendar.bounds_ns(day)
        out[day] = {
            "schedule": (row.main_contract, row.segment_id, row.schedule_hash, row.provisional) if row else None,
            "raw": store.day_stats(qdb, store.RAW_TICKS, row.main_contract, day, bounds).as_dict() if row else None,
            "main_l5": store.day_stats(qdb, store.MAIN_L5_TICKS, main_symbol(VARIETY), day, bounds).as_dict(),
            "main_l5_segments": qdb.query(
                f"SELECT DISTINCT underlying_contract, segment_id, schedule_hash FROM {store.MAIN_L5_TICKS.name} "
                f"WHERE {store.day_filter(main_symbol(VARIETY), day, bounds)}").rows(),
            "index": index.get(day),
        }
    return out


@pytest.mark.season
@pytest.mark.timeout(1500)  # ~7 min alone on 2 cores; twice that when other suites share the cores
def test_a_season_of_daily_updates_ends_where_a_clean_backfill_ends(tmp_path: Path, summary: list[str]) -> None:
    began = wall.monotonic()
    cfg = market_config()
    season_db = QuestDBServer(home=tmp_path / "season-qdb", ports=ServerPorts.free()).start()
    clean_db = QuestDBServer(home=tmp_path / "clean-qdb", ports=ServerPorts.free()).start()
    try:
        with TqSimServer(cfg) as srv, dg.instance_for_test() as inst, dg.instance_for_test() as clean_inst:
            market_days = srv.market.trading_days()
            qres = QuestDBResource(http_port=season_db.ports.http, pg_port=season_db.ports.pg,
                                   connect_timeout_s=2.0, request_timeout_s=20.0, retry_timeout_s=2.0)
            op = Operator(srv, qres, inst)
            outage = (datetime(2024, 3, 20, 18, 0), datetime(2024, 3, 20, 18, 45))
            now = datetime.combine(START, time(17, 45))
            down = False
            while now <= LAST_CLOCK:
                if not down and outage[0] <= now < outage[1]:
                    season_db.stop()
                    down = True
                    op.figures["questdb_restarts"] += 1
                elif down and now >= outage[1]:
                    season_db.start()
                    down = False
                op.evaluate(now)
                now = next_clock(now)
            op.evaluate(LAST_CLOCK)  # settle what the last evaluations requested
            season_secs = wall.monotonic() - began

            # a clean backfill of the same window, at the same clock, into its own store
            history = tmp_path / "sessions.json"
            history.write_text(json.dumps({"changes": [
                {"variety": VARIETY, "effective_from": str(d), "trading_time": tt}
                for d, tt in srv.market.session_history(VARIETY)]}))
            cres = QuestDBResource(http_port=clean_db.ports.http, pg_port=clean_db.ports.pg)
            clean = Operator(srv, cres, clean_inst, session_file=str(history))
            assert clean.materialize(LAST_CLOCK, ["trading_days"])
            assert clean.materialize(LAST_CLOCK, ["main_schedule"], partition_key=VARIETY)
            downloads_before_clean = dict(srv.downloads)
            assert clean.materialize(LAST_CLOCK, TICKS, tags={
                "dagster/asset_partition_range_start": f"{START}|{VARIETY}",
                "dagster/asset_partition_range_end": f"{END}|{VARIETY}"})

            with QuestDBClient(QuestDBSettings(http_port=season_db.ports.http, pg_port=season_db.ports.pg)) as a, \
                    QuestDBClient(QuestDBSettings(http_port=clean_db.ports.http, pg_port=clean_db.ports.pg)) as b:
                got, want = day_figures(a, market_days), day_figures(b, market_days)
                open_records = ledger.no_data_records(a, "raw") + ledger.no_data_records(a, "main_l5")
            differences = [(d, k, got[d][k], want[d][k]) for d in market_days for k in want[d] if got[d][k] != want[d][k]]
            answerable = [r for r in open_records
                          if srv.market.has_symbol(r.contract) and not r.contract.startswith("KQ.m@")
                          and srv.market.tick_count(r.contract, r.day) > 0]
            scheduled = {(want[d]["schedule"][0], d) for d in market_days}
            downloads = {k: v for k, v in downloads_before_clean.items() if k[1] is not None and START <= k[1] <= END}
            per_day = Counter(downloads[k] for k in scheduled if k in downloads)
            extra = {f"{c} {d}": n for (c, d), n in sorted(downloads.items(), key=lambda x: x[0][1]) if n != 1}
            unscheduled = sorted(f"{c} {d}" for c, d in downloads if (c, d) not in scheduled)
            schedule_runs = inst.fetch_materializations(dg.AssetKey("main_schedule"), limit=1000).records
            revisions = sorted({x for r in schedule_runs for x in r.asset_materialization.metadata["revisions"].value})
            check = inst.get_latest_asset_check_evaluation_record(
                dg.AssetCheckKey(dg.AssetKey("main_schedule"), "agrees_with_continuous_table"))
            # staleness is a fact of the tick partitions: its check is green once the stale days were rebuilt
            stale_check = inst.get_latest_asset_check_evaluation_record(dg.AssetCheckKey(dg.AssetKey("main_l5"), "matches_schedule"))
            rows = sum(got[d]["raw"]["rows_total"] + got[d]["main_l5"]["rows_total"] for d in market_days if got[d]["raw"])
            summary.append(f"season: {len(market_days)} trading days {START}..{END}, {op.figures['evaluations']} sensor "
                           f"evaluations, {op.figures['runs']} runs ({op.figures['failed_runs']} failed), "
                           f"{op.figures['sensor_errors']} sensor errors, {op.figures['questdb_restarts']} QuestDB restart, "
                           f"{season_secs:.0f}s (sensor {op.sensor_seconds:.0f}s, runs ~{op.figures['run_seconds']}s)")
            summary.append(f"compared with a clean backfill: {len(market_days)} days x (schedule, raw, main_l5, segments, "
                           f"index), {rows} stored rows; differences: {len(differences)}")
            summary.append(f"tick downloads per scheduled (contract, day): {dict(sorted(per_day.items()))}; "
                           f"more than one: {extra}; of contracts no longer scheduled: {unscheduled}")
            summary.append(f"revisions reported: {len(revisions)} days ({revisions[0] if revisions else ''} ...); at the end "
                           f"agrees_with_continuous_table {check.status.value if check else None}, matches_schedule "
                           f"{stale_check.status.value if stale_check else None}")
            summary.append(f"open no-data records: {len(open_records)} ({len(answerable)} the provider can answer)")
            for d in differences[:10]:
                summary.append(f"  difference: {d}")
            assert not differences
            # the corrected roll: the roll day changes contract, the following days change segment
            assert revisions[0] == "2024-01-19: SHFE.cu2402 (segment 20240102) -> SHFE.cu2404 (segment 20240119)"
            assert all(r.endswith("-> SHFE.cu2404 (segment 20240119)") for r in revisions)
            assert check is not None and check.status.value == "SUCCEEDED"
            assert stale_check is not None and stale_check.status.value == "SUCCEEDED"
            assert not answerable
            assert all(k in downloads for k in scheduled), "every scheduled (contract, day) downloaded"
            faulted = {("SHFE.cu2402", date(2024, 1, 12)), ("SHFE.cu2404", date(2024, 2, 21))}
            revised = {("SHFE.cu2404", date(2024, 1, 19))}
            for key in scheduled - faulted - revised:
                assert downloads[key] <= 2, key  # one, or two where the QuestDB restart broke a run
            assert sum(1 for k in scheduled - faulted if downloads[k] != 1) <= 1
            assert downloads[("SHFE.cu2402", date(2024, 1, 12))] == 3  # empty, empty after 1 day, data after 2 more
            assert downloads[("SHFE.cu2404", date(2024, 2, 21))] == 5  # retried after 1, 2, 4, 8 days
            assert downloads[("SHFE.cu2402", date(2024, 1, 19))] == 1  # the revised day: old contract once
    finally:
        for server in (season_db, clean_db):
            server.stop()
