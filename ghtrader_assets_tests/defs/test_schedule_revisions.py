"""Schedule revisions against the simulator's clock and a real QuestDB: provisional days, confirmation age."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from pathlib import Path

from ghtrader_assets.domain.schedule import ScheduleRules
from ghtrader_assets.futures import schedule as schedule_step
from ghtrader_assets.domain.calendar import CST, TradingCalendar
from ghtrader_assets.io import ledger_store as ledger
from ghtrader_assets.io.questdb import QuestDBClient, QuestDBSettings
from ghtrader_assets.io.questdb_server import QuestDBServer, ServerPorts
from ghtrader_assets.io.tqsdk_client import TqSdkClient, TqSettings
from ghtrader_assets.sim.tq import calendar as cal
from ghtrader_assets_tests.fixtures.tq_sim import tq_env

VARIETY = "SHFE.rb"


def test_provisional_roll_day_settles_and_an_old_revision_waits_for_confirmation(tq_sim_factory, tmp_path: Path) -> None:
    probe = tq_sim_factory(varieties=(VARIETY,))
    roll, new = probe.market.roll_days(VARIETY)[1]
    eve = cal.prev_trading_day(roll)
    week_later = cal.trading_days(roll, roll + timedelta(days=14))[5]
    corrected = datetime.combine(week_later, time(12, 0))
    srv = tq_sim_factory(varieties=(VARIETY,), errata=((VARIETY, roll, 1, corrected),))
    first = date(2023, 12, 1)
    calendar = TradingCalendar.from_flags((first + timedelta(i), cal.is_trading_day(first + timedelta(i))) for i in range(400))
    days = cal.trading_days(date(2024, 1, 2), week_later)
    server = QuestDBServer(home=tmp_path / "qdb", ports=ServerPorts.free()).start()
    tq = TqSdkClient(TqSettings("sim", "sim"))
    try:
        with QuestDBClient(QuestDBSettings(http_port=server.ports.http, pg_port=server.ports.pg)) as qdb, tq_env(srv):
            qdb.bootstrap()

            def run(now: datetime, through: date, **rules) -> schedule_step.ScheduleResult:
                srv.set_now(now)
                return schedule_step.refresh_schedule(tq, qdb, VARIETY, calendar, [d for d in days if d <= through],
                                                      "continuous_table", rules=ScheduleRules(now=now.replace(tzinfo=CST), **rules))

            # 18:30 on the eve: the roll day is not decidable yet -> provisional (old contract)
            result = run(datetime.combine(eve, time(18, 30)), roll)
            assert result.provisional_days == [roll]
            old = {r.trading_day: r for r in ledger.read_schedule(qdb, VARIETY)}[roll]
            assert old.provisional and old.main_contract != new
            # the next evening the day is settled, as the (late) table says: no revision, it was provisional
            result = run(datetime.combine(roll, time(19, 0)), roll)
            assert result.provisional_days == [] and result.revisions == []
            # the vendor corrects the roll a week later: the roll day is older than 3 trading days -> pending
            result = run(datetime.combine(week_later, time(19, 0)), week_later, confirm_older_than=3)
            assert [p.trading_day for p in result.pending] == [roll] and result.revisions == []
            assert {r.trading_day: r.main_contract for r in ledger.read_schedule(qdb, VARIETY)}[roll] != new
            # confirmed: applied, the following days move to the new segment
            result = run(datetime.combine(week_later, time(19, 5)), week_later, confirm_older_than=3, confirmed=True)
            assert result.revisions[0].trading_day == roll and result.revisions[0].contract_changed
            assert result.changed_days[0] == roll
            stored = {r.trading_day: r for r in ledger.read_schedule(qdb, VARIETY)}
            assert stored[roll].main_contract == new
            assert {stored[d].segment_id for d in days if d >= roll} == {roll.year * 10000 + roll.month * 100 + roll.day}
    finally:
        tq.close()
        server.stop()
