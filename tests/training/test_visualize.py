"""``python -m training.visualize``: one picture, a gallery, and one-line errors."""
import struct

import pytest

from training.visualize import heldout_excerpt, main

HISTORY = [{"epoch": 1, "minutes": 0.1, "train_loss": 2.5, "val_loss": 2.4},
           {"epoch": 2, "minutes": 0.2, "train_loss": 2.0, "val_loss": 2.1}]


@pytest.fixture
def setup(bot, monkeypatch, tmp_path):
    """The tiny bot with a random model for style ``tiny`` (no registry marker)."""
    monkeypatch.setenv("BOT_CONFIG", str(bot.config))
    monkeypatch.setenv("MODEL_REGISTRY", str(tmp_path / "registry"))
    monkeypatch.chdir(tmp_path)
    bot.save_artifact("tiny")
    return bot


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_one_picture_of_the_best_cell(setup, tmp_path, capsys):
    out = tmp_path / "n.png"
    assert main(["tiny", "--out", str(out), "--chars", "300"]) == 0
    caption, wrote = capsys.readouterr().out.strip().splitlines()
    assert caption.startswith("tiny: layer ") and " cell " in caption
    assert caption.endswith("over 300 characters") and "(r = " in caption
    assert wrote == f"wrote {out}"
    assert png_size(out)[0] >= 500


def test_a_chosen_neuron_on_a_file_and_on_a_prime(setup, tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text('"not now," said the boy.\nthe cat sat on the mat.\n', encoding="utf-8")
    assert main(["tiny", "--text", str(text), "--layer", "1", "--neuron", "7",
                 "--kind", "hidden"]) == 0
    assert capsys.readouterr().out.startswith("tiny: layer 1 hidden 7: ")
    assert (tmp_path / "neurons-tiny.png").is_file()
    assert main(["tiny", "--prime", "the cat", "--chars", "120", "--layer", "2",
                 "--out", "p.png"]) == 0
    caption = capsys.readouterr().out.splitlines()[0]
    assert caption.startswith("tiny: layer 2 cell ") and caption.endswith("120 characters")


def test_gallery_has_every_layer_the_loss_curve_and_an_index(setup, tmp_path, capsys):
    art = setup.save_artifact("tiny")
    art.metrics["history"] = HISTORY  # no loss.png in the artifact: re-plotted
    art.save(setup.models / "tiny")
    folder = tmp_path / "gallery"
    assert main(["tiny", "--gallery", str(folder)]) == 0
    pngs = sorted(p.name for p in folder.glob("layer*.png"))
    assert {p.split("-")[0] for p in pngs} == {"layer1", "layer2"}
    assert len(pngs) == 6
    assert png_size(folder / "loss.png")[0] > 0
    page = (folder / "index.html").read_text(encoding="utf-8")
    for name in pngs + ["loss.png"]:
        assert f'src="{name}"' in page
    assert "held-out text of tiny.txt" in page and "r = " in page
    assert len(capsys.readouterr().out.splitlines()) == 8


def test_gallery_copies_a_shipped_loss_curve(setup, tmp_path):
    (setup.models / "tiny" / "loss.png").write_bytes(b"\x89PNG\r\n\x1a\nshipped")
    assert main(["tiny", "--gallery", str(tmp_path / "g")]) == 0
    assert (tmp_path / "g" / "loss.png").read_bytes().endswith(b"shipped")


def test_heldout_excerpt_starts_at_a_line_in_the_last_part(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("".join(f"line {i}\n" for i in range(100)), encoding="utf-8")
    assert heldout_excerpt(corpus, 0.1, 14) == "line 91\nline 9"


@pytest.mark.parametrize("args,message", [
    (["poem"], "unknown style 'poem'"),
    (["tiny", "--neuron", "3"], "--neuron needs --layer"),
    (["tiny", "--layer", "3"], "--layer must be between 1 and 2, got 3"),
    (["tiny", "--layer", "1", "--neuron", "8"], "--neuron must be between 0 and 7"),
    (["tiny", "--text", "missing.txt"], "--text missing.txt: cannot read it"),
    (["tiny", "--chars", "1"], "--chars must be at least 2"),
    (["fable_owl"], "no model artifact here"),
    (["tiny", "--out", "no/such/dir/x.png"], "no/such/dir/x.png"),
])
def test_bad_input_is_one_line_and_exit_2(setup, capsys, args, message):
    assert main(args) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert captured.out == ""


def test_child_process_bad_input_has_no_traceback(run_cli, bot, bad_input):
    bad_input(run_cli("training.visualize", ["tiny", "--prime", "x", "--text", "y"],
                      config=bot.config), "not allowed with argument")
    bad_input(run_cli("training.visualize", ["tiny"], config=bot.config),
              str(bot.models / "tiny"))
