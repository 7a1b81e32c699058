"""Bad-input matrix: every entry point answers an unknown or malformed variety, exchange, symbol, date range,
universe CSV or contracts cache with a clear error naming the input, and writes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from ghtrader_assets.cli import main as cli_main
from ghtrader_assets.defs.futures import build_futures_defs
from ghtrader_assets.defs.futures.partitions import VarietyDay, variety_partitions
from ghtrader_assets.defs.ibkr.assets import ibkr_contracts
from ghtrader_assets.defs.ibkr.resources import IBGatewayResource, IBKRStorageResource
from ghtrader_assets.domain.calendar import CalendarError
from ghtrader_assets.domain.run_summary import Status
from ghtrader_assets.domain.symbols import SymbolError
from ghtrader_assets.domain.universe import UniverseEntry, UniverseError, parse_universe, select_symbols
from ghtrader_assets.ibkr_stages import RunOptions, StoragePaths
from ghtrader_assets_tests.fixtures.ib_stages import run_bars
from ghtrader_assets.io.ib_gateway import GatewaySettings
from ghtrader_assets.io.ibkr_state import read_stage_records, read_universe
from ghtrader_assets.io.questdb import QuestDBClient, QuestDBSettings
from ghtrader_assets.reader import read_ticks
from ghtrader_assets.sim.tq import TqSimServer
from ghtrader_assets_tests.fixtures.ib_sim import SIM_AS_OF
from ghtrader_assets_tests.fixtures.chain import Chain, failure_message, questdb_resource, resources

pytestmark = pytest.mark.reliability
VARIETY = "SHFE.rb"
METACHARACTERS = ["'", ";", "../", " ", "\"", "%", "*", "\\", "\n"]
BAD_VARIETIES = ["SHFE.cu'", "SHFE.cu; DROP TABLE ghtrader_ticks_raw_v2", "../SHFE.cu", "SHFE.cu/../x", "SHFE cu",
                 "SHFE.c u", "", "cu", "SHFE.", ".cu", "NYMEX.cl", "shfe.cu", "SHFE.cu2403", "SHFE.cu\n", "KQ.m@SHFE.cu",
                 "SHFE.toolongname", "SHFE.cu|x"]
BAD_TICK_SYMBOLS = ["SHFE.cu2403'", "SHFE.cu2403; DROP TABLE x", "../SHFE.cu2403", "SHFE.cu 2403", "KQ.m@SHFE.cu'",
                    "NYMEX.cl2403", "", "SHFE.cu2403%", "SHFE.cu2403\n", "KQ.m@../x", "' OR '1'='1"]
BAD_IB_SYMBOLS = ["A'B", "A;B", "../ETC", "A/B", "A..B", "SPY;RM -RF", "A\"", "A%", "A*", "A\\B", "", " ", "-SPY",
                  "WAYTOOLONGSYMBOLNAME123", "SPY\n"]


@pytest.fixture(scope="module")
def chain(tq_sim: TqSimServer, questdb_settings: QuestDBSettings) -> Iterator[Chain]:
    with dg.instance_for_test() as instance:
        yield Chain(tq_sim, instance, resources(questdb_resource(questdb_settings), tq_sim.market), (VARIETY,)).prepare()


def test_bad_varieties_at_definitions_build(monkeypatch: pytest.MonkeyPatch, figures) -> None:
    from ghtrader_assets.definitions import configured_varieties

    for bad in BAD_VARIETIES:
        with pytest.raises(SymbolError):
            variety_partitions((bad,))
        figures["bad_inputs"] += 1
        if bad.strip() in ("", "SHFE.cu"):
            continue  # items are stripped; an empty GHTRADER_VARIETIES means the default varieties
        monkeypatch.setenv("GHTRADER_VARIETIES", f"DCE.m,{bad}")
        with pytest.raises(SymbolError, match="not a futures variety") as err:
            build_futures_defs(configured_varieties())
        assert repr(bad.strip()) in str(err.value), (bad, str(err.value))
        figures["bad_inputs"] += 1


def test_bad_partition_keys(chain: Chain, figures) -> None:
    for key in [f"2024-01-02|{v}" for v in BAD_VARIETIES if "|" not in v] + [
            "2024-13-01|SHFE.rb", "2024-01-02", "2024-01-02|SHFE.rb|x", "../../etc|SHFE.rb", "'; DROP|SHFE.rb"]:
        with pytest.raises(ValueError) as err:
            VarietyDay.parse(key)
        assert str(err.value), key
        figures["bad_inputs"] += 1
    # keys that are well formed but are no partition: a Saturday, a day before the start, a foreign variety
    for key in ["2024-01-06|SHFE.rb", "2023-12-29|SHFE.rb", "2024-01-02|SHFE.cu", f"2024-01-02|{VARIETY}'"]:
        with pytest.raises(dg.DagsterError) as err:
            chain.materialize(["underlying_ticks", "main_l5", "day_index"], partition_key=key)
        assert key.split("|")[0] in str(err.value) or key in str(err.value), str(err.value)[:300]
        figures["bad_inputs"] += 1


def test_reversed_or_unknown_futures_range_is_refused_and_writes_nothing(chain: Chain, qdb: QuestDBClient, figures) -> None:
    before = qdb.scalar("SELECT count() FROM ghtrader_symbol_day_index_v2 WHERE symbol = 'KQ.m@SHFE.rb'")
    days = chain.days
    for first, last in [(days[5], days[2]), (date(2024, 1, 6), days[3]), (days[0], date(2031, 1, 2))]:
        with pytest.raises(dg.DagsterError) as err:
            result = chain.backfill(VARIETY, first, last)
            assert not result.success, "a bad range must not run"  # pragma: no cover
            raise dg.DagsterInvariantViolationError(failure_message(result))  # pragma: no cover
        assert str(first) in str(err.value) or str(last) in str(err.value), str(err.value)[:300]
        figures["bad_inputs"] += 1
    assert qdb.scalar("SELECT count() FROM ghtrader_symbol_day_index_v2 WHERE symbol = 'KQ.m@SHFE.rb'") == before


def test_read_api_bad_symbols_and_ranges(chain: Chain, questdb_settings: QuestDBSettings, figures) -> None:
    first, last = chain.days[0], chain.days[-1]
    for bad in BAD_TICK_SYMBOLS:
        with pytest.raises(ValueError, match="not a futures contract or KQ.m@ main symbol") as err:
            read_ticks(bad, first, first, settings=questdb_settings)
        assert repr(bad) in str(err.value)
        figures["bad_inputs"] += 1
    with pytest.raises(ValueError, match="kind must be one of"):
        read_ticks("KQ.m@SHFE.rb", first, first, kind="raw'; --", settings=questdb_settings)
    for start, end, problem in [(last, first, "reversed date range"), (date(1999, 1, 4), first, "1999-01-04"),
                                (first, date(2031, 6, 1), "2031-06-01")]:
        with pytest.raises(CalendarError, match=problem):
            read_ticks("KQ.m@SHFE.rb", start, end, settings=questdb_settings)
        figures["bad_inputs"] += 1
    figures["bad_inputs"] += 1


def test_universe_csv_symbols_and_malformed_files(tmp_path: Path, figures) -> None:
    for bad in BAD_IB_SYMBOLS:
        if "\n" in bad:
            continue  # a newline starts another CSV line: covered by select_symbols below
        text = f'symbol,conid\nAAPL,265598\n"{bad}",\n' if bad.strip() else f"symbol,conid\nAAPL,\n{bad},1\n"
        with pytest.raises(UniverseError, match=r"<universe>:3: ") as err:
            parse_universe(text)
        assert "symbol" in str(err.value) or "conid" in str(err.value)
        figures["bad_inputs"] += 1
    for bad in BAD_IB_SYMBOLS:
        if bad.strip() in ("", "SPY"):
            continue  # --symbols items are stripped; blank ones are ignored
        with pytest.raises(UniverseError, match="invalid symbol"):
            select_symbols([], [bad])
        figures["bad_inputs"] += 1
    malformed = {
        "header": ("ticker,conid\nAAPL,1\n", "header must be 'symbol,conid'"),
        "fields": ("symbol,conid\nAAPL,1,2\n", "3 fields, header has 2"),
        "conid": ("symbol,conid\nAAPL,-4\n", "conid must be a positive integer"),
        "conid-sql": ("symbol,conid\nAAPL,1; DROP\n", "conid must be a positive integer"),
        "duplicate": ("symbol,conid\nAAPL,1\naapl,\n", "duplicate symbol 'AAPL'"),
    }
    for name, (text, problem) in malformed.items():
        path = tmp_path / f"{name}.csv"
        path.write_text(text)
        with pytest.raises(UniverseError, match=problem) as err:
            read_universe(path)
        assert str(path) in str(err.value)
        figures["bad_inputs"] += 1
    for path, problem in [(tmp_path / "missing.csv", "cannot read universe file"),
                          (tmp_path, "cannot read universe file")]:
        with pytest.raises(UniverseError, match=problem):
            read_universe(path)
        figures["bad_inputs"] += 1
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00PAR1\x00\x01")
    with pytest.raises(UniverseError, match=str(binary)):
        read_universe(binary)
    figures["bad_inputs"] += 1


def test_cli_symbols_are_refused_before_anything_is_written(tmp_path: Path, capsys: pytest.CaptureFixture[str], figures) -> None:
    state, root = tmp_path / "state", tmp_path / "raw"
    for stage in ("contracts", "hours", "minutes"):
        for bad in ["A'B", "SPY;RM", "../ETC", "A/B", "SPY,A B C D E F G H I J K L M", "A..B"]:
            code = cli_main(["ibkr", stage, "--symbols", bad, "--port", "1", "--state-dir", str(state),
                             "--data-root", str(root)])
            err = capsys.readouterr().err
            assert code == 2 and "invalid symbol" in err, (stage, bad, err)
            figures["bad_inputs"] += 1
    assert not state.exists() and not root.exists()


def test_ibkr_partition_key_with_path_metacharacters_fails_and_writes_nothing(tmp_path: Path, figures) -> None:
    instance = dg.DagsterInstance.ephemeral()
    storage = IBKRStorageResource(data_root=str(tmp_path / "raw"), state_dir=str(tmp_path / "state"))
    resources_ = {"ib_gateway": IBGatewayResource(port=1, connect_timeout_s=0.5, reconnect_attempts=1), "ibkr_storage": storage}
    for bad in ["../../ETC", "A;B", "A'B", "A/B"]:
        instance.add_dynamic_partitions("ibkr_symbol", [bad])
        result = dg.materialize([ibkr_contracts], partition_key=bad, instance=instance, resources=resources_,
                                raise_on_error=False)
        assert not result.success
        assert f"invalid symbol {bad!r}" in failure_message(result)
        figures["bad_inputs"] += 1
    assert not (tmp_path / "state").exists() and not (tmp_path / "raw").exists() and not (tmp_path.parent / "ETC").exists()


@pytest.mark.parametrize("content,problem", [
    ("", "contracts cache"), ("[]", "contracts cache"), ("{not json", "contracts cache"),
    ('[{"conid": "x", "symbol": "SPY", "expiry": "2026-12-18", "right": "C", "strike": 500}]', "record 0"),
    ('[{"conid": 1, "symbol": "SPY", "expiry": "someday", "right": "C", "strike": 500}]', "record 0"),
    ('[{"conid": 1, "symbol": "SPY", "expiry": "2026-12-18", "right": "Q", "strike": 500}]', "record 0"),
    ('{"conid": 1}', "contracts cache"), (b"\xff\xfe\x00PAR1", "contracts cache"),
])
def test_malformed_or_empty_contracts_cache_is_a_symbol_error_naming_the_file(
    tmp_path: Path, content: str | bytes, problem: str, figures
) -> None:
    paths = StoragePaths(tmp_path / "raw", "rel", tmp_path / "state")
    paths.cache_dir.mkdir(parents=True)
    cache = paths.cache_dir / "SPY_2026-11-20.json"
    cache.write_bytes(content if isinstance(content, bytes) else content.encode())
    report = run_bars("hours", [UniverseEntry("SPY")], GatewaySettings(port=1), paths, RunOptions(end=SIM_AS_OF))
    assert report.failed_symbols == ["SPY"]
    error = report.symbols["SPY"].error or ""
    assert "SPY_2026-11-20.json" in error and (problem in error or "cache" in error), error
    (record,) = read_stage_records(paths.state_dir, "hours")
    assert record.status is Status.ERR and record.purpose == "symbol"
    assert not paths.data_root.exists()
    figures["bad_inputs"] += 1
