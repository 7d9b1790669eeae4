"""Sampling demo in the terminal, until the chat adapters land (issue 4).

    python -m bot            # type "/austen It is a truth", "/proverb armenian", "/help"

Reads commands from stdin (piped input works too) and prints text from the shipped
models with the NumPy sampler. Each style's model is loaded on first use.
"""
from __future__ import annotations

import sys

from genmodels import artifact
from genmodels.artifact import ArtifactError
from genmodels.sampler import Sampler, SamplingParams
from genmodels.styles import ConfigError, StyleBook, load_styles


def help_text(book: StyleBook) -> str:
    lines = ["Commands:"]
    for style in book.styles.values():
        lines.append(f"  /{style.label:<20} {style.description}")
    lines.append("Text after a command primes the model; /help shows this; Ctrl-D quits.")
    return "\n".join(lines)


def reply(book: StyleBook, samplers: dict[str, Sampler], line: str) -> str:
    """The answer to one input line (never raises for bad input)."""
    words = line.strip().split(maxsplit=1)
    if not words or not words[0].startswith("/") or words[0] in ("/help", "/start"):
        return help_text(book)
    command, rest = words[0][1:], (words[1] if len(words) > 1 else "")
    variants = {s.variant for s in book.styles.values() if s.command == command and s.variant}
    variant, _, prime = rest.partition(" ") if rest.split(" ")[0] in variants else ("", "", rest)
    try:
        style = book.find(command, variant)
        if style.name not in samplers:
            samplers[style.name] = Sampler(artifact.load(style.model_dir))
    except KeyError as exc:
        return f"Sorry: {exc.args[0]}."
    except ArtifactError as exc:
        return f"Sorry, the {style.label} model is unavailable ({exc})."
    params = SamplingParams(temperature=style.temperature, max_chars=style.default_chars,
                            stop=style.stop, top_k=book.top_k, top_p=book.top_p)
    return samplers[style.name].generate(prime, params).full_text


def main() -> int:
    try:
        book = load_styles()
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    samplers: dict[str, Sampler] = {}
    interactive = sys.stdin.isatty()
    print(help_text(book))
    while True:
        if interactive:
            print("> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line:
            return 0
        if line.strip():
            print(reply(book, samplers, line), flush=True)


if __name__ == "__main__":
    sys.exit(main())
