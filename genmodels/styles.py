"""Styles from config.toml: what each chat command generates, and how it is trained.

``load_styles()`` reads and validates the file once at start-up; any mistake raises
``ConfigError`` whose message names the key at fault (``styles.austen.corpus: ...``).
Paths in the file are relative to the file itself.

    python -c "from genmodels.styles import load_styles; print(load_styles().names())"
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from genmodels.config import ModelConfig, TrainConfig
from genmodels.sampler import MAX_TEMPERATURE, MIN_TEMPERATURE, STOP_RULES

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "config.toml"
STYLE_KEYS = {"command", "variant", "corpus", "description", "stop", "default_chars",
              "max_chars", "temperature", "model", "training", "exclude_heldout_of"}
BASE_KEYS = {"styles", "description", "model", "training"}
# A base model's corpus is written from its styles' training parts (training/base_corpus.py).
BASE_CORPORA = Path("var") / "corpora"


class ConfigError(Exception):
    """config.toml is wrong; the message starts with the offending key."""


@dataclass(frozen=True)
class Style:
    """One model: its command (and variant), corpus, stop rule and defaults."""

    name: str  # table name in config.toml, also the folder under models/
    command: str
    variant: str
    corpus: Path
    description: str
    stop: str
    default_chars: int
    max_chars: int
    temperature: float
    model: dict = field(default_factory=dict)  # ModelConfig keys except vocab_size
    training: TrainConfig = field(default_factory=TrainConfig)
    exclude_heldout_of: tuple[str, ...] = ()
    model_dir: Path = Path()
    # A base model (``[bases.NAME]``): the styles whose training parts make its corpus.
    sources: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.command} {self.variant}".strip()


@dataclass(frozen=True)
class StyleBook:
    """Every style in config.toml, plus the sampling defaults.

    ``bases`` are the language models that styles fine-tune from; they have no chat
    command and are never served, so only ``get`` and training see them.
    """

    styles: dict[str, Style]
    top_k: int = 0
    top_p: float = 1.0
    path: Path = DEFAULT_CONFIG
    bases: dict[str, Style] = field(default_factory=dict)

    def names(self) -> list[str]:
        return list(self.styles)

    def find(self, command: str, variant: str = "") -> Style:
        """The style for a command and variant; ``KeyError`` says what is valid."""
        for style in self.styles.values():
            if style.command == command and style.variant == variant:
                return style
        commands = sorted({s.command for s in self.styles.values()})
        if command not in commands:
            raise KeyError(f"unknown style {command!r}; choose one of {', '.join(commands)}")
        variants = sorted(s.variant for s in self.styles.values()
                          if s.command == command and s.variant)
        raise KeyError(f"unknown {command} variant {variant!r}; choose one of "
                       f"{', '.join(variants)} (or none)")

    def get(self, name: str) -> Style:
        if name in self.bases:
            return self.bases[name]
        if name not in self.styles:
            raise KeyError(f"unknown style {name!r}; choose one of {', '.join(self.styles)}")
        return self.styles[name]

    def training_order(self) -> list[Style]:
        """Bases and styles, each after the model it fine-tunes from (``make models``)."""
        every = self.bases | self.styles

        def depth(style: Style) -> int:
            parent = style.training.parent
            return 0 if not parent else 1 + depth(every[parent])

        return sorted(every.values(), key=depth)


def _need(table: dict, key: str, kind, where: str):
    value = table.get(key)
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if not ok:
        raise ConfigError(f"{where}.{key}: expected {getattr(kind, '__name__', kind)}, "
                          f"got {value!r}")
    return value


def _dataclass_from(cls, data: dict, where: str):
    try:
        return cls.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _table(value, where: str) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a table, got {value!r}")
    return value


def _style(name: str, table: dict, doc: dict, base: Path, need_corpus: bool = True) -> Style:
    where = f"styles.{name}"
    table = _table(table, where)
    unknown = sorted(set(table) - STYLE_KEYS)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key (known: {', '.join(sorted(STYLE_KEYS))})")
    corpus = base / _need(table, "corpus", str, where)
    if need_corpus and not corpus.is_file():
        raise ConfigError(f"{where}.corpus: file {corpus} not found")
    stop = table.get("stop", "blank_line")
    if stop not in STOP_RULES:
        raise ConfigError(f"{where}.stop: {stop!r} is not one of {', '.join(STOP_RULES)}")
    default_chars = _need(table, "default_chars", int, where)
    max_chars = _need(table, "max_chars", int, where)
    if not 1 <= default_chars <= max_chars:
        raise ConfigError(f"{where}.default_chars: must be between 1 and max_chars ({max_chars})")
    temperature = table.get("temperature", doc.get("sampling", {}).get("temperature", 0.8))
    if (not isinstance(temperature, (int, float)) or isinstance(temperature, bool)
            or not (temperature == 0 or MIN_TEMPERATURE <= temperature <= MAX_TEMPERATURE)):
        raise ConfigError(f"{where}.temperature: must be 0 (greedy) or a number in "
                          f"[{MIN_TEMPERATURE:g}, {MAX_TEMPERATURE:g}]")
    model = _table(doc.get("model", {}), "model") | _table(table.get("model", {}),
                                                           f"{where}.model")
    _dataclass_from(ModelConfig, {"vocab_size": 1} | model, f"{where}.model")
    training = _dataclass_from(TrainConfig, _table(doc.get("training", {}), "training")
                               | _table(table.get("training", {}), f"{where}.training"),
                               f"{where}.training")
    variant = table.get("variant", "")
    if not isinstance(variant, str):
        raise ConfigError(f"{where}.variant: expected str, got {variant!r}")
    return Style(name=name, command=_need(table, "command", str, where),
                 variant=variant, corpus=corpus,
                 description=_need(table, "description", str, where), stop=stop,
                 default_chars=default_chars, max_chars=max_chars,
                 temperature=float(temperature), model=model, training=training,
                 exclude_heldout_of=tuple(table.get("exclude_heldout_of", ())),
                 model_dir=base / "models" / name)


def _base(name: str, table: dict, doc: dict, root: Path) -> Style:
    """A ``[bases.NAME]`` table: a language model over several styles' training text."""
    where = f"bases.{name}"
    table = _table(table, where)
    unknown = sorted(set(table) - BASE_KEYS)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key (known: {', '.join(sorted(BASE_KEYS))})")
    sources = table.get("styles")
    if not (isinstance(sources, list) and sources and all(isinstance(x, str) for x in sources)):
        raise ConfigError(f"{where}.styles: expected a list of style names, got {sources!r}")
    fake = {"command": "", "corpus": "", "description": table.get("description", name),
            "default_chars": 1, "max_chars": 1} | {k: table[k] for k in ("model", "training")
                                                  if k in table}
    style = _style(name, fake, doc, root, need_corpus=False)
    return replace(style, corpus=root / BASE_CORPORA / f"{name}.txt", sources=tuple(sources),
                   model_dir=root / "models" / f"base_{name}")


