"""Dagster resources shared by the asset families: the canonical QuestDB store."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
from pydantic import PrivateAttr

from ghtrader_assets.io.questdb import QuestDBClient, QuestDBSettings


def _default(name: str):
    """QuestDBSettings' default: written once, shown by the resource."""
    return QuestDBSettings.__dataclass_fields__[name].default


class QuestDBResource(dg.ConfigurableResource):
    """The QuestDB server: ILP over HTTP for writes, PGWire for reads. The schema is bootstrapped
    (idempotently) once per process before the first client is handed out."""

    host: str = _default("host")
    http_port: int = _default("http_port")
    pg_port: int = _default("pg_port")
    user: str = _default("user")
    password: str = _default("password")
    connect_timeout_s: float = _default("connect_timeout_s")
    request_timeout_s: float = _default("request_timeout_s")
    retry_timeout_s: float = _default("retry_timeout_s")

    _bootstrapped: bool = PrivateAttr(default=False)

    def settings(self) -> QuestDBSettings:
        return QuestDBSettings(
            host=self.host,
            http_port=self.http_port,
            pg_port=self.pg_port,
            user=self.user,
            password=self.password,
            connect_timeout_s=self.connect_timeout_s,
            request_timeout_s=self.request_timeout_s,
            retry_timeout_s=self.retry_timeout_s,
        )

    @contextmanager
    def client(self) -> Iterator[QuestDBClient]:
        with QuestDBClient(self.settings()) as client:
            if not self._bootstrapped:
                client.bootstrap()
                self._bootstrapped = True
            yield client


def questdb_from_env() -> QuestDBResource:
    """The resource as deployed: every setting from the environment (see .env.example), resolved by
    Dagster at run time, so the UI shows variable names and never the password."""
    return QuestDBResource(
        host=dg.EnvVar("QUESTDB_HOST"),
        http_port=dg.EnvVar.int("QUESTDB_HTTP_PORT"),
        pg_port=dg.EnvVar.int("QUESTDB_PG_PORT"),
        user=dg.EnvVar("QUESTDB_USER"),
        password=dg.EnvVar("QUESTDB_PASSWORD"),
    )
