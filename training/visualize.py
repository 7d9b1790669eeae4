"""Look inside a style model: neuron activation pictures, a gallery, the loss curve.

    python -m training.visualize STYLE [--text FILE | --prime TEXT] [--layer L]
                                       [--neuron N] [--kind cell|hidden] [--out PNG]
    python -m training.visualize STYLE --gallery DIR

The text is, by default, an excerpt of the style's held-out text (the last part of its
corpus, never trained on); ``--text FILE`` reads a file instead and ``--prime TEXT``
lets the model continue TEXT. Without ``--neuron`` the most interpretable cell is
picked (the one whose activation best correlates with a simple character feature) and
the picture is labelled with the feature and the correlation. Layers count from 1,
neurons from 0. ``--gallery DIR`` writes the best cells of every layer, the loss curve
and an ``index.html`` that shows them.

Everything runs on the NumPy kernel (no TensorFlow). Bad input prints one line and
exits with status 2.
"""
from __future__ import annotations

import html
import shutil
import sys
from pathlib import Path

from genmodels.cli import OneLineParser, fail

EXCERPT_CHARS = 600
PER_LAYER = 3  # gallery pictures per layer


def _parser() -> OneLineParser:
    p = OneLineParser(prog="python -m training.visualize",
                      description="Neuron activation pictures of a style model.")
    p.add_argument("style", help="style name from config.toml, e.g. austen")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--text", type=Path, help="read the text from this file")
    src.add_argument("--prime", help="let the model continue this text")
    p.add_argument("--chars", type=int, default=EXCERPT_CHARS, help="length of the text")
    p.add_argument("--seed", type=int, default=7, help="sampling seed for --prime")
    p.add_argument("--layer", type=int, help="layer, from 1")
    p.add_argument("--neuron", type=int, help="neuron index, from 0 (needs --layer)")
    p.add_argument("--kind", choices=("cell", "hidden"), default="cell",
                   help="cell state (default) or hidden state")
    p.add_argument("--out", type=Path, help="PNG to write (default: neurons-STYLE.png)")
    p.add_argument("--gallery", type=Path, help="write a gallery folder instead")
    p.add_argument("--model", type=Path, help="artifact folder (default: the active one)")
    return p


def heldout_excerpt(corpus: Path, val_fraction: float, chars: int) -> str:
    """``chars`` characters of the held-out part of a corpus, from a line start."""
    from training.corpus import val_start  # the split training used, not a copy of it

    with open(corpus, encoding="utf-8", newline="") as f:  # offsets as val_start counts
        text = f.read()
    start = val_start(corpus, len(text), val_fraction)
    return text[start:start + chars]


def source_text(style, art, args) -> tuple[str, str]:
    """The text to show and a phrase saying where it comes from."""
    from genmodels.neurons import sample_text

    if args.text is not None:
        try:
            text = args.text.read_text(encoding="utf-8")[:args.chars]
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"--text {args.text}: cannot read it ({exc})") from None
        return text, f"the file {args.text.name}"
    if args.prime is not None:
        return (sample_text(art, args.prime, args.chars, args.seed, style.temperature),
                f"a sample (seed {args.seed}) continuing {args.prime!r}")
    if style.corpus.is_file():
        return (heldout_excerpt(style.corpus, art.train_config.val_fraction, args.chars),
                f"held-out text of {style.corpus.name}")
    return (sample_text(art, "", args.chars, args.seed, style.temperature),
            f"a sample (seed {args.seed})")


def _check(args, art) -> None:
    cfg = art.model_config
    if args.chars < 2:
        raise ValueError("--chars must be at least 2")
    if args.neuron is not None and args.layer is None:
        raise ValueError("--neuron needs --layer (layers count from 1)")
    if args.layer is not None and not 1 <= args.layer <= cfg.n_layers:
        raise ValueError(f"--layer must be between 1 and {cfg.n_layers}, got {args.layer}")
    if args.neuron is not None and not 0 <= args.neuron < cfg.hidden:
        raise ValueError(f"--neuron must be between 0 and {cfg.hidden - 1}, got {args.neuron}")


