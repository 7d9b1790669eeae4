"""The batching engine: batched == single-stream, joins/leaves, bounds, cancellation,
step failures, hot reload, and no TensorFlow in the chat process."""
import asyncio
import json
import subprocess
import sys
import time

import numpy as np
import pytest
from engine_testing import install_gate, wait_for

from genmodels.registry import activate, active_artifact
from genmodels.sampler import RowParams, Sampler, SamplingParams, choose
from serving.client import Busy, GenerationError, ModelUnavailable
from serving.engine import Engine, EngineClient

TEXT = "the cat sat.\nthe dog ran.\n\na red hat, a hot sun!\n"

pytestmark = pytest.mark.timeout(120)  # a hang fails fast instead of after 5 minutes


@pytest.fixture
def art(artifact_factory, tmp_path):
    a = artifact_factory(text=TEXT, hidden=12, seed=3, scale=0.9)
    a.save(tmp_path / "tiny")
    return a


def engine_for(art, **kw) -> Engine:
    return Engine(paths={"tiny": art.path}, backend="numpy", **kw).start()


def mixed_params(n: int) -> list[SamplingParams]:
    """Every kind of row: greedy, plain, top-k, top-p, both; all three stop rules."""
    temps, ks, ps = [0.0, 0.7, 1.0, 1.6], [0, 3, 0, 8, 1], [1.0, 0.9, 0.5]
    stops = ["end_of_line", "blank_line", "none"]
    return [SamplingParams(temperature=temps[i % 4], top_k=ks[i % 5], top_p=ps[i % 3],
                           seed=1000 + i, max_chars=5 + (i * 7) % 60, stop=stops[i % 3])
            for i in range(n)]


PRIMES = ["", "the ", "a red", "the\u00a0cat\u00e9"]  # last: a look-alike and a dropped char


def test_a_row_picks_the_same_in_a_mixed_batch_as_alone():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (40, 17)).astype(np.float32)
    noise = rng.gumbel(size=(40, 17)).astype(np.float32)
    params = mixed_params(40)
    got = choose(logits.copy(), RowParams.of(params), noise)
    want = [int(choose(logits[i:i + 1].copy(), RowParams.of([params[i]]), noise[i:i + 1])[0])
            for i in range(40)]
    assert got.tolist() == want


def test_batch_of_64_writes_what_the_sampler_writes(art):
    engine = engine_for(art)
    try:
        params = mixed_params(64)
        futures = [engine.submit("tiny", PRIMES[i % 4], p) for i, p in enumerate(params)]
        batched = [f.result(timeout=60).sample for f in futures]
        alone = [engine.submit("tiny", PRIMES[i % 4], params[i]).result(timeout=60).sample
                 for i in (0, 13, 63)]
    finally:
        engine.stop()
    sampler = Sampler(art)
    for i, p in enumerate(params):
        assert batched[i] == sampler.generate(PRIMES[i % 4], p), i
    assert alone == [batched[0], batched[13], batched[63]]
    reasons = {g.stop_reason for g in batched}
    assert reasons == {"stop", "max_chars"}  # both stop rules and length limits fired
    assert batched[3].dropped == "\u00e9"  # the prime's unknown char is reported
    assert all(g.version == art.version for g in batched)


def test_requests_join_and_leave_mid_batch(art, monkeypatch):
    gate = install_gate(monkeypatch)
    engine = engine_for(art)
    loop = engine.worker("tiny")
    long_p = SamplingParams(seed=1, max_chars=300, stop="none")
    short_p = SamplingParams(seed=2, max_chars=5, stop="none")
    try:
        first = engine.submit("tiny", "the ", long_p)
        gate.release(10)
        gate.wait_steps(10)  # the long one is writing
        second = engine.submit("tiny", "a", short_p)
        gate.open = True
        gate.release(1)  # the step that may be waiting
        short = second.result(timeout=30)
        long = first.result(timeout=30)
    finally:
        engine.stop()
    sampler = Sampler(art)
    assert short.sample == sampler.generate("a", short_p)
    assert long.sample == sampler.generate("the ", long_p)
    assert loop.stats.batch_rows > loop.stats.steps  # some steps carried both rows
    assert loop.depth() == (0, 0)


