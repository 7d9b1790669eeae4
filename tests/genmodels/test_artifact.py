"""Artifacts: save -> load is exact, saving is atomic, bad folders give errors naming the file."""
import json
import zipfile

import numpy as np
import pytest

from genmodels import artifact as artifacts
from genmodels.artifact import ArtifactError, load, weight_shapes
from genmodels.config import ModelConfig
from genmodels.kernel import NumpyLSTM


def _logits(art, ids):
    return NumpyLSTM(art.weights, art.model_config).run(ids)[0]


def test_save_load_gives_identical_weights_metadata_and_logits(tmp_path, artifact_factory):
    art = artifact_factory(hidden=8, n_layers=2, seed=3)
    art.parent_version = "tiny-parent-1"
    art.corpus = {"path": "corpora/tiny.txt", "sha256": "ab" * 32, "chars": 123}
    folder = art.save(tmp_path / "models" / "tiny")
    got = load(folder)
    assert got.path == folder
    assert got.vocab == art.vocab
    assert got.model_config == art.model_config
    assert got.train_config == art.train_config
    assert (got.version, got.parent_version, got.style) == (art.version, "tiny-parent-1", "tiny")
    assert got.corpus == art.corpus and got.metrics == art.metrics
    assert got.created_at  # filled in on save
    assert set(got.weights) == set(art.weights)
    for name, value in art.weights.items():
        assert got.weights[name].dtype == np.float32
        np.testing.assert_array_equal(got.weights[name], value)
    ids = np.random.default_rng(0).integers(0, len(art.vocab), (3, 20))
    np.testing.assert_array_equal(_logits(got, ids), _logits(art, ids))


def test_float16_artifacts_store_rounded_weights(tmp_path, artifact_factory):
    art = artifact_factory(weights_dtype="float16", seed=4)
    art.save(tmp_path / "a")
    with np.load(tmp_path / "a" / "weights.npz") as npz:
        assert {npz[k].dtype for k in npz.files} == {np.dtype(np.float16)}
    got = load(tmp_path / "a")
    for name, value in art.weights.items():
        np.testing.assert_array_equal(got.weights[name], value.astype(np.float16).astype(np.float32))
    meta = json.loads((tmp_path / "a" / "model.json").read_text(encoding="utf-8"))
    assert meta["weights_dtype"] == "float16"


def test_save_replaces_an_existing_artifact_and_leaves_no_temporary_folders(
        tmp_path, artifact_factory):
    target = tmp_path / "models" / "tiny"
    artifact_factory(seed=1).save(target)
    second = artifact_factory(seed=2)
    second.save(target)
    assert load(target).version == second.version
    np.testing.assert_array_equal(load(target).weights["embedding"], second.weights["embedding"])
    assert [p.name for p in target.parent.iterdir()] == ["tiny"]


def test_save_refuses_wrong_shapes_and_keeps_the_old_artifact(tmp_path, artifact_factory):
    target = tmp_path / "tiny"
    first = artifact_factory(seed=1)
    first.save(target)
    bad = artifact_factory(seed=2)
    bad.weights["dense/bias"] = np.zeros(3, np.float32)
    with pytest.raises(ArtifactError, match="dense/bias"):
        bad.save(target)
    assert load(target).version == first.version
    assert [p.name for p in tmp_path.iterdir()] == ["tiny"]


def test_saved_vocabulary_keeps_unicode_and_newlines(tmp_path, artifact_factory):
    art = artifact_factory(text="Съешь \u201cещё\u201d\n\t-", seed=5)
    art.save(tmp_path / "ru")
    assert load(tmp_path / "ru").vocab.chars == art.vocab.chars


def test_weight_shapes_follow_the_keras_layout():
    cfg = ModelConfig(vocab_size=7, embed_dim=3, hidden=5, n_layers=2)
    shapes = weight_shapes(cfg)
    assert shapes == {"embedding": (7, 3),
                      "lstm_0/kernel": (3, 20), "lstm_0/recurrent_kernel": (5, 20),
                      "lstm_0/bias": (20,),
                      "lstm_1/kernel": (5, 20), "lstm_1/recurrent_kernel": (5, 20),
                      "lstm_1/bias": (20,),
                      "dense/kernel": (5, 7), "dense/bias": (7,)}
    assert sum(int(np.prod(s)) for s in shapes.values()) == cfg.n_params()


# --- corrupt or missing artifacts: ArtifactError naming the file at fault ---

@pytest.fixture
def saved(tmp_path, artifact_factory):
    return artifact_factory(seed=7).save(tmp_path / "models" / "tiny")


