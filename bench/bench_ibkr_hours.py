"""Benchmark: the IBKR hours stage through the simulator (200 ms latency, soft pacing) vs one at a time at 10/min."""

from __future__ import annotations

import _harness  # first: the project root on sys.path
import argparse
import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from ghtrader_assets.domain.contracts_cache import OptionContract
from ghtrader_assets.domain.option_subset import unexpired
from ghtrader_assets.domain.universe import UniverseEntry
from ghtrader_assets.domain.stage_table import stage_def
from ghtrader_assets.ibkr_stages import RunOptions, StoragePaths
from ghtrader_assets_tests.fixtures.ib_stages import run_bars, run_contracts
from ghtrader_assets.io.ib_gateway import BarQuery, GatewaySettings, IBGatewaySession
from ghtrader_assets.io.ibkr_state import read_latest_cache
from ghtrader_assets.sim.ib import GatewayConfig, GatewaySim

AS_OF = datetime(2026, 11, 20, 21, 30, tzinfo=UTC)  # Friday after the close
OLD_RATE_PER_MIN = 10.0  # the earlier script: one request at a time, 10 requests/minute


def main() -> int:
    _harness.stop_on_signals()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--symbols", default="AAPL,MSFT",
                        help="simulated underlyings (default AAPL,MSFT; the contracts are those bounded discovery keeps)")
    parser.add_argument("--latency", type=float, default=0.2, help="simulator latency per request, s (default 0.2)")
    parser.add_argument("--soft-rate", type=float, default=20.0, help="simulator soft limit, requests/s (default 20)")
    parser.add_argument("--headroom", type=float, default=0.97,
                        help="client rate = headroom x soft rate (default 0.97: room for send jitter)")
    parser.add_argument("--sample", type=int, default=3, help="requests in the timed one-at-a-time sample (default 3)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/bench_ibkr_hours.json"))
    args = parser.parse_args()
    symbols = tuple(s.strip().upper() for s in args.symbols.split(",") if s.strip())
    config = GatewayConfig(seed=7, as_of=AS_OF, symbols=symbols, latency_s=args.latency,
                           soft_rate_per_s=args.soft_rate, weekly_expiries=1, monthly_expiries=2)
    entries = [UniverseEntry(s) for s in symbols]
    with tempfile.TemporaryDirectory() as tmp, GatewaySim(config) as sim:
        paths = StoragePaths(Path(tmp) / "raw", "bench", Path(tmp) / "state")
        settings = GatewaySettings(host=sim.host, port=sim.port, client_id=31, client_msg_rate=0,
                                   rate_per_s=args.soft_rate * args.headroom, max_in_flight=50,
                                   request_timeout_s=30.0)
        run_contracts(entries, settings, paths, RunOptions(end=AS_OF))
        before = sim.stats.historical_requests
        violations_before = sim.stats.pacing_violations
        started = time.monotonic()
        report = run_bars("hours", entries, settings, paths, RunOptions(end=AS_OF))
        elapsed = time.monotonic() - started
        requests = sim.stats.historical_requests - before
        violations = sim.stats.pacing_violations - violations_before
        contracts = [c for s in symbols for c in unexpired(read_latest_cache(paths.cache_dir, s)[1], AS_OF)]
        per_request_old = _old_way_sample(sim, contracts[: args.sample])

    achieved = requests / elapsed
    old_total = per_request_old * len(contracts)
    result = {
        "contracts": len(contracts),
        "requests": requests,
        "counts": report.counts,
        "elapsed_s": round(elapsed, 2),
        "achieved_req_per_s": round(achieved, 2),
        "simulator_max_req_per_s": args.soft_rate,
        "rate_ratio": round(achieved / args.soft_rate, 3),
        "pacing_violations": violations,
        "max_open_historical": sim.stats.max_open_historical,
        "old_way_s_per_request_sampled": round(per_request_old, 2),
        "old_way_total_s_extrapolated": round(old_total, 1),
        "speedup_vs_old_way": round(old_total / elapsed, 1),
    }
    print(f"hours stage, {len(contracts)} contracts, simulator latency {args.latency * 1000:.0f} ms, "
          f"soft limit {args.soft_rate:g} req/s")
    print(f"  requests {requests} in {elapsed:.1f} s = {achieved:.2f} req/s; counts {report.counts}")
    print(f"  rate ratio achieved / simulator max = {result['rate_ratio']:.3f} (target >= 0.9)")
    print(f"  pacing violations = {violations} (target 0); max open requests = {sim.stats.max_open_historical}")
    print(f"  old way (one at a time, {OLD_RATE_PER_MIN:g}/min): {per_request_old:.2f} s/request from a timed "
          f"{args.sample}-request sample, EXTRAPOLATED to {len(contracts)} requests = {old_total:.0f} s")
    print(f"  speedup new / old = {result['speedup_vs_old_way']:.1f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


def _old_way_sample(sim: GatewaySim, contracts: list[OptionContract]) -> float:
    """Seconds per request of the earlier script's pacing, timed on a short sample: one request
    in flight, 10 requests/minute (measured between the first and the last answer)."""
    settings = GatewaySettings(host=sim.host, port=sim.port, client_id=32, client_msg_rate=0, max_in_flight=1,
                               rate_per_s=OLD_RATE_PER_MIN / 60.0, request_timeout_s=30.0)
    query = BarQuery(stage_def("hours").spec, end=AS_OF)
    answered: list[float] = []
    with IBGatewaySession.open(settings) as session:
        for _ in session.fetch_all([(c, query) for c in contracts]):
            answered.append(time.monotonic())
    return (answered[-1] - answered[0]) / max(1, len(answered) - 1)


if __name__ == "__main__":
    raise SystemExit(main())