def test_full_queue_answers_busy_at_once(art, monkeypatch):
    install_gate(monkeypatch)  # nothing is released: the first request holds the slot
    engine = engine_for(art, max_batch=1, max_queue=1)
    try:
        engine.submit("tiny", "", SamplingParams(seed=1))
        engine.submit("tiny", "", SamplingParams(seed=2))
        with pytest.raises(Busy):
            engine.submit("tiny", "", SamplingParams(seed=3))
        assert engine.worker("tiny").stats.requests["busy"] == 1
    finally:
        engine.stop()


def test_cancelled_request_frees_its_slot(art, monkeypatch):
    gate = install_gate(monkeypatch)
    engine = engine_for(art, max_batch=1, max_queue=0)
    loop = engine.worker("tiny")
    try:
        hog = engine.submit("tiny", "", SamplingParams(seed=1, max_chars=3000, stop="none"))
        gate.release(2)
        gate.wait_steps(2)
        with pytest.raises(Busy):
            engine.submit("tiny", "", SamplingParams(seed=2))
        assert hog.cancel()
        gate.open = True
        gate.release(1)
        done = engine.submit("tiny", "the", SamplingParams(seed=2, max_chars=20)).result(30)
        assert done.sample.text
        assert loop.stats.requests["cancelled"] == 1
    finally:
        engine.stop()


def test_cancelling_the_awaiting_task_frees_the_slot(art, monkeypatch):
    gate = install_gate(monkeypatch)

    async def scenario():
        client = EngineClient(engine_for(art, max_batch=1, max_queue=0))
        loop = client.engine.worker("tiny")
        task = asyncio.create_task(client.generate(
            "tiny", "", SamplingParams(seed=1, max_chars=3000, stop="none")))
        while loop.depth()[0] == 0:
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        gate.open = True
        gate.release(1)
        result = await client.generate("tiny", "a", SamplingParams(seed=5, max_chars=10))
        await client.close()
        return result, loop.stats.requests

    result, counts = asyncio.run(scenario())
    assert result.sample == Sampler(art).generate("a", SamplingParams(seed=5, max_chars=10))
    assert counts["cancelled"] == 1 and counts["ok"] == 1


def test_a_failed_step_reaches_every_waiter_and_the_loop_survives(art, monkeypatch):
    gate = install_gate(monkeypatch)
    engine = engine_for(art)
    try:
        futures = [engine.submit("tiny", "", SamplingParams(seed=i, max_chars=50))
                   for i in range(3)]
        wait_for(lambda: engine.worker("tiny").depth() == (3, 0), "all three rows stepping")
        gate.fail_next = 1
        gate.open = True
        gate.release(1)
        for f in futures:
            with pytest.raises(GenerationError, match="generation failed"):
                f.result(timeout=30)
        p = SamplingParams(seed=9, max_chars=30)
        after = engine.submit("tiny", "the", p).result(timeout=30)
        assert after.sample == Sampler(art).generate("the", p)
        assert engine.worker("tiny").stats.requests["error"] == 3
    finally:
        engine.stop()


