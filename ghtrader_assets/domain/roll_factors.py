"""Roll-adjustment factors of a continuous main series: the switches of a schedule, their factors from
reference prices of both contracts, the cumulative factors in both directions, and the per-segment
adjustment a read applies. Pure: prices come in as numbers.

A switch opens a segment of the schedule: on trading day D the main contract changes from A to B. Its
reference prices (default `prev_close`, as RQData's prev_close_*): A's and B's closes on the trading day
before D; the alternative `open`: A's and B's opens on D. With pre = A's price and post = B's:
    spread = post - pre            ratio = post / pre
Segments are numbered in time order; switch i opens segment i (segment 0 is the schedule's first).
    adjust "pre"  (anchored to the latest segment, which is unchanged):
        spread: price + sum of spread_j over the switches j after segment k's start (j > k)
        ratio:  price * product of ratio_j over j > k
    adjust "post" (anchored to the first segment, which is unchanged):
        spread: price - sum of spread_j over j <= k
        ratio:  price / product of ratio_j over j <= k
Prices are adjusted; volumes, amount and open interest never are. Ratio factors need positive prices.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date

from ghtrader_assets.domain.calendar import TradingCalendar
from ghtrader_assets.domain.schedule import ScheduleRow

PREV_CLOSE, OPEN = "prev_close", "open"
REFERENCES = (PREV_CLOSE, OPEN)  # the first is the default
ADJUSTS = ("none", "pre", "post")
METHODS = ("spread", "ratio")
# The tick columns that are prices (adjusted); every other value column is left as stored.
PRICE_COLUMNS = ("last_price", "average", "highest", "lowest",
                 *(f"{side}_price{level}" for level in range(1, 6) for side in ("bid", "ask")))


class FactorError(ValueError):
    """Factors that cannot be computed or applied (a missing reference price, a schedule they do not fit)."""


@dataclass(frozen=True)
class Switch:
    """One change of the main contract: on `day` the schedule moves from `from_contract` (the segment
    `from_segment_id`) to `to_contract`, opening segment `segment_id` with hash `schedule_hash`."""

    day: date
    from_contract: str
    to_contract: str
    segment_id: int
    schedule_hash: int
    from_segment_id: int
    from_schedule_hash: int

    def reference_day(self, reference: str, calendar: TradingCalendar) -> date:
        """The trading day whose prices the reference reads: the day before the switch, or the switch day."""
        return calendar.previous_trading_day(self.day) if reference == PREV_CLOSE else self.day


@dataclass(frozen=True)
class RollFactor:
    """One switch under one reference: the two reference prices, the switch's own factors and the cumulative
    factors applied to the prices of the segment it opens (see the module docstring)."""

    switch: Switch
    reference: str
    reference_day: date
    price_from: float
    price_to: float
    pre_spread: float = 0.0  # added under adjust=pre, method=spread
    pre_ratio: float = 1.0  # multiplied under adjust=pre, method=ratio
    post_spread: float = 0.0
    post_ratio: float = 1.0

    @property
    def spread(self) -> float:
        return self.price_to - self.price_from

    @property
    def ratio(self) -> float:
        return self.price_to / self.price_from if self.price_from > 0 else math.nan

    @property
    def finite(self) -> bool:
        return all(math.isfinite(v) and v > 0 for v in (self.price_from, self.price_to))


@dataclass(frozen=True)
class Adjustment:
    """What a read adds (spread) or multiplies by (ratio) for the prices of one segment."""

    add: float = 0.0
    multiply: float = 1.0


def switches(rows: Sequence[ScheduleRow]) -> list[Switch]:
    """The switches of a schedule (rows of one variety, any order): one per segment after the first."""
    out: list[Switch] = []
    previous: ScheduleRow | None = None
    for row in sorted(rows, key=lambda r: r.trading_day):
        if previous is not None and row.segment_id != previous.segment_id:
            out.append(Switch(row.trading_day, previous.main_contract, row.main_contract, row.segment_id,
                              row.schedule_hash, previous.segment_id, previous.schedule_hash))
        previous = row
    return out


def factor(switch: Switch, reference: str, calendar: TradingCalendar,
           prices: Mapping[tuple[str, date], float]) -> RollFactor:
    """The switch's factor under `reference` from `prices[(contract, trading day)]` (closes for prev_close,
    opens for open); a missing price is NaN (the factor is then not finite and cannot be applied)."""
    if reference not in REFERENCES:
        raise FactorError(f"reference must be one of {REFERENCES}, not {reference!r}")
    day = switch.reference_day(reference, calendar)
    return RollFactor(switch, reference, day, prices.get((switch.from_contract, day), math.nan),
                      prices.get((switch.to_contract, day), math.nan))


def with_cumulative(factors: Sequence[RollFactor]) -> list[RollFactor]:
    """The factors of one reference (in switch order) with their cumulative columns filled: pre over the
    later switches, post over this and the earlier ones. A NaN factor makes every cumulative value that
    includes it NaN."""
    ordered = sorted(factors, key=lambda f: f.switch.day)
    out: list[RollFactor] = []
    post_spread, post_ratio = 0.0, 1.0
    for f in ordered:
        post_spread -= f.spread
        post_ratio /= f.ratio
        out.append(replace(f, post_spread=post_spread, post_ratio=post_ratio))
    pre_spread, pre_ratio = 0.0, 1.0
    for i in range(len(out) - 1, -1, -1):
        out[i] = replace(out[i], pre_spread=pre_spread, pre_ratio=pre_ratio)
        pre_spread += out[i].spread
        pre_ratio *= out[i].ratio
    return out


def first_segment(factors: Sequence[RollFactor]) -> Adjustment | None:
    """Helper for segment 0 (no switch opens it): under pre it carries every switch; under post nothing."""
    if not factors:
        return None
    first = min(factors, key=lambda f: f.switch.day)
    return Adjustment(first.pre_spread + first.spread, first.pre_ratio * first.ratio)


def adjustments(rows: Sequence[ScheduleRow], factors: Sequence[RollFactor], adjust: str,
                method: str) -> dict[tuple[int, int], Adjustment]:
    """(segment_id, schedule_hash) -> the adjustment of that segment's prices, for every segment of the
    schedule `rows`, from the factors of one reference. Raises when a switch of the schedule has no factor,
    a factor belongs to no switch, or a factor needed is not finite."""
    if adjust not in ADJUSTS:
        raise FactorError(f"adjust must be one of {ADJUSTS}, not {adjust!r}")
    if method not in METHODS:
        raise FactorError(f"method must be one of {METHODS}, not {method!r}")
    wanted = switches(rows)
    segments = {(r.segment_id, r.schedule_hash) for r in rows}
    if adjust == "none":
        return {key: Adjustment() for key in segments}
    by_switch = {(f.switch.day, f.switch.segment_id, f.switch.schedule_hash): f for f in factors}
    missing = [s for s in wanted if (s.day, s.segment_id, s.schedule_hash) not in by_switch]
    if missing:
        raise FactorError("no roll factor for the switches " + ", ".join(
            f"{s.day} {s.from_contract}->{s.to_contract}" for s in missing[:10]) + ": materialize roll_factors")
    extra = set(by_switch) - {(s.day, s.segment_id, s.schedule_hash) for s in wanted}
    if extra:
        raise FactorError(f"roll factors for switches the schedule does not hold: {sorted(extra)[:10]}")
    bad = [f for f in factors if not f.finite]
    if bad:
        raise FactorError("roll factors without reference prices: " + ", ".join(
            f"{f.switch.day} {f.switch.from_contract}->{f.switch.to_contract} ({f.reference} {f.reference_day})"
            for f in bad[:10]))
    out: dict[tuple[int, int], Adjustment] = {}
    ordered = sorted(factors, key=lambda f: f.switch.day)
    first_rows = sorted(rows, key=lambda r: r.trading_day)
    if first_rows:
        head = (first_rows[0].segment_id, first_rows[0].schedule_hash)
        out[head] = Adjustment() if adjust == "post" or not ordered else first_segment(ordered) or Adjustment()
    for f in ordered:
        key = (f.switch.segment_id, f.switch.schedule_hash)
        out[key] = Adjustment(f.pre_spread, f.pre_ratio) if adjust == "pre" else Adjustment(f.post_spread, f.post_ratio)
    if method == "spread":
        return {k: Adjustment(add=a.add) for k, a in out.items()}
    return {k: Adjustment(multiply=a.multiply) for k, a in out.items()}


def adjust_price(price: float, adjustment: Adjustment) -> float:
    """One price adjusted (what a read does to every price column): price * multiply + add, one of the two
    being the identity."""
    return price * adjustment.multiply + adjustment.add
