"""Offline IB Gateway simulator for the real ib_insync client (tests and benchmarks only)."""

from ghtrader_assets.sim.ib.config import DEFAULT_SYMBOLS, GatewayConfig, SimClock
from ghtrader_assets.sim.ib.server import GatewaySim, SimStats
from ghtrader_assets.sim.ib.universe import Bar, OptionSpec, SimUniverse, StockSpec

__all__ = ["DEFAULT_SYMBOLS", "Bar", "GatewayConfig", "GatewaySim", "OptionSpec", "SimClock", "SimStats",
           "SimUniverse", "StockSpec"]
