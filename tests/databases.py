"""Empty migrated databases for tests that need real commits across processes.

``migrated`` yields the URL of a SQLite file or of a fresh schema in the local
PostgreSQL (127.0.0.1:5432, trust auth, database ``test``), dropped afterwards; without
a PostgreSQL server the PostgreSQL variant skips, saying why.

    @pytest.fixture(params=BACKENDS)
    def url(request, tmp_path):
        yield from migrated(request.param, tmp_path, "sched")
"""
from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from storage.__main__ import upgrade

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BACKENDS = ("sqlite", "postgresql")


def pg_schema_url(prefix: str = "t") -> tuple[str, Callable[[], None]]:
    """A fresh schema in the local PostgreSQL, and a function that drops it."""
    admin = create_engine(PG_URL, connect_args={"connect_timeout": 3})
    schema = f"{prefix}_{uuid.uuid4().hex[:8]}"
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # no server here: the PostgreSQL variant skips
        admin.dispose()
        pytest.skip(f"no PostgreSQL at {PG_URL}: {str(exc).splitlines()[0][:100]}")

    def drop() -> None:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
    return f"{PG_URL}?options=-csearch_path%3D{schema}", drop


def migrated(backend: str, tmp_path: Path, name: str) -> Iterator[str]:
    """A database migrated to head: ``tmp_path/NAME.db``, or a PostgreSQL schema."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / f'{name}.db'}"
        upgrade(url)
        yield url
        return
    url, drop = pg_schema_url(name)
    upgrade(url)
    yield url
    drop()
