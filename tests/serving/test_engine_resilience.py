"""The engine behind the service on 127.0.0.1 outlives what goes wrong: an exception
anywhere in a style's loop, a broken ACTIVE marker, EMFILE while polling, a corrupt
(NaN) or unreadable version at start-up or at a hot swap. Each costs the requests of
that step at most, one log line, and never the style."""
import asyncio
import errno
import json
import pathlib
import time

import numpy as np
import pytest
from engine_testing import Server, install_gate, metric_values

from genmodels.registry import activate
from serving.batch import Batch
from serving.engine import Engine

pytestmark = pytest.mark.timeout(120)
TEXT = "the cat sat.\nthe dog ran.\n\na red hat, a hot sun!\n"
OK = {"style": "tiny", "seed": 1, "max_chars": 5}


def lines(caplog, fragment: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if fragment in r.getMessage()]


@pytest.fixture
def book(bot):
    """A config with the tiny style only having a model (shipped at models/tiny)."""
    bot.save_artifact("tiny")
    return bot.book()


@pytest.mark.parametrize("where", ["admit", "step"])
def test_a_loop_survives_any_exception_and_logs_it_once(book, bot, monkeypatch, caplog, where):
    boom = {"left": 20}
    if where == "admit":  # an exception outside the step: nothing caught it before
        encode = Batch.encode

        def failing_encode(batch, row):
            if boom["left"]:
                boom["left"] -= 1
                raise RuntimeError("injected loop failure")
            return encode(batch, row)
        monkeypatch.setattr(Batch, "encode", failing_encode)
    else:
        gate = install_gate(monkeypatch)
        gate.open, gate.fail_next = True, 20

    async def go():
        engine = Engine(paths={"tiny": bot.models / "tiny"}, backend="numpy").start()
        async with Server(engine, book) as s:
            failed = [await asyncio.wait_for(s.post(OK), 10) for _ in range(20)]
            after = await s.post(OK)
            health = json.loads((await s.get("/healthz"))[1])
            metrics = (await s.get("/metrics"))[1]
        return failed, after, health, metrics

    failed, after, health, metrics = asyncio.run(go())
    assert all(f[0] == 500 and "generation failed" in f[1]["error"] for f in failed)
    assert after[0] == 200
    tiny = health["styles"]["tiny"]
    assert tiny["alive"] and tiny["ready"] and tiny["errors"] == 20
    assert "injected" in tiny["last_error"]
    values = metric_values(metrics)
    assert values["stylebot_inference_loop_errors_total", (("style", "tiny"),)] == 20
    assert values["stylebot_inference_loop_ready", (("style", "tiny"),)] == 1
    assert len(lines(caplog, "injected")) == 1  # once, not once per step


def test_a_poll_that_raises_costs_no_request(book, bot, monkeypatch, caplog):
    def broken(path):
        raise RuntimeError("injected poll failure")
    monkeypatch.setattr("serving.engine_versions.fingerprint", broken)

    async def go():
        engine = Engine(paths={"tiny": bot.models / "tiny"}, backend="numpy",
                        poll_s=0.01).start()
        async with Server(engine, book) as s:
            answers = [await asyncio.wait_for(s.post(OK | {"max_chars": 100, "stop": "none"}),
                                              10) for _ in range(20)]
            return answers, engine.worker("tiny").health()

    answers, health = asyncio.run(go())
    assert [a[0] for a in answers] == [200] * 20
    assert health["alive"] and health["errors"] >= 1
    assert len(lines(caplog, "injected poll failure")) == 1


@pytest.fixture
def registry(tmp_path, monkeypatch, artifact_factory):
    """var/models/tiny with v1 (older) and v2 (newer), both good; v2 active."""
    root = tmp_path / "registry"
    monkeypatch.setenv("MODEL_REGISTRY", str(root))
    arts = {}
    for i, name in enumerate(["v1", "v2"]):
        arts[name] = artifact_factory(text=TEXT, seed=i + 1, style="tiny")
        arts[name].version = f"tiny-{name}"
        path = arts[name].save(root / "tiny" / name)
        stamp = 1_000_000 + i * 1000  # v2 is the newer
        for f in path.iterdir():
            pathlib.os.utime(f, (stamp, stamp))
    activate("tiny", "v2")
    return root, arts


def corrupt(folder: pathlib.Path, value=np.nan) -> None:
    """Put a NaN (or inf) into a saved artifact's dense bias."""
    with np.load(folder / "weights.npz") as npz:
        weights = {k: npz[k] for k in npz.files}
    weights["dense/bias"][0] = value
    np.savez(folder / "weights.npz", **weights)