def one_picture(art, acts, args) -> tuple[bytes, str]:
    from genmodels.neurons import describe, find, picture

    layer = None if args.layer is None else args.layer - 1
    if args.neuron is not None:
        finding = describe(acts, args.kind, args.layer - 1, args.neuron)  # --layer is set
    else:
        found = [f for f in find(acts, kinds=(args.kind,)) if layer in (None, f.layer)]
        if not found:
            raise ValueError("no neuron follows any feature of this text; try a longer one")
        finding = found[0]
    return picture(art, acts, finding)


def loss_curve(art, out: Path) -> Path | None:
    """Copy the artifact's loss.png, or plot one from the run history in model.json."""
    shipped = art.path / "loss.png" if art.path else None
    if shipped is not None and shipped.is_file():
        shutil.copyfile(shipped, out)
        return out
    history = art.metrics.get("history") or []
    if not history:
        return None
    from training.plots import plot_history

    return plot_history(history, out, f"{art.style}: {art.version}")


def gallery(art, acts, where: str, folder: Path) -> list[str]:
    """Pictures of the best cells of every layer, the loss curve and index.html."""
    from genmodels.neurons import find, picture, top_per_layer

    folder.mkdir(parents=True, exist_ok=True)
    figures = []
    for f in top_per_layer(find(acts), PER_LAYER):
        png, caption = picture(art, acts, f)
        name = f"layer{f.layer + 1}-{f.kind}{f.neuron}.png"
        (folder / name).write_bytes(png)
        figures.append((name, f.label))
    loss = loss_curve(art, folder / "loss.png")
    if loss is not None:
        figures.append((loss.name, "loss per character (nats) during training"))
    (folder / "index.html").write_text(index_html(art, where, len(acts.text), figures),
                                       encoding="utf-8")
    return [name for name, _ in figures] + ["index.html"]


def index_html(art, where: str, chars: int, figures: list[tuple[str, str]]) -> str:
    e = html.escape
    loss = art.metrics.get("val_loss_nats")
    head = (f"<h1>Inside the {e(art.style)} model</h1>\n<p>Version <code>{e(art.version)}"
            f"</code>, {art.model_config.n_layers} LSTM layers of {art.model_config.hidden}"
            + (f", held-out loss {loss:.3f} nats/char" if loss is not None else "") + ". "
            f"Each picture colours {chars} characters of {e(where)} by one cell's "
            "activation after reading that character (blue negative, white zero, red "
            "positive); the caption names the simple character feature it follows best "
            "and the correlation r. Layers count from 1, cells from 0.</p>\n")
    body = "".join(f'<figure><img src="{e(name)}" alt="{e(label)}">'
                   f"<figcaption>{e(label)}</figcaption></figure>\n"
                   for name, label in figures)
    return ("<!doctype html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>{e(art.style)} neurons</title><style>body{{font-family:sans-serif;"
            "max-width:60em;margin:2em auto}img{max-width:100%}figure{margin:2em 0}"
            "</style></head>\n<body>\n" + head + body + "</body></html>\n")


def run(args) -> list[str]:
    """Do what the arguments ask; returns the lines to print."""
    from genmodels import artifact as artifacts
    from genmodels.activations import trace
    from genmodels.registry import active_path
    from genmodels.styles import load_styles

    style = load_styles().get(args.style)
    art = artifacts.load(args.model or active_path(style.name, style.model_dir.parent))
    _check(args, art)
    text, where = source_text(style, art, args)
    acts = trace(art, text)
    if len(acts.text) < 2:
        raise ValueError("the text has fewer than 2 characters this model knows")
    if args.gallery is not None:
        names = gallery(art, acts, where, args.gallery)
        return [f"wrote {args.gallery / n}" for n in names]
    png, caption = one_picture(art, acts, args)
    out = args.out or Path(f"neurons-{style.name}.png")
    out.write_bytes(png)
    return [caption, f"wrote {out}"]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from genmodels.artifact import ArtifactError
    from genmodels.styles import ConfigError

    try:
        for line in run(args):
            print(line)
        return 0
    except KeyError as exc:
        return fail(exc.args[0])
    except (ConfigError, ArtifactError, ValueError, OSError) as exc:
        return fail(str(exc))


if __name__ == "__main__":
    sys.exit(main())
