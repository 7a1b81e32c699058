"""The simulator's clock: nothing after "now" exists, and the main mapping appears at the evening publication."""

from __future__ import annotations

import json
import urllib.request
from datetime import datetime, time

from ghtrader_assets.io.tqsdk_client import TqSdkClient, TqSettings, continuous_table
from ghtrader_assets.sim.tq import calendar as cal
from ghtrader_assets_tests.fixtures.tq_sim import tq_env


def test_ticks_and_the_continuous_table_follow_the_clock(tq_sim_factory) -> None:
    srv = tq_sim_factory(varieties=("SHFE.cu",))
    roll, contract = srv.market.roll_days("SHFE.cu")[1]
    eve = cal.prev_trading_day(roll)
    srv.set_now(datetime.combine(eve, time(18, 30)))
    with tq_env(srv):
        assert roll not in dict(continuous_table("SHFE.cu"))  # not yet published
        srv.set_now(datetime.combine(eve, time(20, 0)))
        assert dict(continuous_table("SHFE.cu"))[roll] == contract
    # ticks exist only up to now
    srv.set_now(datetime.combine(roll, time(10, 0)))
    ticks = srv.market.ticks(contract, roll)
    assert len(ticks) and int(ticks["datetime"].max()) <= srv.market.now_ns
    # the clock can be moved from another process
    body = json.dumps({"now": f"{roll}T15:30:00"}).encode()
    req = urllib.request.Request(srv.base_url + "/sim/clock", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    assert json.load(urllib.request.urlopen(req))["now"] == f"{roll}T15:30:00"
    assert srv.market.tick_count(contract, roll) > len(ticks)


def test_a_long_lived_process_sees_the_published_switch_in_its_next_backtest(tq_sim_factory) -> None:
    """tqsdk keeps the continuous table per process; the client drops that copy before each backtest."""
    srv = tq_sim_factory(varieties=("SHFE.cu",))
    roll, contract = srv.market.roll_days("SHFE.cu")[1]
    eve = cal.prev_trading_day(roll)
    start = cal.prev_trading_day(cal.prev_trading_day(eve))
    client = TqSdkClient(TqSettings("sim", "sim", backoff_s=0.2))
    try:
        with tq_env(srv):
            srv.set_now(datetime.combine(eve, time(18, 30)))
            before = client.main_events("SHFE.cu", start, roll)
            srv.set_now(datetime.combine(eve, time(20, 30)))
            published = client.main_events("SHFE.cu", start, roll)  # published, but the day has not opened
            srv.set_now(datetime.combine(eve, time(21, 15)))  # the night session of the roll day is open
            after = client.main_events("SHFE.cu", start, roll)
    finally:
        client.close()
    assert before.changes == () and published.changes == ()
    assert [c for _, c in after.changes] == [contract]
