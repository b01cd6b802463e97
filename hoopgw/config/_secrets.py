"""Secret references: ``env:NAME`` or ``file:PATH``, resolved at use, never shown."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import GetCoreSchemaHandler, ValidationInfo
from pydantic_core import PydanticCustomError, core_schema

from hoopgw.errors import SecretError

INLINE_SECRET = "secrets must be references (env:NAME or file:PATH), never inline"  # noqa: S105 - a message
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class SecretRef:
    """A reference to a secret held in an environment variable or a file.

    ``repr``/``str`` show the reference (``env:NAME``), never the value; ``resolve()`` reads it each call.
    """

    __slots__ = ("kind", "target")

    kind: Literal["env", "file"]
    target: str

    def __init__(self, kind: Literal["env", "file"], target: str) -> None:
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "target", target)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("SecretRef is immutable")

    @classmethod
    def parse(cls, text: str, base_dir: Path | None = None) -> SecretRef:
        """Parse ``env:NAME`` or ``file:PATH`` (a relative PATH resolves against ``base_dir``).

        Raises ValueError (whose message never contains ``text``) for anything else.
        """
        kind, sep, target = text.partition(":")
        if sep and kind == "env":
            if not _ENV_NAME.match(target):
                raise ValueError("env: reference needs a variable name (letters, digits, _)")
            return cls("env", target)
        if sep and kind == "file":
            if not target:
                raise ValueError("file: reference needs a path")
            path = Path(target).expanduser()
            if not path.is_absolute() and base_dir is not None:
                path = base_dir / path
            return cls("file", str(path))
        raise ValueError(INLINE_SECRET)

    @property
    def reference(self) -> str:
        """The reference as written back (``env:NAME`` / ``file:/abs/path``)."""
        return f"{self.kind}:{self.target}"

    def resolve(self) -> str:
        """Read the secret now; raises SecretError naming the reference (never a value)."""
        if self.kind == "env":
            value = os.environ.get(self.target)
            if value is None:
                raise SecretError(f"{self.reference}: environment variable {self.target} is not set")
            if not value:
                raise SecretError(f"{self.reference}: environment variable {self.target} is empty")
            return value
        path = Path(self.target)
        try:
            value = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SecretError(f"{self.reference}: file not found") from None
        except PermissionError:
            raise SecretError(f"{self.reference}: permission denied") from None
        except IsADirectoryError:
            raise SecretError(f"{self.reference}: is a directory, not a file") from None
        except UnicodeDecodeError:
            raise SecretError(f"{self.reference}: not UTF-8 text") from None
        except OSError as exc:
            raise SecretError(f"{self.reference}: cannot read ({exc.strerror})") from None
        if value.endswith("\r\n"):
            value = value[:-2]
        elif value.endswith("\n"):
            value = value[:-1]
        if not value:
            raise SecretError(f"{self.reference}: file is empty")
        return value

    def __repr__(self) -> str:
        return f"SecretRef({self.reference!r})"

    def __str__(self) -> str:
        return self.reference

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretRef):
            return NotImplemented
        return (self.kind, self.target) == (other.kind, other.target)

    def __hash__(self) -> int:
        return hash((self.kind, self.target))

    def __reduce__(self) -> tuple[Any, ...]:
        return (SecretRef, (self.kind, self.target))

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.with_info_plain_validator_function(
            _validate_secret,
            serialization=core_schema.plain_serializer_function_ser_schema(str),
        )


def _validate_secret(value: object, info: ValidationInfo) -> SecretRef:
    if isinstance(value, SecretRef):
        return value
    if not isinstance(value, str):
        raise PydanticCustomError("secret", INLINE_SECRET)
    base = info.context.get("base_dir") if isinstance(info.context, dict) else None
    try:
        return SecretRef.parse(value, base)
    except ValueError as exc:
        raise PydanticCustomError("secret", str(exc)) from None
