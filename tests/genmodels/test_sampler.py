"""Sampler: seeds, temperature, top-k, top-p, stop rules and the prime's unseen characters."""
import numpy as np
import pytest

from genmodels.artifact import Artifact
from genmodels.config import ModelConfig
from genmodels.kernel import NumpyLSTM
from genmodels.sampler import (
    NOISE_BLOCK,
    BadParam,
    RowParams,
    Sampler,
    SamplingParams,
    choose,
    gumbel_block,
    start_text,
)
from genmodels.vocab import Vocabulary

TEXT = "abcdefghijklmnopqrstuvwxyz .,\n"


@pytest.fixture
def sampler(artifact_factory):
    return Sampler(artifact_factory(text=TEXT, hidden=12, seed=11, scale=0.5))


def scripted_artifact(chars: str, first: dict[str, str],
                      second: dict[tuple[str, str], str] | None = None) -> Artifact:
    """Real LSTM weights that follow rules: the next char after ``cur`` is ``first[cur]``,
    unless the previous char and ``cur`` have a rule in ``second`` (which wins).

    Hidden units 0..V-1 hold the current char (forget gate shut, input/output open);
    unit V + p*V + c opens its input gate only when the input is c *and* the previous
    step's unit p is on, so it detects the pair (p, c). The dense layer maps each
    detector to the logit of the char that follows it.
    """
    second = second or {}
    vocab = Vocabulary(sorted(chars))
    v = len(vocab)
    hid = v + v * v
    cfg = ModelConfig(vocab_size=v, embed_dim=v, hidden=hid, n_layers=1)
    kernel = np.zeros((v, 4 * hid), np.float32)
    rec = np.zeros((hid, 4 * hid), np.float32)
    bias = np.zeros(4 * hid, np.float32)
    gi, gf, gc, go = (slice(k * hid, (k + 1) * hid) for k in range(4))
    bias[gf] = -20.0  # forget everything: the state holds only the last step
    bias[go] = 10.0
    on = np.tanh(np.tanh(3.0))  # value of a "current char" unit that is on
    for k in range(v):  # current-char units
        bias[gi.start + k] = 10.0
        kernel[k, gc.start + k] = 3.0
    for p in range(v):  # pair detectors
        for c in range(v):
            u = v + p * v + c
            kernel[c, gi.start + u] = 10.0
            rec[p, gi.start + u] = 10.0 / on
            bias[gi.start + u] = -15.0
            bias[gc.start + u] = 3.0
    dense = np.zeros((hid, v), np.float32)
    for cur, nxt in first.items():
        dense[vocab.index[cur], vocab.index[nxt]] = 8.0
    for (prev, cur), nxt in second.items():
        dense[v + vocab.index[prev] * v + vocab.index[cur], vocab.index[nxt]] = 20.0
    weights = {"embedding": np.eye(v, dtype=np.float32), "lstm_0/kernel": kernel,
               "lstm_0/recurrent_kernel": rec, "lstm_0/bias": bias,
               "dense/kernel": dense, "dense/bias": np.zeros(v, np.float32)}
    return Artifact(style="scripted", vocab=vocab, model_config=cfg, weights=weights,
                    version="scripted-1")


# "ab\n\n" forever: after a newline that follows 'b' comes a second newline.
STANZAS = dict(chars="\nab", first={"\n": "a", "a": "b", "b": "\n"},
               second={("b", "\n"): "\n"})


@pytest.fixture
def stanzas():
    return Sampler(scripted_artifact(**STANZAS))


def test_scripted_model_really_follows_its_rules(stanzas):
    vocab = stanzas.vocab
    ids = np.array([vocab.encode("\nab\n\nab\n").ids])
    logits, _ = stanzas.lstm.run(ids)
    assert vocab.decode(logits[0].argmax(-1)) == "ab\n\nab\n\n"
    top2 = np.sort(logits[0], axis=-1)[:, -2:]
    assert (top2[:, 1] - top2[:, 0]).min() > 5  # near-certain, even when sampling


# --- seeds ---

