"""CLI: python -m ghtrader_assets.sim.ib --port 4002 --latency-ms 200 --soft-rate 10 (runs until Ctrl-C)."""

from __future__ import annotations

import argparse
import logging
import threading
from datetime import UTC, datetime

from ghtrader_assets.sim.ib.config import DEFAULT_SYMBOLS, FARM_BROKEN, FARM_OK, GatewayConfig
from ghtrader_assets.sim.ib.server import GatewaySim


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x)


def _as_of(text: str) -> datetime:
    when = datetime.fromisoformat(text)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def parse_args(argv: list[str] | None = None) -> GatewayConfig:
    """Build a GatewayConfig from command-line flags."""
    p = argparse.ArgumentParser(prog="python -m ghtrader_assets.sim.ib", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=4002)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--as-of", type=_as_of, default=None, help="simulated now, ISO 8601 (UTC if no offset)")
    p.add_argument("--symbols", default=",".join(DEFAULT_SYMBOLS), help="comma-separated underlyings")
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--soft-rate", type=float, default=None, help="historical requests per second before pacing")
    p.add_argument("--max-open", type=int, default=50)
    p.add_argument("--illiquid-fraction", type=float, default=0.1)
    p.add_argument("--drop-after", type=int, default=None, help="drop all sockets after this many historical requests")
    p.add_argument("--hang-conids", type=_ints, default=(), help="comma-separated conIds never answered")
    p.add_argument("--hang-requests", type=_ints, default=(), help="comma-separated request numbers never answered")
    p.add_argument("--pacing-storm", type=_ints, default=None, metavar="AFTER,COUNT")
    p.add_argument("--blip", default=None, metavar="AFTER,SECONDS", help="send 1100, then 1102 SECONDS later")
    p.add_argument("--farms-broken", action="store_true",
                   help="report the market-data farms broken (2103/2105/2157) instead of OK (2104/2106/2158)")
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.INFO)
    blip = None
    if a.blip:
        after, seconds = a.blip.split(",")
        blip = (int(after), float(seconds))
    return GatewayConfig(
        seed=a.seed, as_of=a.as_of, symbols=tuple(s.strip().upper() for s in a.symbols.split(",") if s.strip()),
        host=a.host, port=a.port, latency_s=a.latency_ms / 1000, soft_rate_per_s=a.soft_rate, max_open=a.max_open,
        illiquid_fraction=a.illiquid_fraction, drop_after_requests=a.drop_after, hang_conids=a.hang_conids,
        hang_requests=a.hang_requests,
        pacing_storm=(a.pacing_storm[0], a.pacing_storm[1]) if a.pacing_storm else None,
        connectivity_blip=blip, farm_status=FARM_BROKEN if a.farms_broken else FARM_OK,
    )


def main(argv: list[str] | None = None) -> None:
    """Serve until Ctrl-C, then print the counters."""
    sim = GatewaySim(parse_args(argv))
    try:
        sim.start()
        print(f"IB Gateway simulator listening on {sim.host}:{sim.port} (server version 176)", flush=True)
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
        print(f"stopped: {sim.stats}", flush=True)


if __name__ == "__main__":
    main()
