"""Run summary: JSONL round trip, resume keys, latest outcome wins, rerun universe."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from ghtrader_assets.domain.run_summary import (
    Status,
    SummaryRecord,
    count_by_status,
    summary_path,
    window_key,
    window_session,
)
from ghtrader_assets.domain.latest_status import rerun_entries
from ghtrader_assets.io.ibkr_state import SummaryWriter, read_records, read_stage_records

T0 = datetime(2026, 11, 21, 12, tzinfo=UTC)
WINDOW = window_key("hours", "8 hours", "6 M", "TRADES", True, date(2026, 11, 20))


def rec(run: str, symbol: str, conid: int | None, status: Status, minute: int, purpose: str = "bars") -> SummaryRecord:
    return SummaryRecord(run, "hours", purpose, symbol, WINDOW, status, conid=conid,  # type: ignore[arg-type]
                         recorded_at=T0 + timedelta(minutes=minute))


def test_window_key_covers_stage_bar_duration_and_end_day() -> None:
    assert WINDOW == "hours|8 hours|6 M|TRADES|rth|2026-11-20"
    assert window_session(WINDOW) == date(2026, 11, 20) and window_session("x|y") is None


def test_jsonl_round_trip_has_seed_field_names(tmp_path: Path) -> None:
    record = SummaryRecord("r1", "hours", "bars", "AAPL", WINDOW, Status.OK, conid=5, bar_size="8 hours",
                           what="TRADES", duration="6 M", bars=12, first=T0, last=T0 + timedelta(days=1),
                           output_path="x.parquet", elapsed_s=0.25, attempts=1, recorded_at=T0)
    path = summary_path(tmp_path, "hours", "r1")
    with SummaryWriter(path) as writer:
        writer.write(record)
    line = json.loads(path.read_text())
    for key in ("symbol", "conId", "barSize", "what", "duration", "bars", "first", "last", "error_code",
                "error_message", "output_path", "elapsed", "status"):
        assert key in line
    assert line["status"] == "OK" and line["first"] == "2026-11-21T12:00:00+00:00"
    assert read_stage_records(tmp_path, "hours") == [record]


def test_torn_last_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "summary_x.jsonl"
    path.write_text(json.dumps(rec("r", "A", 1, Status.OK, 0).to_json()) + "\n{\"run_id\": \"r\", \"sta")
    assert len(read_records([path])) == 1


def test_rerun_universe_uses_latest_outcome_per_contract() -> None:
    records = [
        rec("r1", "AAPL", 1, Status.ERR, 0),
        rec("r2", "AAPL", 1, Status.OK, 5),  # fixed by the rerun
        rec("r3", "AAPL", 1, Status.SKIPPED, 9),  # a skip never hides the OK
        rec("r1", "MSFT", 2, Status.EMPTY, 1),
        rec("r1", "SPY", None, Status.ERR, 2, purpose="symbol"),  # missing cache
        rec("r1", "QQQ", 3, Status.ERR, 3, purpose="reference"),  # fallback used, not a bar gap
    ]
    # the state files' rule (latest_status.apply), shared by resume, rerun-universe and --rerun-from
    assert rerun_entries(records) == {"MSFT": (False, {2}), "SPY": (True, set())}
    assert rerun_entries(records, statuses=[Status.ERR]) == {"SPY": (True, set())}


def test_count_by_status_lists_every_status() -> None:
    assert count_by_status([rec("r", "A", 1, Status.OK, 0)]) == {"OK": 1, "EMPTY": 0, "ERR": 0, "SKIPPED": 0}
