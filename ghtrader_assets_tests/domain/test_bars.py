"""Bar rules: which sizes tile a variety's sessions, and where the ticks of the session margins go."""

import pytest

from ghtrader_assets.domain.bars import BarError, check_tiling, clamps, every_seconds
from ghtrader_assets.domain.sessions import Sessions

SHFE = Sessions.parse({"day": [["09:00:00", "10:15:00"], ["10:30:00", "11:30:00"], ["13:30:00", "15:00:00"]],
                       "night": [["21:00:00", "25:00:00"]]})
CFFEX = Sessions.parse({"day": [["09:30:00", "11:30:00"], ["13:00:00", "15:00:00"]]})
H = 3600 * 10**6
M = 60 * 10**6


def test_sizes_that_join_two_windows_are_refused() -> None:
    for every in ("1m", "5m", "15m", "30m"):
        check_tiling([SHFE], every)
    with pytest.raises(BarError, match="10:15 and after 10:30"):
        check_tiling([SHFE], "1h")
    check_tiling([CFFEX], "1h")  # 11:30 -> 13:00: no hour holds both
    with pytest.raises(BarError, match="every must be one of"):
        every_seconds("2m")


def test_margins_go_to_the_first_and_last_bar_of_their_window() -> None:
    got = {(c.lo, c.hi): c.to for c in clamps([SHFE])}
    assert got[(21 * H - 5 * M, 21 * H)] == 21 * H  # the night's call auction: the 21:00 bar
    assert got[(1 * H, 1 * H + M + 1)] == 1 * H - 1  # after the 01:00 close: the 00:59 bar (close + 60 s included)
    assert got[(15 * H, 15 * H + M + 1)] == 15 * H - 1
    assert got[(10 * H + 30 * M - 5 * M, 10 * H + 30 * M)] == 10 * H + 30 * M


def test_a_margin_across_midnight_is_split() -> None:
    late = Sessions.parse({"day": [["09:00:00", "15:00:00"]], "night": [["21:00:00", "24:00:00"]]})
    pieces = [c for c in clamps([late]) if c.to == 24 * H - 1]
    assert [(c.lo, c.hi) for c in pieces] == [(0, M + 1)]
    early = Sessions.parse({"day": [["00:00:00", "15:00:00"]]})
    pieces = [c for c in clamps([early]) if c.to == 0]
    assert [(c.lo, c.hi) for c in pieces] == [(24 * H - 5 * M, 24 * H)]
