"""The chain's download thread opens a fresh TqSdk session after SESSION_DAYS days or SESSION_TICKS ticks
(a session keeps what it received). A stand-in at our own interface (the session factory) counts them."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl

from ghtrader_assets.futures.pipeline import _Downloader


class CountingSession:
    opened = closed = 0

    def __init__(self, rows: int) -> None:
        self.rows = rows
        CountingSession.opened += 1

    def ticks(self, contract: str, day: date) -> pl.DataFrame:
        return pl.DataFrame({"datetime_ns": list(range(self.rows))})

    def close(self) -> None:
        CountingSession.closed += 1


def sessions_for(days: int, rows: int) -> tuple[int, int]:
    CountingSession.opened = CountingSession.closed = 0
    jobs = [("SHFE.cu2402", date(2024, 1, 2) + timedelta(days=i)) for i in range(days)]
    downloader = _Downloader(lambda: CountingSession(rows), jobs, ahead=2)
    answers = [downloader.next(block=True) for _ in jobs]
    downloader.stop()
    assert all(a.height == rows for a in answers)
    return CountingSession.opened, CountingSession.closed


def test_a_fresh_session_every_session_days_at_low_density() -> None:
    days = 2 * _Downloader.SESSION_DAYS + 1
    opened, closed = sessions_for(days, rows=100)
    # one factory call; the client reopens itself after each close (TqSdkClient.api() logs in again)
    assert opened == 1 and closed == 2 + 1


def test_a_fresh_session_after_session_ticks_at_real_density() -> None:
    rows = _Downloader.SESSION_TICKS // 4  # four days fill a session
    opened, closed = sessions_for(10, rows)
    assert opened == 1 and closed == 2 + 1  # after day 4 and day 8, and at the end
