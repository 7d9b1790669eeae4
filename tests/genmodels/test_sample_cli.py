"""``python -m genmodels sample``: prints text; bad input is one stderr line and exit 2."""
import subprocess
import sys

import pytest


@pytest.fixture
def shipped(bot):
    """The tiny bot with random artifacts for tiny and the fable variants."""
    for style in ("tiny", "fable_fox", "fable_owl"):
        bot.save_artifact(style)
    return bot


def sample(run_cli, bot, *args):
    return run_cli("genmodels", ["sample", *args], config=bot.config)


def test_sample_prints_text_and_the_seed_fixes_it(run_cli, shipped):
    first = sample(run_cli, shipped, "tiny", "--prime", "the ", "--seed", "7",
                   "--max-chars", "30", "--temperature", "1")
    assert first.returncode == 0, first.stderr
    assert first.stderr == ""
    assert first.stdout.startswith("the ")
    assert len(first.stdout.rstrip("\n")) <= len("the ") + 30
    again = sample(run_cli, shipped, "tiny", "--prime", "the ", "--seed", "7",
                   "--max-chars", "30", "--temperature", "1")
    assert again.stdout == first.stdout
    other = sample(run_cli, shipped, "tiny", "--prime", "the ", "--seed", "8",
                   "--max-chars", "30", "--temperature", "1")
    assert other.stdout != first.stdout


def test_sample_a_variant_with_greedy_settings(run_cli, shipped):
    out = sample(run_cli, shipped, "fable", "--variant", "owl", "--temperature", "0",
                 "--top-k", "3", "--top-p", "0.5", "--max-chars", "60")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()


def test_sample_notes_dropped_prime_characters_on_stderr(run_cli, shipped):
    out = sample(run_cli, shipped, "tiny", "--prime", "the \u201ccat\u201d \u0436",
                 "--seed", "1", "--max-chars", "5")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith('the "cat"')  # curly quotes read as straight ones
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "dropped" in lines[0] and "\u0436" in lines[0]


BAD = {
    "unknown style": (["poem"], ["unknown style 'poem'", "tiny"]),
    "unknown variant": (["fable", "--variant", "bear"], ["'bear'", "fox, owl"]),
    "temperature below 0": (["tiny", "--temperature", "-0.5"], ["temperature"]),
    "temperature above 5": (["tiny", "--temperature", "5.5"], ["temperature"]),
    "temperature not a number": (["tiny", "--temperature", "hot"], ["temperature"]),
    "top-k below 0": (["tiny", "--top-k", "-1"], ["top-k"]),
    "top-p zero": (["tiny", "--top-p", "0"], ["top-p"]),
    "top-p above 1": (["tiny", "--top-p", "1.5"], ["top-p"]),
    "max-chars above the style's maximum": (["tiny", "--max-chars", "101"], ["maximum of 100"]),
    "max-chars zero": (["tiny", "--max-chars", "0"], ["max-chars"]),
    "negative seed": (["tiny", "--seed", "-3"], ["seed"]),
    "no such subcommand": (["tiny"], []),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_and_exit_2(run_cli, shipped, bad_input, case):
    args, fragments = BAD[case]
    cmd = args if case == "no such subcommand" else ["sample", *args]
    bad_input(run_cli("genmodels", cmd, config=shipped.config), *fragments)


def test_missing_artifact_is_one_line_and_exit_2(run_cli, bot, bad_input):
    bad_input(sample(run_cli, bot, "tiny"), str(bot.models / "tiny"), "python -m training train")


@pytest.mark.parametrize("damage", ["bad json", "truncated npz"])
def test_corrupt_artifact_is_one_line_and_exit_2(run_cli, shipped, bad_input, damage):
    folder = shipped.models / "tiny"
    if damage == "bad json":
        (folder / "model.json").write_text("{oops", encoding="utf-8")
        bad_input(sample(run_cli, shipped, "tiny"), str(folder / "model.json"))
    else:
        data = (folder / "weights.npz").read_bytes()
        (folder / "weights.npz").write_bytes(data[:len(data) // 3])
        bad_input(sample(run_cli, shipped, "tiny"), str(folder / "weights.npz"))


def test_damaged_compressed_weights_are_one_line_and_exit_2(run_cli, shipped, bad_input):
    import zipfile

    path = shipped.models / "tiny" / "weights.npz"
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.infolist()[0]
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    for i in range(start, start + min(info.compress_size, 64)):
        data[i] ^= 0xA5  # damage the deflated bytes; the zip directory stays readable
    path.write_bytes(bytes(data))
    bad_input(sample(run_cli, shipped, "tiny"), str(path))


def test_bad_config_is_one_line_and_exit_2(run_cli, shipped, bad_input):
    (shipped.corpora / "owl.txt").unlink()
    bad_input(sample(run_cli, shipped, "tiny"), "styles.fable_owl.corpus:")


CHILD = """
import sys
from genmodels.__main__ import main
code = main(["sample", "tiny", "--seed", "3", "--max-chars", "20", "--prime", "the"])
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras"))
print("CODE", code)
print("HEAVY", heavy)
"""


def test_sampling_never_imports_tensorflow(shipped, env_for, tmp_path):
    out = subprocess.run([sys.executable, "-c", CHILD], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60, env=env_for(shipped.config))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[-2] == "CODE 0"
    assert lines[-1] == "HEAVY []"
    assert lines[0].startswith("the")
