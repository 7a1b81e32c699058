"""Shared pytest set-up: fixture plugins for the real QuestDB server and the two simulators, markers from the
fixtures a test uses, and the figures tests report (printed at the end of the run, also under pytest-xdist,
where a worker's own output is not shown)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

pytest_plugins = [
    "ghtrader_assets_tests.fixtures.questdb",
    "ghtrader_assets_tests.fixtures.tq_sim",
    "ghtrader_assets_tests.fixtures.ib_sim",
    "ghtrader_assets_tests.fixtures.postgres",
]

# Markers from the fixtures a test uses, so that `-m "not questdb and not simulator"` leaves the pure rules.
_MARKER_OF_FIXTURE = {
    "questdb_server": "questdb",
    "postgres_dsn": "questdb",
    "tq_sim": "simulator",
    "tq_sim_factory": "simulator",
    "ib_gateway_factory": "simulator",
}


# The longest modules first, so that under pytest-xdist the season does not start last on one worker.
_LONGEST_FIRST = ("season/test_season.py", "defs/test_run_queue.py", "defs/test_futures_chain.py",
                  "defs/test_exchange_shapes.py", "defs/test_ui_browser.py")


def _rank(item: pytest.Item) -> int:
    path = item.path.as_posix()
    return next((i for i, tail in enumerate(_LONGEST_FIRST) if path.endswith(tail)), len(_LONGEST_FIRST))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_rank)  # stable: the order within a module stays
    for item in items:
        for marker in sorted({m for f, m in _MARKER_OF_FIXTURE.items() if f in getattr(item, "fixturenames", ())}):
            item.add_marker(getattr(pytest.mark, marker))


_SUMMARY: list[tuple[str, list[str]]] = []
FIGURES: Counter[str] = Counter()


@pytest.fixture
def summary(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """Lines a test wants a reader of the run to see (what it measured): printed at the end of the run."""
    lines: list[str] = []
    yield lines
    if lines:
        request.node.user_properties.append(("summary", lines))


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[Counter[str]]:
    """Counters the reliability tests add to (faults, bad_inputs, rows_compared, bars_compared, lost):
    summed over the run and printed at its end."""
    counts: Counter[str] = Counter()
    yield counts
    request.node.user_properties.append(("figures", dict(counts)))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when != "teardown":
        return
    for key, value in report.user_properties:
        if key == "summary":
            _SUMMARY.append((report.nodeid, list(value)))
        elif key == "figures":
            FIGURES.update(value)


def pytest_terminal_summary(terminalreporter) -> None:  # noqa: ANN001 - pytest hook
    for nodeid, lines in _SUMMARY:
        terminalreporter.write_sep("-", nodeid)
        for line in lines:
            terminalreporter.write_line(line)
    if +FIGURES:
        terminalreporter.write_sep("-", "reliability figures")
        for key in sorted(FIGURES):
            terminalreporter.write_line(f"{key}: {FIGURES[key]}")
