"""A local file for request logs that could not be written while the database was down.

One JSON line per ``RequestRecord`` (``var/spool/requests.jsonl``), fsynced on append.
Lines end in a line feed only, and are UTF-8 written and read with
``errors="surrogatepass"``: a lone surrogate (the console turns undecodable input bytes
into one) round-trips instead of failing the write, and storing the record replaces it
(storage/records.py).
``replay`` stores them in order and rewrites the file with what is left (``os.replace``,
so a crash mid-replay never loses the file). Records carry a ``uid`` and logging is
idempotent on it, so a record stored just before a crash is not counted twice.

    python -m storage replay     # store what the spool holds, if the database is back
"""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from storage.errors import InvalidInput, StorageUnavailable
from storage.records import RequestRecord

log = logging.getLogger(__name__)
ENCODING, ERRORS = "utf-8", "surrogatepass"  # every read and write of a spool file


class Spool:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.rejected_path = self.path.with_suffix(".rejected.jsonl")
        self._lock = threading.Lock()

    def append(self, record: RequestRecord) -> None:
        """Keep ``record`` on disk until ``replay`` stores it (blocking: run it off-loop)."""
        with self._lock:
            self._append_lines(self.path, [record.to_json()])

    def pending(self) -> bool:
        try:
            return self.path.stat().st_size > 0
        except FileNotFoundError:
            return False

    def replay(self, store: Callable[[RequestRecord], object]) -> tuple[int, int]:
        """Store spooled records in order; (stored, still waiting).

        Stops at the first ``StorageUnavailable`` (the database is still down) and keeps
        the rest. A line that can never be stored goes to ``*.rejected.jsonl`` with a
        log line, never silently away.
        """
        with self._lock:
            if not self.pending():
                return 0, 0
            # "\n" only: splitlines() would also cut at U+2028 or U+0085, which JSON
            # leaves unescaped inside a prime.
            lines = self.path.read_text(encoding=ENCODING, errors=ERRORS).split("\n")
            stored, rejected = 0, []
            done = len(lines)  # lines handled: all, unless the database goes away
            for i, line in enumerate(lines):
                if not line.strip():
                    continue
                try:
                    store(RequestRecord.from_json(line))
                except StorageUnavailable:
                    done = i
                    break
                except (InvalidInput, ValueError, TypeError, KeyError) as exc:
                    log.error("spooled request refused, kept in %s: %s",
                              self.rejected_path, exc)
                    rejected.append(line)
                stored += 1
            left = [line for line in lines[done:] if line.strip()]
            if rejected:
                self._append_lines(self.rejected_path, rejected)
            self._rewrite(left)
            return stored - len(rejected), len(left)

    def _append_lines(self, path: Path, lines: list[str]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding=ENCODING, errors=ERRORS) as f:
            f.write("".join(line + "\n" for line in lines))
            f.flush()
            os.fsync(f.fileno())

    def _rewrite(self, lines: list[str]) -> None:
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", encoding=ENCODING, errors=ERRORS) as f:
            f.write("".join(line + "\n" for line in lines))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
