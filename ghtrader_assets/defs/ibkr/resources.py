"""IBKR resources: every setting of ibkr_settings.SETTINGS as a typed config field with the table's default,
wired to its environment variable when the code location loads, and validated when a run sets the resources up."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from ghtrader_assets.ibkr_settings import BY_NAME, IBKRSettings, StoragePaths, parse, resolve
from ghtrader_assets.io.ib_gateway import GatewaySettings

_RENAMED = {"universe_path": "universe"}  # resource field -> setting, where the field name differs


def _field(name: str) -> Any:
    setting = BY_NAME[name]
    return Field(default=setting.config_default, description=setting.describe())


class _SettingsResource(dg.ConfigurableResource):
    def values(self) -> dict[str, Any]:
        """Every field by setting name, as configured (config, else the wired variable, else the default)."""
        return {_RENAMED.get(name, name): getattr(self, name) for name in type(self).model_fields}

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # A bad value fails the run here, before any step, with the setting and its variable named.
        resolve(self.values(), environ={})


class IBGatewayResource(_SettingsResource):
    """IB Gateway connection, pacing and the discovery bounds (what is asked of the gateway).
    No account ids or secrets are logged."""

    host: str = _field("host")
    port: int = _field("port")
    client_id: int = _field("client_id")
    connect_timeout_s: float = _field("connect_timeout_s")
    unreachable_timeout_s: float = _field("unreachable_timeout_s")
    reconnect_attempts: int = _field("reconnect_attempts")
    reconnect_backoff_s: float = _field("reconnect_backoff_s")
    request_timeout_s: float = _field("request_timeout_s")
    request_attempts: int = _field("request_attempts")
    max_in_flight: int = _field("max_in_flight")
    rate_per_s: float = _field("rate_per_s")
    burst: int = _field("burst")
    pacing_retries: int = _field("pacing_retries")
    pacing_backoff_s: float = _field("pacing_backoff_s")
    client_msg_rate: int = _field("client_msg_rate")
    qualify_batch_size: int = _field("qualify_batch_size")
    moneyness: float = _field("moneyness")
    horizon_months: int = _field("horizon_months")
    expiry_types: str = _field("expiry_types")
    weekly_days: int = _field("weekly_days")
    max_strikes: int = _field("max_strikes")
    trading_class: str = _field("trading_class")

    def settings(self) -> GatewaySettings:
        """Validated client settings."""
        return resolve(self.values(), environ={}).gateway


class IBKRStorageResource(_SettingsResource):
    """Where the IBKR stages read and write, the outcome thresholds that fail a partition, and the
    expiry rule with the daily capture."""

    data_root: str = _field("data_root")
    scope: str = _field("scope")
    state_dir: str = _field("state_dir")
    universe_path: str = _field("universe")
    discovery_workers: int = _field("discovery_workers")
    max_err_share: float = _field("max_err_share")
    max_empty_share: float = _field("max_empty_share")
    served_hours_after_close: float = _field("served_hours_after_close")
    capture_time: str = _field("capture_time")
    capture_lead_days: int = _field("capture_lead_days")

    def paths(self) -> StoragePaths:
        return resolve(self.values(), environ={}).paths

    def universe(self) -> Path | None:
        return self.paths().universe


def ibkr_settings(gateway: IBGatewayResource, storage: IBKRStorageResource) -> IBKRSettings:
    """Every setting of a run from the two resources."""
    return resolve({**gateway.values(), **storage.values()}, environ={})


def _from_env(resource: type[_SettingsResource], environ: Mapping[str, str]) -> _SettingsResource:
    """`resource` with each field whose variable is set (not blank) wired to it: text and integers as
    dg.EnvVar (resolved when a run starts, shown by name in the UI); decimals parsed now, because Dagster
    config has no float environment source. Unset variables leave the table's default."""
    wired: dict[str, Any] = {}
    for name in resource.model_fields:
        setting = BY_NAME[_RENAMED.get(name, name)]
        if not environ.get(setting.env, "").strip():
            continue
        if setting.kind is float:
            wired[name] = parse(setting, environ[setting.env], setting.env)
        else:
            wired[name] = dg.EnvVar.int(setting.env) if setting.kind is int else dg.EnvVar(setting.env)
    return resource(**wired)


def ibkr_resources(environ: Mapping[str, str] | None = None) -> dict[str, _SettingsResource]:
    """The family's resources as the code location wires them (precedence: run config, then the
    environment variable, then the default)."""
    environ = os.environ if environ is None else environ
    return {"ib_gateway": _from_env(IBGatewayResource, environ),
            "ibkr_storage": _from_env(IBKRStorageResource, environ)}
