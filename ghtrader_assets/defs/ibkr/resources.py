"""IBKR resources: gateway session settings and storage locations, defaulted from the environment at run time."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
from pydantic import Field

from ghtrader_assets.ibkr_stages import StoragePaths
from ghtrader_assets.io.ib_gateway import MAX_OPEN_HISTORICAL, GatewaySettings


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


class IBGatewayResource(dg.ConfigurableResource):
    """IB Gateway connection and pacing. host/port/client_id left unset are read when a run starts
    from IB_HOST (127.0.0.1), IB_PORT (4002), IB_CLIENT_ID (17). No account ids or secrets are logged."""

    host: str | None = None
    port: int | None = None
    client_id: int | None = None
    connect_timeout_s: float = 10.0
    request_timeout_s: float = 60.0
    max_in_flight: int = Field(default=40, ge=1, le=MAX_OPEN_HISTORICAL)
    rate_per_s: float = Field(default=10.0, gt=0)
    burst: int = 1
    pacing_retries: int = 6
    pacing_backoff_s: float = 2.0
    reconnect_attempts: int = 8
    reconnect_backoff_s: float = 1.0
    request_attempts: int = 4
    client_msg_rate: int = 45
    qualify_batch_size: int = 50

    def settings(self) -> GatewaySettings:
        """Validated client settings (environment defaults resolved now, not at import)."""
        return GatewaySettings(
            host=self.host or _env("IB_HOST", "127.0.0.1"),
            port=self.port or int(_env("IB_PORT", "4002")),
            client_id=self.client_id if self.client_id is not None else int(_env("IB_CLIENT_ID", "17")),
            connect_timeout_s=self.connect_timeout_s,
            request_timeout_s=self.request_timeout_s,
            max_in_flight=self.max_in_flight,
            rate_per_s=self.rate_per_s,
            burst=self.burst,
            pacing_retries=self.pacing_retries,
            pacing_backoff_s=self.pacing_backoff_s,
            reconnect_attempts=self.reconnect_attempts,
            reconnect_backoff_s=self.reconnect_backoff_s,
            request_attempts=self.request_attempts,
            client_msg_rate=self.client_msg_rate,
            qualify_batch_size=self.qualify_batch_size,
        )


class IBKRStorageResource(dg.ConfigurableResource):
    """Where the IBKR stages read and write. Unset fields come from GHTRADER_IB_DATA_ROOT
    (data_test/raw/ib), GHTRADER_IB_SCOPE (weekend), GHTRADER_STATE_DIR (state) and
    GHTRADER_IB_UNIVERSE (universe CSV; no default)."""

    data_root: str | None = None
    scope: str | None = None
    state_dir: str | None = None
    universe_path: str | None = None

    def paths(self) -> StoragePaths:
        return StoragePaths(
            data_root=Path(self.data_root or _env("GHTRADER_IB_DATA_ROOT", "data_test/raw/ib")),
            scope=self.scope or _env("GHTRADER_IB_SCOPE", "weekend"),
            state_dir=Path(self.state_dir or _env("GHTRADER_STATE_DIR", "state")),
        )

    def universe(self) -> Path | None:
        value = self.universe_path or _env("GHTRADER_IB_UNIVERSE", "")
        return Path(value) if value else None
