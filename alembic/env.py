"""Alembic environment: migrates the database storage.engine picks (see alembic.ini).

The URL is, in order: ``config.attributes["url"]`` (tests and ``python -m storage``),
``alembic -x url=...``, ``DATABASE_URL``, config.toml ``[database] url``, the SQLite file.
SQLite migrations run in batch mode, because SQLite's ALTER TABLE cannot change columns
or constraints; Alembic copies the table instead.
"""
from logging.config import fileConfig

from alembic import context
from sqlalchemy import pool

from storage.engine import config_path, database_url, make_engine, normalise_url
from storage.models import Base, UTCDateTime

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    if config.attributes.get("url"):
        return config.attributes["url"]
    x_url = context.get_x_argument(as_dictionary=True).get("url")
    if x_url:
        return normalise_url(x_url, config_path().parent, "-x url")
    return database_url()


def _render_item(type_, obj, autogen_context):
    # Migrations speak plain SQLAlchemy types, so they never import our models.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


# Tables other libraries own in our database: APScheduler's job store (training/scheduler.py)
# creates and migrates its own table, so autogenerate and `storage check` ignore it.
FOREIGN_TABLES = {"apscheduler_jobs"}


def _include_name(name, type_, parent_names) -> bool:
    return not (type_ == "table" and name in FOREIGN_TABLES)


def _options(url: str) -> dict:
    return {"target_metadata": target_metadata, "render_item": _render_item,
            "include_name": _include_name,
            "render_as_batch": url.startswith("sqlite"), "compare_type": True}


def run_migrations_offline() -> None:
    url = _url()
    context.configure(url=url, literal_binds=True, dialect_opts={"paramstyle": "named"},
                      **_options(url))
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = _url()
    engine = make_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            context.configure(connection=connection, **_options(url))
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if config.config_file_name is not None and not config.attributes.get("url"):
    # Only from the command line: programmatic callers keep their own logging.
    fileConfig(config.config_file_name, disable_existing_loggers=False)

if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
