"""Reliability suite: every test is marked `reliability`; the figures each test records (faults injected,
bad inputs tried, rows/bars compared, rows lost) are printed at the end of the run."""

from __future__ import annotations

from collections import Counter

import pytest

FIGURES: Counter[str] = Counter()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/reliability/" in str(item.path):
            item.add_marker(pytest.mark.reliability)


@pytest.fixture
def figures() -> Counter[str]:
    """Counters the tests add to: faults, bad_inputs, rows_compared, bars_compared, lost."""
    return FIGURES


def pytest_terminal_summary(terminalreporter) -> None:  # noqa: ANN001 - pytest hook
    if FIGURES:
        terminalreporter.write_sep("-", "reliability figures")
        for key in sorted(FIGURES):
            terminalreporter.write_line(f"{key}: {FIGURES[key]}")
