"""IBKR faults through the Dagster assets: requests never answered, the gateway dropping every socket, a pacing
storm; a bar file truncated on disk; an unwritable Parquet root. After resume, every bar equals the simulator's
(SimUniverse.bars): none lost, none duplicated."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from ghtrader_assets.defs.ibkr.assets import ibkr_contracts, ibkr_hours_bars
from ghtrader_assets.defs.ibkr.resources import IBGatewayResource, IBKRStorageResource
from ghtrader_assets.domain.run_summary import Status
from ghtrader_assets.io.bar_store import bar_path
from ghtrader_assets.io.ibkr_state import read_stage_records
from ghtrader_assets.sim.ib import GatewaySim
from ghtrader_assets_tests.fixtures.ib_sim import SIM_AS_OF

pytestmark = pytest.mark.reliability
SIM = {"weekly_expiries": 1, "monthly_expiries": 1, "identical_window_s": 0.2}
FAST: dict[str, Any] = {"client_msg_rate": 0, "rate_per_s": 2000.0, "request_timeout_s": 10.0,
                        "pacing_backoff_s": 0.02, "reconnect_backoff_s": 0.05, "max_in_flight": 50}
SYMBOL = "SPY"
END = {"config": {"end": SIM_AS_OF.isoformat()}}


class IBRun:
    def __init__(self, sim: GatewaySim, root: Path, **gateway: Any) -> None:
        self.sim, self.root = sim, root
        self.instance = dg.DagsterInstance.ephemeral()
        self.instance.add_dynamic_partitions("ibkr_symbol", [SYMBOL])
        # Contract-level errors are counted and listed; the outcome check (test_ibkr_checks) is lifted here.
        self.storage = IBKRStorageResource(data_root=str(root / "raw"), scope="rel", state_dir=str(root / "state"),
                                           max_err_share=1.0, max_empty_share=1.0)
        self.gateway(**gateway)

    def gateway(self, **overrides: Any) -> None:
        self.ib = IBGatewayResource(host=self.sim.host, port=self.sim.port, client_id=41, **{**FAST, **overrides})

    def materialize(self, assets: list, force: bool = False) -> dg.ExecuteInProcessResult:
        hours = {"config": {**END["config"], "force": force}}
        config = {"ops": {"ibkr_contracts": END, "ibkr_hours_bars": hours}}
        return dg.materialize(assets, partition_key=SYMBOL, instance=self.instance, raise_on_error=False,
                              resources={"ib_gateway": self.ib, "ibkr_storage": self.storage},
                              run_config={"ops": {k: v for k, v in config["ops"].items()
                                                  if k in {a.key.path[-1] for a in assets}}})

    def hours_meta(self, result: dg.ExecuteInProcessResult) -> dict:
        (event,) = [e for e in result.get_asset_materialization_events()
                    if e.materialization.asset_key.path[-1] == "ibkr_hours_bars"]
        return {k: v.value for k, v in event.materialization.metadata.items()}

    def records(self):
        """The hours stage's records (not the per-run coverage records)."""
        return [r for r in read_stage_records(self.root / "state", "hours") if r.purpose != "coverage"]

    def assert_all_bars_equal_truth(self) -> int:
        """The latest record of every contract is OK or EMPTY (truly no bars), and every OK file holds
        exactly the simulator's bars. Returns bars compared."""
        latest = {}
        for record in self.records():
            if record.purpose == "bars" and record.status is not Status.SKIPPED:
                latest[record.conid] = record
        assert latest
        bars = 0
        for conid, record in latest.items():
            truth = self.sim.universe.bars(conid, "8 hours", "6 M", SIM_AS_OF)
            path = bar_path(self.root / "raw", "rel", record.symbol, conid, "TRADES", "8 hours")
            if record.status is Status.EMPTY:
                assert truth == [] and not path.exists()
                continue
            assert record.status is Status.OK, record
            frame = pl.read_parquet(path)
            assert frame["ts"].to_list() == [b.time for b in truth]
            assert frame["open"].to_list() == [b.open for b in truth]
            assert frame["close"].to_list() == [b.close for b in truth]
            assert frame["volume"].to_list() == [float(b.volume) for b in truth]
            bars += frame.height
        return bars


