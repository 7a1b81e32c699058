"""Expiry rules: until when IB serves an option, the daily capture set, and what expiry truncated."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from ghtrader_assets.domain.contracts_cache import OptionContract
from ghtrader_assets.domain.expiry import (
    ExpiryRule,
    capture_set,
    coverage,
    last_session,
    next_weekend_run,
    served_until,
    sessions_between,
)
from ghtrader_assets.domain.us_sessions import NEW_YORK, parse_end

RULE = ExpiryRule()


def opt(conid: int, expiry: date) -> OptionContract:
    return OptionContract(conid, "SPY", expiry, "C", 500.0)


def test_served_until_the_end_of_the_expiry_day_and_last_session_before_a_closure() -> None:
    assert served_until(date(2026, 11, 20), RULE) == datetime(2026, 11, 21, 0, 0, tzinfo=NEW_YORK)
    assert served_until(date(2026, 11, 20), ExpiryRule(served_hours_after_close=0)).hour == 16
    assert last_session(date(2026, 11, 20)) == date(2026, 11, 20)
    assert last_session(date(2026, 11, 26)) == date(2026, 11, 25)  # Thanksgiving
    assert sessions_between(date(2026, 11, 20), date(2026, 11, 27)) == 4  # 23, 24, 25, 27


def test_next_weekend_run_is_the_following_saturday_six_new_york() -> None:
    friday = datetime(2026, 11, 20, 21, 30, tzinfo=UTC)
    assert next_weekend_run(friday) == datetime(2026, 11, 21, 6, 0, tzinfo=NEW_YORK)
    at_run = datetime(2026, 11, 21, 6, 0, tzinfo=NEW_YORK)
    assert next_weekend_run(at_run) == datetime(2026, 11, 28, 6, 0, tzinfo=NEW_YORK)


def test_capture_takes_what_stops_being_served_before_the_weekend_run_or_within_the_lead() -> None:
    monday = datetime(2026, 11, 16, 16, 30, tzinfo=NEW_YORK)
    chain = [opt(1, date(2026, 11, 13)), opt(2, date(2026, 11, 16)), opt(3, date(2026, 11, 18)),
             opt(4, date(2026, 11, 20)), opt(5, date(2026, 11, 23)), opt(6, date(2026, 12, 18))]
    assert [c.conid for c in capture_set(chain, monday, RULE)] == [2, 3, 4]  # 1 is gone, 5 is the weekend's
    assert [c.conid for c in capture_set(chain, monday, ExpiryRule(capture_lead_days=7))] == [2, 3, 4, 5]


def test_coverage_counts_contracts_complete_only_before_their_last_session() -> None:
    saturday = datetime(2026, 11, 28, 6, 0, tzinfo=NEW_YORK)
    cov = coverage([(1, date(2026, 11, 27), date(2026, 11, 20)),  # weekend only: 4 sessions lost
                    (2, date(2026, 11, 27), date(2026, 11, 27)),  # captured on its expiry day
                    (3, date(2026, 11, 25), None),  # never complete
                    (4, date(2026, 12, 4), date(2026, 11, 27))], saturday, RULE)  # still served
    assert (cov.followed, cov.expired, cov.truncated, cov.lost_sessions) == (4, 3, 2, 4)
    assert cov.truncated_conids == (1, 3)


def test_rule_and_end_validation() -> None:
    with pytest.raises(ValueError, match="capture_time"):
        ExpiryRule(capture_time="4pm")
    with pytest.raises(ValueError, match="served_hours_after_close"):
        ExpiryRule(served_hours_after_close=9)
    assert parse_end("2026-11-20T16:30") == datetime(2026, 11, 20, 16, 30, tzinfo=NEW_YORK)  # no zone: New York
    assert parse_end("2026-11-20T21:30+00:00") == datetime(2026, 11, 20, 21, 30, tzinfo=UTC)
