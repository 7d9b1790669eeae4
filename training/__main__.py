"""Command line for training and evaluating the style models.

    python -m training train STYLE [--minutes M] [--resume] [--out DIR] [--scratch]
                                   [--init DIR] [--learning-rate LR]
    python -m training evaluate STYLE [--model DIR] [--widen-vocab]
                                           # last line: val_loss_nats=<f> bits_per_char=<f>
    python -m training train-all           # bases, then every style after its parent
    python -m training report [--write]    # docs/MODELS.md (printed, or written)
    python -m training warm STYLE          # store a warmed start state in the artifact

Bad input (unknown style, corrupt artifact, empty corpus, ...) prints one line that
names the problem and exits with status 2.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from genmodels.cli import OneLineParser, fail
from training import ngram, quality, report, warm

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out


def import_tensorflow_quietly() -> None:
    """Import TensorFlow and Keras with stderr (fd 2) pointed at /dev/null.

    On CPUs where TensorFlow turns its oneDNN operations on (AVX-512: seen on an Intel
    Xeon and an AMD EPYC Zen 4), importing it prints notices through absl before its
    logging is set up, which TF_CPP_MIN_LOG_LEVEL does not filter; they would come
    before a one-line error.
    Python errors are exceptions, so nothing the caller needs is lost.
    """
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            import keras  # noqa: F401
            import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _parser() -> OneLineParser:
    p = OneLineParser(prog="python -m training", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=OneLineParser)
    t = sub.add_parser("train", help="train STYLE for a time budget and publish it")
    t.add_argument("style")
    t.add_argument("--minutes", type=float, help="time budget (default: config.toml)")
    t.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    t.add_argument("--out", type=Path, help="artifact folder (default: models/STYLE)")
    t.add_argument("--scratch", action="store_true",
                   help="train from random weights even if the style has a parent")
    t.add_argument("--init", type=Path, metavar="DIR",
                   help="fine-tune from the artifact in DIR (e.g. the active version)")
    t.add_argument("--learning-rate", type=float, help="peak learning rate "
                   "(default: config.toml)")
    sub.add_parser("train-all", help="train every style in config.toml (make models)")
    e = sub.add_parser("evaluate", help="held-out loss of STYLE's artifact")
    e.add_argument("style")
    e.add_argument("--model", type=Path, help="artifact folder (default: models/STYLE)")
    e.add_argument("--widen-vocab", action="store_true",
                   help="score corpus characters the model has never seen as a fine-tune "
                        "from it starts (genmodels/widen.py) instead of refusing them")
    quality.add_parser(sub)
    report.add_parser(sub)
    ngram.add_parser(sub)
    warm.add_parser(sub)
    return p


def _evaluate(book, args) -> None:
    from genmodels import artifact as artifacts
    from training import corpus as corpora
    from training.evaluate import bits, val_loss

    style = book.get(args.style)
    art = artifacts.load(args.model or style.model_dir)
    if args.widen_vocab:
        from genmodels import widen

        art = widen.widen(art, corpora.scan(style.corpus)[2])
    try:
        data = corpora.prepare(style.corpus, art.vocab, art.train_config.val_fraction,
                               art.train_config.seq_len)
    except corpora.UnknownCharacter as exc:  # an edited corpus: say how to score it anyway
        raise corpora.CorpusError(f"{exc}; --widen-vocab scores such characters as a "
                                  f"fine-tune from this model starts") from None
    if art.corpus.get("sha256") not in (None, data.sha256):
        print(f"note: corpus changed since {art.version} was trained", file=sys.stderr)
    val = val_loss(art.weights, art.model_config, corpora.read_ids(data.val_path))
    print(f"{art.version}: {data.val_chars:,} held-out chars of {style.corpus.name}")
    print(f"val_loss_nats={val:.4f} bits_per_char={bits(val):.4f}")


def _train(book, args) -> None:
    if args.minutes is not None and args.minutes <= 0:
        raise ValueError("--minutes must be positive")
    if args.learning_rate is not None and not args.learning_rate > 0:
        raise ValueError("--learning-rate must be positive")
    if args.init is not None and args.scratch:
        raise ValueError("--init and --scratch exclude each other")
    style = book.get(args.style)  # an unknown style is reported before TensorFlow loads
    import_tensorflow_quietly()
    from training.train import Run

    Run(style, book, minutes=args.minutes, resume=args.resume,
        out_dir=args.out, scratch=args.scratch, init=args.init,
        learning_rate=args.learning_rate).train()


def _train_all(book, args) -> None:
    import_tensorflow_quietly()
    from training.train import Run

    # Bases first, then each style after the model it fine-tunes from is published.
    for style in book.training_order():
        Run(style, book).train()


COMMANDS = {"train": _train, "train-all": _train_all, "evaluate": _evaluate, "warm": warm.run, "report": report.run,
            "quality": quality.run, "baseline": ngram.run}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from genmodels.artifact import ArtifactError
    from genmodels.styles import ConfigError, load_styles
    from training.corpus import CorpusError

    try:
        COMMANDS[args.cmd](load_styles(), args)
        return 0
    except KeyError as exc:
        return fail(exc.args[0])
    except (ConfigError, ArtifactError, CorpusError, ValueError, FileNotFoundError) as exc:
        return fail(str(exc))


if __name__ == "__main__":
    sys.exit(main())