def _check_links(styles: dict[str, Style], bases: dict[str, Style]) -> None:
    seen: dict[tuple[str, str], str] = {}
    for base in bases.values():
        for source in base.sources:
            if source not in styles:
                raise ConfigError(f"bases.{base.name}.styles: no style {source!r}")
        if base.name in styles:
            raise ConfigError(f"bases.{base.name}: a style has that name already")
    for style in styles.values():
        key = (style.command, style.variant)
        if key in seen:
            raise ConfigError(f"styles.{style.name}.command: {style.label!r} is already "
                              f"used by styles.{seen[key]}")
        seen[key] = style.name
        parent = style.training.parent
        if parent and parent not in styles and parent not in bases:
            raise ConfigError(f"styles.{style.name}.training.parent: no style {parent!r}")
        for other in style.exclude_heldout_of:
            if other not in styles:
                raise ConfigError(f"styles.{style.name}.exclude_heldout_of: no style {other!r}")


def read_config(path: str | Path | None = None) -> tuple[Path, dict]:
    """The config file's path (``$BOT_CONFIG`` or the repository's copy) and its tables."""
    path = Path(path or os.environ.get("BOT_CONFIG") or DEFAULT_CONFIG)
    try:
        return path, tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


def load_styles(path: str | Path | None = None) -> StyleBook:
    """Parse and validate config.toml (``$BOT_CONFIG`` or the repository's copy)."""
    return styles_from(*read_config(path))


def styles_from(path: Path, doc: dict) -> StyleBook:
    """The styles of a config document already read from ``path`` (``read_config``)."""
    tables = doc.get("styles")
    if not isinstance(tables, dict) or not tables:
        raise ConfigError("styles: no styles declared")
    styles = {name: _style(name, table, doc, path.parent) for name, table in tables.items()}
    bases = {name: _base(name, table, doc, path.parent)
             for name, table in _table(doc.get("bases", {}), "bases").items()}
    _check_links(styles, bases)
    sampling = doc.get("sampling", {})
    top_k, top_p = sampling.get("top_k", 0), sampling.get("top_p", 1.0)
    if not isinstance(top_k, int) or top_k < 0:
        raise ConfigError("sampling.top_k: must be an integer >= 0")
    if not isinstance(top_p, (int, float)) or not 0 < top_p <= 1:
        raise ConfigError("sampling.top_p: must be in (0, 1]")
    return StyleBook(styles=styles, top_k=top_k, top_p=float(top_p), path=path, bases=bases)