def test_hot_reload_keeps_requests_in_flight_on_their_version(artifact_factory, tmp_path,
                                                                monkeypatch):
    root = tmp_path / "registry"
    monkeypatch.setenv("MODEL_REGISTRY", str(root))
    old = artifact_factory(text=TEXT, hidden=12, seed=1, style="tiny")
    new = artifact_factory(text=TEXT + "XYZ-", hidden=12, seed=2, style="tiny")  # new vocab
    old.save(root / "tiny" / "v1")
    new.save(root / "tiny" / "v2")
    activate("tiny", "v1")
    gate = install_gate(monkeypatch)
    # One slot: "waiting" is queued before the switch and must join the new version.
    engine = Engine(poll_s=3600, max_batch=1).start()  # reload() by hand: no timing
    loop = engine.worker("tiny")
    long_p = SamplingParams(seed=4, max_chars=200, stop="none")
    try:
        first = engine.submit("tiny", "the", long_p)
        gate.release(5)
        gate.wait_steps(5)
        waiting = engine.submit("tiny", "a hat", long_p)
        activate("tiny", "v2")
        loop.reload(wait=True)
        assert loop.version == new.version
        second = engine.submit("tiny", "the", long_p)
        gate.open = True
        gate.release(2)
        a, b = first.result(timeout=30).sample, second.result(timeout=30).sample
        c = waiting.result(timeout=30).sample
        wait_for(lambda: len(loop._batches) == 1, "the old version to retire")
    finally:
        engine.stop()
    assert (a.version, b.version) == (old.version, new.version)
    assert a == Sampler(old).generate("the", long_p)
    assert b == Sampler(new).generate("the", long_p)
    assert c == Sampler(new).generate("a hat", long_p)
    assert loop.stats.reloads == 1


def test_the_loop_polls_the_registry_marker(artifact_factory, tmp_path, monkeypatch):
    root = tmp_path / "registry"
    monkeypatch.setenv("MODEL_REGISTRY", str(root))
    arts = [artifact_factory(text=TEXT, seed=s, style="tiny") for s in (1, 2)]
    for i, a in enumerate(arts):
        a.save(root / "tiny" / f"v{i}")
    activate("tiny", "v0")
    engine = Engine(poll_s=0.05, backend="numpy").start()
    try:
        loop = engine.worker("tiny")
        assert loop.version == arts[0].version
        activate("tiny", "v1")  # nobody calls reload(): the idle loop notices by itself
        wait_for(lambda: loop.version == arts[1].version, "the poll to pick up v1")
        p = SamplingParams(seed=3, max_chars=20)
        assert engine.submit("tiny", "a", p).result(30).sample == \
            Sampler(arts[1]).generate("a", p)
    finally:
        engine.stop()


def test_the_engine_and_active_artifact_share_one_loaded_model(artifact_factory, tmp_path,
                                                               monkeypatch):
    """registry.load is the one cache: the served model is held once per process, and a
    new active version replaces the old one in it."""
    root = tmp_path / "registry"
    monkeypatch.setenv("MODEL_REGISTRY", str(root))
    for i, seed in enumerate((1, 2)):
        artifact_factory(text=TEXT, seed=seed, style="tiny").save(root / "tiny" / f"v{i}")
    activate("tiny", "v0")
    engine = Engine(poll_s=0.05, backend="numpy").start()
    try:
        loop = engine.worker("tiny")
        assert active_artifact("tiny") is loop._batches[-1].art
        activate("tiny", "v1")
        wait_for(lambda: loop.stats.reloads == 1, "the poll to pick up v1")
        assert active_artifact("tiny") is loop._batches[-1].art
    finally:
        engine.stop()


def test_a_broken_new_version_is_refused_and_the_old_one_served(artifact_factory, tmp_path,
                                                                  monkeypatch, caplog):
    root = tmp_path / "registry"
    monkeypatch.setenv("MODEL_REGISTRY", str(root))
    good = artifact_factory(text=TEXT, seed=1, style="tiny")
    good.save(root / "tiny" / "v1")
    activate("tiny", "v1")
    (root / "tiny" / "v2").mkdir()
    (root / "tiny" / "v2" / "model.json").write_text("{broken", encoding="utf-8")
    engine = Engine(poll_s=3600, backend="numpy").start()
    try:
        loop = engine.worker("tiny")
        # By hand: activate() itself refuses a version that does not load.
        (root / "tiny" / "ACTIVE").write_text("v2\n", encoding="utf-8")
        loop.reload(wait=True)
        assert loop.version == good.version and loop.stats.reloads == 0
        assert "cannot load" in caplog.text
        p = SamplingParams(seed=1, max_chars=20)
        assert engine.submit("tiny", "a", p).result(30).sample == \
            Sampler(good).generate("a", p)
    finally:
        engine.stop()


