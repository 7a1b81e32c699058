"""The real, unmodified tqsdk client against the local simulator (pointed there only through tqsdk's env vars)."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from datetime import date, datetime, timedelta

import pandas as pd
import pytest
from tqsdk import BacktestFinished, TqApi, TqAuth, TqBacktest

from ghtrader_assets.sim.tq import Faults, TqSimServer
from ghtrader_assets.sim.tq import calendar as cal
from ghtrader_assets_tests.fixtures.tq_sim import tq_env

# a TqApi whose login fails leaves its never-started watcher coroutine behind (tqsdk's own behaviour)
pytestmark = pytest.mark.filterwarnings("ignore:coroutine 'TqApi._notify_watcher' was never awaited")


def _api(srv: TqSimServer, **kw: object) -> TqApi:
    return TqApi(auth=TqAuth(srv.cfg.username, srv.cfg.password), disable_print=True, **kw)


def test_login_and_main_quote(tq_sim: TqSimServer) -> None:
    m = tq_sim.market
    with tq_env(tq_sim):
        api = _api(tq_sim)
        try:
            q = api.get_quote("KQ.m@SHFE.cu")
            assert q.underlying_symbol == m.main_contract("SHFE.cu", m.cfg.end)
            assert q.trading_time.day == m.trading_time("SHFE.cu")["day"]
            assert q.trading_time.night == [["21:00:00", "25:00:00"]]
            assert q.price_tick == 10 and q.volume_multiple == 5
            u = api.get_quote(q.underlying_symbol)
            assert u.datetime.startswith(m.cfg.end.isoformat()) and u.bid_price5 > 0
            assert u.instrument_id == q.underlying_symbol and u.delivery_year == 2000 + int(u.instrument_id[-4:-2])
        finally:
            api.close()
    assert tq_sim.stats["token_requests"] >= 1


def test_wrong_password_is_rejected(tq_sim: TqSimServer) -> None:
    with tq_env(tq_sim), pytest.raises(Exception, match=r"用户权限认证失败 \(401"):
        TqApi(auth=TqAuth(tq_sim.cfg.username, "wrong"), disable_print=True)


def test_account_grants_come_from_the_config(tq_sim_factory: Callable[..., TqSimServer]) -> None:
    srv = tq_sim_factory(features=("futr",))
    with tq_env(srv, clear_cache=False):
        auth = TqAuth(srv.cfg.username, srv.cfg.password)
        auth.login()
    assert auth._has_feature("futr") and not auth._has_feature("tq_dl")  # TqSdk's own check before downloads


def test_backtest_sees_every_roll(tq_sim: TqSimServer) -> None:
    m = tq_sim.market
    start, end = m.trading_days()[0], m.trading_days()[-1]
    assert len(m.trading_days()) >= 40 and len(m.roll_days("SHFE.cu")) >= 3
    seen: list[tuple[date, str]] = []
    with tq_env(tq_sim):
        api = _api(tq_sim, backtest=TqBacktest(start, end))
        try:
            q = api.get_quote("KQ.m@SHFE.cu")
            seen.append((start, q.underlying_symbol))  # the initial value is not a change
            while True:
                api.wait_update()
                if api.is_changing(q, "underlying_symbol"):
                    t = datetime.strptime(q.datetime, "%Y-%m-%d %H:%M:%S.%f")
                    day = cal.trading_day_of(t.date(), t.hour)
                    assert day is not None
                    seen.append((day, q.underlying_symbol))
        except BacktestFinished:
            pass
        finally:
            api.close()
    assert seen == m.roll_days("SHFE.cu")


def test_tick_days_match_ground_truth(tq_sim: TqSimServer) -> None:
    m = tq_sim.market
    monday, after_holiday, midweek = date(2024, 1, 8), date(2024, 2, 19), date(2024, 3, 13)
    with tq_env(tq_sim):
        api = _api(tq_sim)
        try:
            for variety, day in (("SHFE.cu", monday), ("SHFE.cu", after_holiday), ("SHFE.rb", midweek),
                                 ("CFFEX.IF", midweek)):
                c = m.main_contract(variety, day)
                df = api.get_tick_data_series(c, day, day)
                pd.testing.assert_frame_equal(df, m.ticks(c, day))
                first = datetime(1970, 1, 1) + timedelta(hours=8, microseconds=int(df["datetime"].iloc[0]) // 1000)
                if day == monday and variety == "SHFE.cu":
                    assert first.date() == date(2024, 1, 5) and first.hour == 21  # Friday night belongs to Monday
                if day == after_holiday:
                    assert first.date() == after_holiday and first.hour == 9  # no night after a holiday eve
            cldr = api.get_trading_calendar(m.cfg.start, m.cfg.end)
            assert [d.date() for d in cldr.loc[cldr["trading"], "date"]] == m.trading_days()
        finally:
            api.close()


def test_level1_only_variety(tq_sim: TqSimServer) -> None:
    m = tq_sim.market
    day = date(2024, 3, 13)
    c = m.main_contract("DCE.m", day)
    with tq_env(tq_sim):
        api = _api(tq_sim)
        try:
            df = api.get_tick_data_series(c, day, day)
            pd.testing.assert_frame_equal(df, m.ticks(c, day))
            assert "bid_price2" not in df.columns  # tqsdk keeps level 1 only outside SHFE/SSE/SZSE
            q = api.get_quote(c)
            assert q.bid_price1 > 0 and q.ask_volume1 > 0
            assert all(math.isnan(q[f"{s}_price{i}"]) for s in ("bid", "ask") for i in range(2, 6))
            assert all(q[f"{s}_volume{i}"] == 0 for s in ("bid", "ask") for i in range(2, 6))
        finally:
            api.close()


def test_disconnect_mid_download_reconnects(tq_sim_factory: Callable[..., TqSimServer]) -> None:
    """tqsdk reconnects by itself (first retry 10-20 s after TqApi start), re-sends set_chart, and resumes."""
    srv = tq_sim_factory(faults=Faults(drop_after_tick_responses=1))
    m = srv.market
    day = date(2024, 1, 8)
    c = m.main_contract("SHFE.cu", day)
    assert len(m.ticks(c, day)) > 2000  # more than one 2000-tick window
    with tq_env(srv):
        api = _api(srv)
        try:
            df = api.get_tick_data_series(c, day, day)
        finally:
            api.close()
    assert srv.stats["drops"] == 1 and srv.stats["connections"] == 2
    pd.testing.assert_frame_equal(df, m.ticks(c, day))


def test_stalled_server_delays_but_completes(tq_sim_factory: Callable[..., TqSimServer]) -> None:
    srv = tq_sim_factory(faults=Faults(stall_after_tick_responses=1, stall_seconds=2.0))
    day = date(2024, 3, 13)
    c = srv.market.main_contract("SHFE.rb", day)
    with tq_env(srv):
        api = _api(srv)
        try:
            t0 = time.monotonic()
            df = api.get_tick_data_series(c, day, day)
            assert time.monotonic() - t0 >= 2.0
        finally:
            api.close()
    pd.testing.assert_frame_equal(df, srv.market.ticks(c, day))


def test_cli_prints_env_and_serves() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "ghtrader_assets.sim.tq", "--port", "0", "--seed", "1",
                             "--start", "2024-01-02", "--end", "2024-02-29"],
                            stdout=subprocess.PIPE, text=True)
    try:
        env = {}
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("export "):
                k, v = line[7:].strip().split("=", 1)
                env[k] = v
            if line.startswith("#"):
                break
        assert {"TQ_AUTH_URL", "TQ_MD_URL", "TQ_CHINESE_HOLIDAY_URL", "TQ_CONT_TABLE_URL"} <= env.keys()
        with urllib.request.urlopen(env["TQ_CONT_TABLE_URL"], timeout=10) as r:
            table = json.load(r)
        assert table["SHFE.cu"][0] == ["20240102", "SHFE.cu2402"]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
