"""The simulated machines of ``bench/cluster.py`` and the shared services they use.

Each machine is a folder of its own: a copy of the code (so ``settings.ROOT``, and with
it every default under ``var/``, is that folder), its config.toml, the corpus, the
shipped model and ``var/``. Nothing on disk is shared between machines; they meet only
in PostgreSQL (a schema made for the run), Redis (a key prefix made for the run), the
broker, the S3 server and over HTTP.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # tests.databases: the tests' PostgreSQL schema helper
    sys.path.insert(0, str(ROOT))
CODE = ("bot", "genmodels", "serving", "settings", "storage", "training")
REDIS_URL = os.environ.get("CLUSTER_REDIS_URL", "redis://127.0.0.1:6379/0")
AMQP_URL = os.environ.get("CLUSTER_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1"}
TOKEN = "123456:TEST-token"
SECRET = "cluster-s3cret"
ADMIN = 424242  # the Telegram admin's user id (also their private chat)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reachable(url: str, default_port: int) -> str | None:
    """None when a TCP connection to the URL's host and port opens, else why not."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or default_port
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as exc:
        return f"{host}:{port} not reachable ({exc})"
    return None


def missing_services() -> list[str]:
    """What this machine lacks for the cluster bench, one phrase each."""
    from tests.databases import PG_URL

    problems = [f"{name}: {why}" for name, why in (
        ("PostgreSQL", reachable(PG_URL, 5432)), ("Redis", reachable(REDIS_URL, 6379)),
        ("RabbitMQ", reachable(AMQP_URL, 5672))) if why]
    if shutil.which("haproxy") is None:
        problems.append("haproxy is not installed (apt-get install haproxy)")
    try:
        import moto.server  # noqa: F401
    except ImportError:
        problems.append("moto[server] is not installed (pip install -e '.[dev]')")
    return problems


class Schema:
    """A fresh PostgreSQL schema for the run (the tests' helper), migrated; ``drop()``
    removes it."""

    def __init__(self) -> None:
        from storage.__main__ import upgrade
        from tests.databases import pg_schema_url

        self.url, self.drop = pg_schema_url("cluster")
        upgrade(self.url)


def clear_redis(prefix: str) -> int:
    """Delete the run's keys (its prefix is unique to the run)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=500))
        return client.delete(*keys) if keys else 0
    finally:
        client.close()


def delete_queues(name: str) -> None:
    """Delete the run's queue and the ones Dramatiq adds (delayed, dead letters)."""
    import pika  # type: ignore[import-untyped]
    import pika.exceptions  # type: ignore[import-untyped]

    conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        for queue in (name, f"{name}.DQ", f"{name}.XQ"):
            try:
                conn.channel().queue_delete(queue=queue)
            except pika.exceptions.ChannelClosedByBroker:
                pass  # never declared (no run was sent): nothing to delete
    finally:
        conn.close()


class S3Server:
    """moto's S3 server on a free loopback port, with one bucket for the run."""

    def __init__(self) -> None:
        import logging

        import boto3  # type: ignore[import-untyped]
        from moto.server import ThreadedMotoServer

        os.environ.update(CREDENTIALS)  # this process publishes versions too
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self.port = free_port()
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port,
                                         verbose=False)
        self.server.start()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.bucket = f"cluster-{uuid.uuid4().hex[:8]}"
        boto3.client("s3", endpoint_url=self.endpoint).create_bucket(Bucket=self.bucket)
        self.url = f"s3://{self.bucket}/stylebot"

    def stop(self) -> None:
        self.server.stop()


class Machine:
    """One simulated host: its own folder, code, config, models and ``var/``."""

    def __init__(self, root: Path, name: str, config: str, corpus: str, shipped: Path):
        self.name, self.dir = name, root / name
        self.procs: list[subprocess.Popen] = []
        ignore = shutil.ignore_patterns("__pycache__")
        for package in CODE:
            shutil.copytree(ROOT / package, self.dir / package, ignore=ignore)
        (self.dir / "corpora").mkdir()
        (self.dir / "corpora" / "tiny.txt").write_text(corpus, encoding="utf-8")
        shutil.copytree(shipped, self.dir / "models" / "tiny")
        (self.dir / "config.toml").write_text(config, encoding="utf-8")
        (self.dir / "var").mkdir()
        self.log = self.dir / "var" / "process.log"

    def env(self, common: dict[str, str]) -> dict[str, str]:
        var = self.dir / "var"
        return dict(os.environ, **common, **CREDENTIALS,
                    PYTHONPATH=str(self.dir), BOT_CONFIG=str(self.dir / "config.toml"),
                    MODEL_REGISTRY=str(var / "models"), MODEL_CACHE=str(var / "cache" / "models"),
                    CORPUS_CACHE=str(var / "cache"), TRAINING_RUNS=str(var / "runs"),
                    TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")

    def start(self, argv: list[str], common: dict[str, str]) -> subprocess.Popen:
        """``python ARGV`` in this machine's folder, its output appended to var/process.log."""
        with open(self.log, "ab") as out:
            proc = subprocess.Popen([sys.executable, *argv], cwd=self.dir,
                                    env=self.env(common), stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    @property
    def proc(self) -> subprocess.Popen:
        return self.procs[-1]

    @property
    def alive(self) -> bool:
        return bool(self.procs) and self.proc.poll() is None

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() \
            else ""

    def children(self) -> list[int]:
        """Pids of this machine's process's children (a training child, say)."""
        if not self.alive:
            return []
        found: list[int] = []
        for task in Path(f"/proc/{self.proc.pid}/task").glob("*"):
            try:
                found += [int(p) for p in (task / "children").read_text().split()]
            except OSError:
                continue
        return found

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 15 s, for every process this machine started."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


HAPROXY = """\
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    retries 3
    option redispatch
    retry-on conn-failure empty-response
frontend telegram
    bind 127.0.0.1:{front}
    default_backend bots
backend bots
    balance roundrobin
{servers}
"""


def haproxy_config(front: int, ports: dict[str, int], rise: int = 2) -> str:
    """haproxy.cfg for bot replicas on ``ports`` behind 127.0.0.1:``front``, each
    health-checked every 200 ms (out after one failed check, back after ``rise``)."""
    servers = "\n".join(f"    server {name} 127.0.0.1:{port} check inter 200ms fall 1 "
                        f"rise {rise}" for name, port in ports.items())
    return HAPROXY.format(front=front, servers=servers)


def start_haproxy(folder: Path, front: int, ports: dict[str, int]) -> subprocess.Popen:
    """haproxy in front of the bot replicas."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg = folder / "haproxy.cfg"
    cfg.write_text(haproxy_config(front, ports), encoding="utf-8")
    with open(folder / "haproxy.log", "wb") as log:
        return subprocess.Popen([shutil.which("haproxy") or "haproxy", "-db", "-f", str(cfg)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
