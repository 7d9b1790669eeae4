"""Styles from config.toml: what each chat command generates, and how it is trained.

``load_styles()`` takes ``[styles]``, ``[bases]``, ``[model]``, ``[training]`` and
``[sampling]`` from the settings read once per process (the ``settings`` package checks
keys and types) and checks what only this module knows: corpora exist, commands are
unique, parents exist, temperatures are ones the sampler takes. Any mistake raises
``ConfigError`` whose message names the key at fault (``styles.austen.corpus: ...``).
Paths in the file are relative to the file itself.

    python -c "from genmodels.styles import load_styles; print(load_styles().names())"
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import settings
from genmodels.config import ModelConfig, TrainConfig
from genmodels.sampler import MAX_TEMPERATURE, MIN_TEMPERATURE, STOP_RULES
from settings import DEFAULT_CONFIG, ROOT, ConfigError, given, schema

__all__ = ["ROOT", "DEFAULT_CONFIG", "ConfigError", "Style", "StyleBook", "load_styles",
           "read_config", "styles_from", "book_from"]
# A base model's corpus is written from its styles' training parts (training/base_corpus.py).
BASE_CORPORA = Path("var") / "corpora"


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


def _dataclass_from(cls, data: dict, where: str):
    try:
        return cls.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _style(name: str, table: schema.Style, config: settings.Config, base: Path,
           need_corpus: bool = True) -> Style:
    where = f"styles.{name}"
    corpus = base / table.corpus
    if need_corpus and not corpus.is_file():
        raise ConfigError(f"{where}.corpus: file {corpus} not found")
    if table.stop not in STOP_RULES:
        raise ConfigError(f"{where}.stop: {table.stop!r} is not one of {', '.join(STOP_RULES)}")
    if not 1 <= table.default_chars <= table.max_chars:
        raise ConfigError(f"{where}.default_chars: must be between 1 and max_chars "
                          f"({table.max_chars})")
    own = table.temperature  # unset: [sampling]'s, and an error names that key
    temperature = config.sampling.temperature if own is settings.UNSET else own
    if not (temperature == 0 or MIN_TEMPERATURE <= temperature <= MAX_TEMPERATURE):
        key = "sampling.temperature" if own is settings.UNSET else f"{where}.temperature"
        raise ConfigError(f"{key}: must be 0 (greedy) or a number in "
                          f"[{MIN_TEMPERATURE:g}, {MAX_TEMPERATURE:g}]")
    model = given(config.model) | given(table.model)
    _dataclass_from(ModelConfig, {"vocab_size": 1} | model, f"{where}.model")
    training = _dataclass_from(TrainConfig, given(config.training) | given(table.training),
                               f"{where}.training")
    return Style(name=name, command=table.command, variant=table.variant, corpus=corpus,
                 description=table.description, stop=table.stop,
                 default_chars=table.default_chars, max_chars=table.max_chars,
                 temperature=float(temperature), model=model, training=training,
                 exclude_heldout_of=table.exclude_heldout_of,
                 model_dir=base / "models" / name)


def _base(name: str, table: schema.Base, config: settings.Config, root: Path) -> Style:
    """A ``[bases.NAME]`` table: a language model over several styles' training text."""
    if not table.styles:
        raise ConfigError(f"bases.{name}.styles: expected a list of style names, got []")
    description = name if table.description is settings.UNSET else table.description
    fake = schema.Style(command="", corpus="", description=description, default_chars=1,
                        max_chars=1, model=table.model, training=table.training)
    style = _style(name, fake, config, root, need_corpus=False)
    return replace(style, corpus=root / BASE_CORPORA / f"{name}.txt", sources=table.styles,
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
    """The config file's path (``$BOT_CONFIG`` or the repository's copy) and its tables
    as plain dicts; prefer ``settings.load``, which gives them typed."""
    return settings.read_document(path)


def load_styles(path: str | Path | None = None) -> StyleBook:
    """The styles of config.toml (``$BOT_CONFIG`` or the repository's copy), checked."""
    path = settings.config_path(path)
    return book_from(path, settings.load(path))


def styles_from(path: Path, doc: dict) -> StyleBook:
    """The styles of a config document already parsed from ``path``."""
    return book_from(path, settings.decode(doc))


def book_from(path: Path, config: settings.Config) -> StyleBook:
    """The styles of the settings read from ``path`` (paths are relative to its folder)."""
    if not config.styles:
        raise ConfigError("styles: no styles declared")
    styles = {name: _style(name, table, config, path.parent)
              for name, table in config.styles.items()}
    bases = {name: _base(name, table, config, path.parent)
             for name, table in config.bases.items()}
    _check_links(styles, bases)
    top_k, top_p = config.sampling.top_k, config.sampling.top_p
    if top_k < 0:
        raise ConfigError("sampling.top_k: must be an integer >= 0")
    if not 0 < top_p <= 1:
        raise ConfigError("sampling.top_p: must be in (0, 1]")
    return StyleBook(styles=styles, top_k=top_k, top_p=float(top_p), path=path, bases=bases)
