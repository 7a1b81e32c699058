"""IBKR resources: every setting of ibkr_settings.SETTINGS as a config field; unset fields fall back to the
environment variable, then the documented default, when a run starts (never at import)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from ghtrader_assets.ibkr_settings import BY_NAME, IBKRSettings, StoragePaths, resolve
from ghtrader_assets.io.ib_gateway import GatewaySettings


def _field(name: str) -> Any:
    return Field(default=None, description=BY_NAME[name].describe())


class _SettingsResource(dg.ConfigurableResource):
    def values(self) -> dict[str, Any]:
        """The fields set in config (None: not set)."""
        return {name: getattr(self, name) for name in type(self).model_fields}


class IBGatewayResource(_SettingsResource):
    """IB Gateway connection, pacing and the discovery bounds (what is asked of the gateway).
    No account ids or secrets are logged."""

    host: str | None = _field("host")
    port: int | None = _field("port")
    client_id: int | None = _field("client_id")
    connect_timeout_s: float | None = _field("connect_timeout_s")
    unreachable_timeout_s: float | None = _field("unreachable_timeout_s")
    reconnect_attempts: int | None = _field("reconnect_attempts")
    reconnect_backoff_s: float | None = _field("reconnect_backoff_s")
    request_timeout_s: float | None = _field("request_timeout_s")
    request_attempts: int | None = _field("request_attempts")
    max_in_flight: int | None = _field("max_in_flight")
    rate_per_s: float | None = _field("rate_per_s")
    burst: int | None = _field("burst")
    pacing_retries: int | None = _field("pacing_retries")
    pacing_backoff_s: float | None = _field("pacing_backoff_s")
    client_msg_rate: int | None = _field("client_msg_rate")
    qualify_batch_size: int | None = _field("qualify_batch_size")
    moneyness: float | None = _field("moneyness")
    horizon_months: int | None = _field("horizon_months")
    expiry_types: str | None = _field("expiry_types")
    weekly_days: int | None = _field("weekly_days")
    max_strikes: int | None = _field("max_strikes")
    trading_class: str | None = _field("trading_class")

    def settings(self) -> GatewaySettings:
        """Validated client settings (environment read now, not at import)."""
        return resolve(self.values()).gateway


class IBKRStorageResource(_SettingsResource):
    """Where the IBKR stages read and write, and the outcome thresholds that fail a partition."""

    data_root: str | None = _field("data_root")
    scope: str | None = _field("scope")
    state_dir: str | None = _field("state_dir")
    universe_path: str | None = Field(default=None, description=BY_NAME["universe"].describe())
    discovery_workers: int | None = _field("discovery_workers")
    max_err_share: float | None = _field("max_err_share")
    max_empty_share: float | None = _field("max_empty_share")

    def values(self) -> dict[str, Any]:
        values = super().values()
        values["universe"] = values.pop("universe_path")
        return values

    def paths(self) -> StoragePaths:
        return resolve(self.values()).paths

    def universe(self) -> Path | None:
        return self.paths().universe


def ibkr_settings(gateway: IBGatewayResource, storage: IBKRStorageResource) -> IBKRSettings:
    """Every setting of a run from the two resources (config, else environment, else default)."""
    return resolve({**gateway.values(), **storage.values()})
