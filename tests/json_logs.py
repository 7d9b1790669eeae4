"""The root logger writing JSON lines into a string, as the entry points set it up
(``JsonFormatter`` + ``RequestIdFilter``); for the tests that read what was logged."""
from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from settings.logs import JsonFormatter, RequestIdFilter


@contextmanager
def json_root_log(level: int) -> Iterator[io.StringIO]:
    """Records at ``level`` and above go to the yielded stream, one JSON object a line."""
    root, stream = logging.getLogger(), io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def events(stream: io.StringIO) -> list[dict]:
    """The JSON objects written so far."""
    return [json.loads(line) for line in stream.getvalue().splitlines()]
