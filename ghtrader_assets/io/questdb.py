"""QuestDB access: ILP-over-HTTP frame writes, PGWire reads (psycopg 3), DDL bootstrap and the WAL barrier."""

from __future__ import annotations

import io
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from base64 import b64encode
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any, Callable, Iterable, Sequence

import polars as pl
import psycopg
from questdb import QuestDBError as IngressError, QuestDBErrorCode, Sender

from ghtrader_assets.io.questdb_schema import ALL_TABLES, Table

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,126}$")


class QuestDBError(RuntimeError):
    """QuestDB refused a statement, or could not be reached within the configured time."""


class InvalidIdentifierError(ValueError):
    """A table or column name that is not a plain identifier; no SQL is built from it."""


def midnight(day: date) -> datetime:
    """A date as QuestDB stores day-keyed timestamps: 00:00 UTC of the date (naive)."""
    return datetime(day.year, day.month, day.day)


def day_literal(day: date) -> str:
    """A date as a SQL timestamp literal (00:00 UTC)."""
    return f"'{day.isoformat()}T00:00:00.000000Z'"


def ts_literal(ns: int) -> str:
    """Epoch nanoseconds as an ISO UTC timestamp text (QuestDB timestamps hold microseconds)."""
    return datetime.fromtimestamp(ns / 1e9, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def identifier(name: str) -> str:
    """Return `name` if it is a plain SQL identifier (letters, digits, underscore), else raise."""
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        raise InvalidIdentifierError(f"not a valid QuestDB identifier: {name!r}")
    return name


@dataclass(frozen=True)
class QuestDBSettings:
    """Where the server is and how long to wait for it. The password never appears in repr or logs."""

    host: str = "127.0.0.1"
    http_port: int = 9000
    pg_port: int = 8812
    user: str = "admin"
    password: str = field(default="quest", repr=False)
    connect_timeout_s: float = 5.0
    request_timeout_s: float = 30.0
    # How long ILP-over-HTTP keeps retrying a failed flush before it reports the error.
    retry_timeout_s: float = 10.0

    @classmethod
    def from_env(cls) -> "QuestDBSettings":
        """From QUESTDB_HOST, QUESTDB_HTTP_PORT, QUESTDB_PG_PORT, QUESTDB_USER, QUESTDB_PASSWORD."""
        return cls(
            host=os.environ.get("QUESTDB_HOST", "127.0.0.1"),
            http_port=int(os.environ.get("QUESTDB_HTTP_PORT", "9000")),
            pg_port=int(os.environ.get("QUESTDB_PG_PORT", "8812")),
            user=os.environ.get("QUESTDB_USER", "admin"),
            password=os.environ.get("QUESTDB_PASSWORD", "quest"),
        )

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    def ilp_conf(self) -> str:
        return (
            f"http::addr={self.host}:{self.http_port};username={self.user};password={self.password};"
            f"request_timeout={int(self.request_timeout_s * 1000)};retry_timeout={int(self.retry_timeout_s * 1000)};"
            "auto_flush=off;"
        )


WRITE_CHUNK_ROWS = 50_000  # rows per ILP request: about 40 MB of ticks, under the client's 100 MiB limit
WRITE_ATTEMPTS = 3  # an ILP request that failed in transport is sent again, on a new connection
WRITE_RETRY_PAUSE_S = 0.5  # times the attempt number


class QuestDBClient:
    """One connection's worth of QuestDB: reuse it across the partitions of a run, close it at the end."""

    def __init__(self, settings: QuestDBSettings, sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self._conn: psycopg.Connection | None = None
        self._sender: Sender | None = None
        self._sleep = sleep
        self.write_retries = 0  # ILP requests sent again after a transport failure (see _send)

    # -- PGWire -------------------------------------------------------------------------------------
    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            s = self.settings
            try:
                self._conn = psycopg.connect(
                    host=s.host,
                    port=s.pg_port,
                    user=s.user,
                    password=s.password,
                    dbname="qdb",
                    autocommit=True,  # a failed statement must not leave the session in an aborted transaction
                    connect_timeout=max(1, int(s.connect_timeout_s)),
                )
            except psycopg.OperationalError as exc:
                raise QuestDBError(
                    f"cannot connect to QuestDB PGWire at {s.host}:{s.pg_port}: {_first_line(exc)}"
                ) from exc
        return self._conn

    def _run(self, sql: str, params: Sequence[Any] | None, fetch: bool) -> tuple[list[str], list[tuple]]:
        for attempt in (1, 2):
            conn = self._connection()
            try:
                with conn.cursor(binary=True) as cur:
                    cur.execute(sql, params or None)
                    if not fetch or cur.description is None:
                        return [], []
                    return [d.name for d in cur.description], cur.fetchall()
            except psycopg.OperationalError as exc:
                # A dropped connection is retried once on a fresh one; anything else is the caller's error.
                self.close()
                if attempt == 2:
                    raise QuestDBError(f"QuestDB PGWire failed: {_first_line(exc)}") from exc
            except psycopg.Error as exc:
                raise QuestDBError(f"QuestDB rejected `{_shorten(sql)}`: {_first_line(exc)}") from exc
        raise AssertionError("unreachable")

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        """Run one statement (DDL is run one statement at a time)."""
        self._run(sql, params, fetch=False)

    def query(self, sql: str, params: Sequence[Any] | None = None) -> pl.DataFrame:
        """Run a query over PGWire and return its rows; timestamps come back as naive UTC datetimes."""
        names, rows = self._run(sql, params, fetch=True)
        if not rows:
            return pl.DataFrame({n: [] for n in names})
        return pl.DataFrame(rows, schema=names, orient="row", infer_schema_length=None)

    def scalar(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        names, rows = self._run(sql, params, fetch=True)
        return rows[0][0] if rows else None

    def export(self, sql: str) -> pl.DataFrame:
        """Bulk read through the HTTP export endpoint as Parquet: columnar, no row-by-row fetching.

        The SQL must be built only from validated identifiers and literals the caller formatted itself.
        """
        url = f"{self.settings.http_url}/exp?" + urllib.parse.urlencode({"query": sql, "fmt": "parquet"})
        request = urllib.request.Request(url, headers=self._auth_header())
        try:
            with urllib.request.urlopen(request, timeout=self.settings.request_timeout_s) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            raise QuestDBError(f"QuestDB export failed ({exc.code}): {exc.read()[:300]!r}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise QuestDBError(f"cannot reach QuestDB HTTP at {self.settings.http_url}: {exc}") from exc
        return pl.read_parquet(io.BytesIO(payload))

    def export_parquet(self, sql: str, codec: str = "LZ4_RAW") -> bytes:
        """The result of `sql` as Parquet bytes from /exp, compressed with `codec` (QuestDB's default is ZSTD,
        the costliest to write). The server runs at most two exports at a time and refuses a third (HTTP
        429): a refused export is sent again after a short pause until request_timeout_s has passed.
        The SQL must be built only from validated identifiers and literals the caller formatted itself."""
        url = f"{self.settings.http_url}/exp?" + urllib.parse.urlencode(
            {"query": sql, "fmt": "parquet", "compression_codec": codec})
        deadline = time.monotonic() + self.settings.request_timeout_s
        pause = 0.05
        while True:
            request = urllib.request.Request(url, headers=self._auth_header())
            try:
                with urllib.request.urlopen(request, timeout=self.settings.request_timeout_s) as response:
                    return response.read()
            except urllib.error.HTTPError as exc:
                if exc.code == 429 and time.monotonic() + pause < deadline:
                    exc.read()
                    self._sleep(pause)
                    pause = min(pause * 2, 1.0)
                    continue
                raise QuestDBError(f"QuestDB export failed ({exc.code}): {exc.read()[:300]!r}") from exc
            except (urllib.error.URLError, OSError) as exc:
                raise QuestDBError(f"cannot reach QuestDB HTTP at {self.settings.http_url}: {exc}") from exc

    def _auth_header(self) -> dict[str, str]:
        token = b64encode(f"{self.settings.user}:{self.settings.password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    # -- ILP over HTTP ------------------------------------------------------------------------------
    def write(self, table: Table, frame: pl.DataFrame) -> int:
        """Write a frame holding exactly the table's columns (ts as the designated timestamp), in ILP-over-HTTP
        requests of at most WRITE_CHUNK_ROWS rows (the client refuses requests over 100 MiB: a week of one
        contract's ticks is more). Each request is applied whole or not at all; a failed write raises after
        the requests before it were applied, which every caller re-runs idempotently. Returns rows sent."""
        if frame.height == 0:
            return 0
        missing = set(table.column_names) - set(frame.columns) - set(table.optional)
        if missing:
            raise ValueError(f"frame for {table.name} lacks columns {sorted(missing)}")
        columns = [c for c in table.column_names if c in frame.columns]
        symbols = [c for c in table.symbol_columns if c in columns]
        for offset in range(0, frame.height, WRITE_CHUNK_ROWS):
            chunk = frame.slice(offset, WRITE_CHUNK_ROWS).select(columns)
            self._send(table, chunk.to_pandas(use_pyarrow_extension_array=True), symbols)
        return frame.height

    def _send(self, table: Table, pdf: Any, symbols: list[str]) -> None:
        """One ILP request; sent again on a new connection when it failed in transport (e.g. a system call
        interrupted by a signal, a dropped keep-alive connection): every table deduplicates on its keys,
        so a request that did arrive the first time changes nothing the second."""
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                if self._sender is None:  # one sender (one keep-alive HTTP connection) per client
                    self._sender = Sender.from_conf(self.settings.ilp_conf())
                    self._sender.establish()
                self._sender.dataframe(pdf, table_name=identifier(table.name), symbols=symbols, at="ts")
                self._sender.flush()
                return
            except IngressError as exc:
                self._close_sender()
                if _is_transport_failure(exc) and attempt < WRITE_ATTEMPTS:
                    self.write_retries += 1
                    self._sleep(WRITE_RETRY_PAUSE_S * attempt)
                    continue
                raise QuestDBError(
                    f"QuestDB ILP write to {table.name} at {self.settings.http_url} failed"
                    f"{f' after {attempt} attempts' if attempt > 1 else ''}: {_first_line(exc)}"
                ) from exc

    # -- schema and consistency ---------------------------------------------------------------------
    def bootstrap(self, tables: Iterable[Table] = ALL_TABLES) -> list[str]:
        """Create every missing table and add the columns a table made by an earlier version lacks;
        idempotent. Returns the names of the tables it checked."""
        names = []
        for table in tables:
            identifier(table.name)
            self.execute(table.ddl())
            present = set(self.query(f"SELECT \"column\" FROM table_columns('{table.name}')")["column"].to_list())
            missing = [(name, kind) for name, kind in table.columns if name not in present]
            for name, kind in missing:  # one ALTER per column: WAL tables take one change per statement
                self.execute(f"ALTER TABLE {table.name} ADD COLUMN {identifier(name)} {kind}")
            if missing:  # a WAL table applies ALTER asynchronously: make the next read see the columns
                self.wait_for_wal(table)
            names.append(table.name)
        return names

    def wait_for_wal(self, table: Table | str, timeout_s: float = 60.0) -> None:
        """Block until every committed WAL transaction of `table` is applied, so the next read sees it."""
        name = identifier(table.name if isinstance(table, Table) else table)
        deadline = time.monotonic() + timeout_s
        pause = 0.005  # WAL apply usually takes milliseconds; back off to 50 ms for long applies
        while True:
            row = self.query(
                "SELECT writerTxn, sequencerTxn, suspended FROM wal_tables() WHERE name = %s", (name,)
            ).rows()
            if not row:
                raise QuestDBError(f"{name} is not a WAL table on this server")
            writer_txn, sequencer_txn, suspended = row[0]
            if suspended:
                raise QuestDBError(f"WAL apply is suspended for {name}; see the QuestDB log")
            if writer_txn >= sequencer_txn:
                return
            if time.monotonic() > deadline:
                raise QuestDBError(f"{name}: WAL not applied after {timeout_s:.0f}s ({writer_txn}/{sequencer_txn})")
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    def ping(self) -> str:
        return str(self.scalar("SELECT version()"))

    def _close_sender(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None:
            try:
                sender.close(flush=False)
            except IngressError:
                pass

    def close(self) -> None:
        self._close_sender()
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def __enter__(self) -> "QuestDBClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _is_transport_failure(exc: IngressError) -> bool:
    """The request did not get through (socket error, or an I/O error while the client asked the server
    for its protocol version), as opposed to the server rejecting what it was sent."""
    code = getattr(exc, "code", None)
    return code in (QuestDBErrorCode.SocketError, QuestDBErrorCode.ConnectTimeout) or " io: " in str(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _shorten(sql: str, limit: int = 160) -> str:
    flat = " ".join(sql.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
