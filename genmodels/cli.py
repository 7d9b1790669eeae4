"""Shared command-line plumbing: bad input is one line on stderr and exit status 2."""
from __future__ import annotations

import argparse
import sys

BAD_INPUT = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (no usage dump) and exits 2."""

    def error(self, message):
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(BAD_INPUT)


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return BAD_INPUT
