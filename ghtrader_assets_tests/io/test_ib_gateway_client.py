"""IB client against the gateway simulator: discovery, classification via errorEvent, pacing, drops, caps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any

import pytest

from ghtrader_assets.domain.contracts_cache import OptionContract
from ghtrader_assets.domain.run_summary import Status
from ghtrader_assets.domain.discovery_bounds import DiscoveryBounds
from ghtrader_assets.domain.stage_table import BarSpec
from ghtrader_assets.io.ib_gateway import (
    BarFetch,
    BarQuery,
    GatewaySettings,
    GatewayUnavailableError,
    IBGatewayClient,
    IBGatewaySession,
    StockRef,
    TokenBucket,
    classify,
)
from ghtrader_assets.sim.ib import GatewaySim, SimUniverse
from ghtrader_assets_tests.fixtures.ib_sim import SIM_AS_OF

HOURS = BarQuery(BarSpec("8 hours", "6 M"), end=SIM_AS_OF)
SMALL = {"symbols": ("AAPL", "MSFT"), "weekly_expiries": 1, "monthly_expiries": 1}


def settings(sim: GatewaySim, **overrides: Any) -> GatewaySettings:
    base: dict[str, Any] = {"host": sim.host, "port": sim.port, "client_id": 11, "client_msg_rate": 0,
                            "rate_per_s": 1000.0, "request_timeout_s": 5.0, "pacing_backoff_s": 0.05,
                            "reconnect_backoff_s": 0.05}
    return GatewaySettings(**{**base, **overrides})


def run_isolated(coro: Coroutine[Any, Any, Any]) -> Any:
    """Like asyncio.run, but leaves the thread's current loop as it was (asyncio.run leaves none,
    which breaks later synchronous ib_insync callers in the same test process)."""
    try:
        previous: asyncio.AbstractEventLoop | None = asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        previous = None
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)  # ib_insync looks its loop up through the policy
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()
        asyncio.set_event_loop(previous)


def run(sim: GatewaySim, body: Callable[[IBGatewayClient], Any], **overrides: Any) -> Any:
    async def main() -> Any:
        async with IBGatewayClient(settings(sim, **overrides)) as client:
            return await body(client)

    return run_isolated(main())


def option(universe: SimUniverse, symbol: str, illiquid: bool = False) -> OptionContract:
    spec = next(o for o in universe.option_chain(symbol) if o.illiquid == illiquid)
    return OptionContract(spec.conid, symbol, datetime.strptime(spec.expiry, "%Y%m%d").date(), spec.right,  # type: ignore[arg-type]
                          spec.strike, spec.multiplier, "SMART", spec.trading_class)


def test_discovery_finds_exactly_the_listed_chain(ib_gateway_factory: Callable[..., GatewaySim]) -> None:
    sim = ib_gateway_factory(**SMALL)
    found = run(sim, lambda c: c.discover(StockRef("AAPL"), SIM_AS_OF.date(), DiscoveryBounds(unbounded=True)))
    assert found.underlying_conid == sim.universe.stock("AAPL").conid
    assert {c.conid for c in found.contracts} == {o.conid for o in sim.universe.option_chain("AAPL")}
    assert all(c.exchange == "SMART" and c.symbol == "AAPL" for c in found.contracts)


def test_bars_match_ground_truth_in_utc(ib_gateway_factory: Callable[..., GatewaySim]) -> None:
    sim = ib_gateway_factory(**SMALL)
    contract = option(sim.universe, "AAPL")
    result = run(sim, lambda c: c.fetch_bars(contract, HOURS))
    truth = sim.universe.bars(contract.conid, "8 hours", "6 M", SIM_AS_OF)
    assert result.status is Status.OK and result.error_code is None
    assert result.bars["ts"].to_list() == [b.time for b in truth]
    assert result.bars["close"].to_list() == [b.close for b in truth]
    assert str(result.bars.schema["ts"]) == "Datetime(time_unit='us', time_zone='UTC')"


def test_no_data_error_timeout_are_told_apart(ib_gateway_factory: Callable[..., GatewaySim]) -> None:
    hang = option(SimUniverse(ib_gateway_factory(**SMALL).config), "MSFT")
    sim = ib_gateway_factory(**SMALL, hang_conids=(hang.conid,))
    illiquid = option(sim.universe, "AAPL", illiquid=True)
    unknown = OptionContract(123, "AAPL", illiquid.expiry, "C", 1.0)

    async def body(client: IBGatewayClient) -> list[Any]:
        return list(await asyncio.gather(*(client.fetch_bars(c, HOURS) for c in (illiquid, unknown, hang))))

    empty, error, timeout = run(sim, body, request_timeout_s=0.5)
    assert (empty.status, empty.error_code) == (Status.EMPTY, 162)
    assert "no data" in (empty.error_message or "")
    assert (error.status, error.error_code) == (Status.ERR, 200)
    assert timeout.status is Status.ERR and timeout.error_code is None and "timeout" in (timeout.error_message or "")


def test_pacing_storm_is_retried_with_backoff(ib_gateway_factory: Callable[..., GatewaySim]) -> None:
    sim = ib_gateway_factory(**SMALL, pacing_storm=(0, 3))
    contract = option(sim.universe, "AAPL")
    result = run(sim, lambda c: c.fetch_bars(contract, HOURS))
    assert result.status is Status.OK and result.attempts == 4
    assert sim.stats.pacing_violations == 3


def test_pacing_that_never_clears_is_err(ib_gateway_factory: Callable[..., GatewaySim]) -> None:
    sim = ib_gateway_factory(**SMALL, pacing_storm=(0, 100))
    contract = option(sim.universe, "AAPL")
    result = run(sim, lambda c: c.fetch_bars(contract, HOURS), pacing_retries=2)
    assert result.status is Status.ERR and result.error_code == 162
    assert "pacing violation never cleared" in (result.error_message or "")


def test_request_is_reissued_after_a_gateway_drop(ib_gateway_factory: Callable[..., GatewaySim]) -> None:
    sim = ib_gateway_factory(**SMALL, drop_after_requests=0)
    contract = option(sim.universe, "AAPL")

    async def body(client: IBGatewayClient) -> Any:
        result = await client.fetch_bars(contract, HOURS)
        return result, client.stats

    result, stats = run(sim, body)
    assert result.status is Status.OK and result.attempts == 2
    assert (stats.disconnects, stats.reconnects) == (1, 1)
    assert sim.stats.connections == 2


def test_unreachable_gateway_raises_after_backoff(ib_gateway_factory: Callable[..., GatewaySim]) -> None:
    sim = ib_gateway_factory(**SMALL)
    sim.stop()
    loop = asyncio.get_event_loop_policy().get_event_loop()
    with pytest.raises(GatewayUnavailableError, match="unreachable after 2 attempts"):
        IBGatewaySession.open(settings(sim, reconnect_attempts=2, connect_timeout_s=0.5))
    assert asyncio.get_event_loop_policy().get_event_loop() is loop  # the session left the thread as found


def test_in_flight_cap_holds(ib_gateway_factory: Callable[..., GatewaySim]) -> None:
    sim = ib_gateway_factory(**SMALL, latency_s=0.02)
    contracts = [option(sim.universe, "AAPL")] + [
        OptionContract(o.conid, "MSFT", datetime.strptime(o.expiry, "%Y%m%d").date(), o.right,  # type: ignore[arg-type]
                       o.strike) for o in sim.universe.option_chain("MSFT")[:30]
    ]

    results: list[BarFetch] = []
    with IBGatewaySession.open(settings(sim, max_in_flight=5)) as session:
        results = list(session.fetch_all([(c, HOURS) for c in contracts]))
        assert session.stats.max_in_flight_seen <= 5
    assert [r.bars["conid"][0] for r in results if r.bars.height] == [
        c.conid for c, r in zip(contracts, results) if r.bars.height]  # answers in request order
    assert len(results) == len(contracts) and sim.stats.max_open_historical <= 5


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="max_in_flight"):
        GatewaySettings(max_in_flight=51)
    with pytest.raises(ValueError, match="rate_per_s"):
        GatewaySettings(rate_per_s=0)


def test_token_bucket_paces_requests() -> None:
    async def take(n: int) -> float:
        bucket = TokenBucket(rate=100.0, burst=1)
        start = time.monotonic()
        for _ in range(n):
            await bucket.take()
        return time.monotonic() - start

    assert 0.19 <= run_isolated(take(21)) < 0.5


def test_classify_reads_the_error_not_the_empty_list() -> None:
    assert classify(0, (162, "HMDS query returned no data: X@SMART Trades"), False) == (Status.EMPTY, False)
    assert classify(0, (162, "Historical data request pacing violation"), False) == (Status.ERR, True)
    assert classify(0, (354, "Requested market data is not subscribed"), False) == (Status.ERR, False)
    assert classify(0, None, True) == (Status.ERR, False)
    assert classify(3, None, False) == (Status.OK, False)


def test_connectivity_blip_holds_answers_without_errors(ib_gateway_factory: Callable[..., GatewaySim]) -> None:
    sim = ib_gateway_factory(**SMALL, connectivity_blip=(2, 0.3))
    contracts = [option(sim.universe, "AAPL")] + [
        OptionContract(o.conid, "MSFT", datetime.strptime(o.expiry, "%Y%m%d").date(), o.right,  # type: ignore[arg-type]
                       o.strike) for o in sim.universe.option_chain("MSFT") if not o.illiquid][:5]

    async def body(client: IBGatewayClient) -> list[Any]:
        return list(await asyncio.gather(*(client.fetch_bars(c, HOURS) for c in contracts)))

    results = run(sim, body)
    assert [r.status for r in results] == [Status.OK] * len(contracts)
