"""CLI: run the TqSdk simulator until Ctrl-C and print the env vars that point tqsdk at it."""

from __future__ import annotations

import argparse
import time
from datetime import date, datetime
from datetime import time as dtime

from ghtrader_assets.sim.tq.market import Faults, MarketConfig
from ghtrader_assets.sim.tq.server import TqSimServer


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m ghtrader_assets.sim.tq", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 = pick a free port")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--start", type=date.fromisoformat, default=date(2024, 1, 2))
    p.add_argument("--end", type=date.fromisoformat, default=date(2024, 6, 28))
    p.add_argument("--varieties", default="SHFE.cu,SHFE.rb,DCE.m,CFFEX.IF")
    p.add_argument("--density", type=float, default=0.25)
    p.add_argument("--far-density", type=float, default=0.05)
    p.add_argument("--now", type=datetime.fromisoformat, default=None, help="naive Beijing time; default end 17:00")
    p.add_argument("--publish-time", type=dtime.fromisoformat, default=dtime(20, 0),
                   help="Beijing time the next trading day's continuous-table row is published")
    p.add_argument("--username", default="sim")
    p.add_argument("--password", default="sim")
    p.add_argument("--features", default=",".join(MarketConfig.features),
                   help="the account's grants, comma-separated (leave out tq_dl: an account without tick downloads)")
    p.add_argument("--drop-after", type=int, default=None, help="drop the websocket after N tick responses")
    p.add_argument("--stall-after", type=int, default=None, help="stop answering after N tick responses ...")
    p.add_argument("--stall-seconds", type=float, default=0.0, help="... for this many seconds")
    a = p.parse_args(argv)
    cfg = MarketConfig(
        seed=a.seed, start=a.start, end=a.end, varieties=tuple(v for v in a.varieties.split(",") if v),
        density=a.density, far_density=a.far_density, now=a.now, publish_time=a.publish_time, username=a.username, password=a.password,
        features=tuple(f for f in a.features.split(",") if f),
        host=a.host, port=a.port,
        faults=Faults(drop_after_tick_responses=a.drop_after, stall_after_tick_responses=a.stall_after,
                      stall_seconds=a.stall_seconds),
    )
    with TqSimServer(cfg) as srv:
        for k, v in srv.env().items():
            print(f"export {k}={v}")
        print(f"# clock: GET/POST {srv.base_url}/sim/clock")
        print(f"# login with TqAuth({cfg.username!r}, {cfg.password!r}); Ctrl-C to stop", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
