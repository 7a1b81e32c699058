"""Benchmark: IBKR at universe size on the simulator: bounded vs unbounded discovery on an SPY-like chain, the
hours stage at 40 in flight and 1 s latency, resume/rerun bookkeeping with 100,000 summary records on disk,
and a projection for 380 symbols against a weekend."""

from __future__ import annotations

import _harness  # first: the project root on sys.path
import argparse
import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ghtrader_assets.domain.discovery_bounds import DiscoveryBounds
from ghtrader_assets.domain.latest_status import SymbolStatus, apply
from ghtrader_assets.domain.run_summary import Status, SummaryRecord, summary_path
from ghtrader_assets.domain.universe import UniverseEntry
from ghtrader_assets.ibkr_cli import rerun_universe
from ghtrader_assets.ibkr_stages import RunOptions, StoragePaths
from ghtrader_assets_tests.fixtures.ib_stages import run_bars, run_contracts
from ghtrader_assets.io.ib_gateway import GatewaySettings, IBGatewaySession, StockRef
from ghtrader_assets.io.ibkr_state import SummaryWriter, read_stage_records, read_status, write_status
from ghtrader_assets.sim.ib import GatewayConfig, GatewaySim

AS_OF = datetime(2026, 11, 20, 21, 30, tzinfo=UTC)  # Friday after the close
WEEKEND_S = 2 * 86400
IB_MSG_RATE = 45  # ib_insync's client throttle against a real gateway: bounds qualification


def discovery(latency: float) -> dict[str, object]:
    """Requests and time per symbol, default band vs unbounded, on a ~30-expiry SPY-like chain."""
    config = GatewayConfig(seed=7, as_of=AS_OF, symbols=("SPY",), latency_s=latency, weekly_expiries=26,
                           monthly_expiries=9, strike_step=1.0, strike_width=0.3)
    out: dict[str, object] = {}
    with GatewaySim(config) as sim:
        listed = len(sim.universe.option_chain("SPY"))
        for name, bounds, msg_rate in (("default_band", DiscoveryBounds(), IB_MSG_RATE),
                                       ("unbounded", DiscoveryBounds(unbounded=True), 0)):
            settings = GatewaySettings(host=sim.host, port=sim.port, client_id=61, client_msg_rate=msg_rate,
                                       request_timeout_s=120.0, qualify_batch_size=100)
            with IBGatewaySession.open(settings) as session:
                found = list(session.discover_all([StockRef("SPY")], AS_OF.date(), 1, bounds, AS_OF))
            result = found[0]
            assert not isinstance(result, Exception), result
            out[name] = {"requests": result.requests, "candidates": result.candidates,
                         "qualified": len(result.contracts), "elapsed_s": round(result.elapsed_s, 2),
                         "client_msg_rate": msg_rate or "off",
                         "projected_s_at_45_msg_per_s": round(result.requests / IB_MSG_RATE, 1)}
        out["listed_options"] = listed
        out["chain_expiries_x_strikes_x_rights"] = out["unbounded"]["candidates"]  # type: ignore[index]
    return out


def hours(latency: float, soft_rate: float, in_flight: int, headroom: float) -> dict[str, object]:
    """The hours stage's request rate vs the simulator's allowed rate, bounded-discovery contracts."""
    symbols = ("AAPL", "MSFT", "SPY")
    config = GatewayConfig(seed=7, as_of=AS_OF, symbols=symbols, latency_s=latency, soft_rate_per_s=soft_rate)
    entries = [UniverseEntry(s) for s in symbols]
    with tempfile.TemporaryDirectory() as tmp, GatewaySim(config) as sim:
        paths = StoragePaths(Path(tmp) / "raw", "bench", Path(tmp) / "state")
        settings = GatewaySettings(host=sim.host, port=sim.port, client_id=62, client_msg_rate=0,
                                   rate_per_s=soft_rate * headroom, max_in_flight=in_flight, request_timeout_s=30.0)
        run_contracts(entries, settings, paths, RunOptions(end=AS_OF))
        before, violations = sim.stats.historical_requests, sim.stats.pacing_violations
        started = time.monotonic()
        report = run_bars("hours", entries, settings, paths, RunOptions(end=AS_OF))
        elapsed = time.monotonic() - started
        requests = sim.stats.historical_requests - before
    return {"contracts_per_symbol": round(requests / len(symbols), 1), "requests": requests,
            "elapsed_s": round(elapsed, 2), "req_per_s": round(requests / elapsed, 2),
            "simulator_allowed_req_per_s": soft_rate, "rate_ratio": round(requests / elapsed / soft_rate, 3),
            "pacing_violations": sim.stats.pacing_violations - violations, "max_in_flight": in_flight,
            "latency_s": latency, "counts": report.counts}


