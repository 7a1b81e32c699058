"""The tick download in a process of its own: its TqSdk logins and its decoding of the vendor's DIFF stream
(pure Python, the chain's critical path) never share a GIL with the run's store work and Dagster's events.

The child downloads the (contract, trading day)s in order and hands each day over as an Arrow IPC file in a
temporary directory of the run, its path and outcome through a bounded queue: at most `ahead` days wait, so
memory does not grow with the range. (Files: measured 15 ms per real-density day for the run's process to
take one, against 49 ms for the same frame pickled through the queue.) A login is renewed after
`renew_days` days or `renew_ticks` ticks (TqApi keeps some of what it received). The child exits when the
run stops it, when it has sent every day, and within half a second of its parent's death (the end of a pipe
only the parent holds), so a killed run leaves no download process behind; a temp directory a killed run
left is removed by the next download.

The child is forked from multiprocessing's fork server, started once per run process with tqsdk imported
(about 4 CPU-seconds, paid once however many ranges the process downloads) and nothing else: no polars,
no psycopg, no thread of ours, so nothing a fork could leave half-locked. TqSdk's endpoint variables
(TQ_*) are handed to each child as they are when its range starts.
"""

from __future__ import annotations

import glob
import logging
import multiprocessing
import multiprocessing.connection
import os
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol

import polars as pl

TMP_PREFIX = "ghtrader-ticks-"
_END = "end"
_POLL_S = 0.2
_ENDPOINT_PREFIX = "TQ_"


class TickSource(Protocol):
    """A market-data login: what the download needs of io.tqsdk_client.TqSdkClient."""

    def ticks(self, contract: str, day: date) -> pl.DataFrame: ...

    def close(self) -> None: ...


class DownloadFailed(RuntimeError):
    """A day the download process could not deliver; the message names the error as the child saw it."""


class DownloadProcessError(RuntimeError):
    """The download process ended before it had sent every day (killed, or failed to start)."""


@dataclass(frozen=True)
class Answer:
    """One day as the child hands it over: a file with the frame, or the error."""

    index: int
    path: str | None
    error: str
    login: int  # which login served it: 1 for the first, +1 at every renewal
    rows: int


class DownloadProcess:
    """Downloads `jobs` ((contract, day)s) in order in a child process; `next()` returns each day's frame,
    or a DownloadFailed with the child's error, in order. `new_client` must be picklable (the child calls
    it for each login, e.g. functools.partial(TqSdkClient, settings)); TqSdk's endpoint variables (TQ_*)
    reach the child through its environment."""

    def __init__(self, new_client: Callable[[], TickSource], jobs: Sequence[tuple[str, date]], ahead: int,
                 renew_days: int, renew_ticks: int) -> None:
        _remove_orphan_dirs()
        ctx = _context()
        self.jobs = list(jobs)
        self.logins: list[int] = []  # the login of each day handed over, in order
        self._dir = tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-")
        self._queue = ctx.Queue(maxsize=max(1, ahead))
        self._logs = ctx.Queue()  # the child's warnings, logged again here (where the run's log handlers are)
        self._stop = ctx.Event()
        self._done = 0
        alive, self._alive = ctx.Pipe(duplex=False)  # the child sees EOF on `alive` when this process is gone
        endpoints = {k: v for k, v in os.environ.items() if k.startswith(_ENDPOINT_PREFIX)}
        self._process = ctx.Process(
            target=_serve, name="tqsdk-download", daemon=True,
            args=(new_client, self.jobs, self._dir, self._queue, self._logs, self._stop, alive, endpoints,
                  renew_days, renew_ticks))
        self._process.start()
        alive.close()

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def next(self, block: bool, wait_s: float = 0.0) -> pl.DataFrame | DownloadFailed | None:
        """The next day's answer; None (with block=False) when it has not arrived within `wait_s` seconds."""
        deadline = None if block else time.monotonic() + wait_s
        while True:
            self._relay_logs()
            timeout = _POLL_S if deadline is None else min(_POLL_S, deadline - time.monotonic())
            try:
                item = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
            except queue.Empty:
                if not self._process.is_alive() and self._queue.empty():
                    raise DownloadProcessError(f"the download process ended (exit code {self._process.exitcode}) "
                                               f"after {self._done} of {len(self.jobs)} days") from None
                if deadline is not None and time.monotonic() >= deadline:
                    return None
                continue
            if item == _END:
                raise DownloadProcessError(f"the download process stopped after {self._done} of {len(self.jobs)} days")
            self._relay_logs()
            self._done += 1
            self.logins.append(item.login)
            if item.path is None:
                return DownloadFailed(item.error)
            try:
                return pl.read_ipc(item.path)
            finally:
                os.remove(item.path)

    def _relay_logs(self) -> None:
        while True:
            try:
                level, name, message = self._logs.get_nowait()
            except (queue.Empty, OSError, ValueError):
                return
            logging.getLogger(name).log(level, message)

    def stop(self) -> None:
        """Stop the child (it finishes the request in hand), then remove the handover directory."""
        self._stop.set()
        self._relay_logs()
        try:
            while True:  # unblock a child waiting to put
                self._queue.get_nowait()
        except (queue.Empty, OSError, ValueError):
            pass
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(timeout=5)
        self._queue.close()
        self._alive.close()
        shutil.rmtree(self._dir, ignore_errors=True)


