"""The errors storage raises; each message is one line a person can act on.

Callers (the chat core, the scheduler) catch ``StorageError`` and turn it into a polite
reply or a log line; they never need to know SQLAlchemy's or the drivers' exceptions.
"""
from __future__ import annotations

from settings import ConfigError


class StorageError(Exception):
    """Base class: something about storage went wrong; ``str()`` says what."""


class InvalidInput(StorageError, ValueError):
    """A value cannot be stored (bad rating value, NaN temperature, unknown status)."""


class NotFound(StorageError, LookupError):
    """The row an operation needs does not exist (rating a missing generation)."""


class StorageUnavailable(StorageError):
    """The database cannot be reached or stayed locked after retries."""


class StorageConfigError(StorageError, ConfigError):
    """``DATABASE_URL`` or a table of config.toml is unusable; the message names the key.

    A ``ConfigError`` too, so every entry point reports it as a config mistake."""
