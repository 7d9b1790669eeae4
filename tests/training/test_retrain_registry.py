"""Registry operations without training: rollback (DB row and ACTIVE marker together, and
what serving then loads), pruning, /models listings with ratings, the /retrain queue.
Real SQLite databases migrated with Alembic; tiny random artifacts."""
from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys

import numpy as np
import pytest
from sqlalchemy import select

from genmodels import registry
from genmodels.artifact import load
from genmodels.sampler import SamplingParams
from serving.engine import Engine, EngineClient
from storage.__main__ import upgrade
from storage.engine import make_engine, session_factory
from storage.errors import InvalidInput, NotFound
from storage.log import log_request
from storage.models import ModelVersion, TrainingRun
from storage.ratings import rate
from storage.records import RequestRecord
from storage.versions import active_model_version, promote_model_version, register_model_version
from training.registry_ops import (
    claim_queued,
    fail_stale,
    list_versions,
    prune,
    queue_retrain,
    rollback,
)

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


@pytest.fixture
def sessions(tmp_path):
    url = f"sqlite:///{tmp_path / 'reg.db'}"
    upgrade(url)
    engine = make_engine(url)
    yield session_factory(engine)
    engine.dispose()


@pytest.fixture
def root(tmp_path, monkeypatch):
    root = tmp_path / "registry"
    monkeypatch.setenv("MODEL_REGISTRY", str(root))  # what serving (the engine) reads
    return root


def publish(sessions, root, artifact_factory, n: int, promote_all: bool = True,
            first: int = 0) -> list[str]:
    """n versions of style "tiny", oldest first, each promoted in turn (the last active)."""
    names = []
    for i in range(first, first + n):
        art = artifact_factory(style="tiny", seed=i)
        art.version = f"tiny-v{i}"
        path = art.save(root / "tiny" / art.version)
        stamp = (T0 + dt.timedelta(days=i)).timestamp()
        os.utime(path / "model.json", (stamp, stamp))
        with sessions.begin() as s:
            register_model_version(s, style="tiny", version=art.version,
                                   artifact_path=str(path), val_loss=2.0 - i / 10,
                                   parent_version=names[-1] if names else None,
                                   created_at=T0 + dt.timedelta(days=i))
            if promote_all:
                promote_model_version(s, art.version)
                registry.activate("tiny", art.version, root=root)
        names.append(art.version)
    return names


def served_version(style: str) -> str:
    """What a fresh engine (the bot's default client) serves for ``style``."""
    async def ask() -> str:
        client = EngineClient(Engine(backend="numpy"))
        try:
            result = await client.generate(style, "the", SamplingParams(seed=1, max_chars=5))
        finally:
            await client.close()
        return result.sample.version
    return asyncio.run(ask())


def test_rollback_walks_back_and_serving_follows(sessions, root, artifact_factory):
    v0, v1, v2 = publish(sessions, root, artifact_factory, 3)
    assert served_version("tiny") == v2
    with sessions.begin() as s:
        assert rollback(s, "tiny") == (v2, v1)
    assert registry.active_path("tiny") == root / "tiny" / v1
    assert load(registry.active_path("tiny")).version == v1
    assert served_version("tiny") == v1  # a fresh engine loads what is active
    with sessions.begin() as s:
        assert active_model_version(s, "tiny").version == v1
        assert rollback(s, "tiny") == (v1, v0)  # again: further back, not back to v2
    with sessions.begin() as s, pytest.raises(NotFound, match="no earlier version"):
        rollback(s, "tiny")
    assert (root / "tiny" / registry.MARKER).read_text().strip() == v0


def test_rollback_skips_removed_and_never_promoted_versions(sessions, root,
                                                           artifact_factory):
    v0, v1 = publish(sessions, root, artifact_factory, 2)
    [refused] = publish(sessions, root, artifact_factory, 1, promote_all=False, first=2)
    # The refused candidate is newer than v1 but was never active: rollback skips it.
    with sessions.begin() as s:
        assert s.execute(select(ModelVersion.status).where(
            ModelVersion.version == refused)).scalar_one() == "candidate"
        assert rollback(s, "tiny") == (v1, v0)
    # Nothing to roll back to when the only earlier version is gone from disk.
    with sessions.begin() as s:
        promote_model_version(s, v1)
    registry.activate("tiny", v1, root=root)
    for f in (root / "tiny" / v0).iterdir():
        f.unlink()
    with sessions.begin() as s, pytest.raises(NotFound):
        rollback(s, "tiny")
    with sessions.begin() as s, pytest.raises(NotFound, match="no active"):
        rollback(s, "sotu")


