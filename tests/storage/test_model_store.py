"""The model store every machine reads, against a real S3-compatible server (moto's
server mode on 127.0.0.1) and the real databases (SQLite and PostgreSQL).

"Machine A" (the trainer) and "machine B" (an inference replica) share only the
database and the bucket: each has its own folder (registry, cache, no shipped models).
A promotion on A is served by B's engine, which downloads the version into its empty
cache and checks its sha256; a corrupted object is refused and the old version kept;
B can roll back; with no store configured nothing changes.
"""
from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import numpy as np
import pytest
from moto.server import ThreadedMotoServer

from genmodels import registry
from genmodels.artifact import ArtifactError
from genmodels.sampler import SamplingParams
from genmodels.store import LocalStore, S3Store, StoreError, digest, open_store
from serving import model_follow
from serving.engine import Engine
from storage.errors import NotFound
from storage.models import ModelVersion
from storage.versions import active_model_version, register_model_version, start_training_run
from tests.conftest import child_env, make_artifact
from training import registry_ops

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    """A moto S3 server on a free loopback port; credentials only in the environment."""
    saved = {k: os.environ.get(k) for k in CREDENTIALS}
    os.environ.update(CREDENTIALS)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per S3 call
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def bucket(s3_endpoint) -> str:
    name = f"models-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


class Machine:
    """One machine's own folders and its view of the store."""

    def __init__(self, root: Path, url: str, endpoint: str):
        self.root = root
        self.registry, self.shipped = root / "registry", root / "shipped"
        self.shipped.mkdir(parents=True)
        self.store = S3Store(url, endpoint_url=endpoint, cache=root / "cache" / "models")


@pytest.fixture
def machines(tmp_path, bucket, s3_endpoint, monkeypatch):
    monkeypatch.setenv("MODEL_REGISTRY", str(tmp_path / "b" / "registry"))  # B's, empty
    url = f"s3://{bucket}/stylebot/models"
    yield (Machine(tmp_path / "a", url, s3_endpoint), Machine(tmp_path / "b", url, s3_endpoint))
    model_follow.reset()  # this process follows nothing after the test


def publish(sessions, a: Machine, seed: int, promote: bool = True) -> str:
    """Train-and-publish as retraining does on A: save, upload, register, promote."""
    art = make_artifact(seed=seed)
    art.version = f"tiny-v{seed}"
    folder = art.save(a.registry / "tiny" / art.version)
    where = a.store.publish(folder, "tiny", art.version)
    with sessions.begin() as s:
        register_model_version(s, style="tiny", version=art.version, artifact_path=where,
                               val_loss=2.0 - seed / 10, sha256=digest(folder))
        if promote:
            registry_ops.promote(s, art.version, a.registry, a.store)
    return art.version


def engine_on(b: Machine, sessions) -> Engine:
    """B's inference process: it follows the database's active rows."""
    model_follow.follow_database(sessions, b.store)
    return Engine(backend="numpy", poll_s=3600, shipped=b.shipped).start()


@pytest.fixture
def serving_v0(committed, machines):
    """A has published and promoted ``tiny-v0``; B's engine follows the database and serves
    it. Yields (a, b, "tiny-v0", engine)."""
    a, b = machines
    v0 = publish(committed, a, 0)
    engine = engine_on(b, committed)
    try:
        assert written_by(engine) == v0
        yield a, b, v0, engine
    finally:
        engine.stop()


def written_by(engine: Engine) -> str:
    fut = engine.submit("tiny", "The ", SamplingParams(seed=1, max_chars=12))
    return fut.result(timeout=60).sample.version


def corrupt(b: Machine, version: str, seed: int = 99) -> None:
    """Replace the version's weights in the bucket with another model's (valid npz)."""
    other = make_artifact(seed=seed).save(b.root / "other")
    key = f"{b.store.prefix}/tiny/{version}/weights.npz"
    b.store.client.upload_file(str(other / "weights.npz"), b.store.bucket, key)


def test_a_promotion_on_a_is_downloaded_checked_and_served_on_b(committed, serving_v0):
    a, b, v0, engine = serving_v0
    assert (b.store.cache / v0 / "model.json").is_file()  # fetched into B's cache
    v1 = publish(committed, a, 1)
    worker = engine.worker("tiny")
    worker.reload(wait=True)  # what the poll does every poll_s
    assert worker.stats.reloads == 1 and written_by(engine) == v1
    assert digest(b.store.cache / v1) == digest(a.registry / "tiny" / v1)
    assert registry.active_artifact("tiny").version == v1  # /neurons' lookup
    assert not (b.registry / "tiny" / registry.MARKER).exists()  # no marker needed


