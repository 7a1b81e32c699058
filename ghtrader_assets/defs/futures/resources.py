"""Resources of the futures chain: TqSdk logins and the chain's settings."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import date, datetime, time, timezone

import dagster as dg
from pydantic import PrivateAttr

from ghtrader_assets.domain.no_data import DEFAULT_MAX_RETRIES
from ghtrader_assets.domain.schedule import ScheduleRules
from ghtrader_assets.domain.symbols import parse_variety_list
from ghtrader_assets.io.tqsdk_client import TqSdkClient, TqSettings


def default_of(settings: type, name: str):
    """A settings dataclass's default for `name`: resources show the same default, written once."""
    return settings.__dataclass_fields__[name].default


class TqSdkResource(dg.ConfigurableResource):
    """TqSdk logins (a TqApi each) for the steps. Where they connect is TqSdk's own environment
    (TQ_AUTH_URL, TQ_MD_URL, ...): the simulator or the vendor."""

    user: str
    password: str
    retries: int = default_of(TqSettings, "retries")
    backoff_s: float = default_of(TqSettings, "backoff_s")
    download_timeout_s: float = default_of(TqSettings, "download_timeout_s")

    _client: TqSdkClient | None = PrivateAttr(default=None)

    def settings(self) -> TqSettings:
        return TqSettings(self.user, self.password, retries=self.retries, backoff_s=self.backoff_s,
                          download_timeout_s=self.download_timeout_s)

    def step_login(self) -> TqSdkClient:
        """The step's login, made on first use in the calling thread and reused by the step (calendar,
        schedule, factors); closed when the step ends."""
        if self._client is None:
            self._client = TqSdkClient(self.settings())
        return self._client

    def login_factory(self) -> Callable[[], TqSdkClient]:
        """What makes a new login, picklable: the tick download calls it in a process of its own (TqApi is not
        thread-safe, and its decoding must not share the run's GIL)."""
        return functools.partial(TqSdkClient, self.settings())

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


class FuturesSettings(dg.ConfigurableResource):
    """What the chain covers and how it decides the main contract."""

    start_date: str = "2024-01-02"
    # GHTRADER_VARIETIES as written: a variety may carry the first trading day wanted for it
    # ('SHFE.cu:2016-01-04,GFEX.si'); without one its window starts where the vendor lists it.
    varieties: str = ""
    # Snapshot manifests (JSON files) are written here; QuestDB keeps a row of each.
    manifest_dir: str = "data/manifests"
    # ISO datetime (with offset) that pins "now" for reproducible demos and tests; empty = the real clock.
    now: str = ""
    # backtest (default: TqSdk's KQ.m@ mapping seen in a TqBacktest), continuous_table, or open_interest.
    schedule_source: str = "backtest"
    # Beijing time after which the daily update requests a trading day (18:00: the day is final).
    daily_update_time: str = "18:00"
    # How many recent trading days the daily update looks back over for missing partitions.
    lookback_days: int = 5
    # Beijing time on the previous trading day by which the vendor publishes a day's main contract; a day's
    # schedule row is provisional until then and until the day has opened.
    schedule_published_at: str = default_of(ScheduleRules, "published_at").strftime("%H:%M")
    # Settled days the backtest source is asked again on every run to catch vendor revisions.
    schedule_recheck_days: int = default_of(ScheduleRules, "recheck_days")
    # Revisions of days older than this many trading days are only reported until confirmed; 0 = apply all.
    confirm_revisions_older_than: int = default_of(ScheduleRules, "confirm_older_than")
    # No-data days: re-asked after 1, 2, 4 ... days, at most this many times, then reported as permanent.
    no_data_max_retries: int = DEFAULT_MAX_RETRIES
    # JSON file of session changes and night-session exceptions added to the built-in list (see
    # domain.session_history); empty = none.
    session_history_file: str = ""

    def start(self) -> date:
        return date.fromisoformat(self.start_date)

    def variety_start(self, variety: str) -> date | None:
        """The user's first trading day for the variety (None: from the vendor's first listed day)."""
        return parse_variety_list(self.varieties).get(variety)

    def schedule_rules(self, confirmed: bool = False, night_open: time | None = time(21, 0),
                       day_open: time = time(9, 0)) -> ScheduleRules:
        return ScheduleRules(now=self.clock(), published_at=time.fromisoformat(self.schedule_published_at),
                             night_open=night_open, day_open=day_open, recheck_days=self.schedule_recheck_days,
                             confirm_older_than=self.confirm_revisions_older_than, confirmed=confirmed)

    def clock(self) -> datetime:
        return datetime.fromisoformat(self.now) if self.now else datetime.now(timezone.utc)


# FuturesSettings fields and the environment variables that set them (the code location wires the same).
SETTINGS_ENV = {
    "start_date": "GHTRADER_START_DATE",
    "varieties": "GHTRADER_VARIETIES",
    "manifest_dir": "GHTRADER_MANIFEST_DIR",
    "now": "GHTRADER_NOW",
    "schedule_source": "GHTRADER_SCHEDULE_SOURCE",
    "daily_update_time": "GHTRADER_DAILY_UPDATE_TIME",
    "lookback_days": "GHTRADER_LOOKBACK_DAYS",
    "schedule_published_at": "GHTRADER_SCHEDULE_PUBLISHED_AT",
    "schedule_recheck_days": "GHTRADER_SCHEDULE_RECHECK_DAYS",
    "confirm_revisions_older_than": "GHTRADER_CONFIRM_REVISIONS_OLDER_THAN",
    "no_data_max_retries": "GHTRADER_NO_DATA_MAX_RETRIES",
    "session_history_file": "GHTRADER_SESSION_HISTORY",
}


def futures_settings_from_env() -> FuturesSettings:
    """The settings as the environment gives them (unset or blank: the default), for the command line."""
    import os

    return FuturesSettings(**{field: os.environ[name] for field, name in SETTINGS_ENV.items()
                              if os.environ.get(name, "").strip()})
