"""Doctor checks of QuestDB: HTTP and PGWire answer, the project's tables exist, no WAL table is suspended."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from ghtrader_assets.doctor.report import Check, Status, fail, ok, skip
from ghtrader_assets.io.questdb import QuestDBClient, QuestDBError, QuestDBSettings
from ghtrader_assets.io.questdb_schema import ALL_TABLES

_CREATE_SCHEMA = ("the first futures run creates every table and column (the QuestDB resource bootstraps "
                  "the schema, idempotently); or run the demo against this server")


def checks(timeout_s: float) -> Iterator[Check]:
    try:
        settings = QuestDBSettings.from_env()
    except ValueError as exc:
        yield fail("questdb.settings", f"unreadable QUESTDB_* setting: {exc}", "QUESTDB_HTTP_PORT and "
                   "QUESTDB_PG_PORT must be port numbers (a .env line wins over an exported variable)")
        return
    settings = replace(settings, connect_timeout_s=timeout_s, request_timeout_s=timeout_s)
    with QuestDBClient(settings) as client:
        yield _http(client)
        pgwire = _pgwire(client)
        yield pgwire
        if pgwire.status is not Status.OK:
            yield skip("questdb.schema", "needs PGWire")
            yield skip("questdb.wal", "needs PGWire")
            return
        yield _schema(client)
        yield _wal(client)


def _http(client: QuestDBClient) -> Check:
    """The port ILP writes and bulk exports use, with the same basic-auth header."""
    url = client.settings.http_url
    try:
        client.export("SELECT 1 AS ok")
    except QuestDBError as exc:
        return fail("questdb.http", str(exc),
                    "start QuestDB (`ghtrader-assets questdb start`) or point QUESTDB_HOST/QUESTDB_HTTP_PORT at it; "
                    "a 401 means QUESTDB_USER/QUESTDB_PASSWORD differ from the server's http.user/http.password")
    return ok("questdb.http", f"{url} answers (ILP writes, exports)")


def _pgwire(client: QuestDBClient) -> Check:
    where = f"{client.settings.host}:{client.settings.pg_port}"
    try:
        version = client.ping()
    except QuestDBError as exc:
        return fail("questdb.pgwire", str(exc),
                    "start QuestDB or point QUESTDB_HOST/QUESTDB_PG_PORT at it; a refused login means "
                    "QUESTDB_USER/QUESTDB_PASSWORD differ from the server's pg.user/pg.password")
    return ok("questdb.pgwire", f"{where} answers: {version}")


def _schema(client: QuestDBClient) -> Check:
    """Every table and column of questdb_schema (what the bootstrap creates), from one catalogue query."""
    rows = client.query("SELECT table_name, column_name FROM information_schema.columns()").rows()
    present: dict[str, set[str]] = {}
    for table_name, column_name in rows:
        present.setdefault(table_name, set()).add(column_name)
    missing = [t.name for t in ALL_TABLES if t.name not in present]
    if missing:
        return fail("questdb.schema", f"missing tables: {', '.join(missing)}", _CREATE_SCHEMA)
    short = [f"{t.name} lacks {', '.join(c for c in t.column_names if c not in present[t.name])}"
             for t in ALL_TABLES if not set(t.column_names) <= present[t.name]]
    if short:
        return fail("questdb.schema", "; ".join(short), _CREATE_SCHEMA)
    return ok("questdb.schema", f"all {len(ALL_TABLES)} tables with every column")


def _wal(client: QuestDBClient) -> Check:
    ours = {t.name for t in ALL_TABLES}
    rows = client.query("SELECT name, suspended FROM wal_tables()").rows()
    suspended = sorted(name for name, is_suspended in rows if is_suspended and name in ours)
    if suspended:
        first = suspended[0]
        return fail("questdb.wal", f"WAL apply suspended: {', '.join(suspended)} (writes are accepted, never applied)",
                    "find the cause in the QuestDB log (disk full, permissions...), fix it, then "
                    f"`ALTER TABLE {first} RESUME WAL` for each table")
    return ok("questdb.wal", f"no suspended WAL table among {len(ours & {name for name, _ in rows})}")
