"""The schema: SQLAlchemy 2.0 typed ORM classes for every table the bot keeps.

Alembic migrations (``alembic/versions``) are generated from and checked against this
metadata; ``tests/storage/test_storage_migrations.py`` fails when the two disagree. Change a
class here, then ``alembic revision --autogenerate -m "what"`` and review the script.

    python -c "from storage.models import Base; print(sorted(Base.metadata.tables))"

Model versions are stored as strings on requests and training runs, not as foreign keys:
a request must be logged even when the version that wrote it was never registered (a
shipped model, a dev artifact), because losing the log row is worse than a dangling name.
"""
from __future__ import annotations

import datetime as dt
import enum
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column

# Stable constraint names, so migrations can drop and alter them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

STYLE_LEN = 64  # config.toml style table names ("proverb_armenian")
VERSION_LEN = 128  # "shakespeare-20261122T080000-ab12"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes on every backend.

    SQLite keeps no time zone and hands back naive values; PostgreSQL keeps
    ``timestamptz``. Storing UTC and re-attaching it on the way out makes rows compare
    the same whichever database wrote them.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware (UTC) datetime")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Any):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class Outcome(enum.StrEnum):
    OK = "ok"
    ERROR = "error"  # the model or the inference service failed
    RATE_LIMITED = "rate_limited"
    BAD_INPUT = "bad_input"
    BUSY = "busy"  # too many requests in flight
    UNDELIVERED = "undelivered"  # answered, but the platform never took the reply


class StopReason(enum.StrEnum):
    STOP = "stop"  # the style's stop rule fired (genmodels.sampler.Sample)
    MAX_CHARS = "max_chars"


class TemperatureScope(enum.StrEnum):
    GLOBAL = "global"
    STYLE = "style"
    CHAT = "chat"


class VersionStatus(enum.StrEnum):
    CANDIDATE = "candidate"
    ACTIVE = "active"
    RETIRED = "retired"


class RunTrigger(enum.StrEnum):
    SCHEDULE = "schedule"
    ADMIN = "admin"
    MANUAL = "manual"


class RunStatus(enum.StrEnum):
    QUEUED = "queued"  # asked for (/retrain); the scheduler's poll job starts it
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


def one_of(column: str, values: type[enum.StrEnum], name: str | None = None):
    """A CHECK constraint limiting a string column to an enum's values."""
    allowed = ", ".join(f"'{v.value}'" for v in values)
    return CheckConstraint(f"{column} IN ({allowed})", name=name or column)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dt.datetime: UTCDateTime}
    # Every model here maps one Table (DeclarativeBase types it as any FromClause).
    __table__: ClassVar[Table]