def test_same_seed_gives_the_same_text(sampler):
    params = SamplingParams(temperature=1.0, seed=42, max_chars=80, stop="none")
    first = sampler.generate("the ", params)
    again = sampler.generate("the ", params)
    assert first.text == again.text
    assert len(first.text) == 80
    assert first.seed == 42


def test_same_seed_gives_the_same_text_from_a_reloaded_model(tmp_path, sampler):
    from genmodels.artifact import load

    params = SamplingParams(temperature=1.0, seed=5, max_chars=60, stop="none")
    sampler.artifact.save(tmp_path / "m")
    assert Sampler(load(tmp_path / "m")).generate("a", params).text == \
        sampler.generate("a", params).text


def test_different_seeds_give_different_texts(sampler):
    texts = {sampler.generate("the ", SamplingParams(temperature=1.0, seed=s, max_chars=60,
                                                     stop="none")).text
             for s in range(6)}
    assert len(texts) == 6


def test_without_a_seed_a_fresh_one_is_reported_and_reproduces_the_text(sampler):
    params = SamplingParams(temperature=1.0, seed=None, max_chars=50, stop="none")
    first, second = sampler.generate("", params), sampler.generate("", params)
    assert first.seed != second.seed
    assert 0 <= first.seed < 2**63
    again = sampler.generate("", SamplingParams(temperature=1.0, seed=first.seed,
                                                max_chars=50, stop="none"))
    assert again.text == first.text


# --- temperature ---

def _greedy(sampler, prime, n, stop="none"):
    """Argmax decoding written out by hand: stop sequence, then prime, then n chars."""
    vocab, lstm = sampler.vocab, NumpyLSTM(sampler.artifact.weights,
                                           sampler.artifact.model_config)
    context = vocab.encode(start_text(stop) + prime).ids
    logits, state = lstm.run(np.array([context]))
    nxt = int(logits[0, -1].argmax())
    out = [nxt]
    for _ in range(n - 1):
        nxt = int(lstm.step([nxt], state)[0].argmax())
        out.append(nxt)
    return vocab.decode(out)


def test_temperature_zero_is_argmax_whatever_the_seed(sampler):
    texts = {sampler.generate("the c", SamplingParams(temperature=0.0, seed=s, max_chars=40,
                                                      stop="none")).text
             for s in (1, 2, 3)}
    assert texts == {_greedy(sampler, "the c", 40)}


def test_very_high_temperature_is_near_uniform(sampler):
    gen = sampler.generate("", SamplingParams(temperature=5.0, seed=3, max_chars=600,
                                              stop="none"))
    counts = np.array([gen.text.count(c) for c in sampler.vocab.chars])
    vocab_size = len(sampler.vocab)
    assert (counts > 0).sum() >= 0.9 * vocab_size
    assert counts.max() < 3 * 600 / vocab_size
    cold = sampler.generate("", SamplingParams(temperature=0.3, seed=3, max_chars=600,
                                               stop="none"))
    assert len(set(cold.text)) < (counts > 0).sum()  # temperature really flattens


# --- choose(): top-k and top-p ---

def pick(logits, params: SamplingParams, gumbel) -> int:
    """``choose`` for one stream: a batch of one row, as ``Sampler.generate`` calls it."""
    return int(choose(logits[None], RowParams.of([params]), gumbel[None])[0])


LOGITS = np.log(np.array([0.05, 0.5, 0.15, 0.3], np.float32))  # order: 1, 3, 2, 0


def _draws(logits, params, n=400, seed=0):
    rng = np.random.default_rng(seed)
    return [pick(logits.copy(), params, rng.gumbel(size=logits.shape).astype(np.float32))
            for _ in range(n)]


def test_gumbel_block_is_standard_gumbel_noise_fixed_by_the_seed():
    block = gumbel_block(np.random.default_rng(3), 400)
    assert block.dtype == np.float32 and block.shape == (NOISE_BLOCK, 400)
    # Gumbel(0, 1): mean is Euler's constant, variance pi^2 / 6, P(g <= 0) = 1/e.
    assert abs(block.mean() - np.euler_gamma) < 0.01
    assert abs(block.var() - np.pi ** 2 / 6) < 0.03
    assert abs((block <= 0).mean() - np.exp(-1)) < 0.005
    np.testing.assert_array_equal(block, gumbel_block(np.random.default_rng(3), 400))
    assert not np.array_equal(block, gumbel_block(np.random.default_rng(4), 400))


