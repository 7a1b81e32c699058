"""The IBKR family's settings: one table of names, environment variables, CLI flags and help; defaults live in the
section dataclasses only. The Dagster resources take their fields and defaults from it (variables wired when the
code location loads); the CLI and the demo resolve it when a command runs. Never read at import."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ghtrader_assets.domain.discovery_bounds import DiscoveryBounds
from ghtrader_assets.domain.expiry import ExpiryRule
from ghtrader_assets.domain.outcome_check import OutcomeThresholds
from ghtrader_assets.io.ib_gateway import GatewaySettings


@dataclass(frozen=True)
class StoragePaths:
    """Where bars, caches and summaries live. Bars: `data_root/historical_bars_<scope>/...`;
    caches: `state_dir/contracts_cache/`; summaries: `state_dir/run_logs/<stage>/`; latest status:
    `state_dir/latest/<stage>/<SYMBOL>.json`."""

    data_root: Path = Path("data_test/raw/ib")
    scope: str = "weekend"
    state_dir: Path = Path("state")
    universe: Path | None = None
    discovery_workers: int = 4  # symbols discovered at once; each qualifies its own batches

    @property
    def cache_dir(self) -> Path:
        return self.state_dir / "contracts_cache"


DISCOVERY = ("contracts",)
BAR_STAGES = ("hours", "minutes")  # the bar stages of stage_table (a new one is added here too)
SCHEDULE_ONLY: tuple[str, ...] = ()


@dataclass(frozen=True)
class Setting:
    """One setting: field `name` of dataclass `section`, its environment variable and CLI flag, and
    the stages whose command takes the flag (None: every stage; () the schedule only)."""

    name: str
    section: type
    env: str
    flag: str
    help: str
    stages: tuple[str, ...] | None = None

    def applies_to(self, stage: str) -> bool:
        return self.stages is None or stage in self.stages

    @property
    def default(self) -> Any:
        found = self.dataclass_field
        return found.default if found.default is not dataclasses.MISSING else found.default_factory()  # type: ignore[misc]

    @property
    def kind(self) -> type:
        """How the setting is typed in resource config and on the command line: int, float, or str
        (paths and comma lists as text)."""
        annotation = str(self.dataclass_field.type)
        return int if annotation == "int" else float if annotation == "float" else str

    @property
    def config_default(self) -> int | float | str:
        """The default as config shows it: paths as text, comma lists joined, no path as ''."""
        default = self.default
        if isinstance(default, tuple):
            return ",".join(default)
        return "" if default is None else default if self.kind is not str else str(default)

    @property
    def dataclass_field(self) -> dataclasses.Field[Any]:
        """The field of `section` this setting fills."""
        return {f.name: f for f in dataclasses.fields(self.section)}[self.name]

    def describe(self) -> str:
        """Help text naming the environment variable and the default."""
        return f"{self.help} (env {self.env}; default {self.config_default!r})"


G, D, S, T, E = GatewaySettings, DiscoveryBounds, StoragePaths, OutcomeThresholds, ExpiryRule
SETTINGS: tuple[Setting, ...] = (
    Setting("host", G, "IB_HOST", "--host", "gateway host"),
    Setting("port", G, "IB_PORT", "--port", "gateway API port (paper 4002)"),
    Setting("client_id", G, "IB_CLIENT_ID", "--client-id", "API client id"),
    Setting("connect_timeout_s", G, "GHTRADER_IB_CONNECT_TIMEOUT", "--connect-timeout", "seconds per connect attempt"),
    Setting("unreachable_timeout_s", G, "GHTRADER_IB_UNREACHABLE_TIMEOUT", "--unreachable-timeout",
            "seconds of (re)connect attempts before the gateway counts as unreachable"),
    Setting("reconnect_attempts", G, "GHTRADER_IB_RECONNECT_ATTEMPTS", "--reconnect-attempts", "connect attempts"),
    Setting("reconnect_backoff_s", G, "GHTRADER_IB_RECONNECT_BACKOFF", "--reconnect-backoff",
            "first pause between connect attempts, s (doubles)"),
    Setting("request_timeout_s", G, "GHTRADER_IB_REQUEST_TIMEOUT", "--request-timeout", "seconds per request"),
    Setting("request_attempts", G, "GHTRADER_IB_REQUEST_ATTEMPTS", "--request-attempts",
            "issues of one request across gateway drops"),
    Setting("max_in_flight", G, "GHTRADER_IB_MAX_IN_FLIGHT", "--max-in-flight", "open historical requests, 1..50"),
    Setting("rate_per_s", G, "GHTRADER_IB_RATE", "--rate", "historical requests per second"),
    Setting("burst", G, "GHTRADER_IB_BURST", "--burst", "token bucket size of the request rate"),
    Setting("pacing_retries", G, "GHTRADER_IB_PACING_RETRIES", "--pacing-retries",
            "retries of one request after pacing violations"),
    Setting("pacing_backoff_s", G, "GHTRADER_IB_PACING_BACKOFF", "--pacing-backoff",
            "first shared pacing pause, s (doubles up to 60 s)"),
    Setting("client_msg_rate", G, "GHTRADER_IB_MSG_RATE", "--msg-rate",
            "ib_insync messages/s throttle, bounds discovery's qualify calls (0 = off, simulator only)"),
    Setting("qualify_batch_size", G, "GHTRADER_IB_QUALIFY_BATCH", "--qualify-batch", "contracts per qualify call",
            DISCOVERY),
    Setting("moneyness", D, "GHTRADER_IB_MONEYNESS", "--moneyness",
            "discovery band: strikes within close x (1 +/- moneyness)", DISCOVERY),
    Setting("horizon_months", D, "GHTRADER_IB_HORIZON_MONTHS", "--horizon-months",
            "discovery: expiries up to this many months ahead", DISCOVERY),
    Setting("expiry_types", D, "GHTRADER_IB_EXPIRY_TYPES", "--expiry-types",
            "discovery: comma list of weekly, monthly, quarterly", DISCOVERY),
    Setting("weekly_days", D, "GHTRADER_IB_WEEKLY_DAYS", "--weekly-days", "discovery: weeklies only within N days",
            DISCOVERY),
    Setting("max_strikes", D, "GHTRADER_IB_MAX_STRIKES", "--max-strikes",
            "discovery: strikes per (expiry, right), nearest the close", DISCOVERY),
    Setting("trading_class", D, "GHTRADER_IB_TRADING_CLASS", "--trading-class",
            "discovery chain: symbol (own class, else richest), richest, or all", DISCOVERY),
    Setting("data_root", S, "GHTRADER_IB_DATA_ROOT", "--data-root", "Parquet root"),
    Setting("scope", S, "GHTRADER_IB_SCOPE", "--scope", "historical_bars_<scope>"),
    Setting("state_dir", S, "GHTRADER_STATE_DIR", "--state-dir", "caches, summaries and latest status"),
    Setting("universe", S, "GHTRADER_IB_UNIVERSE", "--universe", "universe CSV (symbol,conid)"),
    Setting("discovery_workers", S, "GHTRADER_IB_DISCOVERY_WORKERS", "--discovery-workers",
            "symbols discovered at once", DISCOVERY),
    Setting("served_hours_after_close", E, "GHTRADER_IB_SERVED_HOURS_AFTER_CLOSE", "--served-hours-after-close",
            "hours after 16:00 New York on its expiry day that IB still serves an option (0..8; 8 = end of day)",
            BAR_STAGES),
    Setting("capture_time", E, "GHTRADER_IB_CAPTURE_TIME", "--capture-time",
            "New York HH:MM of the daily capture schedule on each NYSE session", SCHEDULE_ONLY),
    Setting("capture_lead_days", E, "GHTRADER_IB_CAPTURE_LEAD_DAYS", "--capture-lead-days",
            "the capture also takes contracts expiring within N days (0: those before the next weekend run)",
            BAR_STAGES),
    Setting("max_err_share", T, "GHTRADER_IB_MAX_ERR_SHARE", "--max-err-share",
            "a symbol fails when more than this share of its contracts ends ERR"),
    Setting("max_empty_share", T, "GHTRADER_IB_MAX_EMPTY_SHARE", "--max-empty-share",
            "a symbol fails when more than this share of its contracts ends EMPTY"),
)
BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class IBKRSettings:
    """Every IBKR setting, resolved."""

    gateway: GatewaySettings
    discovery: DiscoveryBounds
    paths: StoragePaths
    thresholds: OutcomeThresholds
    expiry: ExpiryRule


def parse(setting: Setting, raw: Any, source: str = "config") -> Any:
    """A value from the environment, CLI or resource config, converted to the field's type;
    ValueError naming the setting and where the value came from otherwise."""
    kind = str(setting.dataclass_field.type)
    if isinstance(raw, str):
        raw = raw.strip()
    try:
        if "Path" in kind:
            return Path(raw) if raw not in ("", None) else None
        if "tuple" in kind:
            return tuple(p.strip() for p in raw.split(",") if p.strip()) if isinstance(raw, str) else tuple(raw)
        return setting.kind(raw)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{setting.name} ({source}): invalid value {raw!r}: {exc}") from exc


def resolve(values: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> IBKRSettings:
    """Settings from explicit `values` (None or absent: not given), else the environment variable
    (blank: not given), else the section default. Raises ValueError naming the bad setting and its
    environment variable."""
    values = values or {}
    environ = os.environ if environ is None else environ
    chosen: dict[type, dict[str, Any]] = {G: {}, D: {}, S: {}, T: {}, E: {}}
    for setting in SETTINGS:
        raw = values.get(setting.name)
        source = "config"
        if raw is None and environ.get(setting.env, "").strip():
            raw, source = environ[setting.env], setting.env
        if raw is not None:
            chosen[setting.section][setting.name] = parse(setting, raw, source)
    built = []
    for section, given in chosen.items():
        try:
            built.append(section(**given))
        except ValueError as exc:  # the section's own range checks: add which setting and variable to look at
            named = [f"{s.name} (env {s.env})" for s in SETTINGS if s.section is section and s.name in str(exc)]
            raise ValueError(f"invalid IBKR setting {', '.join(named) or section.__name__}: {exc}") from exc
    return IBKRSettings(*built)
