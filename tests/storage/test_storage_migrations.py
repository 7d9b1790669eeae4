"""Alembic is the only way the schema changes: up from empty, down to base, up again,
and the models must match the migrations (the equivalent of ``alembic check``)."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Integer, MetaData, Table, inspect

from storage.__main__ import alembic_config, downgrade, main, upgrade
from storage.engine import make_engine
from storage.models import Base


def tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def diff(url: str, metadata: MetaData = Base.metadata) -> list:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        engine.dispose()


def test_one_head_and_a_linear_history():
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert len(script.get_heads()) == 1
    assert [r.revision for r in script.walk_revisions()][-1] == "0001"


def test_up_down_and_up_again(fresh_url):
    assert tables(fresh_url) == set()
    upgrade(fresh_url)
    assert tables(fresh_url) == set(Base.metadata.tables) | {"alembic_version"}
    assert diff(fresh_url) == []
    downgrade(fresh_url, "base")
    assert tables(fresh_url) == {"alembic_version"}
    upgrade(fresh_url)
    assert diff(fresh_url) == []


def test_the_check_fails_when_models_and_migrations_disagree(migrated_url):
    drifted = MetaData()
    for table in Base.metadata.sorted_tables:
        table.to_metadata(drifted)
    Table("mood", drifted, Column("id", Integer, primary_key=True))
    drifted.tables["ratings"].append_column(Column("weight", Integer))
    changes = {d[0] if isinstance(d, tuple) else d[0][0] for d in diff(migrated_url,
                                                                        drifted)}
    assert {"add_table", "add_column"} <= changes


def test_cli_migrates_and_checks(fresh_url, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", fresh_url)
    assert main(["migrate"]) == 0
    assert main(["check"]) == 0
    assert "models and migrations agree" in capsys.readouterr().out


def test_cli_says_clearly_when_the_database_is_down(monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/test")
    assert main(["migrate"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("storage: database postgresql+psycopg://postgres@127.0.0.1:1/test"
                          " unavailable: ")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
