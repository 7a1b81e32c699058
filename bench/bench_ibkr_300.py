"""Benchmark: the hours stage over 300 symbols on the IB Gateway simulator with IB-like pacing (a soft limit of
requests per second, 1 s latency, a gateway drop injected), killed halfway and resumed, each run a separate
`ghtrader-assets ibkr hours` process; prints the rate against the allowed one, pacing violations, disconnects,
the contracts requested again on resume, wall time and the weekend projection from these measured figures.

    .venv/bin/python bench/bench_ibkr_300.py [--symbols 300] [--contracts 20] [--soft-rate 20]
"""

from __future__ import annotations

import _harness  # first: the project root on sys.path
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from ghtrader_assets.domain.contracts_cache import OptionContract
from ghtrader_assets.domain.run_summary import Status
from ghtrader_assets.domain.universe import UniverseEntry
from ghtrader_assets.io.ibkr_state import read_stage_records, write_cache, write_universe
from ghtrader_assets.sim.ib import DEFAULT_SYMBOLS, GatewayConfig, GatewaySim

AS_OF = datetime(2026, 11, 20, 21, 30, tzinfo=UTC)  # Friday 16:30 New York
WEEKEND_S = 2 * 86400
PROJECT_SYMBOLS, PROJECT_CONTRACTS = 380, 292  # the seed's universe; contracts per symbol of bounded discovery
ROOT = Path(__file__).resolve().parent.parent
_children: list[subprocess.Popen[bytes]] = []
_sims: list[GatewaySim] = []


def _stop(signum: int, _frame: FrameType | None) -> None:
    for child in _children:
        if child.poll() is None:
            child.kill()
    for sim in _sims:
        sim.stop()
    raise SystemExit(128 + signum)


def symbols(n: int) -> tuple[str, ...]:
    extra = [f"X{i:03d}" for i in range(n)]
    return (*DEFAULT_SYMBOLS, *extra)[:n]


def caches(sim: GatewaySim, root: Path, names: tuple[str, ...], per_symbol: int) -> int:
    """Drop-in contracts caches: per symbol the `per_symbol` listed contracts nearest the money."""
    total = 0
    for symbol in names:
        close = sim.universe.close_on(symbol, AS_OF.date())
        chain = sorted(sim.universe.option_chain(symbol), key=lambda o: (abs(o.strike - close), o.expiry, o.right))
        picked = [OptionContract(o.conid, symbol, datetime.strptime(o.expiry, "%Y%m%d").date(), o.right,  # type: ignore[arg-type]
                                 o.strike, trading_class=o.trading_class) for o in chain[:per_symbol]]
        write_cache(root / "state" / "contracts_cache", symbol, AS_OF.date(), picked)
        total += len(picked)
    return total


def cli(sim: GatewaySim, root: Path, rate: float, run_id: str) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "ghtrader_assets.cli", "ibkr", "hours", "--universe", str(root / "universe.csv"),
            "--host", sim.host, "--port", str(sim.port), "--client-id", "71", "--rate", f"{rate:g}",
            "--max-in-flight", "40", "--request-timeout", "30", "--end", AS_OF.isoformat(), "--run-id", run_id,
            "--data-root", str(root / "raw"), "--scope", "bench", "--state-dir", str(root / "state"), "--json"]
    child = subprocess.Popen(args, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    _children.append(child)
    return child


def bar_records(root: Path, run_id: str) -> list:
    return [r for r in read_stage_records(root / "state", "hours") if r.run_id == run_id and r.purpose == "bars"]


def main() -> int:
    _harness.stop_on_signals()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=300)
    parser.add_argument("--contracts", type=int, default=20, help="contracts per symbol in the caches")
    parser.add_argument("--soft-rate", type=float, default=20.0, help="the simulator's allowed requests/s")
    parser.add_argument("--headroom", type=float, default=0.93, help="client rate as a share of the allowed one")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ibkr_300.txt")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    names = symbols(args.symbols)
    rate = args.soft_rate * args.headroom
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        planned_total = args.symbols * args.contracts
        config = GatewayConfig(seed=7, as_of=AS_OF, symbols=names, latency_s=1.0, soft_rate_per_s=args.soft_rate,
                               weekly_expiries=2, monthly_expiries=1, identical_window_s=0.0,
                               drop_after_requests=planned_total // 4)
        sim = GatewaySim(config).start()
        _sims.append(sim)
        try:
            contracts = caches(sim, root, names, args.contracts)
            write_universe(root / "universe.csv", [UniverseEntry(s) for s in names])
            started = time.monotonic()
            first = cli(sim, root, rate, "first")
            while first.poll() is None:  # killed once half the contracts are stored
                time.sleep(1.0)
                if sum(r.status is Status.OK for r in bar_records(root, "first")) >= contracts // 2:
                    first.kill()
                    break
            first.wait()
            killed_s = time.monotonic() - started
            ok_before = {r.conid for r in bar_records(root, "first") if r.status is Status.OK}
            requests_before = sim.stats.historical_requests
            second = cli(sim, root, rate, "resume")
            out, _ = second.communicate()
            wall_s = time.monotonic() - started
            report = json.loads(out)
            resumed = bar_records(root, "resume")
            repeated = sum(1 for r in resumed if r.status is not Status.SKIPPED and r.conid in ok_before)
            statuses = {s: sum(r.status is s for r in resumed) for s in Status}
            requests = sim.stats.historical_requests
            measured_rate = requests / wall_s
            lines = [
                f"symbols {args.symbols}, contracts {contracts} ({args.contracts} per symbol), simulator soft limit "
                f"{args.soft_rate:g} requests/s, latency 1 s, a gateway drop after {config.drop_after_requests} "
                f"requests, client at {rate:g} requests/s and 40 in flight",
                f"first run killed after {killed_s:.0f} s with {len(ok_before)} contracts OK "
                f"({requests_before} requests)",
                f"resume: {statuses[Status.SKIPPED]} SKIPPED, {statuses[Status.OK]} OK, {statuses[Status.EMPTY]} EMPTY, "
                f"{statuses[Status.ERR]} ERR; contracts OK before the kill requested again: {repeated}",
                f"requests beyond one per contract: {requests - contracts} (in flight at the kill, re-issued after "
                f"the drop)",
                f"requests {requests} in {wall_s:.0f} s wall: {measured_rate:.2f} requests/s = "
                f"{measured_rate / args.soft_rate:.3f} of the allowed {args.soft_rate:g}/s",
                f"pacing violations {sim.stats.pacing_violations}; gateway connections {sim.stats.connections} "
                f"(2 runs; reconnects in the resumed run {report['reconnects']}); the injected drop was "
                f"{'in the first' if requests_before > config.drop_after_requests else 'in the resumed'} run",
                f"projection, {PROJECT_SYMBOLS} symbols x {PROJECT_CONTRACTS} contracts at the measured "
                f"{measured_rate:.2f} requests/s: {PROJECT_SYMBOLS * PROJECT_CONTRACTS / measured_rate / 3600:.1f} h, "
                f"{PROJECT_SYMBOLS * PROJECT_CONTRACTS / measured_rate / WEEKEND_S:.1%} of a 48-hour weekend",
            ]
        finally:
            sim.stop()
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(f"{datetime.now(UTC):%Y-%m-%d}\n{text}\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
