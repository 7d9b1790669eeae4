"""Which database: DATABASE_URL > config.toml [database] url > var/stylebot.db; SQLite tuning."""
from __future__ import annotations

import pytest
from sqlalchemy import text

from storage.engine import ROOT, database_url, describe, make_engine
from storage.errors import StorageConfigError


def write_config(tmp_path, body: str):
    path = tmp_path / "config.toml"
    path.write_text(body, encoding="utf-8")
    return path


def test_environment_overrides_the_config(tmp_path):
    config = write_config(tmp_path, '[database]\nurl = "sqlite:///from_config.db"\n')
    env = {"DATABASE_URL": "postgres://bot:s3cret@db.internal:5432/stylebot"}
    assert database_url(env, config) == (
        "postgresql+psycopg://bot:s3cret@db.internal:5432/stylebot")
    assert database_url({}, config) == f"sqlite:///{tmp_path / 'from_config.db'}"


def test_default_is_the_sqlite_file_under_var(tmp_path):
    assert database_url({}, write_config(tmp_path, "[sampling]\n")) == (
        f"sqlite:///{tmp_path / 'var' / 'stylebot.db'}")
    assert database_url({}, tmp_path / "missing.toml") == (
        f"sqlite:///{tmp_path / 'var' / 'stylebot.db'}")


def test_the_shipped_config_uses_var(monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("BOT_CONFIG", raising=False)
    assert database_url() == f"sqlite:///{ROOT / 'var' / 'stylebot.db'}"


@pytest.mark.parametrize("env, body, fragment", [
    ({"DATABASE_URL": "mysql://x@y/z"}, "", "DATABASE_URL: 'mysql' is not supported"),
    ({"DATABASE_URL": "not a url"}, "", "DATABASE_URL: cannot parse"),
    ({}, '[database]\nurl = ""\n', "database.url: must be a non-empty string"),
    ({}, '[database]\nurl = 5\n', "database.url: must be a non-empty string"),
    ({}, '[database\n', "config.toml: "),
])
def test_bad_urls_name_their_source(tmp_path, env, body, fragment):
    with pytest.raises(StorageConfigError, match=fragment):
        database_url(env, write_config(tmp_path, body))


def test_passwords_are_hidden_in_log_lines():
    assert describe("postgresql+psycopg://bot:s3cret@db/x") == (
        "postgresql+psycopg://bot:***@db/x")


def test_sqlite_is_tuned(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'sub' / 't.db'}", busy_timeout_ms=1234)
    try:
        with engine.connect() as conn:
            pragma = lambda name: conn.execute(text(f"PRAGMA {name}")).scalar()  # noqa: E731
            assert pragma("journal_mode") == "wal"
            assert pragma("foreign_keys") == 1
            assert pragma("busy_timeout") == 1234
            assert pragma("synchronous") == 1  # NORMAL
    finally:
        engine.dispose()
