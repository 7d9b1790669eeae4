"""Features, the neuron picker (a planted quote cell is found) and the PNG renderer."""
import io
import random
import struct
import subprocess
import sys

import matplotlib
import matplotlib.image
import numpy as np
import pytest

from genmodels.activations import trace
from genmodels.artifact import Artifact, weight_shapes
from genmodels.config import ModelConfig
from genmodels.kernel import NumpyLSTM
from genmodels.neurons import (
    CMAP,
    MIN_CHARS,
    find,
    inside_quotes,
    inside_word,
    layout,
    neuron_picture,
    position_in_line,
    position_in_word,
    render_png,
    top_per_layer,
    upper_case_line,
)
from genmodels.vocab import Vocabulary

PLANTED = 3  # the quote-following cell of layer 0
WORDS = "the cat sat on a mat and we ran to old trees when sun was hot".split()


def quoted_text(chars: int = 600, seed: int = 0) -> str:
    """Prose with quoted speech of varied lengths at varied places."""
    rng, out = random.Random(seed), []
    while sum(map(len, out)) < chars:
        words = " ".join(rng.choices(WORDS, k=rng.randint(2, 9)))
        out.append(f'"{words}," ' if rng.random() < 0.5 else f"{words}. ")
        if rng.random() < 0.2:
            out.append("\n")
    return "".join(out)[:chars]


def planted_artifact(hidden: int = 8, seed: int = 0) -> Artifact:
    """Random 2-layer model whose layer-0 cell PLANTED flips sign at every '"'.

    Embedding dim 0 is 1 only for '"'. On a quote the cell forgets (f ~ 0), writes
    (i ~ 1) a candidate tanh(3 - 20 h) that is +1 if it was outside (h <= 0) and -1 if
    inside; on any other character it keeps its value (f ~ 1, i ~ 0). Nothing else
    reads or writes it, so no other neuron knows about quotes.
    """
    vocab = Vocabulary.from_text(quoted_text() + "\n")
    cfg = ModelConfig(vocab_size=len(vocab), embed_dim=4, hidden=hidden, n_layers=2)
    rng = np.random.default_rng(seed)
    w = {k: (rng.standard_normal(s) * 0.6).astype(np.float32)
         for k, s in weight_shapes(cfg).items()}
    w["embedding"][:, 0] = 0.0
    w["embedding"][vocab.index['"'], 0] = 1.0
    i, f, c, o = (g * hidden + PLANTED for g in range(4))
    k0, r0, b0 = w["lstm_0/kernel"], w["lstm_0/recurrent_kernel"], w["lstm_0/bias"]
    k0[0, :] = 0.0  # only the planted cell sees the quote dimension
    for col in (i, f, c, o):
        k0[:, col], r0[:, col] = 0.0, 0.0
    r0[PLANTED, :] = 0.0  # no other layer-0 neuron reads it
    w["lstm_1/kernel"][PLANTED, :] = 0.0  # nor does layer 1
    k0[0, i], b0[i] = 20.0, -10.0
    k0[0, f], b0[f] = -20.0, 10.0
    r0[PLANTED, c], b0[c] = -20.0, 3.0
    b0[o] = 10.0
    return Artifact(style="planted", vocab=vocab, model_config=cfg, weights=w,
                    version="planted-1")


def test_features_after_each_character():
    text = 'a "Bc" (d)\nEF:'
    np.testing.assert_array_equal(inside_quotes(text), [0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0,
                                                        0, 0, 0])
    np.testing.assert_array_equal(position_in_line(text)[8:], [9, 10, 0, 1, 2, 3])
    np.testing.assert_array_equal(inside_word("it's ok"), [1, 1, 1, 1, 0, 1, 1])
    np.testing.assert_array_equal(position_in_word("ab c"), [1, 2, 0, 1])
    np.testing.assert_array_equal(upper_case_line("AB:\nAb"), [1, 1, 1, 0, 1, 0])
    curly = "x \u201cy\u201d z \u00abw\u00bb"
    np.testing.assert_array_equal(inside_quotes(curly), [0, 0, 1, 1, 0, 0, 0, 0, 1, 1, 0])


def test_the_planted_cell_really_follows_quotes():
    art = planted_artifact()
    text = quoted_text()
    cells = trace(art, text).cell[0][:, PLANTED]
    inside = inside_quotes(text).astype(bool)
    assert cells[inside].min() > 0.9 and cells[~inside][text.index('"'):].max() < -0.9


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_picker_finds_the_planted_quote_cell(seed):
    art = planted_artifact(seed=seed)
    found = find(trace(art, quoted_text(seed=seed)))
    best = found[0]
    assert (best.layer, best.kind, best.neuron, best.feature) == (0, "cell", PLANTED,
                                                                  "inside quotes")
    assert best.r > 0.9  # not 1: the cell starts at 0, not -1, before the first quote
    # No other neuron comes close on that feature: the planted cell is the only one.
    others = [x for x in found if x.feature == "inside quotes" and x.neuron != PLANTED]
    assert all(abs(x.r) < 0.8 for x in others), others
    # With hidden states too, it is this cell or its own h (tanh of it, nearly tied).
    both = find(trace(art, quoted_text(seed=seed)), kinds=("cell", "hidden"))
    assert (both[0].layer, both[0].neuron, both[0].feature) == (0, PLANTED, "inside quotes")


def test_top_per_layer_gives_distinct_neurons_of_every_layer():
    found = find(trace(planted_artifact(), quoted_text()))
    top = top_per_layer(found, 2)
    assert [x.layer for x in top] == [0, 0, 1, 1]
    assert len({(x.layer, x.neuron) for x in top}) == 4
    assert top[0].neuron == PLANTED


