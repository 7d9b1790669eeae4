"""config.toml, read once per process into frozen, typed tables that refuse unknown keys.

    import settings
    config = settings.load()            # $BOT_CONFIG or the repository's config.toml
    config.inference.max_batch          # 256
    settings.load("other.toml").styles  # {"austen": Style(...), ...}

``schema.py`` declares every table and key with its type and default; ``reading.py`` reads
and caches the file; ``errors.py`` turns a refusal into a ``ConfigError`` whose one-line
message starts with the key (``sampling.temprature: unknown key (known: ...)``). Range
and cross-table checks live with the code that uses each table (see schema.py).
"""
from settings.errors import ConfigError
from settings.reading import DEFAULT_CONFIG, ROOT, config_path, decode, load, read_document
from settings.schema import UNSET, Config, given

__all__ = ["ConfigError", "Config", "DEFAULT_CONFIG", "ROOT", "UNSET", "config_path",
           "decode", "given", "load", "read_document"]
