"""``[[masking]]`` blocks: the schema, and how blocks naming one connection add up.

Regular expressions are checked by the Rust engine that will run them (``hoopgw._core.Masker``), so
``hoopgw check`` reports exactly what the gateway would refuse at startup.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Discriminator, Field, Tag, model_validator
from pydantic_core import PydanticCustomError

from hoopgw import _core
from hoopgw.config._secrets import SecretRef
from hoopgw.config._types import MODEL_CONFIG, Name

#: Built-in detectors, in the engine's order (the engine is the one list of them).
DETECTORS: tuple[str, ...] = tuple(_core.builtin_detectors())
STYLES = ("redact", "last4", "hash")
COLUMN_STYLES = (*STYLES, "null")
#: Shortest ``[gateway] masking_key`` (bytes of the resolved secret, UTF-8).
MIN_MASKING_KEY_BYTES = 16
#: Tags of the pattern union; ``_load`` leaves them out of problem keys.
PATTERN_TAGS = frozenset({"bare-pattern", "named-pattern"})

Style = Literal["redact", "last4", "hash"]
ColumnStyle = Literal["redact", "last4", "hash", "null"]

_PROBE = "probe"
_BARE_NAME = re.compile(r"pattern_[0-9]+\Z")
_RESERVED = frozenset({*DETECTORS, "words", "columns"})
_GLOB_HINT = (
    'must be a "table.column" or "schema.table.column" glob (* and ? allowed), like "*.account_number"'
)


def masking_key_too_short(ref: SecretRef, size: int) -> str:
    """The reason given for a ``masking_key`` shorter than 16 bytes (names the reference, never the key)."""
    return f"{ref.reference}: the masking key must be at least {MIN_MASKING_KEY_BYTES} bytes (it has {size})"


def bare_pattern_name(n: int) -> str:
    """Name (and counter) of the ``n``-th bare regex of the file, counting from 1 across all blocks."""
    return f"pattern_{n}"


def engine_regex_error(regex: str) -> str | None:
    """The engine's reason for refusing ``regex`` (Rust regex syntax), or None when it compiles.

    Like ``invalid regex "(x": unclosed group (at byte 0)``, always on one line so that every problem
    stays one ``FILE: KEY: REASON`` line.
    """
    try:
        _core.Masker(patterns=[(_PROBE, regex, "redact")])
    except ValueError as exc:
        message = str(exc).removeprefix(f'pattern "{_PROBE}": ')
        return " ".join(line.strip() for line in message.splitlines() if line.strip())
    return None


def _regex(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise PydanticCustomError(
            "regex", "must be a non-empty regular expression or a table { name = ..., regex = ... }"
        )
    error = engine_regex_error(value)
    if error is not None:
        raise PydanticCustomError("regex", "{err}", {"err": error})
    return value


def _pattern_name(value: object) -> object:
    if isinstance(value, str) and (value in _RESERVED or _BARE_NAME.match(value)):
        raise PydanticCustomError(
            "pattern_name",
            "pattern name {name} is reserved (built-in detector names, words, columns and pattern_N)",
            {"name": f'"{value}"'},
        )
    return value


def _detector(value: object) -> str:
    if value not in DETECTORS:
        raise PydanticCustomError(
            "detector", "unknown detector (known: {known})", {"known": ", ".join(DETECTORS)}
        )
    return str(value)


def _word(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise PydanticCustomError("word", "must be a non-empty word or phrase")
    if value != value.strip():
        raise PydanticCustomError("word", "must not start or end with spaces")
    return value


def _glob(value: object) -> str:
    if not isinstance(value, str):
        raise PydanticCustomError("glob", _GLOB_HINT)
    parts = value.split(".")
    if len(parts) not in (2, 3) or any(not p or p != p.strip() for p in parts):
        raise PydanticCustomError("glob", _GLOB_HINT)
    return value


def _style(value: object) -> object:
    if value == "null":
        raise PydanticCustomError(
            "style", 'the "null" style is for column rules only: use column_style = "null"'
        )
    return value


class NamedPattern(BaseModel):
    """``{ name = "ticket", regex = "TCK-[0-9]+" }``: a regex with its own counter name."""

    model_config = MODEL_CONFIG

    name: Annotated[Name, BeforeValidator(_pattern_name)]
    regex: Annotated[str, BeforeValidator(_regex)]


def _pattern_tag(value: Any) -> str:
    return "named-pattern" if isinstance(value, dict | NamedPattern) else "bare-pattern"


PatternItem = Annotated[
    Annotated[str, BeforeValidator(_regex), Tag("bare-pattern")]
    | Annotated[NamedPattern, Tag("named-pattern")],
    Discriminator(_pattern_tag),
]


class MaskingConfig(BaseModel):
    """``[[masking]]``: what to mask on which connections (blocks naming one connection add up)."""

    model_config = MODEL_CONFIG

    connections: tuple[str, ...] = Field(min_length=1)
    detectors: tuple[Annotated[str, BeforeValidator(_detector)], ...] = ()
    patterns: tuple[PatternItem, ...] = ()
    words: tuple[Annotated[str, BeforeValidator(_word)], ...] = ()
    columns: tuple[Annotated[str, BeforeValidator(_glob)], ...] = ()
    style: Annotated[Style, BeforeValidator(_style)] = "redact"
    column_style: ColumnStyle | None = None

    @property
    def effective_column_style(self) -> ColumnStyle:
        """The style of this block's column rules: ``column_style``, else ``style``."""
        return self.column_style if self.column_style is not None else self.style

    @model_validator(mode="after")
    def _compiles(self) -> MaskingConfig:
        if not (self.detectors or self.patterns or self.words or self.columns):
            raise PydanticCustomError(
                "masking", "a masking block needs detectors, patterns, words or columns"
            )
        rules = merge_rules([(self, named_patterns([self])[0])])
        try:  # a safety net: whatever passes here also compiles at startup
            rules.compile(b"k" * MIN_MASKING_KEY_BYTES)
        except ValueError as exc:
            raise PydanticCustomError("masking", "{err}", {"err": str(exc)}) from None
        return self