def png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    return struct.unpack(">II", png[16:24])


def test_picture_of_the_planted_cell_is_a_valid_png_of_the_expected_size():
    art, text = planted_artifact(), quoted_text(700)
    png, caption = neuron_picture(art, text)
    assert caption.startswith("planted: layer 1 cell 3: inside quotes (r = +0.9")
    assert caption.endswith(") over 700 characters")
    assert png_size(png) == layout(text).size
    pixels = matplotlib.image.imread(io.BytesIO(png), format="png")
    assert pixels.shape[:2] == layout(text).size[::-1]


def test_the_colours_are_the_kernels_cell_states():
    """Read the PNG back: every space's cell has the colour of its kernel state."""
    art, text = planted_artifact(), quoted_text(300, seed=4)
    lstm, state = NumpyLSTM(art.weights, art.model_config), None
    _, state = lstm.run([art.vocab.encode("\n").ids])
    want = []
    for i in art.vocab.encode(text).ids:  # the kernel, stepped by hand
        lstm.step([i], state)
        want.append(float(state.c[0][PLANTED, 0]))
    png, _ = neuron_picture(art, text)
    pixels = matplotlib.image.imread(io.BytesIO(png), format="png")[..., :3]
    lay, limit = layout(text), max(abs(v) for v in want)
    cmap = matplotlib.colormaps[CMAP]
    spaces = [t for t, ch in enumerate(text) if ch == " "]
    assert len(spaces) > 30
    for t in spaces:  # spaces carry no glyph: the cell is pure background
        x, y = lay.center(t)
        expected = cmap(0.5 + 0.5 * want[t] / limit)[:3]
        np.testing.assert_allclose(pixels[y, x], expected, atol=2.5 / 255, err_msg=str(t))


def test_layout_wraps_like_the_source():
    lay = layout("ab\ncd ef gh\n\nx", wrap=6)
    # "ab\n" | "cd ef " | "gh\n" | "\n" | "x"
    assert lay.cells[:3] == [(0, 0), (0, 1), (0, 2)]
    assert lay.cells[3:9] == [(1, c) for c in range(6)]
    assert lay.cells[9:12] == [(2, 0), (2, 1), (2, 2)]
    assert lay.cells[12:] == [(3, 0), (4, 0)]
    assert (lay.rows, lay.cols) == (5, 6)
    long = layout("x" * 25, wrap=10)  # no space: a hard break
    assert lay.rows == 5 and long.rows == 3 and long.cells[10] == (1, 0)


def test_render_rejects_values_that_do_not_match_the_text():
    with pytest.raises(ValueError, match="one value per character"):
        render_png("abc", np.zeros(2), "t")


def test_short_text_is_continued_by_the_model(tiny_artifact):
    png, caption = neuron_picture(tiny_artifact, "the cat", seed=3)
    assert f"over {MIN_CHARS * 2} characters" in caption  # SAMPLE_CHARS
    assert png_size(png)[0] > 0
    again, caption2 = neuron_picture(tiny_artifact, "the cat", seed=3)
    assert again == png and caption2 == caption  # same seed, same picture


def test_a_chosen_neuron_is_shown_and_described(tiny_artifact):
    png, caption = neuron_picture(tiny_artifact, "", seed=1, layer=1, neuron=5,
                                  kind="hidden")
    assert caption.startswith("tiny: layer 2 hidden 5: ")
    with pytest.raises(ValueError, match="neuron must be between 0 and 7"):
        neuron_picture(tiny_artifact, "", seed=1, layer=0, neuron=8)


def test_style_picture_uses_the_active_model_and_reloads_a_new_one(
        artifact_factory, tmp_path, monkeypatch):
    from genmodels.artifact import ArtifactError
    from genmodels.neurons import active_artifact, style_picture

    monkeypatch.setenv("MODEL_REGISTRY", str(tmp_path / "registry"))
    shipped = tmp_path / "models"
    with pytest.raises(ArtifactError, match="no model artifact here"):
        style_picture("tiny", "", shipped=shipped)
    artifact_factory(style="tiny", seed=1).save(shipped / "tiny")
    png, caption = style_picture("tiny", "", seed=2, shipped=shipped)
    assert caption.startswith("tiny: layer ") and png_size(png)[0] > 0
    first = active_artifact("tiny", shipped)
    assert active_artifact("tiny", shipped) is first  # cached
    new = artifact_factory(style="tiny", seed=2)
    new.version = "tiny-new"
    new.save(shipped / "tiny")
    assert active_artifact("tiny", shipped).version == "tiny-new"


def test_pictures_need_no_tensorflow(env_for):
    """The chat process imports this; it must pull in neither TensorFlow nor pyplot."""
    code = ("import sys, genmodels.neurons, training.visualize; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('tensorflow', 'keras') or m == 'matplotlib.pyplot'))")
    out = subprocess.run([sys.executable, "-c", code], env=env_for(), text=True,
                         capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_pictures_from_several_threads_at_once_are_all_whole(tiny_artifact):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda s: neuron_picture(tiny_artifact, "", seed=s % 2),
                                range(6)))
    assert all(r == results[r_i % 2] for r_i, r in enumerate(results))


def test_a_long_text_is_cut_to_a_picture_telegram_accepts(artifact_factory):
    from genmodels.neurons import MAX_ROWS

    art = artifact_factory(text="the cat sat.\n")
    png, caption = neuron_picture(art, "the cat sat.\n" * 300)
    width, height = png_size(png)
    assert caption.endswith(f"over {13 * MAX_ROWS} characters")
    assert width + height <= 10000 and height / width <= 20