def bookkeeping(records: int, symbols: int) -> dict[str, object]:
    """Resume + rerun + counts for one symbol with `records` summary records on disk (latest status
    files) against reading every summary (the former way)."""
    per_symbol = records // symbols
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        t0 = datetime(2026, 11, 21, tzinfo=UTC)
        for run in range(10):  # ten runs' summaries
            with SummaryWriter(summary_path(state, "hours", f"run{run}")) as writer:
                for s in range(symbols):
                    status = SymbolStatus(f"S{s:03d}", "hours")
                    for c in range(per_symbol // 10):
                        record = SummaryRecord(f"run{run}", "hours", "bars", f"S{s:03d}", "w", Status.OK
                                               if c % 17 else Status.ERR, conid=s * 10_000 + c,
                                               recorded_at=t0 + timedelta(seconds=run))
                        writer.write(record)
                        apply(status, record)
                    write_status(state, status) if run == 0 else None
        started = time.perf_counter()
        n = 20
        for i in range(n):
            status = read_status(state, "hours", f"S{i:03d}")
            status.ok_conids("w"), status.failing([Status.ERR]), status.counts("w")
        per_symbol_ms = (time.perf_counter() - started) / n * 1000
        started = time.perf_counter()
        state_one = read_status(state, "hours", "S000")
        record = SummaryRecord("x", "hours", "bars", "S000", "w", Status.OK, conid=1)
        for _ in range(n):
            apply(state_one, record)
            write_status(state, state_one)
        write_ms = (time.perf_counter() - started) / n * 1000
        started = time.perf_counter()
        rerun_universe(state, "hours", [Status.ERR])
        rerun_ms = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        old = read_stage_records(state, "hours")
        old_ms = (time.perf_counter() - started) * 1000
    return {"summary_records_on_disk": len(old), "symbols": symbols,
            "resume_rerun_counts_per_symbol_ms": round(per_symbol_ms, 2), "state_update_per_record_ms": round(
                write_ms, 2), "rerun_universe_all_symbols_ms": round(rerun_ms, 1),
            "former_read_every_summary_per_symbol_ms": round(old_ms, 1), "goal_ms": 50}


def main() -> int:
    _harness.stop_on_signals()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency", type=float, default=1.0, help="hours stage latency, s (default 1)")
    parser.add_argument("--discovery-latency", type=float, default=0.0, help="discovery latency, s (default 0)")
    parser.add_argument("--soft-rate", type=float, default=20.0, help="simulator allowed requests/s (default 20)")
    parser.add_argument("--in-flight", type=int, default=40)
    parser.add_argument("--headroom", type=float, default=0.93, help="client rate = headroom x allowed rate")
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=Path("bench/results/bench_ibkr_scale.json"))
    args = parser.parse_args()
    result: dict[str, object] = {"discovery": discovery(args.discovery_latency)}
    print(json.dumps(result["discovery"], indent=1))
    result["hours"] = hours(args.latency, args.soft_rate, args.in_flight, args.headroom)
    print(json.dumps(result["hours"], indent=1))
    result["bookkeeping"] = bookkeeping(args.records, 380)
    print(json.dumps(result["bookkeeping"], indent=1))
    h, d = result["hours"], result["discovery"]["default_band"]  # type: ignore[index]
    rate = GatewaySettings().rate_per_s * h["rate_ratio"]  # the default client rate, at the measured ratio
    per_symbol = h["contracts_per_symbol"]
    minutes_per_symbol = 2 * 2 * 5 + 1  # E=2 expiries x 2 rights x K=5 strikes + the reference close
    projection = {
        "symbols": 380, "client_rate_req_per_s": rate,
        "discovery_h": round(380 * d["requests"] / IB_MSG_RATE / 3600, 2),
        "hours_stage_h": round(380 * per_symbol / rate / 3600, 2),
        "minutes_stage_h": round(380 * minutes_per_symbol / rate / 3600, 2),
    }
    projection["total_h"] = round(projection["discovery_h"] + projection["hours_stage_h"]
                                  + projection["minutes_stage_h"], 2)
    projection["share_of_weekend"] = round(projection["total_h"] * 3600 / WEEKEND_S, 3)
    result["projection"] = projection
    print(json.dumps(projection, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
