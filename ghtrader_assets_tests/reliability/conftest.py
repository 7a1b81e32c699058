"""Reliability suite: every test is marked `reliability`; the figures each test records (the `figures`
fixture: faults injected, bad inputs tried, rows/bars compared, rows lost) are printed at the end of the run."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/reliability/" in str(item.path):
            item.add_marker(pytest.mark.reliability)
