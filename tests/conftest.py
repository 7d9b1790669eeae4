"""Shared fixtures: tiny random artifacts, a tiny config.toml + corpora, CLI runners.

Everything here is NumPy only (no TensorFlow), and every file a test writes lives under
its ``tmp_path``: config paths are relative to the toml, so a whole bot setup (config,
corpora, ``models/STYLE`` artifacts) fits in one temporary folder.
"""
from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # so the suite also runs without PYTHONPATH=.
    sys.path.insert(0, str(ROOT))

from genmodels.artifact import Artifact, weight_shapes  # noqa: E402
from genmodels.config import ModelConfig, TrainConfig  # noqa: E402
from genmodels.vocab import Vocabulary  # noqa: E402
from tests.tiny_config import tiny_config  # noqa: E402

SENTENCES = [
    "the cat sat on the mat.",
    "a dog ran to the old tree.",
    '"not now," said the boy.',
    "it's a small red hat.",
    "the sun is hot and the sea is cold.",
    "we eat bread - and then we rest.",
]


def tiny_text(lines: int = 240, seed: int = 0) -> str:
    """A repetitive little corpus (about 6k chars) that a tiny LSTM learns in seconds."""
    rng = random.Random(seed)
    return "".join(rng.choice(SENTENCES) + "\n" for _ in range(lines))


def make_artifact(text: str = "".join(SENTENCES), *, style: str = "tiny", hidden: int = 8,
                  embed_dim: int = 5, n_layers: int = 2, seed: int = 0, scale: float = 0.6,
                  weights_dtype: str = "float32") -> Artifact:
    """An artifact with random (non-trivial) weights over the characters of ``text``."""
    vocab = Vocabulary.from_text(text)
    cfg = ModelConfig(vocab_size=len(vocab), embed_dim=embed_dim, hidden=hidden,
                      n_layers=n_layers)
    rng = np.random.default_rng(seed)
    weights = {name: (rng.standard_normal(shape) * scale).astype(np.float32)
               for name, shape in weight_shapes(cfg).items()}
    return Artifact(style=style, vocab=vocab, model_config=cfg, weights=weights,
                    train_config=TrainConfig(weights_dtype=weights_dtype),
                    metrics={"val_loss_nats": 1.5}, version=f"{style}-test-{seed}")


@pytest.fixture
def artifact_factory():
    """``artifact_factory(text=..., hidden=..., seed=...)`` -> Artifact (random weights)."""
    return make_artifact


@pytest.fixture
def tiny_artifact() -> Artifact:
    return make_artifact()


CONFIG_TOML = tiny_config(minutes=0.2, sampling="top_k = 0\ntop_p = 1.0\n") + """\

[styles.fable_fox]
command = "fable"
variant = "fox"
corpus = "corpora/fox.txt"
description = "A fox fable"
stop = "blank_line"
default_chars = 30
max_chars = 60
training = { parent = "tiny", minutes = 0.05, learning_rate = 0.003 }

[styles.fable_owl]
command = "fable"
variant = "owl"
corpus = "corpora/owl.txt"
description = "An owl fable"
stop = "none"
default_chars = 30
max_chars = 60

[styles.empty]
command = "empty"
corpus = "corpora/empty.txt"
description = "A style whose corpus is empty"
default_chars = 10
max_chars = 20
"""


class BotSetup:
    """A config.toml with corpora (and optionally artifacts) in one folder."""

    def __init__(self, root: Path):
        self.root = root
        self.config = root / "config.toml"
        self.corpora = root / "corpora"
        self.models = root / "models"

    def write(self, toml: str = CONFIG_TOML) -> BotSetup:
        self.corpora.mkdir(parents=True, exist_ok=True)
        text = tiny_text()
        (self.corpora / "tiny.txt").write_text(text, encoding="utf-8")
        (self.corpora / "fox.txt").write_text(tiny_text(80, seed=1), encoding="utf-8")
        (self.corpora / "owl.txt").write_text(tiny_text(80, seed=2), encoding="utf-8")
        (self.corpora / "empty.txt").write_text("", encoding="utf-8")
        self.config.write_text(textwrap.dedent(toml), encoding="utf-8")
        return self

    def book(self):
        from genmodels.styles import load_styles

        return load_styles(self.config)

    def save_artifact(self, style: str, seed: int = 0, **kw) -> Artifact:
        """A random artifact over the style's corpus characters, at models/STYLE."""
        info = self.book().get(style)
        corpus = info.corpus.read_text(encoding="utf-8")
        art = make_artifact(corpus or "x", style=style, seed=seed, **kw)
        art.save(info.model_dir)
        return art


@pytest.fixture(scope="session")
def make_bot():
    """``make_bot(folder, edit=None)``: a BotSetup there; ``edit(toml) -> toml`` tweaks it."""

    def make(root: Path, edit=None) -> BotSetup:
        return BotSetup(root).write(edit(CONFIG_TOML) if edit else CONFIG_TOML)

    return make


@pytest.fixture
def bot(tmp_path) -> BotSetup:
    """A tiny bot setup in tmp_path: config.toml (styles tiny, fable fox/owl, empty)."""
    return BotSetup(tmp_path / "bot").write()


def child_env(config: Path | None = None, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    if config is not None:
        env["BOT_CONFIG"] = str(config)
    env.update(extra)
    return env


@pytest.fixture
def env_for():
    """``env_for(config, NAME=value, ...)``: environment for a child Python process."""
    return child_env


@pytest.fixture
def run_cli(tmp_path):
    """``run_cli("genmodels", [...], config=...)``: run ``python -m MODULE`` in a child."""

    def run(module: str, args: list[str], config: Path | None = None, timeout: float = 120,
            **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", module, *args], cwd=tmp_path,
                              env=child_env(config, **env), capture_output=True,
                              text=True, timeout=timeout)

    return run


def assert_bad_input(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit status 2, exactly one line on stderr naming the problem, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert proc.stdout == "", proc.stdout
    return lines[0]


@pytest.fixture
def bad_input():
    return assert_bad_input
