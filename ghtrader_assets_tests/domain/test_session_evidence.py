"""Session evidence: outside ticks recurring at the same clock minutes over several days, and the
GHTRADER_SESSION_HISTORY entries that would explain them."""

from __future__ import annotations

from datetime import date, timedelta

from ghtrader_assets.domain.calendar import TradingCalendar
from ghtrader_assets.domain.session_evidence import find_evidence, suggested_changes, suggested_windows
from ghtrader_assets.domain.session_history import SessionHistory, parse_session_file
from ghtrader_assets.domain.sessions import Sessions

DAY = [["09:00:00", "10:15:00"], ["10:30:00", "11:30:00"], ["13:30:00", "15:00:00"]]
NIGHT_2300 = Sessions.parse({"day": DAY, "night": [["21:00:00", "23:00:00"]]})


def calendar() -> TradingCalendar:
    first = date(2024, 1, 1)
    return TradingCalendar.from_flags((first + timedelta(i), (first + timedelta(i)).weekday() < 5) for i in range(90))


def minutes(hh: int, mm_from: int, mm_to: int) -> dict[int, int]:
    return {hh * 60 + m: 2 for m in range(mm_from, mm_to + 1)}


def test_a_later_close_on_several_nights_is_evidence_and_a_stray_tick_is_not() -> None:
    days = calendar().between(date(2024, 2, 5), date(2024, 2, 9))
    outside = {d: minutes(23, 1, 29) for d in days[:4]}
    outside[days[4]] = {12 * 60 + 30: 1, 3 * 60 + 30: 1}  # one day's strays
    [evidence] = find_evidence("DCE.i", outside)
    assert (evidence.first_minute, evidence.last_minute) == (23 * 60 + 1, 23 * 60 + 29)
    assert evidence.days == tuple(days[:4]) and evidence.ticks == 4 * 29 * 2
    assert "23:01 and 23:29:59" in evidence.describe()
    assert find_evidence("DCE.i", outside, min_days=5) == []


def test_the_suggestion_extends_the_adjoining_window_and_restores_the_current_one_after() -> None:
    cal = calendar()
    days = cal.between(date(2024, 2, 5), date(2024, 2, 9))
    [evidence] = find_evidence("DCE.i", {d: minutes(23, 1, 29) for d in days})
    assert suggested_windows(NIGHT_2300, evidence).normalized()[1] == "21:00:00-23:30:00"
    changes = suggested_changes(evidence, NIGHT_2300, cal, through=date(2024, 2, 16))
    assert [(c["effective_from"], c["trading_time"]["night"]) for c in changes] == [
        ("2024-02-05", [["21:00:00", "23:30:00"]]), ("2024-02-12", [["21:00:00", "23:00:00"]])]
    # evidence that lasts through the last day looked at: no end entry
    assert len(suggested_changes(evidence, NIGHT_2300, cal, through=days[-1])) == 1


def test_the_suggested_entries_explain_the_ticks(tmp_path) -> None:
    """Written to the session file, the suggestion makes the history put those nights at 23:30."""
    import json

    cal = calendar()
    days = cal.between(date(2024, 2, 5), date(2024, 2, 9))
    [evidence] = find_evidence("DCE.i", {d: minutes(23, 1, 29) for d in days})
    path = tmp_path / "sessions.json"
    path.write_text(json.dumps({"changes": suggested_changes(evidence, NIGHT_2300, cal, date(2024, 2, 16))}))
    changes, _ = parse_session_file(path.read_text(), str(path))
    history = SessionHistory.build("DCE.i", [(date(2024, 3, 1), {"day": DAY, "night": [["21:00:00", "23:00:00"]]})],
                                   changes=changes)
    assert history.windows(date(2024, 2, 7))[0].normalized()[1] == "21:00:00-23:30:00"
    assert history.windows(date(2024, 2, 13))[0].normalized()[1] == "21:00:00-23:00:00"


def test_minutes_after_midnight_continue_the_night() -> None:
    night_0230 = Sessions.parse({"day": DAY, "night": [["21:00:00", "26:30:00"]]})
    days = calendar().between(date(2024, 2, 5), date(2024, 2, 8))
    outside = {d: {**minutes(2, 31, 59), **{3 * 60: 1}} for d in days}
    [evidence] = find_evidence("SHFE.au", outside)
    assert (evidence.first_minute, evidence.last_minute) == (26 * 60 + 31, 27 * 60)
    assert suggested_windows(night_0230, evidence).normalized()[1] == "21:00:00-27:00:00"


def test_a_span_far_from_every_window_becomes_a_window_of_its_own() -> None:
    days = calendar().between(date(2024, 2, 5), date(2024, 2, 8))
    [evidence] = find_evidence("GFEX.si", {d: minutes(19, 0, 44) for d in days})
    day_only = Sessions.parse({"day": DAY, "night": []})
    assert suggested_windows(day_only, evidence).normalized()[1] == "19:00:00-19:45:00"
