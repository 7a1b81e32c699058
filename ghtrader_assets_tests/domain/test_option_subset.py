"""Minutes subset: expired expiries removed first, first E expiries, K strikes per right."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from ghtrader_assets.domain.contracts_cache import OptionContract
from ghtrader_assets.domain.expiry import ExpiryRule
from ghtrader_assets.domain.option_subset import is_expired, median_strike, near_the_money, unexpired

EXPIRIES = (date(2026, 11, 13), date(2026, 11, 20), date(2026, 11, 27), date(2026, 12, 4), date(2026, 12, 18))
STRIKES = (90.0, 95.0, 100.0, 105.0, 110.0, 115.0)


def chain() -> list[OptionContract]:
    out = []
    for e, expiry in enumerate(EXPIRIES):
        for right in ("C", "P"):
            for s, strike in enumerate(STRIKES):
                out.append(OptionContract(1000 * e + 100 * (right == "P") + s + 1, "XYZ", expiry, right, strike))
    return out


def test_expiry_day_is_served_until_its_end_in_new_york() -> None:
    contract = OptionContract(1, "XYZ", date(2026, 11, 20), "C", 100.0)
    assert not is_expired(contract, datetime(2026, 11, 20, 21, 30, tzinfo=UTC))  # 16:30 New York: the capture
    assert not is_expired(contract, datetime(2026, 11, 21, 4, 59, tzinfo=UTC))  # 23:59
    assert is_expired(contract, datetime(2026, 11, 21, 5, 0, tzinfo=UTC))  # midnight
    assert is_expired(contract, datetime(2026, 11, 20, 21, 0, tzinfo=UTC), ExpiryRule(served_hours_after_close=0))
    assert len(unexpired(chain(), datetime(2026, 11, 20, 22, 0, tzinfo=UTC))) == 4 * 12
    assert len(unexpired(chain(), datetime(2026, 11, 21, 11, 0, tzinfo=UTC))) == 3 * 12


def test_expired_expiries_are_removed_before_taking_the_first_e() -> None:
    as_of = datetime(2026, 11, 21, 11, 0, tzinfo=UTC)  # Saturday: the 11-13 and 11-20 expiries are gone
    subset = near_the_money(chain(), as_of, reference_price=101.0, expiries=2, strikes_per_right=3)
    assert {c.expiry for c in subset} == {date(2026, 11, 27), date(2026, 12, 4)}
    assert len(subset) == 2 * 2 * 3
    for right in ("C", "P"):
        assert sorted({c.strike for c in subset if c.right == right}) == [95.0, 100.0, 105.0]


def test_ties_take_the_lower_strike_and_output_is_sorted() -> None:
    as_of = datetime(2026, 11, 1, tzinfo=UTC)
    subset = near_the_money(chain(), as_of, reference_price=102.5, expiries=1, strikes_per_right=1)
    assert [(c.right, c.strike) for c in subset] == [("C", 100.0), ("P", 100.0)]
    assert list(subset) == sorted(subset, key=lambda c: (c.expiry, c.right, c.strike))


def test_k_larger_than_chain_takes_all_strikes() -> None:
    subset = near_the_money(chain(), datetime(2026, 11, 1, tzinfo=UTC), 100.0, expiries=9, strikes_per_right=50)
    assert len(subset) == len(chain())


def test_median_strike_fallback_and_validation() -> None:
    assert median_strike(chain()) == 102.5
    with pytest.raises(ValueError):
        median_strike([])
    with pytest.raises(ValueError):
        near_the_money(chain(), datetime(2026, 11, 1, tzinfo=UTC), 100.0, expiries=0, strikes_per_right=1)
