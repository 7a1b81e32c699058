"""Local simulators of the vendors (TqSdk market data, IB Gateway); product code never imports this package."""
