"""The ledger's rules without Dagster or QuestDB: each day's state, coverage, fills and the daily update."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

from ghtrader_assets.domain.calendar import CST, TradingCalendar
from ghtrader_assets.domain.ledger import (
    ALL_ASSETS,
    REBUILD_ASSETS,
    DayState,
    DayStats,
    IndexEntry,
    NoDataRecord,
    VarietyFacts,
    Verification,
    classify,
    compact_ranges,
    coverage,
    daily_plan,
    fill_requests,
)
from ghtrader_assets.domain.schedule import build_schedule

V = "SHFE.cu"
FIRST = date(2024, 3, 4)  # a Monday
UPDATE = time(18, 0)


def calendar() -> TradingCalendar:
    first = date(2024, 2, 1)
    return TradingCalendar.from_flags((first + timedelta(i), (first + timedelta(i)).weekday() < 5) for i in range(90))


CAL = calendar()
DAYS = CAL.between(FIRST, date(2024, 3, 15))  # two weeks
ROLL = date(2024, 3, 11)
SCHEDULE = {r.trading_day: r for r in build_schedule(V, {d: "SHFE.cu2404" if d < ROLL else "SHFE.cu2405" for d in DAYS})}
STORED_AT = datetime(2024, 3, 20, tzinfo=timezone.utc)


def at(day: date, hh: int = 19) -> datetime:
    return datetime.combine(day, time(hh, 0), CST)


def entry(day: date, rows: int = 100, final: bool = True, contract: str | None = None, session: int = 7) -> IndexEntry:
    row = SCHEDULE[day]
    return IndexEntry(day, DayStats(rows_total=rows), contract or row.main_contract, row.segment_id, row.schedule_hash,
                      session, final, STORED_AT)


def verified(day: date, ok: bool = True) -> Verification:
    return Verification(day, STORED_AT + timedelta(seconds=1), ok, "" if ok else "row_hash_sum index=1 stored=2")


def facts(**kw) -> VarietyFacts:
    base = dict(variety=V, first_day=FIRST, schedule=SCHEDULE, index={d: entry(d) for d in DAYS},
                verifications={d: verified(d) for d in DAYS}, schedule_refreshed_at=at(DAYS[-1], 20),
                session_hash=lambda d: 7)
    return VarietyFacts(**{**base, **kw})


def test_a_stored_verified_day_is_complete_and_one_never_verified_is_unverified() -> None:
    f = facts(verifications={})
    assert classify(facts(), DAYS[0], CAL, at(DAYS[-1])).state == DayState.COMPLETE
    s = classify(f, DAYS[0], CAL, at(DAYS[-1]))
    assert s.state == DayState.UNVERIFIED and s.assets == ()


def test_nothing_stored_is_missing_and_needs_the_whole_chain() -> None:
    index = {d: entry(d) for d in DAYS if d != DAYS[3]}
    s = classify(facts(index=index), DAYS[3], CAL, at(DAYS[-1]))
    assert (s.state, s.assets) == (DayState.MISSING, ALL_ASSETS)
    unscheduled = classify(facts(schedule={}), DAYS[3], CAL, at(DAYS[-1]))
    assert unscheduled.state == DayState.MISSING and "schedule" in unscheduled.reason


def test_a_revision_makes_the_day_stale_with_what_to_rebuild() -> None:
    # built for the old contract: the whole chain again
    moved = {**{d: entry(d) for d in DAYS}, ROLL: entry(ROLL, contract="SHFE.cu2404")}
    s = classify(facts(index=moved), ROLL, CAL, at(DAYS[-1]))
    assert (s.state, s.cause, s.assets) == (DayState.STALE, "schedule", ALL_ASSETS)
    # same contract, another segment: cut main_l5 again from the stored raw day, no download
    row = SCHEDULE[ROLL]
    other_segment = IndexEntry(ROLL, DayStats(rows_total=100), row.main_contract, row.segment_id - 1, row.schedule_hash,
                               7, True, STORED_AT)
    s = classify(facts(index={**moved, ROLL: other_segment}), ROLL, CAL, at(DAYS[-1]))
    assert (s.state, s.assets) == (DayState.STALE, REBUILD_ASSETS)


def test_other_session_windows_stale_only_main_l5() -> None:
    s = classify(facts(session_hash=lambda d: 8 if d == DAYS[2] else 7), DAYS[2], CAL, at(DAYS[-1]))
    assert (s.state, s.cause, s.assets) == (DayState.STALE, "sessions", REBUILD_ASSETS)


def test_an_unfinished_day_is_stale_once_it_has_closed() -> None:
    index = {**{d: entry(d) for d in DAYS}, DAYS[-1]: entry(DAYS[-1], final=False)}
    assert classify(facts(index=index), DAYS[-1], CAL, at(DAYS[-1], 15)).state == DayState.COMPLETE
    s = classify(facts(index=index), DAYS[-1], CAL, at(DAYS[-1], 19))
    assert (s.state, s.cause, s.assets) == (DayState.STALE, "unfinished", ALL_ASSETS)


def test_a_failed_verification_or_lost_rows_make_the_day_stale() -> None:
    s = classify(facts(verifications={DAYS[1]: verified(DAYS[1], ok=False)}), DAYS[1], CAL, at(DAYS[-1]))
    assert (s.state, s.cause, s.assets) == (DayState.STALE, "verification", ALL_ASSETS)
    # a verification older than the row (rebuilt since) does not count
    old = Verification(DAYS[1], STORED_AT - timedelta(days=1), False, "x")
    assert classify(facts(verifications={DAYS[1]: old}), DAYS[1], CAL, at(DAYS[-1])).state == DayState.UNVERIFIED
    counted = {d: 100 for d in DAYS if d != DAYS[4]}  # rows of one day renamed away by hand
    s = classify(facts(stored_rows=counted), DAYS[4], CAL, at(DAYS[-1]))
    assert (s.state, s.cause) == (DayState.STALE, "rows") and "100 rows, 0 are stored" in s.reason


def test_no_data_days_are_retried_when_due_and_kept_when_permanent() -> None:
    day = DAYS[2]
    empty = {**{d: entry(d) for d in DAYS}, day: entry(day, rows=0)}
    later = NoDataRecord("SHFE.cu2404", day, "retrying", 2, at(DAYS[-1]) + timedelta(days=1))
    due = NoDataRecord("SHFE.cu2404", day, "retrying", 2, at(DAYS[-1]) - timedelta(hours=1))
    gone = NoDataRecord("SHFE.cu2404", day, "permanent", 7, None, "permanent: empty after 7 answers")
    assert classify(facts(index=empty, no_data={day: later}), day, CAL, at(DAYS[-1])).assets == ()
    s = classify(facts(index=empty, no_data={day: due}), day, CAL, at(DAYS[-1]))
    assert (s.state, s.assets) == (DayState.NO_DATA_RETRYING, ALL_ASSETS)
    assert classify(facts(index=empty, no_data={day: gone}), day, CAL, at(DAYS[-1])).state == DayState.NO_DATA_PERMANENT
    # a record of a contract the day is no longer scheduled for is not the day's
    old = NoDataRecord("SHFE.cu2312", day, "retrying", 1, None)
    assert classify(facts(index=empty, no_data={day: old}), day, CAL, at(DAYS[-1])).state == DayState.MISSING


def test_coverage_counts_and_lists_gaps_as_ranges() -> None:
    index = {d: entry(d) for d in DAYS if d not in (DAYS[2], DAYS[3], DAYS[4], DAYS[8])}
    cov = coverage(facts(index=index), CAL, date(2024, 2, 26), DAYS[-1], at(DAYS[-1]))
    assert cov.not_listed == 5 and cov.expected == len(DAYS)
    assert cov.count(DayState.MISSING) == 4 and not cov.clean
    assert cov.summary()["missing_days"] == [f"{DAYS[2]}..{DAYS[4]}", f"{DAYS[8]}"]
    assert compact_ranges([DAYS[4], DAYS[5]], DAYS) == [f"{DAYS[4]}..{DAYS[5]}"]


def test_fills_are_range_runs_that_skip_complete_days() -> None:
    index = {d: entry(d) for d in DAYS if d not in (DAYS[1], DAYS[2], DAYS[6])}
    index[DAYS[7]] = entry(DAYS[7], session=9)  # stale sessions: main_l5 + day_index only
    cov = coverage(facts(index=index), CAL, FIRST, DAYS[-1], at(DAYS[-1]))
    runs = fill_requests(cov.statuses)
    assert [(r.first, r.last, r.assets) for r in runs] == [
        (DAYS[1], DAYS[2], ALL_ASSETS), (DAYS[6], DAYS[6], ALL_ASSETS), (DAYS[7], DAYS[7], REBUILD_ASSETS)]
    assert [r.days for r in fill_requests(cov.statuses, max_days=1)] == [1, 1, 1, 1]


def test_daily_plan_new_day_schedule_first_and_old_stale_days() -> None:
    now = at(DAYS[-1], 19)
    # the schedule was refreshed before the last day's update time: main_schedule first, ticks wait
    stale_schedule = facts(schedule_refreshed_at=at(DAYS[-2], 20))
    plan = daily_plan([stale_schedule], CAL, now, UPDATE, FIRST, 5)
    assert plan.schedule == (V,) and plan.ticks == ()
    # the new day is missing; an old stale day (a revision) is requested whatever its age; an old gap is not
    index = {d: entry(d) for d in DAYS if d not in (DAYS[-1], DAYS[0])}
    index[DAYS[1]] = entry(DAYS[1], contract="SHFE.cu2312")
    plan = daily_plan([facts(index=index)], CAL, now, UPDATE, FIRST, 5)
    assert plan.schedule == () and plan.due == tuple(DAYS[-5:])
    assert [(s.day, s.state) for s in plan.ticks] == [(DAYS[1], DayState.STALE), (DAYS[-1], DayState.MISSING)]
    # before the update time the day is not due yet
    assert daily_plan([facts(index=index)], CAL, at(DAYS[-1], 17), UPDATE, FIRST, 5).due[-1] == DAYS[-2]


def test_a_variety_without_a_window_asks_for_its_schedule() -> None:
    plan = daily_plan([facts(first_day=None, schedule={}, index={})], CAL, at(DAYS[-1]), UPDATE, FIRST, 5)
    assert plan.schedule == (V,)
