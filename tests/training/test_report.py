"""``python -m training report``: docs/MODELS.md from config, artifacts and quality files.

Every figure below is written by hand into the quality files and artifacts, so each
cell of the document can be checked exactly.
"""
import json
import re
from dataclasses import replace

import pytest

from genmodels import artifact as artifacts
from training import base_corpus, corpus as corpora, ngram, report, report_results as results

BASE = """
[bases.english]
styles = ["tiny", "fable_owl"]
training = { minutes = 3, batch_size = 128, learning_rate = 0.004 }
"""
HISTORY = [{"epoch": 1, "minutes": 7.04, "train_loss": 2.3, "val_loss": 1.8187},
           {"epoch": 2, "minutes": 11.93, "train_loss": 1.4, "val_loss": 1.50504}]


def with_english_base(toml: str) -> str:
    """The tiny config plus a base "english" over tiny + owl; tiny fine-tunes from it
    (and fable_fox from tiny, as the config has it: a variant)."""
    toml = toml.replace("[styles.tiny]\n", BASE + "\n[styles.tiny]\n")
    return toml.replace('temperature = 0.7\n\n[styles.fable_fox]',
                        'temperature = 0.7\ntraining = { parent = "english" }\n\n'
                        '[styles.fable_fox]')


def quality(style, version, val, baseline, words, verbatim=(0.0, 0.0, 0.0), parent=None,
            opening=(1.5, 1.25)):
    return {"style": style, "version": version, "val_loss": val,
            "baseline": {str(k): v for k, v in baseline.items()},
            "real_words": dict(zip(("0.5", "0.7", "1"), words, strict=True)),
            "verbatim8": dict(zip(("0.5", "0.7", "1"), verbatim, strict=True)),
            "opening_zero": opening[0], "opening_start": opening[1],
            "parent_val_loss": parent}


@pytest.fixture
def setup(tmp_path, make_bot):
    bot = make_bot(tmp_path / "bot", with_english_base)
    for name in ("tiny", "owl"):  # numbered: training lines differ from held-out ones
        path = bot.corpora / f"{name}.txt"
        path.write_text("".join(f"{line} {n}\n" for n, line in
                                enumerate(path.read_text().splitlines())))
    book = bot.book()
    for name, seed in (("tiny", 0), ("fable_fox", 1), ("fable_owl", 2)):
        bot.save_artifact(name, seed=seed)
    from tests.conftest import make_artifact

    base = make_artifact(bot.corpora.joinpath("tiny.txt").read_text(), style="english")
    base.metrics = {"val_loss_nats": 1.23456, "train_seconds": 180.0, "history": HISTORY}
    base.corpus = {"chars": 12345}
    base.save(book.get("english").model_dir)
    (book.get("english").model_dir / "loss.png").write_bytes(b"png")
    (book.get("tiny").model_dir / "loss.png").write_bytes(b"png")
    files = {
        # words at T=0.7 85% < 90% (an English style): the only miss
        "tiny": quality("tiny", "tiny-test-0", 1.40, {3: 1.6, 4: 1.48}, (0.95, 0.85, 0.7),
                        verbatim=(0.004, 0.0, 0.0)),
        # a variant: words 85% >= 80%, parent margin +0.120, but margin +0.030 < 0.05
        "fable_fox": quality("fable_fox", "fable_fox-test-1", 1.30, {3: 1.33},
                             (0.9, 0.85, 0.6), parent=1.42),
        # not English, not a variant: 81% >= 80%, margin +0.200: every target met
        "fable_owl": quality("fable_owl", "fable_owl-test-2", 1.0, {5: 1.2},
                             (0.9, 0.81, 0.6)),
    }
    for name, data in files.items():
        path = results.quality_path(book, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data))
    return bot


def row(doc: str, label: str) -> list[str]:
    (line,) = [line for line in doc.splitlines() if line.startswith(f"| `{label}` |")]
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_the_results_table_by_hand(setup):
    doc = report.document(setup.book())
    assert doc.index("## Results") < doc.index("## Recipe") < doc.index(
        "## Published classic samples")
    assert row(doc, "/tiny") == [
        "`/tiny`", "tiny-test-0", "1.400", "1.480 (4)", "+0.080", "95.0% / 85.0% / 70.0%",
        "0.40%", "1.500 / 1.250", "—", "—", "no: words at T=0.7 85.0% < 90%"]
    assert row(doc, "/fable fox")[2:] == [
        "1.300", "1.330 (3)", "+0.030", "90.0% / 85.0% / 60.0%", "0.00%", "1.500 / 1.250",
        "1.420", "+0.120", "no: margin +0.030"]
    assert row(doc, "/fable owl")[-1] == "yes"
    # no artifact: not trained, nothing fails
    assert row(doc, "/empty")[1] == "not trained" and row(doc, "/empty")[-1] == "not trained"


