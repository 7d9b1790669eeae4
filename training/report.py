"""The table of shipped models for docs/MODELS.md, read from the artifacts themselves.

    python -m training report        # prints a Markdown table, one row per style

Every figure comes from ``models/STYLE/model.json`` (held-out loss, training time,
corpus size) and the sample is drawn with a fixed seed, so the table can be
regenerated after ``make models`` and checked against the artifacts.
"""
from __future__ import annotations

from genmodels import artifact as artifacts
from genmodels.artifact import ArtifactError
from genmodels.sampler import Sampler, SamplingParams
from genmodels.styles import StyleBook

SAMPLE_CHARS = 160
SAMPLE_SEED = 7


def _sample(art: artifacts.Artifact, stop: str, temperature: float) -> str:
    params = SamplingParams(temperature=temperature, seed=SAMPLE_SEED,
                            max_chars=SAMPLE_CHARS, stop=stop)
    text = Sampler(art).generate("", params).full_text
    text = " ".join(text.split())  # one line in the table
    return text.replace("|", "\\|") + ("…" if len(text) >= SAMPLE_CHARS - 5 else "")


def row(style, art: artifacts.Artifact) -> str:
    m, cfg = art.metrics, art.model_config
    parent = f" from `{art.train_config.parent}`" if art.train_config.parent else ""
    return (f"| `/{style.label}` | {art.corpus.get('chars', 0):,} | "
            f"{cfg.n_layers}x{cfg.hidden}, {cfg.n_params():,} | "
            f"{m.get('train_seconds', 0) / 60:.1f}{parent} | "
            f"**{m.get('val_loss_nats', float('nan')):.3f}** "
            f"({m.get('val_bits_per_char', float('nan')):.3f}) | "
            f"{_sample(art, style.stop, style.temperature)} |")


def table(book: StyleBook) -> str:
    lines = ["| style | corpus chars | model, params | minutes trained | "
             "val nats/char (bits/char) | sample (seed 7, style temperature) |",
             "|---|---:|---|---:|---:|---|"]
    for style in book.styles.values():
        try:
            lines.append(row(style, artifacts.load(style.model_dir)))
        except ArtifactError as exc:
            lines.append(f"| `/{style.label}` | not trained: {exc} | | | | |")
    return "\n".join(lines)
