"""The real ib_insync client against the IB Gateway simulator: sync, contracts, bars, pacing and faults."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
import time as clock
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from types import SimpleNamespace

import pytest
from ib_insync import IB, Contract, Option, Stock

from ghtrader_assets.sim.ib import GatewaySim, OptionSpec, SimUniverse
from ghtrader_assets.sim.ib import calendar as cal
from ghtrader_assets.sim.ib.config import FARM_BROKEN
from ghtrader_assets_tests.fixtures.ib_sim import SIM_AS_OF

Errors = list[tuple[int, int, str]]


@pytest.fixture
def connect() -> Iterator[Callable[..., tuple[IB, Errors]]]:
    """Connect real ib_insync clients (no client-side throttle) that record errorEvent; disconnect at teardown."""
    clients: list[IB] = []

    def make(sim: GatewaySim, client_id: int = 1, readonly: bool = False) -> tuple[IB, Errors]:
        ib = IB()
        ib.client.MaxRequests = 0
        errors: Errors = []
        ib.errorEvent += lambda req_id, code, msg, contract: errors.append((req_id, code, msg))
        ib.connect(sim.host, sim.port, clientId=client_id, timeout=5, readonly=readonly)
        clients.append(ib)
        return ib, errors

    yield make
    for ib in clients:
        ib.disconnect()


def liquid(u: SimUniverse, symbol: str = "AAPL", expiry: str = "20261218") -> OptionSpec:
    close = u.close_on(symbol, SIM_AS_OF.date())
    return min((o for o in u.option_chain(symbol) if o.expiry == expiry and not o.illiquid),
               key=lambda o: abs(o.strike - close))


def option(spec: OptionSpec) -> Option:
    return Option(spec.symbol, spec.expiry, spec.strike, spec.right, "SMART", currency="USD")


def codes(errors: Errors, code: int) -> list[tuple[int, int, str]]:
    return [e for e in errors if e[1] == code]


@pytest.mark.parametrize("readonly", [False, True])
def test_connect_full_sync(ib_gateway: GatewaySim, connect: Callable[..., tuple[IB, Errors]], readonly: bool) -> None:
    ib, errors = connect(ib_gateway, readonly=readonly)
    assert ib.isConnected() and ib.managedAccounts() == ["DU1234567"]
    assert ib.client.serverVersion() == 176
    assert ib.reqCurrentTime() == SIM_AS_OF
    assert {e[1] for e in errors} == {2104, 2106, 2158}  # farm-OK warnings like a real gateway


def test_broken_farms_are_reported(ib_gateway_factory: Callable[..., GatewaySim],
                                   connect: Callable[..., tuple[IB, Errors]]) -> None:
    ib, errors = connect(ib_gateway_factory(farm_status=FARM_BROKEN), readonly=True)
    assert ib.isConnected()  # the API session is up; only the gateway's links to IB's farms are down
    assert [(e[0], e[1]) for e in errors] == [(-1, 2103), (-1, 2105), (-1, 2157)]


def test_duplicate_client_id_is_refused(ib_gateway: GatewaySim, connect: Callable[..., tuple[IB, Errors]]) -> None:
    connect(ib_gateway, client_id=3)
    with pytest.raises((ConnectionError, asyncio.TimeoutError)):  # like a real gateway: closed, then timeout
        IB().connect(ib_gateway.host, ib_gateway.port, clientId=3, timeout=0.5)
    assert ib_gateway.stats.errors[326] == 1


def test_secdef_smart_chain(ib_gateway: GatewaySim, connect: Callable[..., tuple[IB, Errors]]) -> None:
    ib, _ = connect(ib_gateway)
    u = ib_gateway.universe
    chains = ib.reqSecDefOptParams("MSFT", "", "STK", u.stock("MSFT").conid)
    smart = [c for c in chains if c.exchange == "SMART"]
    assert len(smart) == 1 and len(chains) > 1
    chain = u.option_chain("MSFT")
    assert smart[0].expirations == sorted({o.expiry for o in chain})
    assert smart[0].strikes == sorted({o.strike for o in chain})
    assert (smart[0].tradingClass, smart[0].multiplier, int(smart[0].underlyingConId)) == (
        "MSFT", "100", u.stock("MSFT").conid)


def test_qualify_stock_options_and_unknown(ib_gateway: GatewaySim, connect: Callable[..., tuple[IB, Errors]]) -> None:
    ib, errors = connect(ib_gateway)
    u = ib_gateway.universe
    specs = u.option_chain("TSLA")[:40]
    stock = Stock("TSLA", "SMART", "USD")
    contracts = [option(s) for s in specs]
    unknown = Option("TSLA", specs[0].expiry, specs[0].strike + 0.01, "C", "SMART")
    qualified = ib.qualifyContracts(stock, *contracts, unknown, Stock("NOPE", "SMART", "USD"))
    assert len(qualified) == 41
    assert stock.conId == u.stock("TSLA").conid and stock.primaryExchange == "NASDAQ"
    assert [c.conId for c in contracts] == [s.conid for s in specs]
    assert contracts[0].localSymbol == specs[0].local_symbol and contracts[0].multiplier == "100"
    assert contracts[0].tradingClass == "TSLA" and contracts[0].exchange == "SMART"
    assert unknown.conId == 0
    assert [e[2] for e in codes(errors, 200)] == ["No security definition has been found for the request"] * 2
    details = ib.reqContractDetails(Contract(conId=specs[1].conid))
    assert details[0].underConId == u.stock("TSLA").conid and details[0].timeZoneId == "US/Eastern"


def in_rth(when: datetime) -> bool:
    local = when.astimezone(cal.NY)
    session = cal.session(local.date())
    return session is not None and session[0] <= local < session[1]


def test_history_8_hours_format_2(ib_gateway: GatewaySim, connect: Callable[..., tuple[IB, Errors]]) -> None:
    ib, _ = connect(ib_gateway)
    spec = liquid(ib_gateway.universe)
    contract = option(spec)
    ib.qualifyContracts(contract)
    bars = ib.reqHistoricalData(contract, "", "6 M", "8 hours", "TRADES", True, formatDate=2, timeout=10)
    truth = ib_gateway.universe.bars(spec.conid, "8 hours", "6 M")
    assert len(bars) == len(truth) > 20
    assert [b.date for b in bars] == [t.time for t in truth]
    assert all(b.date.tzinfo == UTC and in_rth(b.date) for b in bars)
    assert [(b.open, b.high, b.low, b.close, b.volume) for b in bars] == [
        (t.open, t.high, t.low, t.close, t.volume) for t in truth]
    assert ib_gateway.stats.bars_sent == len(bars)


def test_history_30_mins_format_1_with_end(ib_gateway: GatewaySim, connect: Callable[..., tuple[IB, Errors]]) -> None:
    ib, _ = connect(ib_gateway)
    spec = liquid(ib_gateway.universe, "SPY")
    contract = Contract(conId=spec.conid, exchange="SMART")
    end = datetime(2026, 11, 19, 21, 0, tzinfo=UTC)
    bars = ib.reqHistoricalData(contract, end, "1 M", "30 mins", "TRADES", False, formatDate=1, timeout=10)
    truth = ib_gateway.universe.bars(spec.conid, "30 mins", "1 M", end=end)
    assert bars and [b.date for b in bars] == [t.time for t in truth]
    assert all(str(b.date.tzinfo) == "US/Eastern" and in_rth(b.date) for b in bars)
    assert max(b.date for b in bars) < end


def test_stock_daily_bars_give_the_close(ib_gateway: GatewaySim, connect: Callable[..., tuple[IB, Errors]]) -> None:
    ib, _ = connect(ib_gateway)
    stock = Stock("AAPL", "SMART", "USD")
    ib.qualifyContracts(stock)
    bars = ib.reqHistoricalData(stock, "", "5 D", "1 day", "TRADES", True, formatDate=2, timeout=10)
    assert [b.date for b in bars][-1] == date(2026, 11, 20) and len(bars) == 5
    assert bars[-1].close == pytest.approx(ib_gateway.universe.close_on("AAPL", date(2026, 11, 20)), abs=0.01)


def test_history_errors_200_and_162(ib_gateway: GatewaySim, connect: Callable[..., tuple[IB, Errors]]) -> None:
    ib, errors = connect(ib_gateway)
    u = ib_gateway.universe
    illiquid = next(o for o in u.option_chain("AMD") if o.illiquid)
    expired = [o for o in u.all_options("AMD") if o.expiry < "20261120"][-1]
    for conid in (12345, illiquid.conid, expired.conid):
        bars = ib.reqHistoricalData(Contract(conId=conid, exchange="SMART"), "", "6 M", "8 hours", "TRADES", True,
                                    formatDate=2, timeout=5)
        assert len(bars) == 0
    # IB keeps no expired option: asked by conId it is unknown (200), like a conId that never existed
    answers = [e for e in errors if e[1] < 2000]
    assert [e[1] for e in answers] == [200, 162, 200]
    assert "HMDS query returned no data" in answers[1][2] and illiquid.local_symbol in answers[1][2]
    assert "No security definition" in answers[2][2]
    bad = ib.reqHistoricalData(Contract(conId=illiquid.conid), "", "6 M", "7 mins", "TRADES", True, timeout=5)
    assert len(bad) == 0 and codes(errors, 321)


def test_identical_request_is_a_pacing_violation(ib_gateway: GatewaySim,
                                                  connect: Callable[..., tuple[IB, Errors]]) -> None:
    ib, errors = connect(ib_gateway)
    contract = Contract(conId=ib_gateway.universe.stock("IWM").conid, exchange="SMART")
    first = ib.reqHistoricalData(contract, "", "1 M", "30 mins", "TRADES", True, formatDate=2, timeout=5)
    second = ib.reqHistoricalData(contract, "", "1 M", "30 mins", "TRADES", True, formatDate=2, timeout=5)
    assert first and not second
    (req_id, code, msg), = codes(errors, 162)
    assert req_id == second.reqId and "pacing violation" in msg
    assert ib_gateway.stats.pacing_violations == 1


def history_burst(ib: IB, contracts: list[Contract], timeout: float = 10) -> list[int]:
    async def run() -> list[int]:
        lists = await asyncio.gather(*(ib.reqHistoricalDataAsync(
            c, "", "1 W", "8 hours", "TRADES", True, formatDate=2, timeout=timeout) for c in contracts))
        return [len(x) for x in lists]
    return ib.run(run())


def test_open_request_limit(ib_gateway_factory: Callable[..., GatewaySim],
                            connect: Callable[..., tuple[IB, Errors]]) -> None:
    sim = ib_gateway_factory(max_open=3, latency_s=0.3)
    ib, errors = connect(sim)
    stocks = [Contract(conId=sim.universe.stock(s).conid) for s in sim.universe.symbols[:5]]
    counts = history_burst(ib, stocks)
    assert sorted(counts)[:2] == [0, 0] and all(counts[i] for i in range(3))
    assert sim.stats.max_open_historical == 3 and sim.stats.open_historical == 0
    assert len(codes(errors, 162)) == 2 == sim.stats.pacing_violations


def test_soft_rate_limit_and_storm(ib_gateway_factory: Callable[..., GatewaySim],
                                   connect: Callable[..., tuple[IB, Errors]]) -> None:
    sim = ib_gateway_factory(soft_rate_per_s=4, pacing_storm=(8, 2))
    ib, errors = connect(sim)
    stocks = [Contract(conId=sim.universe.stock(s).conid) for s in sim.universe.symbols]
    assert [bool(n) for n in history_burst(ib, stocks[:8])] == [True] * 4 + [False] * 4
    clock.sleep(1.1)
    assert [bool(n) for n in history_burst(ib, stocks[8:11])] == [False, False, True]  # storm of 2, then ok
    assert sim.stats.pacing_violations == 6 == len(codes(errors, 162))


def test_drop_after_requests(ib_gateway_factory: Callable[..., GatewaySim],
                             connect: Callable[..., tuple[IB, Errors]]) -> None:
    sim = ib_gateway_factory(drop_after_requests=1)
    ib, _ = connect(sim)
    dropped: list[bool] = []
    ib.disconnectedEvent += lambda: dropped.append(True)
    stock = Contract(conId=sim.universe.stock("META").conid)
    assert ib.reqHistoricalData(stock, "", "1 W", "8 hours", "TRADES", True, formatDate=2, timeout=5)
    with pytest.raises(ConnectionError):
        ib.reqHistoricalData(stock, "", "2 W", "8 hours", "TRADES", True, formatDate=2, timeout=5)
    assert dropped and not ib.isConnected()
    with pytest.raises(ConnectionError):
        ib.reqHistoricalData(stock, "", "3 W", "8 hours", "TRADES", True, formatDate=2, timeout=5)
    ib.connect(sim.host, sim.port, clientId=1, timeout=5)  # the gateway keeps listening; drops only once
    assert ib.reqHistoricalData(stock, "", "4 W", "8 hours", "TRADES", True, formatDate=2, timeout=5)


def test_drop_connections_on_demand(ib_gateway: GatewaySim, connect: Callable[..., tuple[IB, Errors]]) -> None:
    ib, _ = connect(ib_gateway)
    ib_gateway.drop_connections()
    with pytest.raises(ConnectionError):  # ib_insync's util.run turns the lost socket into ConnectionError
        ib.sleep(1)
    assert not ib.isConnected()
    with pytest.raises(ConnectionError):
        ib.reqCurrentTime()


def test_hung_request_times_out_and_is_cancelled(ib_gateway_factory: Callable[..., GatewaySim],
                                                  connect: Callable[..., tuple[IB, Errors]]) -> None:
    sim = ib_gateway_factory(hang_conids=(265598,), hang_requests=(2,))
    ib, _ = connect(sim)
    started = clock.monotonic()
    assert not ib.reqHistoricalData(Contract(conId=265598), "", "1 W", "8 hours", "TRADES", True, timeout=0.5)
    other = Contract(conId=sim.universe.stock("SPY").conid)
    assert not ib.reqHistoricalData(other, "", "1 W", "8 hours", "TRADES", True, timeout=0.5)
    assert ib.reqHistoricalData(other, "", "2 W", "8 hours", "TRADES", True, timeout=0.5)
    ib.sleep(0.1)
    assert clock.monotonic() - started < 3
    assert sim.stats.cancels == 2 and sim.stats.open_historical == 0


def test_connectivity_lost_and_restored(ib_gateway_factory: Callable[..., GatewaySim],
                                        connect: Callable[..., tuple[IB, Errors]]) -> None:
    sim = ib_gateway_factory(connectivity_blip=(1, 0.3))
    ib, errors = connect(sim)
    stock = Contract(conId=sim.universe.stock("NFLX").conid)
    assert ib.reqHistoricalData(stock, "", "1 W", "8 hours", "TRADES", True, timeout=5)
    held = ib.reqHistoricalData(stock, "", "2 W", "8 hours", "TRADES", True, timeout=5)  # answered after 1102
    assert held and [e[1] for e in errors if e[1] in (1100, 1102)] == [1100, 1102]
    sim.connectivity_lost()
    sim.connectivity_restored()
    ib.sleep(0.2)
    assert [e[1] for e in errors if e[1] in (1100, 1102)] == [1100, 1102] * 2


def test_cancel_and_clean_stop(ib_gateway_factory: Callable[..., GatewaySim],
                               connect: Callable[..., tuple[IB, Errors]]) -> None:
    threads = threading.active_count()
    sim = ib_gateway_factory(latency_s=5)
    ib, _ = connect(sim)
    bars = ib.reqHistoricalData(Contract(conId=sim.universe.stock("AMZN").conid), "", "1 W", "8 hours", "TRADES",
                                True, timeout=0.3)
    assert not bars
    ib.sleep(0.1)
    assert sim.stats.cancels == 1 and sim.stats.open_historical == 0
    ib.client.reqHistoricalData(999, Contract(conId=265598), "", "1 W", "8 hours", "TRADES", True, 2, False, [])
    ib.sleep(0.1)
    assert sim.stats.open_historical == 1
    sim.stop()
    with pytest.raises(ConnectionError):
        ib.sleep(1)
    assert not ib.isConnected()
    assert threading.active_count() == threads


def test_cli_serves_until_interrupted(connect: Callable[..., tuple[IB, Errors]]) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ghtrader_assets.sim.ib", "--port", "0", "--latency-ms", "5", "--soft-rate", "10",
         "--as-of", "2026-11-20T21:30:00"], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        host, port = line.split(" on ")[1].split()[0].rsplit(":", 1)
        sim = SimpleNamespace(host=host, port=int(port))
        ib, _ = connect(sim)
        assert ib.reqCurrentTime() == SIM_AS_OF
        ib.disconnect()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
        assert proc.returncode == 0 and "stopped:" in out
    finally:
        proc.kill()