def _context() -> Any:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["tqsdk"])  # only tqsdk: polars and psycopg start threads at import
    return ctx


def _serve(new_client: Callable[[], TickSource], jobs: list[tuple[str, date]], directory: str, out: Any, logs: Any,
           stop: Any, alive: Any, endpoints: dict[str, str], renew_days: int, renew_ticks: int) -> None:
    """The child: one login at a time, days in order, each answer handed over as a file."""
    for key in [k for k in os.environ if k.startswith(_ENDPOINT_PREFIX)]:
        del os.environ[key]
    os.environ.update(endpoints)
    root = logging.getLogger()
    root.handlers[:] = [_Relay(logs)]  # warnings (a retried download, ...) go to the run's own log
    root.setLevel(logging.INFO)
    for noisy in ("TqApi", "websockets"):  # TqSdk's own chatter stays here
        logging.getLogger(noisy).setLevel(logging.ERROR)
    threading.Thread(target=_watch_parent, args=(alive, stop), daemon=True, name="parent-watch").start()
    client: TickSource | None = None
    login = days = ticks = 0
    try:
        for index, (contract, day) in enumerate(jobs):
            if stop.is_set():
                return
            if client is not None and (days >= renew_days or ticks >= renew_ticks):
                client.close()  # TqApi's memory grows with what it received: a fresh login
                client = None
            if client is None:
                client, login, days, ticks = new_client(), login + 1, 0, 0
            try:
                frame = client.ticks(contract, day)
                path = os.path.join(directory, f"{index}.arrow")
                frame.write_ipc(path)
                answer = Answer(index, path, "", login, frame.height)
                ticks += frame.height
            except Exception as exc:  # noqa: BLE001 - reported as that day's outcome
                answer = Answer(index, None, f"{type(exc).__name__}: {exc}", login, 0)
            days += 1
            if not _put(out, answer, stop):
                return
    finally:
        if client is not None:
            client.close()
        _put(out, _END, stop)


class _Relay(logging.Handler):
    """Hands the child's log records (warnings and up) to the run's process."""

    def __init__(self, logs: Any) -> None:
        super().__init__(logging.WARNING)
        self.logs = logs

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.logs.put_nowait((record.levelno, record.name, record.getMessage()))
        except Exception:  # noqa: BLE001 - a log line must never fail a download
            pass


def _put(out: Any, item: object, stop: Any) -> bool:
    while not stop.is_set():
        try:
            out.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            continue
    return False


def _watch_parent(alive: Any, stop: Any) -> None:
    """Exit at once when the run's process is gone (killed: no one would read or stop us). The parent never
    writes to `alive`: it becomes readable (EOF) only when the parent's end is closed."""
    while True:
        if multiprocessing.connection.wait([alive], timeout=0):
            os._exit(0)
        if stop.is_set():
            time.sleep(15)  # the loop has been asked to stop: give it time, then make sure
            os._exit(0)
        time.sleep(0.5)


def _remove_orphan_dirs() -> None:
    """Remove the handover directories of runs whose process is gone."""
    for path in glob.glob(os.path.join(tempfile.gettempdir(), f"{TMP_PREFIX}*-*")):
        pid = os.path.basename(path)[len(TMP_PREFIX):].split("-")[0]
        if pid.isdigit():
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                shutil.rmtree(path, ignore_errors=True)
            except PermissionError:
                pass
