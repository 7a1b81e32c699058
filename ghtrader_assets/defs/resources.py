"""Dagster resources shared by the asset families: the canonical QuestDB store."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
from pydantic import PrivateAttr

from ghtrader_assets.io.questdb import QuestDBClient, QuestDBSettings


class QuestDBResource(dg.ConfigurableResource):
    """The QuestDB server: ILP over HTTP for writes, PGWire for reads. The schema is bootstrapped
    (idempotently) once per process before the first client is handed out."""

    host: str = "127.0.0.1"
    http_port: int = 9000
    pg_port: int = 8812
    user: str = "admin"
    password: str = "quest"
    connect_timeout_s: float = 5.0
    request_timeout_s: float = 30.0
    retry_timeout_s: float = 10.0

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
