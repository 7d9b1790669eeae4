"""genmodels.widen: the same model over a vocabulary with characters it has never seen."""
import numpy as np
import pytest

from genmodels import artifact as artifacts
from genmodels.kernel import NumpyLSTM
from genmodels.widen import NEW_CHAR_GAP, missing, widen


def logits(art, text):
    out, _ = NumpyLSTM(art.weights, art.model_config).run([art.vocab.encode(text).ids])
    return out[0]


def test_known_characters_keep_their_logits_and_new_ones_are_rare_but_possible(
        artifact_factory):
    art = artifact_factory()
    wide = widen(art, "the fox\u2014jumps")
    assert missing(art, "the fox\u2014jumps") == "fjpx\u2014"
    assert wide.vocab.chars == sorted(set(art.vocab.chars) | set("fjpx\u2014"))
    assert wide.model_config.vocab_size == len(wide.vocab) == len(art.vocab) + 5
    text = "the cat sat."
    before, after = logits(art, text), logits(wide, text)
    old_ids = [wide.vocab.index[ch] for ch in art.vocab.chars]
    np.testing.assert_allclose(after[:, old_ids], before, atol=1e-5)
    new_ids = [wide.vocab.index[ch] for ch in "fjpx\u2014"]
    floor = art.weights["dense/bias"].min() - NEW_CHAR_GAP
    np.testing.assert_allclose(after[:, new_ids], floor, atol=1e-5)
    assert (after[:, new_ids] < before.max(axis=1, keepdims=True)).all()


def test_a_new_character_reads_as_a_zero_embedding_and_the_result_saves(
        artifact_factory, tmp_path):
    art = artifacts.load(artifact_factory().save(tmp_path / "narrow"))
    wide = widen(art, "f")
    assert not wide.weights["embedding"][wide.vocab.index["f"]].any()
    assert np.isfinite(logits(wide, "the fat cat")).all()
    assert art.path is not None and wide.path is None  # not the folder it came from
    loaded = artifacts.load(wide.save(tmp_path / "wide"))
    assert loaded.vocab == wide.vocab and loaded.version == art.version
    np.testing.assert_array_equal(loaded.weights["dense/kernel"], wide.weights["dense/kernel"])


@pytest.mark.parametrize("chars", ["the cat", "   ", ""])
def test_nothing_new_gives_the_same_model(artifact_factory, chars):
    art = artifact_factory()
    assert widen(art, chars) is art and missing(art, chars) == ""


def test_the_original_is_left_as_it_was(artifact_factory):
    art = artifact_factory()
    shapes = {k: v.shape for k, v in art.weights.items()}
    widen(art, "xyz")
    assert {k: v.shape for k, v in art.weights.items()} == shapes
    assert "x" not in art.vocab and art.model_config.vocab_size == len(art.vocab)

