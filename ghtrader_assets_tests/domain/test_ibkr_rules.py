"""Pure IBKR rules: discovery band, resume key session, latest-status fold, outcome thresholds, settings."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from ghtrader_assets.domain.discovery_bounds import (
    Chain,
    DiscoveryBounds,
    band_strikes,
    candidates,
    choose_chains,
    expiry_type,
)
from ghtrader_assets.domain.latest_status import fold
from ghtrader_assets.domain.outcome_check import OutcomeThresholds, check_outcome
from ghtrader_assets.domain.run_summary import Status, SummaryRecord
from ghtrader_assets.domain.us_sessions import last_completed_session
from ghtrader_assets.ibkr_settings import resolve

TODAY = date(2026, 11, 20)  # a Friday
SPY_LIKE = Chain("SPY", "100", tuple(f"{d:%Y%m%d}" for d in (TODAY + timedelta(days=7 * k) for k in range(30))),
                 tuple(float(k) for k in range(300, 700)))


def test_band_keeps_the_nearest_strikes_within_moneyness() -> None:
    bounds = DiscoveryBounds(moneyness=0.1, max_strikes=4)
    assert band_strikes([90, 95, 99, 100, 101, 105, 111, 120], 100.0, bounds) == [95.0, 99.0, 100.0, 101.0]  # ties: lower first
    assert band_strikes([50, 200], 100.0, bounds) == []


def test_expiry_types() -> None:
    assert expiry_type(date(2026, 12, 18)) == "quarterly"
    assert expiry_type(date(2026, 11, 20)) == "monthly"
    assert expiry_type(date(2026, 11, 27)) == "weekly"


def test_bounded_candidates_of_an_spy_like_chain() -> None:
    bounded = candidates([SPY_LIKE], "SPY", TODAY, 500.0, DiscoveryBounds())
    unbounded = candidates([SPY_LIKE], "SPY", TODAY, 500.0, DiscoveryBounds(unbounded=True))
    assert len(unbounded) == 30 * 400 * 2
    assert len(bounded) < 500
    assert all(400 <= c.strike <= 600 for c in bounded)
    expiries = {c.expiry for c in bounded}
    assert all(date(int(e[:4]), int(e[4:6]), int(e[6:])) <= date(2027, 5, 20) for e in expiries)
    per = {}
    for c in bounded:
        per[(c.expiry, c.right)] = per.get((c.expiry, c.right), 0) + 1
    assert max(per.values()) == 20
    only_quarterly = candidates([SPY_LIKE], "SPY", TODAY, 500.0, DiscoveryBounds(expiry_types=("quarterly",)))
    assert {c.expiry for c in only_quarterly} == {"20261218", "20270319"}
    # no close: the band is centred on the median strike, still bounded
    assert len(candidates([SPY_LIKE], "SPY", TODAY, None, DiscoveryBounds())) == len(bounded)


def test_trading_class_rule() -> None:
    own = Chain("SPY", "100", ("20261127",), (500.0,))
    rich = Chain("SPYW", "100", ("20261127",), (500.0, 505.0))
    assert choose_chains([own, rich], "SPY", "symbol") == [own]
    assert choose_chains([own, rich], "SPY", "richest") == [rich]
    assert choose_chains([rich], "SPY", "symbol") == [rich]
    assert choose_chains([own, rich], "SPY", "all") == [own, rich]


@pytest.mark.parametrize(("when", "session"), [
    (datetime(2026, 11, 21, 15, tzinfo=UTC), date(2026, 11, 20)),  # Saturday
    (datetime(2026, 11, 22, 23, tzinfo=UTC), date(2026, 11, 20)),  # Sunday evening
    (datetime(2026, 11, 20, 21, 30, tzinfo=UTC), date(2026, 11, 20)),  # Friday after the close
    (datetime(2026, 11, 20, 15, tzinfo=UTC), date(2026, 11, 19)),  # Friday during the session
    (datetime(2026, 11, 27, 12, tzinfo=UTC), date(2026, 11, 25)),  # the day after Thanksgiving, morning
])
def test_resume_session_is_the_last_completed_one(when: datetime, session: date) -> None:
    assert last_completed_session(when) == session


T0 = datetime(2026, 11, 21, 12, tzinfo=UTC)


def rec(run: str, conid: int | None, status: Status, minute: int, purpose: str = "bars",
        window: str = "w") -> SummaryRecord:
    return SummaryRecord(run, "hours", purpose, "AAPL", window, status, conid=conid,  # type: ignore[arg-type]
                         recorded_at=T0 + timedelta(minutes=minute))


def test_latest_status_fold_later_success_clears_errors() -> None:
    state = fold("AAPL", "hours", [
        rec("sat", 1, Status.ERR, 0), rec("sat", 2, Status.OK, 1), rec("sat", None, Status.ERR, 2, "symbol"),
        rec("sun", 1, Status.OK, 10), rec("sun", 2, Status.SKIPPED, 11), rec("sun", 3, Status.EMPTY, 12),
    ])
    assert state.symbol_error is None  # cleared by Sunday's outcomes
    assert state.ok_conids("w") == {1, 2} and state.ok_conids("other") == set()
    assert state.failing([Status.ERR]) == (False, set())
    assert state.failing([Status.ERR, Status.EMPTY]) == (False, {3})
    only_symbol = fold("AAPL", "hours", [rec("sat", 1, Status.OK, 0), rec("sat", None, Status.ERR, 1, "symbol")])
    assert only_symbol.failing([Status.ERR]) == (True, set())


def test_outcome_thresholds() -> None:
    limits = OutcomeThresholds(max_err_share=0.1, max_empty_share=0.5)
    assert check_outcome({"OK": 95, "ERR": 5}, limits).passed
    failed = check_outcome({"OK": 5, "ERR": 95}, limits)
    assert not failed.passed and "ERR share 95.0% > 10.0%" in failed.message
    assert not check_outcome({"OK": 1, "EMPTY": 3}, limits).passed
    assert check_outcome({}, limits).passed and check_outcome({"SKIPPED": 10, "ERR": 1}, limits).passed


def test_settings_one_source_config_then_env_then_default() -> None:
    env = {"IB_PORT": "4010", "GHTRADER_IB_MONEYNESS": "0.3", "GHTRADER_IB_EXPIRY_TYPES": "monthly,quarterly"}
    settings = resolve({"port": 4020}, env)
    assert settings.gateway.port == 4020 and settings.discovery.moneyness == 0.3
    assert settings.discovery.expiry_types == ("monthly", "quarterly")
    assert resolve({}, {}).gateway.unreachable_timeout_s < 30
    with pytest.raises(ValueError, match="max_in_flight"):
        resolve({"max_in_flight": 51}, {})
