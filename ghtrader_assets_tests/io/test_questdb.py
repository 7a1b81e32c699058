"""QuestDB client against the project's real server: bootstrap, idempotent writes, barrier, errors."""

from __future__ import annotations

import time
import dataclasses
import uuid
from datetime import datetime

import polars as pl
import pytest

from ghtrader_assets.domain.ticks import TICK_COLUMNS, with_row_hash, with_seq
from ghtrader_assets.io.questdb import InvalidIdentifierError, QuestDBClient, QuestDBError, QuestDBSettings, identifier
from ghtrader_assets.io.questdb_schema import ALL_TABLES, RAW_TICKS, Table
from ghtrader_assets.io.questdb_server import free_ports


def scratch_table(base: Table) -> Table:
    """A copy of a project table under a fresh name, so tests never see each other's rows."""
    return dataclasses.replace(base, name=f"{base.name}_t{uuid.uuid4().hex[:8]}")


def tick_frame(symbol: str, times_ns: list[int], price: float = 100.0) -> pl.DataFrame:
    frame = pl.DataFrame(
        {
            "symbol": [symbol] * len(times_ns),
            "datetime_ns": times_ns,
            **{c: [price + i for i in range(len(times_ns))] for c in TICK_COLUMNS},
        }
    )
    frame = with_seq(with_row_hash(frame))
    return frame.with_columns(
        pl.from_epoch("datetime_ns", time_unit="ns").alias("ts"),
        pl.lit(datetime(2024, 1, 2)).alias("trading_day"),
    )


def count(qdb: QuestDBClient, table: Table) -> int:
    qdb.wait_for_wal(table)
    return int(qdb.scalar(f"SELECT count() FROM {table.name}"))


def test_bootstrap_twice_changes_nothing(qdb: QuestDBClient) -> None:
    first = qdb.bootstrap()
    before = qdb.query("SELECT table_name, dedup FROM tables() ORDER BY table_name")
    cols_before = {t.name: qdb.query(f"SHOW COLUMNS FROM {t.name}").to_dicts() for t in ALL_TABLES}
    assert qdb.bootstrap() == first
    assert qdb.query("SELECT table_name, dedup FROM tables() ORDER BY table_name").equals(before)
    assert {t.name: qdb.query(f"SHOW COLUMNS FROM {t.name}").to_dicts() for t in ALL_TABLES} == cols_before
    dedup = dict(before.iter_rows())
    assert all(dedup[t.name] for t in ALL_TABLES)


def test_same_frame_twice_leaves_one_copy(qdb: QuestDBClient) -> None:
    table = scratch_table(RAW_TICKS)
    qdb.bootstrap([table])
    frame = tick_frame("SHFE.cu2402", [1_704_157_200_000_000_000 + i * 500_000_000 for i in range(100)])
    qdb.write(table, frame)
    qdb.write(table, frame)
    assert count(qdb, table) == 100
    stored = qdb.query(f"SELECT datetime_ns, row_hash FROM {table.name} ORDER BY datetime_ns")
    assert stored["row_hash"].to_list() == frame["row_hash"].to_list()


def test_two_ticks_with_one_timestamp_both_survive_with_exact_nanoseconds(qdb: QuestDBClient) -> None:
    table = scratch_table(RAW_TICKS)
    qdb.bootstrap([table])
    t = 1_704_157_200_123_456_789
    frame = tick_frame("SHFE.cu2402", [t, t, t + 1])
    qdb.write(table, frame)
    qdb.wait_for_wal(table)
    stored = qdb.query(f"SELECT datetime_ns, seq, last_price FROM {table.name} ORDER BY datetime_ns, seq")
    assert stored.rows() == [(t, 0, 100.0), (t, 1, 101.0), (t + 1, 0, 102.0)]


def test_barrier_makes_a_write_visible_to_the_next_read(qdb: QuestDBClient) -> None:
    table = scratch_table(RAW_TICKS)
    qdb.bootstrap([table])
    for batch in range(5):
        qdb.write(table, tick_frame("SHFE.cu2402", [1_704_157_200_000_000_000 + batch * 10**9 + i for i in range(1000)]))
        qdb.wait_for_wal(table)
        assert qdb.scalar(f"SELECT count() FROM {table.name}") == (batch + 1) * 1000