@dataclass(frozen=True)
class MaskRules:
    """The merged rules of one connection, in the shape ``Masker`` takes."""

    detectors: tuple[tuple[str, str], ...] = ()
    patterns: tuple[tuple[str, str, str], ...] = ()
    words: tuple[tuple[str, str], ...] = ()
    columns: tuple[tuple[str, str], ...] = ()

    def compile(self, hash_key: bytes) -> _core.Masker:
        """A ``Masker`` for these rules (ValueError from the engine when it refuses them)."""
        return _core.Masker(
            detectors=list(self.detectors),
            patterns=list(self.patterns),
            words=list(self.words),
            columns=list(self.columns),
            hash_key=hash_key,
        )


def named_patterns(blocks: Sequence[MaskingConfig]) -> list[list[tuple[str, str]]]:
    """Per block, its patterns as ``(name, regex)``; bare regexes are numbered across the file."""
    n = 0
    out: list[list[tuple[str, str]]] = []
    for block in blocks:
        named: list[tuple[str, str]] = []
        for pattern in block.patterns:
            if isinstance(pattern, NamedPattern):
                named.append((pattern.name, pattern.regex))
            else:
                n += 1
                named.append((bare_pattern_name(n), pattern))
        out.append(named)
    return out


def merge_rules(blocks: Iterable[tuple[MaskingConfig, Sequence[tuple[str, str]]]]) -> MaskRules:
    """Add up blocks (each with its named patterns); the first style of a repeated rule is kept.

    Conflicting repeats are configuration errors reported by ``masking_cross_checks``.
    """
    detectors: dict[str, str] = {}
    patterns: dict[str, tuple[str, str, str]] = {}
    words: dict[str, tuple[str, str]] = {}
    columns: dict[str, str] = {}
    for block, named in blocks:
        for detector in block.detectors:
            detectors.setdefault(detector, block.style)
        for name, regex in named:
            patterns.setdefault(name, (name, regex, block.style))
        for word in block.words:
            words.setdefault(word.casefold(), (word, block.style))
        for glob in block.columns:
            columns.setdefault(glob, block.effective_column_style)
    return MaskRules(
        detectors=tuple(detectors.items()),
        patterns=tuple(patterns.values()),
        words=tuple(words.values()),
        columns=tuple(columns.items()),
    )


def masking_cross_checks(blocks: Sequence[object], connections: Sequence[str]) -> Iterator[tuple[str, str]]:
    """Conflicts between blocks, on the raw TOML data (so they show even when some block is invalid).

    On one connection, a detector, pattern, word or column glob masked with two different styles is a
    mistake (which one would win?), and so is one pattern name given two different regexes. Each
    conflict is reported at the later entry, naming the connection and the earlier block.
    """
    seen: dict[tuple[str, str, str], tuple[str, str, int]] = {}  # (conn, kind, id) -> (style, regex, block)
    n_bare = 0
    for i, block in enumerate(blocks):
        if not isinstance(block, dict):
            continue
        targets = _targets(block.get("connections"), connections)
        style = block.get("style", "redact")
        column_style = block.get("column_style", style if style in STYLES else None)
        entries: list[tuple[str, str, str, str, object]] = []  # (key, kind, id, regex, style)
        for k, detector in enumerate(_raw_list(block.get("detectors"))):
            if isinstance(detector, str):
                entries.append((f"detectors[{k}]", "detector", detector, "", style))
        for k, pattern in enumerate(_raw_list(block.get("patterns"))):
            if isinstance(pattern, str):
                n_bare += 1
                entries.append((f"patterns[{k}]", "pattern", bare_pattern_name(n_bare), pattern, style))
            elif isinstance(pattern, dict) and isinstance(pattern.get("name"), str):
                regex = pattern.get("regex")
                entries.append((f"patterns[{k}]", "pattern", pattern["name"], str(regex), style))
        for k, word in enumerate(_raw_list(block.get("words"))):
            if isinstance(word, str):
                entries.append((f"words[{k}]", "word", word, "", style))
        for k, glob in enumerate(_raw_list(block.get("columns"))):
            if isinstance(glob, str):
                entries.append((f"columns[{k}]", "column rule", glob, "", column_style))
        for key, kind, ident, regex, entry_style in entries:
            if entry_style not in (COLUMN_STYLES if kind == "column rule" else STYLES):
                continue  # reported on the block itself
            for conn in targets:
                folded = ident.casefold() if kind == "word" else ident  # words match in any case
                first = seen.setdefault((conn, kind, folded), (str(entry_style), regex, i))
                if first[0] != entry_style:
                    yield (
                        f"masking[{i}].{key}",
                        f'{kind} "{ident}" already masked with style {first[0]} '
                        f"on connection {conn} (masking[{first[2]}])",
                    )
                    break
                if first[1] != regex:
                    yield (
                        f"masking[{i}].{key}",
                        f'{kind} "{ident}" already has another regex on connection {conn} '
                        f"(masking[{first[2]}])",
                    )
                    break


def _raw_list(value: object) -> tuple[object, ...]:
    return value if isinstance(value, tuple) else ()


def _targets(value: object, connections: Sequence[str]) -> list[str]:
    names = [c for c in _raw_list(value) if isinstance(c, str)]
    if "*" in names:
        return list(connections)
    return [c for c in dict.fromkeys(names) if c in connections]
