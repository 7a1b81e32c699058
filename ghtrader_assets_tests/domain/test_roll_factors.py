"""The roll-factor rules on the worked example of PRD.md section 4 (hand-computed numbers, not the rules' own)."""

from datetime import date, timedelta

import pytest

from ghtrader_assets.domain.calendar import TradingCalendar
from ghtrader_assets.domain.roll_factors import (
    OPEN,
    PREV_CLOSE,
    Adjustment,
    FactorError,
    adjust_price,
    adjustments,
    factor,
    switches,
    with_cumulative,
)
from ghtrader_assets.domain.schedule import build_schedule

FIRST = date(2024, 1, 2)
CAL = TradingCalendar.from_flags((FIRST + timedelta(i), (FIRST + timedelta(i)).weekday() < 5) for i in range(90))
DAYS = CAL.between(date(2024, 1, 10), date(2024, 2, 28))
ROLL_1, ROLL_2 = date(2024, 1, 17), date(2024, 2, 21)
ROWS = build_schedule("SHFE.cu", {d: "SHFE.cu2402" if d < ROLL_1 else "SHFE.cu2403" if d < ROLL_2 else "SHFE.cu2404"
                                  for d in DAYS})
CLOSES = {("SHFE.cu2402", date(2024, 1, 16)): 68000.0, ("SHFE.cu2403", date(2024, 1, 16)): 68120.0,
          ("SHFE.cu2403", date(2024, 2, 20)): 68500.0, ("SHFE.cu2404", date(2024, 2, 20)): 68560.0}
OPENS = {("SHFE.cu2402", ROLL_1): 68050.0, ("SHFE.cu2403", ROLL_1): 68150.0,
         ("SHFE.cu2403", ROLL_2): 68520.0, ("SHFE.cu2404", ROLL_2): 68600.0}


def factors(reference=PREV_CLOSE, prices=CLOSES):
    return with_cumulative([factor(s, reference, CAL, prices) for s in switches(ROWS)])


def segment(day: date) -> tuple[int, int]:
    row = next(r for r in ROWS if r.trading_day == day)
    return row.segment_id, row.schedule_hash


def test_switches_name_both_segments() -> None:
    found = switches(ROWS)
    assert [(s.day, s.from_contract, s.to_contract) for s in found] == [
        (ROLL_1, "SHFE.cu2402", "SHFE.cu2403"), (ROLL_2, "SHFE.cu2403", "SHFE.cu2404")]
    assert (found[1].from_segment_id, found[1].segment_id) == (20240117, 20240221)
    assert found[0].reference_day(PREV_CLOSE, CAL) == date(2024, 1, 16)
    assert found[0].reference_day(OPEN, CAL) == ROLL_1


def test_worked_example_prev_close() -> None:
    first, second = factors()
    assert (first.spread, second.spread) == (120.0, 60.0)
    assert first.ratio == 68120 / 68000 and second.ratio == 68560 / 68500
    assert (first.pre_spread, second.pre_spread) == (60.0, 0.0)
    assert (first.post_spread, second.post_spread) == (-120.0, -180.0)
    pre = adjustments(ROWS, [first, second], "pre", "spread")
    assert pre[segment(date(2024, 1, 16))] == Adjustment(add=180.0)
    assert pre[segment(ROLL_1)] == Adjustment(add=60.0)
    assert pre[segment(ROLL_2)] == Adjustment(add=0.0)
    # the PRD's ticks: 68,010 on cu2402 and 68,600 on cu2404
    assert adjust_price(68010.0, pre[segment(date(2024, 1, 16))]) == 68190.0
    post = adjustments(ROWS, [first, second], "post", "spread")
    assert adjust_price(68600.0, post[segment(ROLL_2)]) == 68420.0
    assert post[segment(date(2024, 1, 16))] == Adjustment(add=0.0)
    ratio_pre = adjustments(ROWS, [first, second], "pre", "ratio")
    assert adjust_price(68010.0, ratio_pre[segment(date(2024, 1, 16))]) == pytest.approx(68189.69357492487, rel=1e-14)
    assert adjust_price(68500.0, ratio_pre[segment(ROLL_1)]) == pytest.approx(68560.0, rel=1e-14)
    ratio_post = adjustments(ROWS, [first, second], "post", "ratio")
    assert adjust_price(68600.0, ratio_post[segment(ROLL_2)]) == pytest.approx(68419.22518501568, rel=1e-14)


def test_open_reference_reads_the_switch_day_opens() -> None:
    first, second = factors(OPEN, OPENS)
    assert (first.price_from, first.price_to, first.spread) == (68050.0, 68150.0, 100.0)
    assert (second.spread, first.pre_spread) == (80.0, 80.0)


def test_a_missing_price_is_never_applied() -> None:
    partial = dict(CLOSES)
    del partial[("SHFE.cu2404", date(2024, 2, 20))]
    found = factors(prices=partial)
    assert not found[1].finite and found[0].finite
    with pytest.raises(FactorError, match="without reference prices"):
        adjustments(ROWS, found, "pre", "spread")
    assert adjustments(ROWS, found, "none", "spread")[segment(ROLL_2)] == Adjustment()


def test_factors_must_fit_the_schedule() -> None:
    first, second = factors()
    with pytest.raises(FactorError, match="no roll factor"):
        adjustments(ROWS, [first], "pre", "ratio")
    moved = build_schedule("SHFE.cu", {d: "SHFE.cu2402" if d < ROLL_1 else "SHFE.cu2404" for d in DAYS})
    with pytest.raises(FactorError):
        adjustments(moved, [first, second], "post", "spread")
    with pytest.raises(FactorError, match="adjust must be"):
        adjustments(ROWS, [first, second], "forward", "spread")
