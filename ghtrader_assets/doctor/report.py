"""One doctor check's outcome, and the line it prints."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    OK = "OK"
    FAIL = "FAIL"
    SKIP = "SKIP"  # not run: its settings are absent, or a check it needs failed


@dataclass(frozen=True)
class Check:
    """`name` is `<section>.<what>` (e.g. questdb.pgwire); `fix` says what to do when it failed.
    Neither `detail` nor `fix` may contain a password or token."""

    name: str
    status: Status
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status.value:<4}  {self.name:<16}  {self.detail}"
        return f"{text}  -> {self.fix}" if self.status is Status.FAIL and self.fix else text


def ok(name: str, detail: str) -> Check:
    return Check(name, Status.OK, detail)


def fail(name: str, detail: str, fix: str) -> Check:
    return Check(name, Status.FAIL, detail, fix)


def skip(name: str, reason: str) -> Check:
    return Check(name, Status.SKIP, reason)



def describe(exc: BaseException) -> str:
    """A vendor exception in one line: its type and text (timeouts often carry no text)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