def test_missing_or_stale_quality_files_show_not_measured(setup):
    book = setup.book()
    results.quality_path(book, "tiny").unlink()
    stale = results.quality_path(book, "fable_owl")
    stale.write_text(json.dumps(json.loads(stale.read_text()) | {"version": "fable_owl-old"}))
    doc = report.document(book)
    tiny = row(doc, "/tiny")
    assert tiny[:4] == ["`/tiny`", "tiny-test-0", "1.500", "not measured"]
    assert tiny[-1] == "not measured"
    owl = row(doc, "/fable owl")
    assert owl[3] == "not measured (quality file is for fable_owl-old)"
    assert owl[-1] == "not measured"


def test_verbatim_and_every_miss_are_named(setup):
    book = setup.book()
    path = results.quality_path(book, "fable_fox")
    path.write_text(json.dumps(quality("fable_fox", "fable_fox-test-1", 1.30, {3: 1.2},
                                       (0.9, 0.5, 0.6), verbatim=(0.0, 0.002, 0.013),
                                       parent=1.32)))
    assert row(report.document(book), "/fable fox")[-1] == (
        "no: margin -0.100, words at T=0.7 50.0% < 80%, verbatim 1.30%, "
        "parent margin +0.020")


def test_bases_table_and_its_cached_baseline(setup, tmp_path, monkeypatch):
    book = setup.book()
    assert row(report.document(book), "english") == [
        "`english`", "english-test-0", "tiny, fable_owl", "12,345", "3.0", "1.235",
        "not computed", "—"]
    monkeypatch.setattr(corpora, "CACHE", tmp_path / "cache")
    base = book.get("english")
    base_corpus.build(base, book)
    nats = ngram.baseline(base, book)
    best = min(nats, key=nats.get)
    cells = row(report.document(book), "english")
    assert cells[6] == f"{nats[best]:.3f} ({best})"
    assert cells[7] == f"{nats[best] - 1.23456:+.3f}"


def test_the_recipe_follows_the_config_and_shows_the_curves(setup):
    fox_dir = setup.book().get("fable_fox").model_dir
    fox = artifacts.load(fox_dir)  # shipped: continued from an earlier version, say
    fox.parent_version = "fable_fox-earlier"
    fox.train_config = replace(fox.train_config, precision="mixed_bfloat16")
    fox.save(fox_dir)
    doc = report.document(setup.book())
    recipe = doc[doc.index("## Recipe"):doc.index("## Published")]
    assert ("\n- base `english`: 3 min from scratch, batch 128, peak lr 0.004, dropout 0, "
            "on the training parts of tiny, fable_owl; shipped version trained 3.0 min "
            "from random weights "
            "([loss curve](../models/base_english/loss.png))\n") in recipe
    assert "\n  - `/tiny`: 0.2 min fine-tuned from `english`, batch 8," in recipe
    assert "(../models/tiny/loss.png)" in recipe
    assert "\n    - `/fable fox`: 0.05 min fine-tuned from `tiny`" in recipe  # a variant
    assert re.search(r"`/fable fox`: .*; shipped version trained [\d.]+ min from "
                     r"`fable_fox-earlier` in mixed_bfloat16\n", recipe)
    assert "random weights in " not in recipe  # float32, the default, goes unsaid
    assert "\n  - `/fable owl`" not in recipe and "\n- `/fable owl`: 0.2 min from scratch" \
        in recipe
    assert "(7.0, 1.819), (11.9, 1.505)" in recipe
    assert "![english: held-out loss](../models/base_english/loss.png)" in recipe
    assert "(3.65 minutes for every model in all)" in recipe  # 3 + 4 styles' budgets


def test_classic_samples_stand_next_to_ours(setup, monkeypatch):
    doc = report.document(setup.book())
    assert ("| The State of the Union char-RNN notebook's published samples | 100% |\n"
            "| ours, `/sotu` | not measured |") in doc  # no such style here
    assert "| *Deep Learning with Python*'s Nietzsche samples | 89% |" in doc
    monkeypatch.setattr(report, "CLASSICS", [("Nietzsche, published", 0.89, "tiny")])
    assert "| Nietzsche, published | 89% |\n| ours, `/tiny` | 95.0% |" in report.document(
        setup.book())


def test_the_machine_line(tmp_path):
    info = tmp_path / "cpuinfo"
    block = "processor\t: {}\nvendor_id\t: GenuineIntel\nmodel name\t: Test CPU 9000\n\n"
    info.write_text(block.format(0) + block.format(1))
    assert report.machine_line(info) == ("**Machine:** Test CPU 9000, 2 cores (where this "
                                         "report was written).")
    doc = report.document(_book(tmp_path), cpuinfo=info)
    assert doc.rstrip().endswith(report.machine_line(info))


def _book(tmp_path):
    from tests.conftest import BotSetup

    return BotSetup(tmp_path / "plain").write().book()


def test_cli_prints_or_writes_docs_models_md(setup, run_cli):
    printed = run_cli("training", ["report"], config=setup.config)
    assert printed.returncode == 0, printed.stderr[-2000:]
    target = setup.root / "docs" / "MODELS.md"
    assert not target.exists()
    assert printed.stdout == report.document(setup.book())
    written = run_cli("training", ["report", "--write"], config=setup.config)
    assert written.returncode == 0, written.stderr[-2000:]
    assert written.stdout.strip() == f"wrote {target}"
    assert target.read_text(encoding="utf-8") == printed.stdout