FAULTS = {
    "hang": ({"hang_requests": (5, 17, 40)}, {"request_timeout_s": 1.5}, "timeout after 1.5s"),
    "drop": ({"drop_after_requests": 30, "latency_s": 0.002}, {"request_attempts": 1}, "disconnected"),
    # a storm that outlasts the run (every request after the 20th); the resume goes to a recovered gateway
    "pacing": ({"pacing_storm": (20, 100_000)}, {"pacing_retries": 1}, "pacing violation never cleared"),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_gateway_fault_is_reported_per_contract_and_resume_completes(
    ib_gateway_factory: Callable[..., GatewaySim], tmp_path: Path, fault: str, figures
) -> None:
    sim_faults, gateway, message = FAULTS[fault]
    sim = ib_gateway_factory(symbols=(SYMBOL,), **SIM, **sim_faults)
    run = IBRun(sim, tmp_path, **gateway)
    first = run.materialize([ibkr_contracts, ibkr_hours_bars])
    assert first.success  # contract-level errors do not fail the partition: they are counted and listed
    figures["faults"] += 1
    meta = run.hours_meta(first)
    errors = [r for r in run.records() if r.status is Status.ERR]
    assert meta["count_err"] == len(errors) > 0
    assert all(message in (r.error_message or "") and r.conid for r in errors), [r.error_message for r in errors]
    ok_before = {r.conid for r in run.records() if r.status is Status.OK}
    if fault == "pacing":  # the same market data (seed, as_of), served by a gateway without the storm
        run.sim = ib_gateway_factory(symbols=(SYMBOL,), **SIM)
    run.gateway()  # default retries; the faults were one-off
    again = run.materialize([ibkr_hours_bars])
    assert again.success
    meta = run.hours_meta(again)
    assert meta["count_err"] == 0 and meta["count_skipped"] == len(ok_before)
    retried = {r.conid for r in run.records() if r.run_id == again.run_id and r.status is not Status.SKIPPED}
    assert {r.conid for r in errors} <= retried and not (retried & ok_before)
    figures["bars_compared"] += run.assert_all_bars_equal_truth()


def test_truncated_bar_file_is_detected_moved_aside_and_refetched_on_resume(
    ib_gateway_factory: Callable[..., GatewaySim], tmp_path: Path, figures, caplog: pytest.LogCaptureFixture
) -> None:
    sim = ib_gateway_factory(symbols=(SYMBOL,), **SIM)
    run = IBRun(sim, tmp_path)
    assert run.materialize([ibkr_contracts, ibkr_hours_bars]).success
    ok = [r for r in run.records() if r.status is Status.OK]
    target = Path(ok[0].output_path)
    original = target.read_bytes()
    target.write_bytes(original[: len(original) // 2])  # a crash half-way through another tool's write
    figures["faults"] += 1
    # a plain resume (no force): the summary says OK, but the file is unreadable, so it is fetched again
    again = run.materialize([ibkr_hours_bars])
    assert again.success
    assert "now unreadable" in caplog.text
    (record,) = [r for r in run.records() if r.run_id == again.run_id and r.output_path == str(target)]
    assert record.status is Status.OK and "moved aside" in (record.error_message or "")
    (aside,) = target.parent.glob("8_hours.parquet.corrupt-*")
    assert aside.read_bytes() == original[: len(original) // 2]  # kept for inspection, never merged
    assert run.hours_meta(again)["count_skipped"] == len(ok) - 1
    figures["bars_compared"] += run.assert_all_bars_equal_truth()


def test_unwritable_parquet_root_fails_the_partition_naming_the_path(
    ib_gateway_factory: Callable[..., GatewaySim], tmp_path: Path, figures
) -> None:
    # Tests run as root, so chmod denies nothing and there is no tmpfs or read-only bind to use. A root
    # whose parent is a regular file fails every write the same way (ENOTDIR), reliably, for any user.
    sim = ib_gateway_factory(symbols=(SYMBOL,), **SIM)
    run = IBRun(sim, tmp_path)
    blocker = tmp_path / "raw"
    blocker.write_text("not a directory")
    root = blocker / "ib"
    storage, run.storage = run.storage, IBKRStorageResource(data_root=str(root), scope="rel",
                                                            state_dir=str(tmp_path / "state"))
    figures["faults"] += 1
    result = run.materialize([ibkr_contracts, ibkr_hours_bars])
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    text = str(failure.event_specific_data.error)
    assert f"hours failed for SPY: SPY: cannot write bars under {root}: Not a directory" in text, text[:500]
    (record,) = [r for r in run.records() if r.status is Status.ERR]
    assert record.purpose == "symbol" and str(root) in (record.error_message or "")
    assert not [r for r in run.records() if r.purpose == "bars"]  # nothing requested, nothing written
    # one contract's directory blocked: that contract is ERR naming its path, the others are stored
    blocker.unlink()
    run.storage = storage
    first = run.materialize([ibkr_hours_bars])
    conid = next(r.conid for r in run.records() if r.run_id == first.run_id and r.status is Status.OK)
    target = bar_path(tmp_path / "raw", "rel", SYMBOL, conid, "TRADES", "8 hours")
    target.unlink()
    target.parent.rmdir()
    target.parent.write_text("blocks the directory")
    failed = run.materialize([ibkr_hours_bars], force=True)
    (bad,) = [r for r in run.records() if r.run_id == failed.run_id and r.status is Status.ERR]
    assert bad.conid == conid and str(target.parent) in (bad.error_message or "")
    assert run.hours_meta(failed)["count_err"] == 1
    target.parent.unlink()
    assert run.materialize([ibkr_hours_bars]).success
    figures["bars_compared"] += run.assert_all_bars_equal_truth()


def test_unwritable_state_dir_fails_the_partition_naming_the_path(
    ib_gateway_factory: Callable[..., GatewaySim], tmp_path: Path, figures
) -> None:
    sim = ib_gateway_factory(symbols=(SYMBOL,), **SIM)
    run = IBRun(sim, tmp_path)
    (tmp_path / "blocked").write_text("a file where the state directory should be")
    state = tmp_path / "blocked" / "state"
    run.storage = IBKRStorageResource(data_root=str(tmp_path / "raw"), scope="rel", state_dir=str(state))
    figures["faults"] += 1
    result = run.materialize([ibkr_contracts])
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    text = str(failure.event_specific_data.error)
    assert str(tmp_path / "blocked") in text and "Not a directory" in text, text[:600]
    assert not (tmp_path / "raw").exists()


DISK_FULL_WRITER = """
import resource, signal, sys
from pathlib import Path
import polars as pl
from ghtrader_assets.io.bar_store import merge_into, read_bars
path = Path(sys.argv[1])
new = read_bars(path).with_columns(pl.col("close") + 0.5)  # every bar corrected: the whole file is rewritten
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit write() fails with EFBIG instead of a signal
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), resource.RLIM_INFINITY))
try:
    merge_into(path, new)
except Exception as exc:
    print(f"{type(exc).__name__}: {exc}")
    sys.exit(3)
"""


def test_disk_full_during_a_bar_write_keeps_the_old_file_and_names_the_path(
    ib_gateway_factory: Callable[..., GatewaySim], tmp_path: Path, figures
) -> None:
    # No tiny tmpfs here: a per-process file-size limit (RLIMIT_FSIZE) makes the write fail half-way
    # exactly as a full disk does (EFBIG instead of ENOSPC), in a child process so nothing else is limited.
    import subprocess
    import sys

    sim = ib_gateway_factory(symbols=(SYMBOL,), **SIM)
    run = IBRun(sim, tmp_path)
    assert run.materialize([ibkr_contracts, ibkr_hours_bars]).success
    target = Path(next(r for r in run.records() if r.status is Status.OK).output_path)
    before = target.read_bytes()
    figures["faults"] += 1
    proc = subprocess.run([sys.executable, "-c", DISK_FULL_WRITER, str(target), str(len(before) // 2)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert str(target) in proc.stdout and "File too large" in proc.stdout, proc.stdout
    assert target.read_bytes() == before  # the old file is intact: the write went to a temp file
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # and the temp file is gone
    figures["bars_compared"] += run.assert_all_bars_equal_truth()
