"""`ghtrader-assets doctor`: check QuestDB, TqSdk and the IB gateway the environment points at, one line each."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterable, Iterator
from typing import TextIO

from ghtrader_assets.doctor.report import Check, Status, fail

# section -> module with `checks(timeout_s) -> Iterator[Check]`; imported only when the section runs
SECTIONS = {
    "questdb": "ghtrader_assets.doctor.questdb_checks",
    "tqsdk": "ghtrader_assets.doctor.tqsdk_checks",
    "ib": "ghtrader_assets.doctor.ib_checks",
}
DEFAULT_TIMEOUT_S = 3.0


def run(sections: Iterable[str], timeout_s: float = DEFAULT_TIMEOUT_S, out: TextIO | None = None) -> bool:
    """Print each check's line (to `out`, default stdout) as it finishes; True when none failed (skipped
    checks do not fail)."""
    out = out or sys.stdout
    passed = True
    for section in sections:
        for check in _section_checks(section, timeout_s):
            print(check.line(), file=out, flush=True)
            passed = passed and check.status is not Status.FAIL
    return passed


def _section_checks(section: str, timeout_s: float) -> Iterator[Check]:
    try:
        yield from importlib.import_module(SECTIONS[section]).checks(timeout_s)
    except Exception as exc:  # noqa: BLE001 - an unforeseen failure is reported as one, not as a traceback
        yield fail(section, f"the check itself failed: {type(exc).__name__}: {exc}",
                   "report this; the other sections still ran")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "doctor", help="check QuestDB, TqSdk and the IB gateway the environment (and ./.env) points at",
        description="One line per check: OK, FAIL (with what to do) or SKIP. Exit code 0 when nothing failed.")
    parser.add_argument("--only", action="append", choices=list(SECTIONS), metavar="SECTION",
                        help=f"run only this section (repeatable): {', '.join(SECTIONS)}")
    parser.add_argument("--skip", action="append", choices=list(SECTIONS), default=[], metavar="SECTION",
                        help="leave this section out (repeatable)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                        help=f"seconds each connection may take (default {DEFAULT_TIMEOUT_S:g})")
    parser.set_defaults(func=_run_cli)


def _run_cli(args: argparse.Namespace) -> int:
    chosen = [s for s in (args.only or SECTIONS) if s not in args.skip]
    return 0 if run(chosen, args.timeout) else 1
