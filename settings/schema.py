"""Every table and key config.toml may hold, with its type and default.

msgspec decodes the parsed TOML into these frozen Structs: a key that is not declared
here, or a value of the wrong type, is refused (``settings.load`` turns msgspec's error
into a ``ConfigError`` naming the key). Ranges and links between tables (a temperature
the sampler takes, a parent style that exists) are checked by the module that owns the
table: genmodels/styles.py, bot/settings.py, bot/adapters/discord.py,
serving/config.py, storage/engine.py, storage/bandit.py,
training/schedule_config.py and training/tasks.py.

Tables whose keys override another table's (``[styles.NAME.training]`` over
``[training]``, ``[schedule.styles.NAME]`` over ``[schedule]``) leave unset keys
``UNSET``, so the owner can tell "not given" from "given the default".

    python -c "import settings; print(settings.load().inference)"
"""
from __future__ import annotations

from typing import Annotated

from msgspec import UNSET, Meta, Struct, UnsetType


class Table(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of every table: immutable, unknown keys refused, keys only by name.

    Subclasses inherit these options; they repeat ``frozen=True`` because type checkers
    do not see it inherited."""


class Sampling(Table, frozen=True):
    temperature: float = 0.8  # a style's default when it sets none
    top_k: int = 0  # 0: off
    top_p: float = 1.0  # 1: off


class Database(Table, frozen=True):
    # DATABASE_URL in the environment wins (storage/engine.py).
    url: Annotated[str, Meta(min_length=1)] = "sqlite:///var/stylebot.db"


class Model(Table, frozen=True):
    """Overrides of genmodels.config.ModelConfig (its defaults apply to unset keys)."""

    embed_dim: int | UnsetType = UNSET
    hidden: int | UnsetType = UNSET
    n_layers: int | UnsetType = UNSET
    dropout: float | UnsetType = UNSET


class Training(Table, frozen=True):
    """Overrides of genmodels.config.TrainConfig (its defaults apply to unset keys)."""

    minutes: float | UnsetType = UNSET
    seq_len: int | UnsetType = UNSET
    batch_size: int | UnsetType = UNSET
    learning_rate: float | UnsetType = UNSET
    warmup_steps: int | UnsetType = UNSET
    min_lr_ratio: float | UnsetType = UNSET
    clipnorm: float | UnsetType = UNSET
    val_fraction: float | UnsetType = UNSET
    steps_per_epoch: int | UnsetType = UNSET
    patience: int | UnsetType = UNSET
    seed: int | UnsetType = UNSET
    weights_dtype: str | UnsetType = UNSET
    precision: str | UnsetType = UNSET
    parent: str | UnsetType = UNSET


class Style(Table, frozen=True):
    """``[styles.NAME]``: one chat command (and variant) and its model."""

    command: str
    corpus: str  # relative to config.toml
    description: str
    default_chars: int
    max_chars: int
    variant: str = ""
    stop: str = "blank_line"
    temperature: float | UnsetType = UNSET  # unset: [sampling] temperature
    model: Model = Model()
    training: Training = Training()
    exclude_heldout_of: tuple[str, ...] = ()


class Base(Table, frozen=True):
    """``[bases.NAME]``: a language model over several styles' training text."""

    styles: tuple[str, ...]
    description: str | UnsetType = UNSET  # unset: the base's name
    model: Model = Model()
    training: Training = Training()


class Bot(Table, frozen=True):
    chat_temperature_for_all: bool = True
    max_in_flight: int = 64
    max_waiting: int = 200
    max_prime_chars: int = 1000
    notify_every_s: float = 30.0
    db_wait_s: float = 2.0
    metrics_port: int = 0
    metrics_listen: str = "127.0.0.1"


class RateLimit(Table, frozen=True):
    burst: float = 5.0
    per_minute: float = 12.0


# Chat platforms give user ids as numbers or strings; both are accepted and compared
# as strings (bot/settings.py).
Ids = tuple[str | int, ...]


class Admins(Table, frozen=True):
    console: Ids = ()
    telegram: Ids = ()
    discord: Ids = ()
    discord_roles: Ids = ()
    discord_guilds: Ids = ()


class Telegram(Table, frozen=True):
    mode: str = "polling"
    webhook_url: str = ""
    listen: str = "127.0.0.1"
    port: int = 8443
    # Webhook replicas: a replica's unanswered updates go to another after this long
    # without its renewal (bot/adapters/telegram_updates.py).
    takeover_s: Annotated[float, Meta(gt=0)] = 30.0


class Discord(Table, frozen=True):
    message_content: bool = False
    prefixes: tuple[str, ...] = ("!", "/")
    sync_guild: int = 0  # 0: slash commands synced globally
    shard_count: int = 0  # 0: as many shards as Discord recommends, all in this process
    shard_ids: tuple[int, ...] = ()  # with shard_count: this process's shards; (): all


class Plan(Table, frozen=True):
    """Per-style retraining keys: in ``[schedule]`` for all, ``[schedule.styles.NAME]``
    for one (training/schedule_config.py holds the defaults)."""

    cron: str | UnsetType = UNSET
    enabled: bool | UnsetType = UNSET
    minutes: float | UnsetType = UNSET
    margin: float | UnsetType = UNSET
    keep: int | UnsetType = UNSET
    scratch: bool | UnsetType = UNSET
    learning_rate_scale: float | UnsetType = UNSET


class Schedule(Plan, frozen=True):
    jitter_seconds: int | UnsetType = UNSET
    misfire_grace_seconds: int | UnsetType = UNSET
    coalesce: bool | UnsetType = UNSET
    poll_seconds: int | UnsetType = UNSET
    timeout_slack_seconds: int | UnsetType = UNSET
    nightly_bandit: str | UnsetType = UNSET
    heartbeat_seconds: float | UnsetType = UNSET
    styles: dict[str, Plan] = {}


class Bandit(Table, frozen=True):
    enabled: bool = True  # false: the style's temperature from config
    temperatures: tuple[float, ...] = (0.3, 0.5, 0.7, 0.9, 1.1)
    explore: float = 0.05
    window_days: float = 60.0
    cache_seconds: float = 60.0


class Inference(Table, frozen=True):
    # Neither: the batching engine in this process. Both at once is refused, and each
    # must be an http(s) URL (serving/config.py).
    url: str = ""  # one service (the same as urls = [url])
    urls: tuple[str, ...] = ()  # replicas, balanced by least outstanding requests
    timeout_s: float = 60.0
    retries: int = 2
    max_batch: int = 256
    max_queue: int = 256
    poll_s: float = 2.0
    backend: str = "auto"
    blas_threads: str | int = "auto"  # "auto" or a thread count
    # The service's HTTP server (serving/service_http.py).
    keepalive_s: float = 30.0
    read_timeout_s: float = 10.0
    max_connections: int = 1024


class Redis(Table, frozen=True):
    # REDIS_URL in the environment wins; "" and no REDIS_URL: no Redis (bot/ratelimit_redis.py).
    url: str = ""  # e.g. "redis://127.0.0.1:6379/0": per-user rate limits shared by replicas
    key_prefix: Annotated[str, Meta(min_length=1)] = "stylebot:"


class Store(Table, frozen=True):
    """Where published model versions live (genmodels/store.py). Credentials come only
    from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN)."""

    # MODEL_STORE_URL in the environment wins. "": this machine's var/models (one
    # machine); "s3://BUCKET/PREFIX": an object store every machine reads.
    url: str = ""
    endpoint_url: str = ""  # "": AWS itself; else e.g. "http://127.0.0.1:9000" (MinIO)
    region: str = ""  # "": boto3's default (AWS_DEFAULT_REGION)
    cache: str = ""  # downloaded versions; "": var/cache/models (MODEL_CACHE wins)


class Queue(Table, frozen=True):
    """Training fan-out through a task queue (training/tasks.py): with a broker the
    scheduler only enqueues runs and ``python -m training.worker`` processes train them."""

    # QUEUE_URL in the environment wins; "" and no QUEUE_URL: no broker, the scheduler
    # trains itself (one machine). The password only from the environment (QUEUE_URL,
    # or QUEUE_PASSWORD added to a url like "amqp://guest@127.0.0.1:5672/%2F").
    url: str = ""
    name: Annotated[str, Meta(min_length=1, max_length=200)] = "stylebot-training"
    # A run whose worker stopped renewing its heartbeat this long is taken over by
    # another worker, or failed once it has had ``attempts``.
    lease_seconds: Annotated[float, Meta(gt=0)] = 60.0
    attempts: Annotated[int, Meta(ge=1, le=5)] = 2


class Config(Table, frozen=True):
    """The whole of config.toml; every table is optional."""

    sampling: Sampling = Sampling()
    database: Database = Database()
    training: Training = Training()
    model: Model = Model()
    bases: dict[str, Base] = {}
    styles: dict[str, Style] = {}
    bot: Bot = Bot()
    rate_limit: RateLimit = RateLimit()
    admins: Admins = Admins()
    telegram: Telegram = Telegram()
    discord: Discord = Discord()
    schedule: Schedule = Schedule()
    bandit: Bandit = Bandit()
    inference: Inference = Inference()
    redis: Redis = Redis()
    store: Store = Store()
    queue: Queue = Queue()


def given(table: Table) -> dict:
    """The keys of ``table`` that config.toml set (``UNSET`` ones left out)."""
    return {name: value for name in table.__struct_fields__
            if (value := getattr(table, name)) is not UNSET}
