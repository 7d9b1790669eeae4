"""Sample text from a shipped style model on the CPU (NumPy only, no TensorFlow).

    python -m genmodels sample STYLE [--variant V] [--prime TEXT] [--temperature X]
                                     [--top-k K] [--top-p P] [--seed N] [--max-chars N]

Prints only the text. Bad input prints one line naming the problem (and the valid
choices) to stderr and exits with status 2.
"""
from __future__ import annotations

import sys

from genmodels.cli import OneLineParser, fail


def _parser() -> OneLineParser:
    p = OneLineParser(prog="python -m genmodels", description="Sample from a style model.")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=OneLineParser)
    s = sub.add_parser("sample", help="print text in a style")
    s.add_argument("style", help="style command, e.g. shakespeare or proverb")
    s.add_argument("--variant", default="", help="e.g. armenian for proverb")
    s.add_argument("--prime", default="", help="text the model continues")
    s.add_argument("--temperature", type=float, help="0 = greedy; default from config.toml")
    s.add_argument("--top-k", type=int, default=None)
    s.add_argument("--top-p", type=float, default=None)
    s.add_argument("--seed", type=int, default=None)
    s.add_argument("--max-chars", type=int, default=None)
    return p


def sample(args) -> str:
    from genmodels import artifact
    from genmodels.sampler import Sampler, SamplingParams
    from genmodels.styles import load_styles

    book = load_styles()
    style = book.find(args.style, args.variant)
    params = SamplingParams(
        temperature=style.temperature if args.temperature is None else args.temperature,
        top_k=book.top_k if args.top_k is None else args.top_k,
        top_p=book.top_p if args.top_p is None else args.top_p,
        seed=args.seed,
        max_chars=style.default_chars if args.max_chars is None else args.max_chars,
        stop=style.stop)
    params.validate(style.max_chars)  # before the (slower) model load
    gen = Sampler(artifact.load(style.model_dir)).generate(args.prime, params)
    if gen.dropped:
        print(f"note: dropped characters this model has never seen: {gen.dropped!r}",
              file=sys.stderr)
    return gen.full_text


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from genmodels.artifact import ArtifactError
    from genmodels.styles import ConfigError

    try:
        print(sample(args))
        return 0
    except KeyError as exc:
        return fail(exc.args[0])
    except (ValueError, ArtifactError, ConfigError) as exc:
        return fail(str(exc))


if __name__ == "__main__":
    sys.exit(main())