def test_one_style_flooded_leaves_the_others_free(artifact_factory, tmp_path, monkeypatch):
    gate = install_gate(monkeypatch)
    a, b = (artifact_factory(text=TEXT, seed=s, style=n) for s, n in ((1, "a"), (2, "b")))
    a.save(tmp_path / "a")
    b.save(tmp_path / "b")
    engine = Engine(paths={"a": a.path, "b": b.path}, max_batch=1, max_queue=0).start()
    try:
        engine.submit("a", "", SamplingParams(seed=1, max_chars=3000, stop="none"))
        with pytest.raises(Busy):
            engine.submit("a", "", SamplingParams(seed=2))
        fut = engine.submit("b", "the", SamplingParams(seed=2, max_chars=10))
        gate.open = True
        gate.release(2)
        assert fut.result(30).sample == Sampler(b).generate(
            "the", SamplingParams(seed=2, max_chars=10))
    finally:
        engine.stop()


def test_missing_model_is_unavailable(tmp_path):
    engine = Engine(paths={"gone": tmp_path / "nope"}, backend="numpy").start()
    try:
        with pytest.raises(ModelUnavailable, match="gone"):
            engine.submit("gone", "", SamplingParams(seed=1))
    finally:
        engine.stop()


def test_stopped_engine_fails_waiters_clearly(art, monkeypatch):
    install_gate(monkeypatch)
    engine = engine_for(art)
    fut = engine.submit("tiny", "", SamplingParams(seed=1))
    engine.stop()
    with pytest.raises(GenerationError, match="stopped"):
        fut.result(timeout=5)
    with pytest.raises(GenerationError, match="not running"):
        engine.worker("tiny").submit("", SamplingParams(seed=1))


def test_the_chat_side_never_imports_tensorflow(bot, env_for, artifact_factory):
    root = bot.root / "registry"
    artifact_factory(text=TEXT, style="tiny").save(root / "tiny" / "v1")
    activate("tiny", "v1", root=root)
    code = (
        "import asyncio, json, sys\n"
        "from bot.wiring import make_client\n"
        "from genmodels.sampler import SamplingParams\n"
        "import serving.service, serving.http_client, serving.tf_backend\n"
        "from serving.tf_backend import gpu_visible\n"
        "async def go():\n"
        "    c = make_client()\n"
        "    r = await c.generate('tiny', 'the', SamplingParams(seed=1, max_chars=20))\n"
        "    await c.close()\n"
        "    return type(c).__name__, r.sample.text\n"
        "name, text = asyncio.run(go())\n"
        "print(json.dumps({'client': name, 'text': text, 'gpu': gpu_visible(),\n"
        "                  'tf': 'tensorflow' in sys.modules}))\n")
    env = env_for(bot.config, MODEL_REGISTRY=str(root))
    proc = subprocess.run([sys.executable, "-c", code], cwd=bot.root, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["client"] == "EngineClient" and out["text"]
    assert out["tf"] is False


def test_only_loops_that_step_count_for_the_blas_thread_policy(art, tmp_path):
    art.save(tmp_path / "idle")
    engine = Engine(paths={"tiny": art.path, "idle": tmp_path / "idle"}, backend="numpy",
                    poll_s=0.05, blas_threads=1).start()
    try:
        engine.preload(["tiny", "idle"])
        engine.submit("tiny", "the ", SamplingParams(seed=1, max_chars=20)).result(30)
        assert engine.blas.current == 1  # the stepping loop set the fixed count
        time.sleep(0.2)  # several idle polls of both loops
        assert set(engine.blas._seen) == {"tiny"}  # an idle loop is not a busy one
    finally:
        engine.stop()
