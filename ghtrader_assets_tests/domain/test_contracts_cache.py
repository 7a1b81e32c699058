"""Contracts cache format: validation with clear errors, latest-file selection, atomic round trip."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from ghtrader_assets.domain.contracts_cache import ContractsCacheError, OptionContract, parse_cache
from ghtrader_assets.io.ibkr_state import latest_cache_path, read_cache, read_latest_cache, write_cache

SEED_RECORD = {
    "conid": 712345678, "symbol": "AAPL", "expiry": "2026-12-18", "right": "C", "strike": 230.0,
    "multiplier": "100", "exchange": "SMART", "tradingClass": "AAPL", "currency": "USD",
}


def test_seed_format_parses() -> None:
    (contract,) = parse_cache(json.dumps([SEED_RECORD]), "x.json", "aapl")
    assert contract == OptionContract(712345678, "AAPL", date(2026, 12, 18), "C", 230.0, "100", "SMART", "AAPL", "USD")
    assert contract.to_json() == SEED_RECORD


def test_numeric_multiplier_from_other_writers_is_accepted() -> None:
    (contract,) = parse_cache(json.dumps([{**SEED_RECORD, "multiplier": 100}]), "x.json")
    assert contract.multiplier == "100"


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        ("{not json", "not valid JSON"),
        ('{"a": 1}', "expected a JSON list"),
        ("[]", "no contracts"),
        (json.dumps([{**SEED_RECORD, "right": "CALL"}]), "right must be"),
        (json.dumps([{**SEED_RECORD, "expiry": "20261218"}]), "expiry must be YYYY-MM-DD"),
        (json.dumps([{**SEED_RECORD, "strike": "abc"}]), "strike must be"),
        (json.dumps([{**SEED_RECORD, "conid": -1}]), "conid must be"),
        (json.dumps([{k: v for k, v in SEED_RECORD.items() if k != "conid"}]), "missing field"),
        (json.dumps([SEED_RECORD, SEED_RECORD]), "duplicate conid"),
        (json.dumps([{**SEED_RECORD, "symbol": "MSFT"}]), "symbol 'MSFT'"),
    ],
)
def test_malformed_cache_names_file_and_problem(payload: str, problem: str) -> None:
    with pytest.raises(ContractsCacheError, match=problem) as info:
        parse_cache(payload, "state/contracts_cache/AAPL_2026-11-20.json", "AAPL")
    assert "AAPL_2026-11-20.json" in str(info.value)


def test_latest_cache_wins_and_other_symbols_are_ignored(tmp_path: Path) -> None:
    contract = parse_cache(json.dumps([SEED_RECORD]), "x")
    write_cache(tmp_path, "AAPL", date(2026, 11, 19), contract)
    newest = write_cache(tmp_path, "AAPL", date(2026, 11, 20), contract)
    write_cache(tmp_path, "AAPL_X", date(2026, 11, 21), (OptionContract(1, "AAPL_X", date(2026, 12, 18), "P", 1.0),))
    (tmp_path / "AAPL_latest.json").write_text("[]")
    assert latest_cache_path(tmp_path, "aapl") == newest
    path, contracts = read_latest_cache(tmp_path, "AAPL")
    assert path == newest and contracts == contract
    assert not list(tmp_path.glob(".*tmp"))


def test_missing_cache_is_an_error_naming_the_expected_file(tmp_path: Path) -> None:
    with pytest.raises(ContractsCacheError, match=r"AAPL_YYYY-MM-DD\.json: missing contracts cache"):
        latest_cache_path(tmp_path / "absent", "AAPL")
    with pytest.raises(ContractsCacheError, match="missing"):
        read_cache(tmp_path / "AAPL_2026-11-20.json")


def test_empty_cache_is_never_written(tmp_path: Path) -> None:
    with pytest.raises(ContractsCacheError, match="empty"):
        write_cache(tmp_path, "AAPL", date(2026, 11, 20), ())
