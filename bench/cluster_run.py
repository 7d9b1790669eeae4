"""The cluster of ``bench/cluster.py``: starting every role, the kills, the promotion,
and what the database and the replicas say afterwards."""
from __future__ import annotations

import asyncio
import importlib.util
import json
import subprocess
import time
import urllib.request
from pathlib import Path

from bench.cluster_roles import (
    AMQP_URL,
    REDIS_URL,
    SECRET,
    TOKEN,
    Machine,
    S3Server,
    Schema,
    clear_redis,
    delete_queues,
    free_port,
    start_haproxy,
)

LEADING = "leading: scheduler running"
SCHEDULER = ["-m", "training.scheduler"]  # the Procfile's command
JOB_FAILED = "raised an exception"  # APScheduler's line for a job that failed
START_S = 240.0  # imports and model loads of 8 processes on a busy 2-core machine


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return answer.status, json.loads(answer.read())
    except OSError:
        return 0, {}


async def until(predicate, timeout: float, what: str, must: bool = True) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await asyncio.to_thread(predicate):
            return True
        await asyncio.sleep(0.2)
    if must:
        raise RuntimeError(f"not within {timeout:g} s: {what}")
    return False


class Cluster:
    def __init__(self, folder: Path, server, args, config_text, bot_extra):
        self.folder, self.server, self.args = folder, server, args
        self.config_text, self.bot_extra = config_text, bot_extra
        self.schema: Schema | None = None
        self.s3: S3Server | None = None
        self.haproxy: subprocess.Popen | None = None
        self.machines: dict[str, dict[str, Machine]] = {}
        self.prefix = f"stylebot-cluster-{args.run_id}:"
        self.front_url = ""
        self.versions: list[str] = []  # published by the admin machine: initial, promoted
        self.facts: dict = {"kills": {}}
        self.workers = importlib.util.find_spec("training.worker") is not None
        self.queue = f"stylebot-cluster-{args.run_id}"  # the broker's queue for the run

    # ------------------------------------------------------------------ start and stop

    def _infra(self) -> None:
        """The run's schema, bucket and shipped model; the first version published."""
        from tests.conftest import make_artifact, tiny_text

        self.schema, self.s3 = Schema(), S3Server()
        self.corpus = tiny_text()
        for seed in (0, 1):  # the shipped model, and the version promoted mid-run
            art = make_artifact(self.corpus, style="tiny", hidden=16, embed_dim=8,
                                n_layers=1, seed=seed)
            art.save(self.folder / "admin" / "registry" / "tiny" / art.version)
            self.versions.append(art.version)
        self._publish(self.versions[0])

    def _publish(self, version: str) -> None:
        """What an admin machine does: upload the version, register it, promote it."""
        from genmodels.store import S3Store, digest
        from storage.engine import make_engine, session_factory
        from storage.versions import register_model_version
        from training import registry_ops

        assert self.s3 is not None and self.schema is not None
        admin = self.folder / "admin"
        store = S3Store(self.s3.url, endpoint_url=self.s3.endpoint,
                        cache=admin / "cache" / "models")
        folder = admin / "registry" / "tiny" / version
        where = store.publish(folder, "tiny", version)
        engine = make_engine(self.schema.url)
        try:
            with session_factory(engine).begin() as s:
                register_model_version(s, style="tiny", version=version,
                                       artifact_path=where, val_loss=3.0,
                                       sha256=digest(folder))
                registry_ops.promote(s, version, admin / "registry", store)
        finally:
            engine.dispose()

    def _machines(self, role: str, count: int, extra=lambda i: "") -> dict[str, Machine]:
        assert self.s3 is not None
        # A killed worker's run is taken over once its lease (5 s here) runs out.
        queue = f'[queue]\nname = "{self.queue}"\nlease_seconds = 5\n' if self.workers \
            else ""
        run = {"train_minutes": self.args.train_minutes, "prefix": self.prefix,
               "store": self.s3.url, "endpoint": self.s3.endpoint, "queue": queue}
        shipped = self.folder / "admin" / "registry" / "tiny" / self.versions[0]
        found = {f"{role}-{i}": Machine(self.folder, f"{role}-{i}",
                                        self.config_text(run, extra(i)), self.corpus, shipped)
                 for i in (1, 2)[:count]}
        self.machines[role] = found
        return found

    def env(self, **extra: str) -> dict[str, str]:
        assert self.schema is not None
        broker = {"QUEUE_URL": AMQP_URL} if self.workers else {}
        return {"DATABASE_URL": self.schema.url, "REDIS_URL": REDIS_URL, **broker, **extra}

    async def start(self) -> None:
        await asyncio.to_thread(self._infra)
        ports = {name: free_port() for name in ("inference-1", "inference-2")}
        for name, m in self._machines("inference", 2).items():
            m.start(["-m", "serving", "--port", str(ports[name])], self.env())
        self.inference_urls = {n: f"http://127.0.0.1:{p}" for n, p in ports.items()}
        scheds = self._machines("scheduler", 2)
        scheds["scheduler-1"].start(SCHEDULER, self.env())
        await until(lambda: LEADING in scheds["scheduler-1"].text(), START_S,
                    "scheduler-1 leading")
        scheds["scheduler-2"].start(SCHEDULER, self.env())
        if self.workers:
            for m in self._machines("worker", 2).values():
                m.start(["-m", "training.worker"], self.env())
        bot_ports = {f"bot-{i}": free_port() for i in (1, 2)}
        urls = list(self.inference_urls.values())
        bots = self._machines("bot", 2, lambda i: self.bot_extra(bot_ports[f"bot-{i}"], urls))
        for name, m in bots.items():
            m.start(["-m", "bot", "telegram"], self.env(
                TELEGRAM_TOKEN=TOKEN, TELEGRAM_WEBHOOK_SECRET=SECRET,
                TELEGRAM_API_URL=self.server.replica_url(name)))
        front = free_port()
        self.haproxy = start_haproxy(self.folder / "haproxy", front, bot_ports)
        self.front_url = f"http://127.0.0.1:{front}/telegram"
        for url in urls:
            await until(lambda u=url: _get(u + "/healthz")[0] == 200, START_S,
                        f"{url}/healthz ready")
        await self.server.wait_for("setWebhook", count=2, timeout=START_S)
        await until(lambda: any("another scheduler leads" in m.text() for m in
                                scheds.values()), START_S, "scheduler-2 following")
        await asyncio.sleep(1.0)  # haproxy's health checks see both bots up

    async def stop(self) -> None:
        for role in self.machines.values():
            for m in role.values():
                await asyncio.to_thread(m.stop)
        if self.haproxy is not None:
            self.haproxy.terminate()
            self.haproxy.wait()
        if self.schema is not None:
            await asyncio.to_thread(self.schema.drop)
        await asyncio.to_thread(clear_redis, self.prefix)
        if self.workers:
            await asyncio.to_thread(delete_queues, self.queue)
        if self.s3 is not None:
            self.s3.stop()

    # ------------------------------------------------------------------ the events

    async def chaos(self, seconds: float) -> None:
        """The promotion and the kills at fixed shares of the traffic's length."""
        t0 = time.monotonic()

        async def at(share: float) -> None:
            await asyncio.sleep(max(0.0, t0 + share * seconds - time.monotonic()))

        await at(0.2)
        await self.kill_bot("bot-1")
        await at(0.3)
        await self.promote()
        await at(0.4)
        self.kill("inference", "inference-1")
        await at(0.45)
        await self.kill_mid_retrain(t0 + seconds)
        if self.workers:
            await at(0.7)
            await self.kill_leader()

    def kill(self, role: str, name: str) -> None:
        self.machines[role][name].kill9()
        self.facts["kills"][name] = "SIGKILL"

    async def kill_bot(self, name: str) -> None:
        """Killed with replies in flight: they never reached Telegram, so a live replica
        must send them. (A reply delivered just before its update is marked done would
        be sent again: no bot can ask Telegram what arrived.)"""
        self.server.hold("sendMessage", replica=name)
        await until(lambda: any(c.replica == name for c in self.server.held), 10,
                    "replies in flight", must=False)
        await asyncio.sleep(1.0)  # the replies delivered before are marked done
        self.kill("bot", name)
        self.facts["bot_replies_in_flight_at_kill"] = sum(
            c.replica == name for c in self.server.held)
        self.server.hold("sendMessage", on=False, replica=name)

    async def promote(self) -> None:
        new = self.versions[1]
        await asyncio.to_thread(self._publish, new)
        promoted = time.monotonic()
        live = [u for n, u in self.inference_urls.items()
                if self.machines["inference"][n].alive]

        def serving() -> list[str]:
            return [u for u in live if self.served(u) == new]
        await until(lambda: len(serving()) == len(live), 60, "promotion seen", must=False)
        self.facts.update(promoted_version=new, inference_live=len(live),
                          promotion_seen_by=len(serving()),
                          promotion_seen_s=round(time.monotonic() - promoted, 2))

    @staticmethod
    def served(url: str) -> str | None:
        status, body = _get(url + "/v1/styles")
        versions = {s["name"]: s.get("version") for s in body.get("styles", [])}
        return versions.get("tiny") if status == 200 else None

    def training(self, role: str) -> str | None:
        """The machine of ``role`` whose process has a training child right now."""
        for name, m in self.machines.get(role, {}).items():
            for pid in m.children():
                try:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if b"training" in cmd and b"train" in cmd:
                    return name
        return None

    async def kill_mid_retrain(self, deadline: float) -> None:
        """SIGKILL the process whose child is training (a worker, or without the task
        queue the leading scheduler, which then is also the leader killed)."""
        role = "worker" if self.workers else "scheduler"
        found = await until(lambda: self.training(role) is not None,
                            max(1.0, deadline - time.monotonic()), "a retrain", must=False)
        name = self.training(role) if found else None
        self.facts["killed_mid_retrain"] = name or "no retrain ran in time"
        if name is None:
            return
        if role == "scheduler":
            await self.kill_leader(name)
        else:
            self.kill(role, name)

    def leader(self) -> str | None:
        alive = [n for n, m in self.machines["scheduler"].items() if m.alive]
        leading = [n for n in alive if LEADING in self.machines["scheduler"][n].text()]
        return leading[-1] if leading else None

    async def kill_leader(self, name: str | None = None) -> None:
        name = name or self.leader()
        if name is None:
            self.facts["leader_failover_s"] = None
            return
        others = {n: m for n, m in self.machines["scheduler"].items() if n != name}
        before = {n: m.text().count(LEADING) for n, m in others.items()}
        self.kill("scheduler", name)
        killed = time.monotonic()
        took = await until(lambda: any(m.alive and m.text().count(LEADING) > before[n]
                                       for n, m in others.items()), 60, "a new leader",
                           must=False)
        self.facts["leader_failover_s"] = round(time.monotonic() - killed, 2) if took \
            else None

    # ------------------------------------------------------------------ afterwards

    def log_rows_lost(self, sent) -> int:
        """Users' updates whose request row (its prime carries the token) is missing."""
        from sqlalchemy import create_engine, select

        from storage.models import Request as RequestRow

        assert self.schema is not None
        engine = create_engine(self.schema.url)
        try:
            with engine.connect() as conn:
                primes = " ".join(conn.execute(select(RequestRow.prime)).scalars())
        finally:
            engine.dispose()
        return sum(1 for s in sent if s.kind != "admin" and s.token not in primes)

    async def report(self) -> dict:
        await self.settle_runs()
        runs = await asyncio.to_thread(self._runs)
        live = [u for n, u in self.inference_urls.items()
                if self.machines["inference"][n].alive]
        new = self.facts.get("promoted_version")
        return {**runs, **self.facts,
                "serving_promoted_at_end": sum(self.served(u) == new for u in live),
                "scheduler_job_errors": sum(m.text().count(JOB_FAILED) for m in
                                            self.machines["scheduler"].values()),
                "workers": 2 if self.workers else "not available (no training.worker)",
                "roles": {role: len(ms) for role, ms in self.machines.items()}}

    async def settle_runs(self) -> None:
        """Wait (a while) for running retrains to end: the numbers then are final."""
        await until(lambda: self._runs()["retrains_running"] == 0, self.args.settle,
                    "retrains finished", must=False)

    def _runs(self) -> dict:
        from sqlalchemy import create_engine, select

        from storage.models import ModelVersion, TrainingRun

        assert self.schema is not None
        engine = create_engine(self.schema.url)
        try:
            with engine.connect() as conn:
                runs = conn.execute(select(TrainingRun)).all()
                versions = conn.execute(select(ModelVersion)).all()
        finally:
            engine.dispose()
        ok = [r for r in runs if r.status == "succeeded"]
        trained = [v for v in versions if v.version not in self.versions]
        overlaps = 0
        for i, a in enumerate(runs):  # two trainings of one style at once
            for b in runs[i + 1:]:
                if a.style == b.style and a.status != "queued" and b.status != "queued" \
                        and a.started_at < (b.finished_at or a.started_at.max) \
                        and b.started_at < (a.finished_at or b.started_at.max):
                    overlaps += 1
        active = [v.version for v in versions if v.status == "active"]
        return {"retrains_run": len(ok),
                "retrains_failed": sum(r.status == "failed" for r in runs),
                "retrains_running": sum(r.status == "running" for r in runs),
                "retrains_duplicated": overlaps + max(0, len(trained) - len(ok)),
                "run_errors": sorted({(r.error or "")[:120] for r in runs if r.error}),
                "active_version": active[0] if active else None}