def test_bulk_export_reads_columns(qdb: QuestDBClient) -> None:
    table = scratch_table(RAW_TICKS)
    qdb.bootstrap([table])
    frame = tick_frame("SHFE.cu2402", [1_704_157_200_000_000_000 + i for i in range(2000)])
    qdb.write(table, frame)
    qdb.wait_for_wal(table)
    out = qdb.export(f"SELECT datetime_ns, row_hash FROM {table.name} ORDER BY datetime_ns")
    assert out["datetime_ns"].to_list() == frame["datetime_ns"].to_list()
    assert out["row_hash"].to_list() == frame["row_hash"].to_list()


@pytest.mark.parametrize("bad", ["ticks; DROP TABLE x", "a-b", "", "1abc", "x' OR '1'='1", "../etc", "a b"])
def test_bad_identifier_is_refused(qdb: QuestDBClient, bad: str) -> None:
    with pytest.raises(InvalidIdentifierError, match="not a valid QuestDB identifier"):
        identifier(bad)
    with pytest.raises(InvalidIdentifierError):
        qdb.wait_for_wal(bad)
    with pytest.raises(InvalidIdentifierError):
        qdb.bootstrap([Table(bad, RAW_TICKS.columns, RAW_TICKS.dedup_keys)])


def test_unreachable_server_fails_fast_and_clearly() -> None:
    http, pg = free_ports(2)  # nothing listens there
    client = QuestDBClient(QuestDBSettings(http_port=http, pg_port=pg, connect_timeout_s=2, retry_timeout_s=1))
    started = time.monotonic()
    with pytest.raises(QuestDBError, match=f"cannot connect to QuestDB PGWire at 127.0.0.1:{pg}"):
        client.query("SELECT 1")
    with pytest.raises(QuestDBError, match="ILP write"):
        client.write(RAW_TICKS, tick_frame("SHFE.cu2402", [1]))
    with pytest.raises(QuestDBError, match="cannot reach QuestDB HTTP"):
        client.export("SELECT 1")
    assert time.monotonic() - started < 20


def test_password_is_not_in_repr() -> None:
    settings = QuestDBSettings(password="s3cret-pw")
    assert "s3cret-pw" not in repr(settings)
    assert "s3cret-pw" not in repr(QuestDBClient(settings).settings)


def test_a_write_bigger_than_one_request_is_stored_whole(qdb: QuestDBClient) -> None:
    """300,000 ticks (about a week of one real contract: 230 MB of ILP, over the client's 100 MiB request
    limit) go in several requests and are stored exactly once, also when written again."""
    table = scratch_table(RAW_TICKS)
    qdb.bootstrap([table])
    n = 300_000
    frame = tick_frame("SHFE.cu2402", [1_704_153_600_000_000_000 + i * 1_000_000 for i in range(n)])
    assert qdb.write(table, frame) == n
    assert qdb.write(table, frame) == n
    assert count(qdb, table) == n


def test_a_write_interrupted_by_signals_is_sent_again_once(questdb_settings: QuestDBSettings) -> None:
    """A signal landing in the middle of the ILP request (a debugger attaching, a stopped and continued
    process) makes the socket call fail with EINTR. The write is sent again on a new connection and the
    rows are stored exactly once."""
    import signal
    import threading

    table = scratch_table(RAW_TICKS)
    n = 300_000
    frame = tick_frame("SHFE.cu2402", [1_704_153_600_000_000_000 + i * 1_000_000 for i in range(n)])
    stop = threading.Event()
    main = threading.main_thread().ident
    pauses: list[float] = []

    def pause(seconds: float) -> None:  # the client's retry pause: the signals stop before the next attempt
        stop.set()
        pauses.append(seconds)
        time.sleep(seconds)

    def interrupt() -> None:
        while not stop.wait(0.001):
            signal.pthread_kill(main, signal.SIGUSR1)

    previous = signal.signal(signal.SIGUSR1, lambda *_: None)  # a handler: system calls return EINTR
    sender = threading.Thread(target=interrupt, daemon=True)
    try:
        with QuestDBClient(questdb_settings, sleep=pause) as client:
            client.bootstrap([table])
            sender.start()
            assert client.write(table, frame) == n
            stop.set()
            assert client.write_retries >= 1 and pauses, "no write was interrupted: the test proves nothing"
            assert count(client, table) == n
    finally:
        stop.set()
        sender.join(5)
        signal.signal(signal.SIGUSR1, previous)
