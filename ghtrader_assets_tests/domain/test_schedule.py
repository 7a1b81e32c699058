"""Main schedule rules: as-of events, segments, stable hashes, the open-interest rule."""

from datetime import date

import pytest

from ghtrader_assets.domain.schedule import (
    ScheduleError,
    build_schedule,
    day_contracts_from_change_points,
    day_contracts_from_events,
    day_contracts_from_open_interest,
    disagreements,
    roll_days,
)

DAYS = [date(2024, 1, d) for d in (2, 3, 4, 5, 8, 9, 10, 11, 12, 15)]


def test_events_map_as_of_including_non_trading_days() -> None:
    events = [(date(2024, 1, 6), "SHFE.cu2403"), (date(2024, 1, 11), "SHFE.cu2404")]  # a Saturday event
    got = day_contracts_from_events(DAYS, "SHFE.cu2402", events)
    assert got[date(2024, 1, 5)] == "SHFE.cu2402"
    assert got[date(2024, 1, 8)] == "SHFE.cu2403"
    assert got[date(2024, 1, 11)] == "SHFE.cu2404"
    with pytest.raises(ScheduleError):
        day_contracts_from_change_points(DAYS, [(date(2024, 1, 3), "SHFE.cu2402")])


def test_segments_and_hash_are_stable_when_the_window_grows() -> None:
    mapping = day_contracts_from_events(DAYS, "SHFE.cu2402", [(date(2024, 1, 8), "SHFE.cu2403")])
    short = build_schedule("SHFE.cu", {d: c for d, c in mapping.items() if d <= date(2024, 1, 9)})
    full = build_schedule("SHFE.cu", mapping)
    assert full[: len(short)] == short
    assert [r.segment_id for r in full[:4]] == [20240102] * 4 and full[4].segment_id == 20240108
    assert len({r.schedule_hash for r in full}) == 2
    assert roll_days(full) == [(date(2024, 1, 2), "SHFE.cu2402"), (date(2024, 1, 8), "SHFE.cu2403")]


def test_open_interest_rule_switches_next_day_and_never_back() -> None:
    oi = {
        DAYS[0]: {"SHFE.cu2402": 10, "SHFE.cu2403": 5},
        DAYS[1]: {"SHFE.cu2402": 8, "SHFE.cu2403": 9},  # 2403 leads at close -> main from DAYS[2]
        DAYS[2]: {"SHFE.cu2402": 20, "SHFE.cu2403": 9},  # 2402 leads again: never switch back
        DAYS[3]: {"SHFE.cu2403": 9, "SHFE.cu2404": 12},
    }
    got = day_contracts_from_open_interest(DAYS[:5], oi)
    assert [got[d] for d in DAYS[:5]] == ["SHFE.cu2402", "SHFE.cu2402", "SHFE.cu2403", "SHFE.cu2403", "SHFE.cu2404"]


def test_disagreements() -> None:
    a = {DAYS[0]: "SHFE.cu2402", DAYS[1]: "SHFE.cu2402"}
    b = {DAYS[0]: "SHFE.cu2402", DAYS[1]: "SHFE.cu2403"}
    assert disagreements(a, b) == [(DAYS[1], "SHFE.cu2402", "SHFE.cu2403")]