def serve(book, shipped=None, poll_s=0.05, steps=()):
    """Start a Server on the registry, run ``steps`` (async callables taking it); their
    results, then /healthz's status and JSON (503 overall: only tiny has a model)."""
    async def go():
        engine = Engine(backend="numpy", poll_s=poll_s, shipped=shipped).start()
        async with Server(engine, book) as s:
            out = [await step(s) for step in steps]
            health = await s.get("/healthz")
        return out, health[0], json.loads(health[1])
    return asyncio.run(go())


async def post_ok(s):
    status, body, _ = await asyncio.wait_for(s.post(OK), 10)
    return status, body.get("version")


@pytest.mark.parametrize("breakage", ["invalid-utf8", "directory", "emfile"])
def test_a_broken_marker_or_emfile_while_polling_keeps_the_loaded_version(
        book, registry, monkeypatch, caplog, breakage):
    root, arts = registry
    marker = root / "tiny" / "ACTIVE"

    async def breaks(s):
        if breakage == "invalid-utf8":
            marker.write_bytes(b"\xff\xfe v1\n")
        elif breakage == "directory":
            marker.unlink()
            marker.mkdir()
        else:  # the process is out of file descriptors while it reads the marker
            real = pathlib.Path.read_text

            def emfile(self, *a, **kw):
                if self.name == "ACTIVE":
                    raise OSError(errno.EMFILE, "Too many open files")
                return real(self, *a, **kw)
            monkeypatch.setattr(pathlib.Path, "read_text", emfile)
        await asyncio.sleep(0.6)  # a dozen polls
        return None

    (first, _, after), status, health = serve(book, steps=[post_ok, breaks, post_ok])
    assert first == after == (200, arts["v2"].version)
    assert health["styles"]["tiny"]["ready"]
    assert len(lines(caplog, "cannot read the active version")) == 1


def test_a_corrupt_active_version_at_start_falls_back_to_the_newest_good_one(
        book, registry, caplog):
    root, arts = registry
    corrupt(root / "tiny" / "v2")
    (answer,), status, health = serve(book, steps=[post_ok])
    assert answer == (200, arts["v1"].version)
    assert health["styles"]["tiny"]["ready"]
    assert health["styles"]["tiny"]["version"] == arts["v1"].version
    [warning] = lines(caplog, "non-finite")
    assert "v2/weights.npz: dense/bias" in warning and "serving tiny-v1" in warning


def test_a_broken_marker_at_start_serves_the_newest_good_version(book, registry, caplog):
    root, arts = registry
    (root / "tiny" / "ACTIVE").write_bytes(b"\xc3\x28\n")  # not UTF-8
    (answer,), _, health = serve(book, steps=[post_ok])
    assert answer == (200, arts["v2"].version) and health["styles"]["tiny"]["ready"]
    assert len(lines(caplog, "unreadable marker")) == 1


def test_no_good_registry_version_falls_back_to_the_shipped_model(book, bot, registry):
    root, _ = registry
    corrupt(root / "tiny" / "v1", np.inf)
    corrupt(root / "tiny" / "v2")
    shipped = bot.book().get("tiny").model_dir
    (answer,), _, health = serve(book, shipped=shipped.parent, steps=[post_ok])
    assert answer[0] == 200 and answer[1] == "tiny-test-0"  # never a 503 while one loads
    assert health["styles"]["tiny"]["ready"]


def test_a_corrupt_new_version_is_not_swapped_in(book, registry, caplog):
    root, arts = registry
    (root / "tiny" / "v3").mkdir()
    arts["v2"].save(root / "tiny" / "v3")
    corrupt(root / "tiny" / "v3")

    async def swap(s):
        (root / "tiny" / "ACTIVE").write_text("v3\n")  # by hand: activate() refuses it
        await asyncio.sleep(0.6)
        return None

    (before, _, after), _, health = serve(book, steps=[post_ok, swap, post_ok])
    assert before == after == (200, arts["v2"].version) and health["styles"]["tiny"]["ready"]
    [warning] = lines(caplog, "cannot load")
    assert "dense/bias holds 1 non-finite value" in warning


def test_activate_refuses_a_version_with_non_finite_weights(registry):
    root, _ = registry
    corrupt(root / "tiny" / "v1", -np.inf)
    with pytest.raises(Exception, match="v1/weights.npz: dense/bias holds 1 non-finite"):
        activate("tiny", "v1")
    assert (root / "tiny" / "ACTIVE").read_text().strip() == "v2"


def test_a_style_whose_model_is_missing_is_retried_not_reloaded_per_request(bot, caplog):
    bot.save_artifact("tiny")
    book = bot.book()

    async def flood(s):
        return [(await s.post({"style": "fable_owl"}))[0] for _ in range(50)]

    start = time.monotonic()
    (codes,), status, health = serve(book, steps=[flood])
    assert set(codes) == {503} and time.monotonic() - start < 30
    assert status == 503 and "fable_owl" in health["not_ready"]
    assert len(lines(caplog, "fable_owl")) <= 2  # not one warning per request