class OnPlatform:
    """The columns of a user and of a chat: known by the platform's own id, once."""

    @declared_attr.directive
    def __table_args__(cls) -> tuple:
        # A function: each table needs a constraint object of its own.
        return (UniqueConstraint("platform", "external_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    external_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class User(OnPlatform, Base):
    """A person on one platform; the same human on Telegram and Discord is two users."""

    __tablename__ = "users"

    display_name: Mapped[str] = mapped_column(String(128), default="")


class Chat(OnPlatform, Base):
    """A conversation (group, channel or private chat) on one platform."""

    __tablename__ = "chats"

    title: Mapped[str] = mapped_column(String(128), default="")


class Request(Base):
    """One command someone sent, whatever became of it (ok, error or rejected)."""

    __tablename__ = "requests"
    __table_args__ = (one_of("outcome", Outcome),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # Idempotency key chosen by the caller: a request replayed from the spool after an
    # outage is inserted once, never twice.
    uid: Mapped[str] = mapped_column(String(32), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    chat_id: Mapped[int] = mapped_column(ForeignKey("chats.id"), index=True)
    command: Mapped[str] = mapped_column(String(64), default="")
    style: Mapped[str | None] = mapped_column(String(STYLE_LEN), index=True)
    variant: Mapped[str] = mapped_column(String(32), default="")
    prime: Mapped[str] = mapped_column(Text, default="")
    prime_chars: Mapped[int] = mapped_column(Integer, default=0)  # before truncation
    temperature: Mapped[float | None] = mapped_column(Float)
    top_k: Mapped[int | None] = mapped_column(Integer)
    top_p: Mapped[float | None] = mapped_column(Float)
    seed: Mapped[int | None] = mapped_column(BigInteger)
    max_chars: Mapped[int | None] = mapped_column(Integer)
    model_version: Mapped[str | None] = mapped_column(String(VERSION_LEN), index=True)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)


class Generation(Base):
    """The text a request produced (at most one per request)."""

    __tablename__ = "generations"
    __table_args__ = (one_of("stop_reason", StopReason),)

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(
        ForeignKey("requests.id", ondelete="CASCADE"), unique=True)
    text: Mapped[str] = mapped_column(Text)
    length: Mapped[int] = mapped_column(Integer)  # characters generated, before truncation
    stop_reason: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Rating(Base):
    """One person's +1 or -1 on one generation; rating again changes the value."""

    __tablename__ = "ratings"
    __table_args__ = (UniqueConstraint("generation_id", "user_id"),
                      CheckConstraint("value IN (-1, 1)", name="value"))

    id: Mapped[int] = mapped_column(primary_key=True)
    generation_id: Mapped[int] = mapped_column(
        ForeignKey("generations.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    value: Mapped[int] = mapped_column(SmallInteger)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


# A setting row is global (no style, no chat), per style, or per chat: never both.
_SCOPE_SHAPE = ("(scope = 'global' AND style IS NULL AND chat_id IS NULL)"
                " OR (scope = 'style' AND style IS NOT NULL AND chat_id IS NULL)"
                " OR (scope = 'chat' AND style IS NULL AND chat_id IS NOT NULL)")


class Setting(Base):
    """The current value of a tunable (``name``, e.g. "temperature") at one scope."""

    __tablename__ = "settings"
    __table_args__ = (one_of("scope", TemperatureScope),
                      CheckConstraint(_SCOPE_SHAPE, name="scope_shape"))

    id: Mapped[int] = mapped_column(primary_key=True)
    # "temperature|style|austen": one unique key, because UNIQUE over nullable columns
    # treats NULLs as distinct on both SQLite and PostgreSQL.
    key: Mapped[str] = mapped_column(String(160), unique=True)
    name: Mapped[str] = mapped_column(String(32))
    scope: Mapped[str] = mapped_column(String(8))
    style: Mapped[str | None] = mapped_column(String(STYLE_LEN))
    chat_id: Mapped[int | None] = mapped_column(ForeignKey("chats.id"))
    value: Mapped[float] = mapped_column(Float)
    set_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    set_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class SettingChange(Base):
    """Audit trail: every change of a setting, who made it and when (never updated)."""

    __tablename__ = "setting_changes"
    __table_args__ = (one_of("scope", TemperatureScope),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(32))
    scope: Mapped[str] = mapped_column(String(8))
    style: Mapped[str | None] = mapped_column(String(STYLE_LEN))
    chat_id: Mapped[int | None] = mapped_column(ForeignKey("chats.id"))
    old_value: Mapped[float | None] = mapped_column(Float)  # None: was unset
    new_value: Mapped[float | None] = mapped_column(Float)  # None: cleared
    changed_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    changed_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)


class ModelVersion(Base):
    """A trained artifact the registry knows; at most one is active per style.

    The active row is the style's pointer: every inference process serves it (promotion
    and rollback change it in one transaction, training/registry_ops.py)."""

    __tablename__ = "model_versions"
    __table_args__ = (
        one_of("status", VersionStatus),
        Index("uq_model_versions_active_style", "style", unique=True,
              sqlite_where=text("status = 'active'"),
              postgresql_where=text("status = 'active'")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    style: Mapped[str] = mapped_column(String(STYLE_LEN), index=True)
    version: Mapped[str] = mapped_column(String(VERSION_LEN), unique=True)
    # A folder on this machine, or the version's place in the model store
    # ("s3://bucket/prefix/STYLE/VERSION", genmodels/store.py).
    artifact_path: Mapped[str] = mapped_column(String(512))
    # The artifact's digest recorded at publication (genmodels/store.py: ``digest``); a
    # download that does not match it is refused. None: published before it was kept.
    sha256: Mapped[str | None] = mapped_column(String(64))
    val_loss: Mapped[float | None] = mapped_column(Float)  # nats/char on held-out text
    parent_version: Mapped[str | None] = mapped_column(String(VERSION_LEN))
    status: Mapped[str] = mapped_column(String(16), default=VersionStatus.CANDIDATE.value)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    promoted_at: Mapped[dt.datetime | None]
    retired_at: Mapped[dt.datetime | None]


class TelegramUpdate(Base):
    """A Telegram update as received, kept until it has been answered.

    Written before Telegram is told the update arrived and marked done after the reply,
    so updates a crash interrupted are finished at the next start (at-least-once), and a
    redelivered update id is recognised (bot/adapters/telegram_updates.py).
    """

    __tablename__ = "telegram_updates"
    __table_args__ = (UniqueConstraint("bot_id", "update_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    bot_id: Mapped[int] = mapped_column(BigInteger)  # update ids count per bot
    update_id: Mapped[int] = mapped_column(BigInteger)
    body: Mapped[str] = mapped_column(Text)  # the update's JSON
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    done_at: Mapped[dt.datetime | None]


class TrainingRun(Base):
    """One training job: why it started, its budget, and how it ended."""

    __tablename__ = "training_runs"
    __table_args__ = (one_of("trigger", RunTrigger), one_of("status", RunStatus))

    id: Mapped[int] = mapped_column(primary_key=True)
    style: Mapped[str] = mapped_column(String(STYLE_LEN), index=True)
    trigger: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=RunStatus.RUNNING.value)
    requested_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    budget_minutes: Mapped[float | None] = mapped_column(Float)
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    finished_at: Mapped[dt.datetime | None]
    metrics: Mapped[dict | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    model_version: Mapped[str | None] = mapped_column(String(VERSION_LEN))
    # Refreshed every few seconds by the scheduler running the run: a running run whose
    # heartbeat is too old lost its scheduler (training/registry_ops.py: fail_stale).
    heartbeat_at: Mapped[dt.datetime | None]
    # When a bot replica claimed this finished run's admin notice (bot/notices.py): set
    # by one conditional UPDATE, so N replicas announce it once.
    notified_at: Mapped[dt.datetime | None]


class LeaderLease(Base):
    """Who leads a role (the scheduler) on SQLite, until ``expires_at``.

    PostgreSQL needs no row: a session-level advisory lock does the job there and the
    server frees it when its holder dies (storage/leadership.py).
    """

    __tablename__ = "leader_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[dt.datetime]
