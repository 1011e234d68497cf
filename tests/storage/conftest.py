"""Storage test fixtures: ``store_location`` runs a test once on a SQLite file and once on a fresh database of a real
PostgreSQL cluster (``offchain.devkit.postgres``, one per session). A machine without PostgreSQL's server fails
these tests with the reason (``make install`` installs it); nothing is skipped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from offchain.devkit.postgres import PostgresCluster


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_location(request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    if request.param == "sqlite":
        return tmp_path / "r.sqlite3"
    return request.getfixturevalue("postgres_cluster").database()
