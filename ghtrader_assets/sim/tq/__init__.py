"""Local TqSdk market simulator: synthetic market, DIFF/auth server, ground-truth API."""

from .market import Faults, MarketConfig, SimMarket
from .server import TqSimServer

__all__ = ["Faults", "MarketConfig", "SimMarket", "TqSimServer"]
