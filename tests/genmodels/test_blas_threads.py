"""The BLAS thread policy of the engine and the sampler: every idle core, one when other
processes keep a core busy."""
import numpy as np
import pytest
from threadpoolctl import ThreadpoolController, threadpool_info

from genmodels import blas_threads
from genmodels.blas_threads import PERIOD_S, BlasThreads
from genmodels.sampler import Sampler, SamplingParams
from serving.config import inference_settings
from serving.engine import Engine


def openblas_threads() -> int:
    return next(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")


@pytest.fixture
def machine(monkeypatch):
    """A fake clock, /proc/stat and process CPU time the test advances by hand."""
    class Machine:
        now, busy, own = 1000.0, 500.0, 10.0

        def advance(self, seconds, others, own=0.0):
            """``seconds`` pass; other processes use ``others`` cores, we use ``own``."""
            self.now += seconds
            self.busy += (others + own) * seconds
            self.own += own * seconds

        def look(self, policy, seconds, others, own=0.0, loop="austen"):
            """Advance, let ``loop`` tick the policy, return the thread count it set."""
            self.advance(seconds, others, own)
            policy.tick(loop)
            return policy.current

    m = Machine()
    monkeypatch.setattr(blas_threads.time, "monotonic", lambda: m.now)
    monkeypatch.setattr(blas_threads, "_cpu_busy_s", lambda: m.busy)
    monkeypatch.setattr(blas_threads, "_own_s", lambda: m.own)
    before = openblas_threads()
    yield m
    for lib in ThreadpoolController().select(user_api="blas").lib_controllers:
        lib.set_num_threads(before)  # leave the process as the suite found it


def test_auto_uses_every_core_only_while_other_processes_leave_them_idle(machine):
    policy = BlasThreads("auto")
    policy.cores = 2
    assert machine.look(policy, 1.1, others=0.05, own=1.9) == 2  # our own work is not "others"
    assert openblas_threads() == 2
    assert machine.look(policy, 1.1, others=0.9) == 1  # a retrain keeps a core busy
    assert openblas_threads() == 1
    assert machine.look(policy, 1.1, others=0.1) == 2


def test_auto_shares_the_cores_among_busy_loops_and_looks_once_a_period(machine):
    policy = BlasThreads("auto")
    policy.cores = 4
    assert machine.look(policy, 1.1, others=0.0) == 4
    assert machine.look(policy, 0.0, others=0.0, loop="sotu") == 4  # no new look yet
    assert machine.look(policy, PERIOD_S, others=0.0) == 2  # two loops, a thread each
    # sotu went idle; other processes take all 4 cores: never fewer than one
    assert machine.look(policy, 2.5 * PERIOD_S, others=3.5) == 1


def test_a_fixed_count_is_set_at_the_first_step(machine):
    policy = BlasThreads(2)
    assert policy.current is None
    policy.tick("austen")
    assert policy.current == 2 and openblas_threads() == 2
    assert np.allclose(np.ones((300, 300)) @ np.ones(300), 300.0)  # BLAS still works


@pytest.mark.parametrize("bad", [0, -1, "many", 1.5])
def test_bad_settings_name_the_key(tmp_path, bad):
    with pytest.raises(ValueError, match="blas_threads"):
        BlasThreads(bad)
    cfg = tmp_path / "config.toml"
    cfg.write_text(f"[inference]\nblas_threads = {bad!r}\n".replace("'", '"'))
    with pytest.raises(ValueError, match="inference.blas_threads"):
        inference_settings(cfg)


def test_config_accepts_auto_and_numbers(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text("[inference]\nblas_threads = 2\n")
    assert inference_settings(cfg)["blas_threads"] == 2
    cfg.write_text("[inference]\n")
    assert inference_settings(cfg)["blas_threads"] == "auto"


def test_one_auto_policy_per_process_shared_by_engines_and_samplers(tiny_artifact, machine):
    shared = blas_threads.policy("auto")
    assert blas_threads.policy("auto") is shared
    assert Sampler(tiny_artifact).blas is shared
    assert Engine(backend="numpy").blas is shared
    assert blas_threads.policy(1) is not shared  # a fixed count is its own


def test_the_sampler_sets_a_fixed_count_and_writes_the_same_text(tiny_artifact, machine):
    params = SamplingParams(seed=5, max_chars=60, stop="none")
    one = Sampler(tiny_artifact, blas=1).generate("the ", params)
    assert openblas_threads() == 1
    two = Sampler(tiny_artifact, blas=2).generate("the ", params)
    assert openblas_threads() == 2
    assert one.text == two.text  # BLAS threads split the work, not the arithmetic


def test_a_failing_blas_library_turns_the_policy_off_instead_of_raising(machine, monkeypatch):
    policy = BlasThreads(2)

    def broken(self, n):
        raise OSError("no such symbol")
    monkeypatch.setattr(BlasThreads, "_set", broken)
    policy.tick("austen")  # a model loop calls this before every step: it must not raise
    machine.advance(5.0, others=0.0)
    policy.tick("austen")
    assert policy.current is None


def test_a_look_from_before_an_idle_spell_is_not_used(machine):
    policy = BlasThreads("auto")
    policy.cores = 2
    assert machine.look(policy, 1.1, others=0.0) == 2
    # Another process ran while no loop was stepping: a 60-second average says nothing
    # about now, so the policy keeps its count and looks again a period later.
    assert machine.look(policy, 60.0, others=1.0) == 2
    assert machine.look(policy, 1.1, others=0.0) == 2  # it has finished
    assert machine.look(policy, 1.1, others=1.0) == 1  # it is running now