def test_choose_with_gumbel_block_noise_draws_in_proportion():
    rng = np.random.default_rng(1)
    draws = [pick(LOGITS.copy(), SamplingParams(temperature=1.0), row)
             for _ in range(16) for row in gumbel_block(rng, 4)]
    freq = np.bincount(draws, minlength=4) / len(draws)
    np.testing.assert_allclose(freq, np.exp(LOGITS), atol=0.03)


def test_choose_without_limits_draws_every_id_in_proportion():
    draws = np.bincount(_draws(LOGITS, SamplingParams(temperature=1.0), n=4000), minlength=4)
    np.testing.assert_allclose(draws / 4000, np.exp(LOGITS), atol=0.03)


@pytest.mark.parametrize("params", [SamplingParams(temperature=0.0),
                                    SamplingParams(temperature=1.0, top_k=1),
                                    SamplingParams(temperature=5.0, top_k=1),
                                    SamplingParams(temperature=1.0, top_p=1e-6),
                                    SamplingParams(temperature=5.0, top_p=0.01)])
def test_greedy_settings_always_pick_the_argmax(params):
    assert set(_draws(LOGITS, params)) == {1}


def test_top_k_keeps_exactly_the_k_most_likely():
    assert set(_draws(LOGITS, SamplingParams(temperature=2.0, top_k=2))) == {1, 3}
    assert set(_draws(LOGITS, SamplingParams(temperature=2.0, top_k=3))) == {1, 3, 2}
    assert set(_draws(LOGITS, SamplingParams(temperature=2.0, top_k=99))) == {0, 1, 2, 3}


def test_top_p_keeps_the_smallest_set_reaching_p():
    assert set(_draws(LOGITS, SamplingParams(temperature=1.0, top_p=0.7))) == {1, 3}
    assert set(_draws(LOGITS, SamplingParams(temperature=1.0, top_p=0.9))) == {1, 3, 2}
    assert set(_draws(LOGITS, SamplingParams(temperature=1.0, top_p=1.0))) == {0, 1, 2, 3}


def test_choose_leaves_the_logits_alone():
    logits = LOGITS.copy()
    pick(logits, SamplingParams(temperature=0.5, top_k=2, top_p=0.5), np.zeros(4, np.float32))
    np.testing.assert_array_equal(logits, LOGITS)


def test_top_k_one_in_generate_equals_greedy(sampler):
    gen = sampler.generate("a", SamplingParams(temperature=1.0, top_k=1, seed=9, max_chars=30,
                                               stop="none"))
    assert gen.text == _greedy(sampler, "a", 30)


def test_tiny_top_p_in_generate_equals_greedy(sampler):
    gen = sampler.generate("a", SamplingParams(temperature=1.5, top_p=1e-9, seed=9,
                                               max_chars=30, stop="none"))
    assert gen.text == _greedy(sampler, "a", 30)


# --- stop rules ---

@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_end_of_line_stops_at_a_newline_and_drops_it(stanzas, temperature):
    gen = stanzas.generate("", SamplingParams(temperature=temperature, seed=1, max_chars=50,
                                              stop="end_of_line"))
    assert (gen.text, gen.stop_reason) == ("ab", "stop")


def test_blank_line_stops_at_an_empty_line_and_drops_it(stanzas):
    gen = stanzas.generate("", SamplingParams(temperature=0.0, max_chars=50, stop="blank_line"))
    assert (gen.text, gen.stop_reason) == ("ab", "stop")


def test_blank_line_does_not_stop_at_a_single_newline():
    # "ab\n" then "ab\n\n": the first, single newline must not end the paragraph.
    art = scripted_artifact(chars="\nabc", first={"\n": "a", "a": "b", "b": "\n", "c": "\n"},
                            second={("b", "\n"): "c", ("c", "\n"): "\n"})
    gen = Sampler(art).generate("", SamplingParams(temperature=0.0, max_chars=50,
                                                   stop="blank_line"))
    assert (gen.text, gen.stop_reason) == ("ab\nc", "stop")


