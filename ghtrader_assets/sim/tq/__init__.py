"""Local TqSdk market simulator: synthetic market, DIFF/auth server, ground-truth API."""

from ghtrader_assets.sim.tq.market import Faults, MarketConfig, SimMarket
from ghtrader_assets.sim.tq.server import TqSimServer

__all__ = ["Faults", "MarketConfig", "SimMarket", "TqSimServer"]