def test_a_corrupted_object_is_refused_and_the_old_version_kept(committed, serving_v0, caplog):
    a, b, v0, engine = serving_v0
    v1 = publish(committed, a, 1)
    corrupt(b, v1)
    worker = engine.worker("tiny")
    with caplog.at_level(logging.WARNING, logger="serving.engine"):
        worker.reload(wait=True)
        worker.reload(wait=True)  # not fetched again at once, not said again
    refused = [r for r in caplog.records if "sha256" in r.getMessage()]
    assert len(refused) == 1 and v1 in refused[0].getMessage()
    assert written_by(engine) == v0 and worker.stats.reloads == 0
    assert not (b.store.cache / v1).exists()  # nothing half-checked left to serve
    with pytest.raises(ArtifactError, match="sha256"):  # /neurons says unavailable
        registry.active_artifact("tiny")


def test_non_finite_weights_with_a_matching_sha256_are_refused(committed, machines):
    a, b = machines
    publish(committed, a, 0)
    art = make_artifact(seed=1)
    art.version = "tiny-nan"
    art.weights["dense/bias"] = np.full_like(art.weights["dense/bias"], np.nan)
    folder = art.save(b.root / "nan")
    where = a.store.publish(folder, "tiny", art.version)
    with pytest.raises(StoreError, match="non-finite"):
        b.store.fetch(where, digest(folder))
    with committed.begin() as s:
        register_model_version(s, style="tiny", version=art.version, artifact_path=where,
                               sha256=digest(folder))
    with pytest.raises(StoreError, match="non-finite"), committed.begin() as s:
        registry_ops.promote(s, art.version, b.registry, b.store)
    with committed.begin() as s:
        assert active_model_version(s, "tiny").version == "tiny-v0"


def test_promotion_refuses_an_upload_that_does_not_match(committed, machines):
    a, b = machines
    v0 = publish(committed, a, 0)
    v1 = publish(committed, a, 1, promote=False)
    corrupt(b, v1)
    with pytest.raises(StoreError, match="sha256"), committed.begin() as s:
        registry_ops.promote(s, v1, b.registry, b.store)
    with committed.begin() as s:  # the transaction rolled back: v0 still active
        assert active_model_version(s, "tiny").version == v0


def test_rollback_and_listing_from_b(committed, machines):
    a, b = machines
    v0, v1 = publish(committed, a, 0), publish(committed, a, 1)
    engine = engine_on(b, committed)
    try:
        assert written_by(engine) == v1
        with committed.begin() as s:  # B holds no folder of either version
            assert registry_ops.rollback(s, "tiny", b.registry, b.store) == (v1, v0)
        engine.worker("tiny").reload(wait=True)
        assert written_by(engine) == v0
        with committed.begin() as s:
            listed = registry_ops.list_versions(s, "tiny", store=b.store)
        assert [(v.version, v.on_disk, v.in_store) for v in listed] == [
            (v1, True, True), (v0, True, True)]
        assert "removed" not in listed[0].line()
        b.store.client.delete_object(Bucket=b.store.bucket,
                                     Key=f"{b.store.prefix}/tiny/{v1}/model.json")
        with committed.begin() as s:
            listed = registry_ops.list_versions(s, "tiny", store=b.store)
            assert listed[0].line().endswith("missing from the store")
            with pytest.raises(NotFound, match="in the store"):
                registry_ops.rollback(s, "tiny", b.registry, b.store)
    finally:
        engine.stop()