def test_stop_none_runs_to_max_chars(stanzas):
    gen = stanzas.generate("", SamplingParams(temperature=0.0, max_chars=11, stop="none"))
    assert (gen.text, gen.stop_reason) == ("ab\n\nab\n\nab\n", "max_chars")


def test_max_chars_before_the_stop(stanzas):
    gen = stanzas.generate("", SamplingParams(temperature=0.0, max_chars=2, stop="end_of_line"))
    assert (gen.text, gen.stop_reason) == ("ab", "max_chars")
    gen = stanzas.generate("", SamplingParams(temperature=0.0, max_chars=3, stop="blank_line"))
    assert (gen.text, gen.stop_reason) == ("ab\n", "max_chars")


def test_the_stop_sequence_is_fed_before_the_prime(stanzas):
    # With no prime the model reads only the stop sequence, so it starts a new stanza.
    assert stanzas.generate("", SamplingParams(temperature=0.0, max_chars=1,
                                               stop="end_of_line")).text == "a"
    assert stanzas.generate("a", SamplingParams(temperature=0.0, max_chars=1,
                                                stop="end_of_line")).text == "b"


def test_a_stop_right_after_the_prime_does_not_give_an_empty_answer(stanzas):
    gen = stanzas.generate("ab", SamplingParams(temperature=0.0, max_chars=50,
                                                stop="end_of_line"))
    # The model ends the line at once ("ab" + "\n\n"); the sampler goes on to real text.
    assert (gen.text, gen.stop_reason) == ("\n\nab", "stop")
    assert gen.full_text == "ab\n\nab"


# --- the prime ---

def test_prime_unseen_characters_follow_the_policy(artifact_factory):
    art = artifact_factory(text="say \"hi\" to it's\n", seed=2)
    gen = Sampler(art).generate("say \u201chi\u201d \u0436 to\u263a",
                                SamplingParams(temperature=0.0, max_chars=5, stop="none"))
    assert gen.prime == "say \"hi\"  to"
    assert gen.dropped == "\u0436\u263a"
    assert gen.full_text == ("say \"hi\"  to" + gen.text).strip()
    assert gen.version == art.version
    # The model read the normalised prime: same continuation as typing it straight.
    plain = Sampler(art).generate("say \"hi\"  to",
                                  SamplingParams(temperature=0.0, max_chars=5, stop="none"))
    assert plain.text == gen.text and plain.dropped == ""


def test_generate_rejects_bad_params(sampler):
    with pytest.raises(ValueError, match="temperature"):
        sampler.generate("", SamplingParams(temperature=-1.0))


# --- SamplingParams.validate ---

@pytest.mark.parametrize("kwargs,words", [
    ({"temperature": -0.01}, "temperature"),
    ({"temperature": 5.01}, "temperature"),
    ({"temperature": float("nan")}, "temperature"),
    ({"top_k": -1}, "top-k"),
    ({"top_p": 0.0}, "top-p"),
    ({"top_p": -0.5}, "top-p"),
    ({"top_p": 1.01}, "top-p"),
    ({"top_p": float("nan")}, "top-p"),
    ({"seed": -1}, "seed"),
    ({"seed": 2**63}, "seed"),
    ({"max_chars": 0}, "max-chars"),
    ({"max_chars": 101}, "maximum of 100"),
    ({"stop": "never"}, "end_of_line, blank_line, none"),
])
def test_validate_names_the_bad_value(kwargs, words):
    with pytest.raises(BadParam, match=words) as info:
        SamplingParams(**({"max_chars": 50} | kwargs)).validate(max_chars_allowed=100)
    assert "\n" not in str(info.value)
    assert info.value.field == next(iter(kwargs))  # the field, as SamplingParams names it


@pytest.mark.parametrize("kwargs", [{"temperature": 0.0}, {"temperature": 5.0}, {"top_k": 0},
                                    {"top_p": 1.0}, {"top_p": 1e-9}, {"seed": 0},
                                    {"max_chars": 100}, {"stop": "none"}])
def test_validate_accepts_the_edges(kwargs):
    SamplingParams(**({"max_chars": 50} | kwargs)).validate(max_chars_allowed=100)