def _edit_meta(folder, change):
    path = folder / "model.json"
    meta = json.loads(path.read_text(encoding="utf-8"))
    change(meta)
    path.write_text(json.dumps(meta), encoding="utf-8")


def _rewrite_weights(folder, change):
    path = folder / "weights.npz"
    with np.load(path) as npz:
        weights = {k: npz[k] for k in npz.files}
    change(weights)
    np.savez(path, **weights)


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


CORRUPTIONS = {
    "missing model.json": ("model.json", "missing", lambda d: (d / "model.json").unlink()),
    "missing weights.npz": ("weights.npz", "missing", lambda d: (d / "weights.npz").unlink()),
    "truncated npz": ("weights.npz", "corrupt", lambda d: _truncate(d / "weights.npz")),
    "empty npz": ("weights.npz", "corrupt", lambda d: (d / "weights.npz").write_bytes(b"")),
    "npz is text": ("weights.npz", "corrupt",
                    lambda d: (d / "weights.npz").write_text("not a zip", encoding="utf-8")),
    "bad json": ("model.json", "corrupt",
                 lambda d: (d / "model.json").write_text('{"format": 1, ', encoding="utf-8")),
    "json not utf-8": ("model.json", "corrupt",
                       lambda d: (d / "model.json").write_bytes(b"\xff\xfe{}")),
    "unknown format": ("model.json", "format",
                       lambda d: _edit_meta(d, lambda m: m.update(format=99))),
    "no vocab": ("model.json", "vocab", lambda d: _edit_meta(d, lambda m: m.pop("vocab"))),
    "unsorted vocab": ("model.json", "sorted",
                       lambda d: _edit_meta(d, lambda m: m.update(vocab=m["vocab"][::-1]))),
    "vocab size mismatch": ("model.json", "vocab_size",
                            lambda d: _edit_meta(d, lambda m: m.update(vocab=m["vocab"][:-1]))),
    "unknown config key": ("model.json", "colour", lambda d: _edit_meta(
        d, lambda m: m["model_config"].update(colour="red"))),
    "wrong shape": ("weights.npz", "lstm_0/kernel", lambda d: _rewrite_weights(
        d, lambda w: w.update({"lstm_0/kernel": w["lstm_0/kernel"][:, :-1]}))),
    "missing array": ("weights.npz", "dense/bias", lambda d: _rewrite_weights(
        d, lambda w: w.pop("dense/bias"))),
    "hidden size changed": ("weights.npz", "shape", lambda d: _edit_meta(
        d, lambda m: m["model_config"].update(hidden=m["model_config"]["hidden"] + 1))),
    "a NaN weight": ("weights.npz", "lstm_0/recurrent_kernel holds 1 non-finite", lambda d:
                     _rewrite_weights(d, lambda w: w["lstm_0/recurrent_kernel"].__setitem__(
                         (0, 0), np.nan))),
    "inf weights": ("weights.npz", "embedding holds 2 non-finite", lambda d: _rewrite_weights(
        d, lambda w: w["embedding"].__setitem__((0, slice(0, 2)), np.inf))),
}


@pytest.mark.parametrize("case", CORRUPTIONS)
def test_corrupt_artifact_raises_an_error_naming_the_file(saved, case):
    filename, words, corrupt = CORRUPTIONS[case]
    corrupt(saved)
    with pytest.raises(ArtifactError) as info:
        load(saved)
    message = str(info.value)
    assert str(saved / filename) in message
    assert words in message
    assert "\n" not in message


def test_missing_folder_says_how_to_train_one(tmp_path):
    with pytest.raises(ArtifactError, match="python -m training train") as info:
        load(tmp_path / "models" / "nowhere")
    assert str(tmp_path / "models" / "nowhere") in str(info.value)


def _flip_compressed_bytes(path):
    """Damage the deflated data inside the zip (its directory stays readable)."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.infolist()[0]
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    for i in range(start, start + min(info.compress_size, 64)):
        data[i] ^= 0xA5
    path.write_bytes(bytes(data))


def test_damaged_compressed_weights_raise_artifact_error(saved):
    _flip_compressed_bytes(saved / "weights.npz")
    with pytest.raises(ArtifactError, match="weights.npz"):
        load(saved)


@pytest.mark.parametrize("content", ["[]", "null", "42"])
def test_model_json_that_is_not_an_object_raises_artifact_error(saved, content):
    (saved / "model.json").write_text(content, encoding="utf-8")
    with pytest.raises(ArtifactError, match="model.json"):
        load(saved)


def test_new_versions_are_unique_and_name_the_style():
    versions = {artifacts.new_version("tiny") for _ in range(20)}
    assert len(versions) == 20
    assert all(v.startswith("tiny-") for v in versions)
