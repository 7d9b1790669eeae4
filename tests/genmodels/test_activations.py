"""Per-character LSTM states: equal to a textbook LSTM and to the kernel as the sampler runs it."""
import numpy as np
import pytest

from genmodels.activations import trace
from genmodels.kernel import NumpyLSTM


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def reference_states(weights, cfg, ids):
    """Plain float64 LSTM (Keras layout, gates i, f, c, o): per layer (T, H) h and c."""
    w = {k: np.asarray(v, np.float64) for k, v in weights.items()}
    h = [np.zeros(cfg.hidden) for _ in range(cfg.n_layers)]
    c = [np.zeros(cfg.hidden) for _ in range(cfg.n_layers)]
    hs = [np.zeros((len(ids), cfg.hidden)) for _ in range(cfg.n_layers)]
    cs = [np.zeros((len(ids), cfg.hidden)) for _ in range(cfg.n_layers)]
    for t, i in enumerate(ids):
        x = w["embedding"][i]
        for n in range(cfg.n_layers):
            z = x @ w[f"lstm_{n}/kernel"] + h[n] @ w[f"lstm_{n}/recurrent_kernel"] \
                + w[f"lstm_{n}/bias"]
            gi, gf, gc, go = np.split(z, 4)
            c[n] = _sigmoid(gf) * c[n] + _sigmoid(gi) * np.tanh(gc)
            h[n] = _sigmoid(go) * np.tanh(c[n])
            hs[n][t], cs[n][t] = h[n], c[n]
            x = h[n]
    return hs, cs


@pytest.mark.parametrize("n_layers", [1, 3])
def test_states_equal_a_textbook_lstm_after_the_start_context(artifact_factory, n_layers):
    art = artifact_factory(text="the cat sat.\n\"no,\" she said!", n_layers=n_layers,
                           hidden=7, seed=n_layers, scale=0.9)
    text = '"no," the cat said.\nshe sat.'
    acts = trace(art, text, stop="end_of_line")
    assert acts.text == text and acts.dropped == ""
    assert acts.n_layers == n_layers and acts.size == 7
    ids = art.vocab.encode("\n" + text).ids
    hs, cs = reference_states(art.weights, art.model_config, ids)
    for n in range(n_layers):
        assert acts.hidden[n].shape == (len(text), 7)
        # The start context is fed but not recorded: row t is after text[t].
        np.testing.assert_allclose(acts.hidden[n], hs[n][1:], atol=1e-5)
        np.testing.assert_allclose(acts.cell[n], cs[n][1:], atol=1e-5)
        assert np.ptp(cs[n]) > 0.5  # non-trivial states


def test_final_state_is_the_kernels_state_after_the_same_characters(tiny_artifact):
    text = "the sun is hot."
    acts = trace(tiny_artifact, text, stop="blank_line")
    lstm = NumpyLSTM(tiny_artifact.weights, tiny_artifact.model_config)
    _, state = lstm.run([tiny_artifact.vocab.encode("\n\n" + text).ids])
    for n in range(acts.n_layers):
        np.testing.assert_array_equal(acts.hidden[n][-1], state.h(n)[:, 0])
        np.testing.assert_array_equal(acts.cell[n][-1], state.c[n][:, 0])
    np.testing.assert_array_equal(acts.values("cell", 1, 3), acts.cell[1][:, 3])
    np.testing.assert_array_equal(acts.values("hidden", 0, 2), acts.hidden[0][:, 2])


def test_unknown_characters_follow_the_vocabulary_policy(tiny_artifact):
    acts = trace(tiny_artifact, "the \u201ccat\u201d \u00e9\u00e9 sat")
    assert acts.text == 'the "cat"  sat'  # curly quotes become straight, é is dropped
    assert acts.dropped == "\u00e9\u00e9"
    assert acts.cell[0].shape[0] == len(acts.text)


def test_empty_text_has_no_rows(tiny_artifact):
    acts = trace(tiny_artifact, "")
    assert acts.text == "" and acts.cell[0].shape == (0, 8)


@pytest.mark.parametrize("args,message", [
    (("cell", 2, 0), "layer must be between 1 and 2"),
    (("hidden", -1, 0), "layer must be between 1 and 2"),
    (("cell", 0, 8), "neuron must be between 0 and 7"),
    (("gate", 0, 0), "kind must be one of cell, hidden"),
])
def test_bad_layer_neuron_or_kind_is_a_clear_error(tiny_artifact, args, message):
    acts = trace(tiny_artifact, "the cat")
    with pytest.raises(ValueError, match=message):
        acts.values(*args)


def test_head_keeps_the_first_characters_and_their_states(tiny_artifact):
    acts = trace(tiny_artifact, "the cat sat.")
    head = acts.head(5)
    assert head.text == "the c" and head.cell[1].shape == (5, 8)
    np.testing.assert_array_equal(head.hidden[0], acts.hidden[0][:5])
