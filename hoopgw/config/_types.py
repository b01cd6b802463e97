"""Small annotated field types shared by the config models."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, ConfigDict, ValidationInfo
from pydantic_core import PydanticCustomError

from hoopgw.config._duration import parse_duration

#: Every config model: immutable, strict types, unknown keys are errors.
MODEL_CONFIG = ConfigDict(frozen=True, extra="forbid", strict=True)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")
SUBJECT_PREFIXES = ("group:", "user:", "key:")


def base_dir(info: ValidationInfo) -> Path | None:
    """The config file's folder, passed as validation context."""
    ctx = info.context
    if isinstance(ctx, dict):
        base = ctx.get("base_dir")
        if isinstance(base, Path):
            return base
    return None


def _seconds(value: object) -> float:
    if isinstance(value, str | int | float):
        try:
            return parse_duration(value)
        except (ValueError, TypeError) as exc:
            raise PydanticCustomError("duration", str(exc)) from None
    raise PydanticCustomError("duration", "must be a number of seconds or a duration like 30s, 15m, 1h")


def _path(value: object, info: ValidationInfo) -> Path:
    if isinstance(value, Path):
        return value
    if not isinstance(value, str) or not value:
        raise PydanticCustomError("path", "must be a non-empty path string")
    path = Path(value).expanduser()
    base = base_dir(info)
    if not path.is_absolute() and base is not None:
        path = base / path
    return path


def _name(value: object) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise PydanticCustomError(
            "name",
            "must be 1-63 characters: letters, digits, '_', '.', '-' (starting with a letter or digit)",
        )
    return value


def _subject(value: object) -> str:
    if not isinstance(value, str):
        raise PydanticCustomError("subject", "must be a string like group:NAME, user:SUBJECT or key:NAME")
    prefix = next((p for p in SUBJECT_PREFIXES if value.startswith(p)), None)
    if prefix is None or len(value) == len(prefix):
        raise PydanticCustomError(
            "subject",
            "subjects are group:NAME, user:SUBJECT or key:NAME (got {value})",
            {"value": repr(value)},
        )
    return value


#: Seconds, written as a number or as a duration string ("30s", "15m", "1h").
Seconds = Annotated[float, BeforeValidator(_seconds)]
#: A path; relative paths resolve against the config file's folder.
ConfigPath = Annotated[Path, BeforeValidator(_path)]
#: A connection or policy name.
Name = Annotated[str, BeforeValidator(_name)]
#: ``group:NAME``, ``user:SUBJECT`` or ``key:NAME``.
Subject = Annotated[str, BeforeValidator(_subject)]