def test_another_process_configured_by_the_environment_follows_the_database(
        committed, machines, migrated_url, s3_endpoint, tmp_path):
    """B as a real process: MODEL_STORE_URL, DATABASE_URL and MODEL_CACHE are all it gets."""
    a, b = machines
    v0 = publish(committed, a, 0)
    script = ("from serving.engine import Engine\n"
              "from genmodels.sampler import SamplingParams\n"
              "e = Engine(backend='numpy', shipped=__import__('pathlib').Path('shipped'))"
              ".start()\n"
              "print(e.submit('tiny', 'The ', SamplingParams(seed=1, max_chars=9))"
              ".result(timeout=60).sample.version)\n"
              "e.stop()\n")
    env = child_env(MODEL_STORE_URL=a.store.location("x", "y").rsplit("/x/y", 1)[0],
                    DATABASE_URL=migrated_url, MODEL_CACHE=str(b.root / "proc-cache"),
                    AWS_ENDPOINT_URL_S3=s3_endpoint, **CREDENTIALS)
    done = subprocess.run([sys.executable, "-c", script], cwd=b.root, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [v0]
    assert (b.root / "proc-cache" / v0 / "weights.npz").is_file()


def test_with_no_store_configured_nothing_changes(tmp_path, committed, monkeypatch):
    """The default: LocalStore, no database followed, rows name folders as before."""
    monkeypatch.delenv("MODEL_STORE_URL", raising=False)
    model_follow.reset()
    assert isinstance(open_store(), LocalStore)
    assert model_follow.install() is False and registry.pointer("tiny") is None
    config = tmp_path / "config.toml"
    config.write_text('[store]\nurl = "s3://bkt/some/prefix"\ncache = "c"\n')
    store = open_store(config, env={})
    assert isinstance(store, S3Store)
    assert (store.bucket, store.prefix, store.cache) == ("bkt", "some/prefix", tmp_path / "c")
    assert store.location("austen", "austen-1") == "s3://bkt/some/prefix/austen/austen-1"
    with committed.begin() as s:
        row = register_model_version(s, style="tiny", version="tiny-local",
                                     artifact_path=str(tmp_path / "nowhere"))
        assert isinstance(row, ModelVersion) and not registry_ops.remote(row)
        assert not registry_ops.on_disk(row, LocalStore())
    model_follow.reset()



def test_retraining_publishes_to_the_store_and_b_serves_it(committed, machines, bot):
    """The retrainer on A: the served (shipped) model is uploaded and registered with its
    sha256 the first time, a candidate is uploaded before its row names it, and a later
    run trains from a copy fetched back from the store; B serves the winner."""
    from training.lifecycle import Heartbeat
    from training.retrain import Active, Retrainer
    from training.schedule_config import ScheduleConfig

    a, b = machines
    shipped = bot.save_artifact("tiny")
    trainer = Retrainer(committed, bot.book(), ScheduleConfig(), root=a.registry,
                        store=a.store)
    active = trainer._ensure_active("tiny")
    assert active.version == shipped.version
    with committed.begin() as s:
        row = active_model_version(s, "tiny")
        assert row.artifact_path == a.store.location("tiny", shipped.version)
        assert row.sha256 == digest(bot.models / "tiny")
    candidate = make_artifact(bot.corpora.joinpath("tiny.txt").read_text(), seed=5)
    candidate.version = "tiny-cand"
    candidate.save(a.root / "work" / "candidate")
    with committed.begin() as s:  # the run this retrain holds the lease of
        lease = Heartbeat(committed, start_training_run(s, style="tiny", trigger="admin").id,
                          every_s=60)
    trainer._publish("tiny", candidate, Active(active.version, active.path), promote=True,
                     lease=lease)
    engine = engine_on(b, committed)
    try:
        assert written_by(engine) == "tiny-cand"
    finally:
        engine.stop()
    again = trainer._ensure_active("tiny")  # from the store into A's cache, checked
    assert (again.version, again.path) == ("tiny-cand", a.store.cache / "tiny-cand")


def test_a_database_that_stops_answering_keeps_the_served_version(serving_v0, caplog):
    a, b, v0, engine = serving_v0

    def down(style):
        raise ConnectionError("connection refused")

    registry.follow(down, b.store)
    worker = engine.worker("tiny")
    with caplog.at_level(logging.WARNING, logger="serving.engine"):
        worker.reload(wait=True)
        worker.reload(wait=True)
    said = [r.getMessage() for r in caplog.records if "connection refused" in r.getMessage()]
    assert len(said) == 1 and f"still serving {v0}" in said[0]
    assert written_by(engine) == v0 and worker.stats.errors == 0


def test_a_bot_with_a_remote_inference_service_draws_the_databases_version(
        committed, machines, migrated_url, s3_endpoint, tmp_path, monkeypatch):
    """/neurons runs in the bot process, which loads no engine when generation is remote:
    wiring the client is where the bot starts following the database."""
    from bot.wiring import make_client

    a, b = machines
    v0 = publish(committed, a, 0)
    for key, value in (CREDENTIALS | {"AWS_ENDPOINT_URL_S3": s3_endpoint}).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MODEL_STORE_URL", a.store.location("x", "y").rsplit("/x/y", 1)[0])
    monkeypatch.setenv("MODEL_CACHE", str(b.root / "bot-cache"))
    monkeypatch.setenv("DATABASE_URL", migrated_url)
    config = tmp_path / "bot.toml"
    config.write_text('[inference]\nurls = ["http://127.0.0.1:9"]\n')
    model_follow.reset()
    make_client(config)
    assert registry.following()
    assert registry.active_artifact("tiny").version == v0
    assert (b.root / "bot-cache" / v0 / "weights.npz").is_file()
