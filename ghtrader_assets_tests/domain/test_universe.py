"""Universe CSV parsing, validation and stable batch slicing."""

from __future__ import annotations

from pathlib import Path

import pytest

from ghtrader_assets.domain.universe import (
    UniverseEntry,
    UniverseError,
    batch_of,
    parse_universe,
    select_batch,
    select_symbols,
)
from ghtrader_assets.io.ibkr_state import read_universe, write_universe


def test_parse_comments_case_and_blank_conid() -> None:
    text = "# weekend universe\nsymbol,conid\naapl,265598\n\n  # comment\nMSFT,\nbrk b,\n"
    assert parse_universe(text) == (
        UniverseEntry("AAPL", 265598),
        UniverseEntry("BRK B", None),
        UniverseEntry("MSFT", None),
    )


def test_symbol_only_header_is_accepted() -> None:
    assert parse_universe("symbol\nspy\n") == (UniverseEntry("SPY"),)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("ticker,conid\nAAPL,1\n", "header"),
        ("symbol,conid\nAAPL,abc\n", "conid"),
        ("symbol,conid\nAAPL,1\naapl,\n", "duplicate"),
        ("symbol,conid\n$$$,1\n", "invalid symbol"),
        ("symbol,conid\nAAPL,1,2\n", "fields"),
    ],
)
def test_invalid_files_name_the_line(text: str, problem: str) -> None:
    with pytest.raises(UniverseError, match=problem) as info:
        parse_universe(text, "u.csv")
    assert "u.csv:" in str(info.value)


def test_round_trip_through_file(tmp_path: Path) -> None:
    entries = (UniverseEntry("SPY", 756733), UniverseEntry("AAPL"))
    path = write_universe(tmp_path / "u.csv", entries, comment="rerun")
    assert path.read_text().startswith("# rerun\nsymbol,conid\nAAPL,\n")
    assert read_universe(path) == tuple(sorted(entries))


def test_missing_file_is_a_universe_error(tmp_path: Path) -> None:
    with pytest.raises(UniverseError, match="cannot read"):
        read_universe(tmp_path / "nope.csv")


def test_batches_partition_the_universe_and_are_stable() -> None:
    entries = tuple(UniverseEntry(f"S{i:03d}") for i in range(200))
    batches = [select_batch(entries, 7, i) for i in range(7)]
    assert sorted(e for b in batches for e in b) == sorted(entries)
    assert all(batches)  # crc32 spreads 200 symbols over 7 batches
    # adding symbols never moves an existing symbol to another batch
    grown = entries + tuple(UniverseEntry(f"X{i}") for i in range(50))
    for i, batch in enumerate(batches):
        assert set(batch) <= set(select_batch(grown, 7, i))
    assert batch_of("aapl", 7) == batch_of("AAPL", 7)


def test_batch_arguments_are_validated() -> None:
    with pytest.raises(ValueError):
        select_batch((), 0, 0)
    with pytest.raises(ValueError):
        select_batch((), 3, 3)


def test_select_symbols_keeps_known_conids() -> None:
    entries = (UniverseEntry("AAPL", 265598),)
    assert select_symbols(entries, ["aapl", "spy", ""]) == (UniverseEntry("AAPL", 265598), UniverseEntry("SPY"))
