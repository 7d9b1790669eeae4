"""Base models: config, a corpus without held-out text, and the base -> style -> variant chain."""
import pytest

from genmodels.styles import ConfigError
from training import base_corpus, corpus as corpora

BASE = """
[bases.lang]
styles = ["tiny", "fable_owl"]
training = { val_fraction = 0.05 }
"""


def with_base(toml: str) -> str:
    """The tiny config with a base over tiny + owl, and tiny fine-tuned from it."""
    toml = toml.replace('[styles.tiny]\n', BASE + '\n[styles.tiny]\n')
    return toml.replace('temperature = 0.7\n\n[styles.fable_fox]',
                        'temperature = 0.7\ntraining = { parent = "lang" }\n\n[styles.fable_fox]')


@pytest.fixture
def based(tmp_path, make_bot):
    """The base's sources get numbered lines, so held-out lines differ from training ones."""
    bot = make_bot(tmp_path / "bot", with_base)
    for name in ("tiny", "owl"):
        path = bot.corpora / f"{name}.txt"
        lines = path.read_text(encoding="utf-8").splitlines()
        path.write_text("".join(f"{line} {n}\n" for n, line in enumerate(lines)),
                        encoding="utf-8")
    return bot


def test_a_base_is_found_by_name_but_is_no_chat_style(based):
    book = based.book()
    base = book.get("lang")
    assert "lang" not in book.styles and book.bases == {"lang": base}
    assert base.sources == ("tiny", "fable_owl") and base.command == ""
    assert base.training.val_fraction == 0.05
    assert base.model_dir == based.root / "models" / "base_lang"
    order = [s.name for s in book.training_order()]
    assert order.index("lang") < order.index("tiny") < order.index("fable_fox")


@pytest.mark.parametrize("edit, key", [
    (lambda t: t.replace('styles = ["tiny", "fable_owl"]', 'styles = ["tiny", "nope"]'),
     "bases.lang.styles"),
    (lambda t: t.replace('styles = ["tiny", "fable_owl"]', 'styles = "tiny"'),
     "bases.lang.styles"),
    (lambda t: t.replace('[bases.lang]\n', '[bases.lang]\nstyle = 1\n'), "bases.lang.style"),
])
def test_a_wrong_base_names_the_key(tmp_path, make_bot, edit, key):
    bot = make_bot(tmp_path / "bot", lambda t: edit(with_base(t)))
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        bot.book()


def test_the_base_corpus_holds_no_held_out_line_of_any_style(based):
    book = based.book()
    base = book.get("lang")
    # The owl corpus also gets the fox's held-out lines, as overlapping corpora do.
    fox_held = corpora.heldout_lines(book.get("fable_fox").corpus, 0.1)
    owl = book.get("fable_owl").corpus
    owl.write_text("\n".join(sorted(fox_held)) + "\n" + owl.read_text(), encoding="utf-8")
    path = base_corpus.build(base, book)
    lines = set(path.read_text(encoding="utf-8").splitlines())
    banned = base_corpus.heldout(book)
    assert banned and fox_held - {""} <= banned
    assert not lines & banned
    for name in base.sources:  # every kept line comes from a source's training part
        part = set(base_corpus.training_part(book.get(name)).splitlines())
        assert part - banned - {""} <= lines
    # Up to date: not rewritten; a source edit: rewritten.
    mtime = path.stat().st_mtime_ns
    assert base_corpus.build(base, book) == path and path.stat().st_mtime_ns == mtime
    owl.write_text("a brand new line of the owl.\n" + owl.read_text(), encoding="utf-8")
    base_corpus.build(base, book)
    assert "a brand new line of the owl." in path.read_text()


def test_base_style_variant_chain_trains(based, tmp_path, monkeypatch):
    pytest.importorskip("tensorflow")
    from genmodels.artifact import load
    from training.train import Run

    real_prepare = corpora.prepare
    monkeypatch.setattr(corpora, "prepare", lambda *a, **k: real_prepare(
        *a, **(k | {"cache": tmp_path / "cache"})))
    book = based.book()
    runs = tmp_path / "runs"
    base = Run(book.get("lang"), book, minutes=0.15, runs_dir=runs).train()
    style = Run(book.get("tiny"), book, minutes=0.1, runs_dir=runs).train()
    variant = Run(book.get("fable_fox"), book, minutes=0.05, runs_dir=runs).train()
    assert load(based.root / "models" / "base_lang").version == base.version
    assert style.parent_version == base.version and variant.parent_version == style.version
    assert style.vocab == base.vocab  # the base reads every source's characters
    for art in (base, style, variant):
        assert {f"start/{k}_0" for k in "hc"} <= set(load(art.path).weights)


def test_sources_are_cut_at_paragraph_ends_and_shuffled_together():
    prose = ["one two.\n", "\n", "three four five.\n", "\n", "six.\n"]
    assert base_corpus.chunks(prose, size=5) == ["one two.\n\n", "three four five.\n\n",
                                                 "six.\n\n"]
    stories = ["a fox ran.\n", "an owl sat.\n", "a cat.\n"]
    assert base_corpus.chunks(stories, size=5) == stories  # one-line stories: any line end
    assert "".join(base_corpus.chunks(prose, size=10**6)) == "".join(prose) + "\n"


def test_the_base_corpus_mixes_its_sources(based, monkeypatch):
    monkeypatch.setattr(base_corpus, "CHUNK_CHARS", 300)
    book = based.book()
    monkeypatch.setattr(base_corpus.chunks, "__defaults__", (300,))
    text = base_corpus.build(book.get("lang"), book).read_text(encoding="utf-8")
    half = text[:len(text) // 2]
    owl = set(base_corpus.training_part(book.get("fable_owl")).splitlines())
    tiny = set(base_corpus.training_part(book.get("tiny")).splitlines())
    first = set(half.splitlines())
    assert first & owl - {""} and first & tiny - {""}  # both sources in the first half


def test_warm_gives_an_existing_artifact_its_start_state(bot, run_cli):
    from genmodels.artifact import load

    art = bot.save_artifact("tiny")
    assert not any(k.startswith("start/") for k in art.weights)
    (bot.models / "tiny" / "loss.png").write_bytes(b"plot")  # the folder's other files stay
    proc = run_cli("training", ["warm", "tiny"], config=bot.config)
    assert proc.returncode == 0, proc.stderr
    back = load(bot.models / "tiny")
    assert back.version == art.version and {"start/h_0", "start/c_1"} <= set(back.weights)
    assert (bot.models / "tiny" / "loss.png").read_bytes() == b"plot"
    for name, value in art.weights.items():  # the model itself is untouched
        assert (back.weights[name] == value).all()


def test_a_bases_baseline_writes_its_corpus_first(based, tmp_path):
    """``training baseline BASE`` on a fresh checkout: no corpus file yet, as after clone."""
    from training.ngram import baseline

    book = based.book()
    base = book.get("lang")
    assert not base.corpus.exists()
    nats = baseline(base, book, [2, 3], cache=tmp_path / "cache")
    assert base.corpus.exists() and set(nats) == {2, 3}
    assert all(0 < v < 10 for v in nats.values())