def test_rollback_skips_a_version_that_does_not_load(sessions, root, artifact_factory):
    v0, v1, v2 = publish(sessions, root, artifact_factory, 3)
    weights = root / "tiny" / v1 / "weights.npz"
    with np.load(weights) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["dense/bias"][0] = np.nan  # a corrupt version: activating it would serve NaN
    np.savez(weights, **arrays)
    with sessions.begin() as s:
        assert rollback(s, "tiny") == (v2, v0)
    assert registry.read_marker("tiny") == v0 and served_version("tiny") == v0


def test_prune_keeps_the_newest_and_the_active(sessions, root, artifact_factory):
    names = publish(sessions, root, artifact_factory, 6)
    with sessions.begin() as s:
        rollback(s, "tiny")  # v4 active
        rollback(s, "tiny")  # v3 active
    (root / "tiny" / ".work-9").mkdir()  # an unfinished run's folder is not a version
    with sessions.begin() as s:
        removed = prune(s, "tiny", keep=2)
    assert sorted(removed) == names[:3]  # v5, v4 newest; v3 kept because it is active
    left = {p.name for p in (root / "tiny").iterdir()}
    assert left == {*names[3:], registry.MARKER, ".work-9"}
    with sessions.begin() as s:
        listed = list_versions(s, "tiny")
    assert [v.version for v in listed] == names[::-1]  # rows stay: lineage and history
    assert [v.on_disk for v in listed] == [True, True, True, False, False, False]
    assert listed[2].status == "active" and listed[2].parent_version == names[2]


def test_list_versions_shows_val_loss_and_ratings(sessions, root, artifact_factory):
    v0, v1 = publish(sessions, root, artifact_factory, 2)
    with sessions.begin() as s:
        for version, votes in ((v0, [1, -1, -1]), (v1, [1, 1])):
            for vote in votes:
                logged = log_request(s, RequestRecord(
                    "telegram", "42", "-100", style="tiny", model_version=version,
                    temperature=0.7, text="a text", stop_reason="stop"))
                rate(s, logged.generation_id, logged.user_id, vote)
    with sessions.begin() as s:
        new, old = list_versions(s, "tiny")
    assert (new.version, new.status, new.up, new.down, new.requests) == (v1, "active", 2, 0, 2)
    assert (old.version, old.status, old.up, old.down) == (v0, "retired", 1, 2)
    assert new.val_loss == pytest.approx(1.9) and old.promoted and new.parent_version == v0
    assert new.line().startswith(f"* {v1}  val 1.9000 nats/char  +2/-0 (2 requests)")


def test_queue_claim_and_interrupted_runs(sessions):
    with sessions.begin() as s:
        run, new = queue_retrain(s, "austen", by_user_id=None, minutes=2)
        again, new_again = queue_retrain(s, "austen")
        other, _ = queue_retrain(s, "sotu")
    assert new and not new_again and again.id == run.id  # pressed twice: one run
    assert run.status == "queued" and run.trigger == "admin" and run.budget_minutes == 2
    with sessions.begin() as s:
        claimed = claim_queued(s)
        assert (claimed.id, claimed.status) == (run.id, "running")
        assert claim_queued(s).id == other.id
        assert claim_queued(s) is None
        assert queue_retrain(s, "austen")[1] is False  # still running: not queued again
    with sessions.begin() as s:
        assert fail_stale(s) == 0  # heartbeats fresh: looking fails nothing
        assert fail_stale(s, lease_seconds=0) == 2  # a lease of 0 s: both are stale
        rows = s.execute(select(TrainingRun).order_by(TrainingRun.id)).scalars().all()
        assert [(r.status, r.error) for r in rows] == [
            ("failed", "interrupted: its scheduler stopped beating for over 0 s")] * 2
    with sessions.begin() as s:
        for bad in ({"style": ""}, {"style": "austen", "minutes": -1.0}):
            with pytest.raises(InvalidInput):
                queue_retrain(s, **bad)


def test_registry_ops_do_not_import_tensorflow():
    code = ("import sys, training.registry_ops, training.retrain, training.scheduler, "
            "storage.bandit; print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False False"
