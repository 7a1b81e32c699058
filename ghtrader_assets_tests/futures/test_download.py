"""The download process (futures.download) at our own interface: a stand-in login that refuses work after
close() and counts its logins shows a fresh login after `renew_days` days or `renew_ticks` ticks; errors
arrive as that day's outcome; the process does not outlive its parent."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from ghtrader_assets.futures.download import DownloadFailed, DownloadProcess

JOBS = [("SHFE.cu2402", date(2024, 1, 2) + timedelta(days=i)) for i in range(9)]


class StandIn:
    """One login of a provider: answers `rows` ticks a day until closed, then refuses (a closed TqApi cannot
    be used again, so the download must log in afresh)."""

    def __init__(self, rows: int, fail_on: date | None = None) -> None:
        self.rows, self.fail_on, self.closed = rows, fail_on, False

    def ticks(self, contract: str, day: date) -> pl.DataFrame:
        if self.closed:
            raise RuntimeError("this login was closed")
        if day == self.fail_on:
            raise TimeoutError(f"tick download of {contract} {day} did not finish")
        return pl.DataFrame({"datetime_ns": list(range(self.rows)), "day": [day.isoformat()] * self.rows})

    def close(self) -> None:
        self.closed = True


def download(rows: int, renew_days: int, renew_ticks: int, fail_on: date | None = None) -> tuple[list, list[int]]:
    process = DownloadProcess(functools.partial(StandIn, rows, fail_on), JOBS, ahead=2,
                              renew_days=renew_days, renew_ticks=renew_ticks)
    try:
        answers = [process.next(block=True) for _ in JOBS]
    finally:
        process.stop()
    return answers, process.logins


def test_a_fresh_login_after_renew_days_days() -> None:
    answers, logins = download(rows=100, renew_days=4, renew_ticks=10**9)
    assert [a["day"][0] for a in answers] == [d.isoformat() for _, d in JOBS]  # in order, whole
    assert logins == [1, 1, 1, 1, 2, 2, 2, 2, 3]


def test_a_fresh_login_after_renew_ticks_ticks() -> None:
    _, logins = download(rows=300, renew_days=100, renew_ticks=1000)  # four days fill a login
    assert logins == [1, 1, 1, 1, 2, 2, 2, 2, 3]


def test_a_failed_day_is_its_outcome_and_the_others_go_on() -> None:
    answers, _ = download(rows=10, renew_days=100, renew_ticks=10**9, fail_on=JOBS[3][1])
    assert isinstance(answers[3], DownloadFailed) and str(answers[3]).startswith("TimeoutError: tick download")
    assert all(isinstance(a, pl.DataFrame) and a.height == 10 for i, a in enumerate(answers) if i != 3)


ORPHAN = """
import functools, sys, time
from datetime import date
sys.path.insert(0, sys.argv[1])
from ghtrader_assets.futures.download import DownloadProcess
from ghtrader_assets_tests.futures.test_download import JOBS, StandIn
process = DownloadProcess(functools.partial(StandIn, 10), JOBS * 1000, ahead=1, renew_days=100, renew_ticks=10**9)
print(process.pid, flush=True)
time.sleep(600)
"""


def test_a_killed_run_leaves_no_download_process() -> None:
    root = str(Path(__file__).resolve().parents[2])
    run = subprocess.Popen([sys.executable, "-c", ORPHAN, root], stdout=subprocess.PIPE, text=True)
    child = int(run.stdout.readline())
    os.kill(run.pid, signal.SIGKILL)
    run.wait(timeout=30)
    deadline = time.monotonic() + 20  # on a machine twice as slow, well within
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.2)
    assert not _alive(child), f"download process {child} outlived its killed parent"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}/stat").exists() else "X"
    return state not in ("Z", "X")  # a zombie (not yet reaped by init) has ended
