"""ghtrader-assets: Dagster assets for futures main-contract ticks and IBKR option bars."""
