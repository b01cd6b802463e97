"""``[audit]``: the audit store, write-ahead audit, checkpoints, retention and SIEM streaming.

docs/AUDIT.md explains each key; ``[gateway] audit_flush_interval`` stays the bounded delay within
which reads (and every other event not written ahead) are committed.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, Field, ValidationInfo, model_validator
from pydantic_core import PydanticCustomError

from hoopgw.config._approvals import _url_or_secret
from hoopgw.config._secrets import SecretRef
from hoopgw.config._types import MODEL_CONFIG, ConfigPath, Seconds

#: an event kind in ``retention_days`` / ``kinds`` (``*``: every kind not named)
_KIND = re.compile(r"(\*|[a-z][a-z0-9_]{0,62})\Z")
_ADDRESS = re.compile(r"(udp|tcp)://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})\Z")


def _store(value: object, info: ValidationInfo) -> str | SecretRef:
    """``sqlite``, a postgresql:// URL without a password, or an ``env:``/``file:`` reference to a URL
    (a URL that holds a password is a secret)."""
    if isinstance(value, SecretRef):
        return value
    if isinstance(value, str) and value.startswith(("env:", "file:")):
        base = info.context.get("base_dir") if isinstance(info.context, dict) else None
        try:
            return SecretRef.parse(value, base)
        except ValueError as exc:
            raise PydanticCustomError("secret", str(exc)) from None
    if isinstance(value, str) and value.startswith(("postgresql://", "postgres://")):
        from hoopgw.audit._db import has_password  # the audit package is heavy: only when needed

        if has_password(value):
            raise PydanticCustomError(
                "secret",
                "the URL holds a password: secrets must be references (env:NAME or file:PATH holding the"
                " URL), never inline",
            )
        return value
    if value != "sqlite":
        raise PydanticCustomError(
            "store",
            'must be "sqlite" (the file in data_dir), a postgresql:// URL, or an env:/file: reference to one',
        )
    return value


def _kind(value: object) -> str:
    if not isinstance(value, str) or not _KIND.match(value):
        raise PydanticCustomError("kind", "an event kind like statement or session_open, or *")
    return value


def _address(value: object) -> str:
    if not isinstance(value, str) or not (m := _ADDRESS.match(value)) or not 0 < int(m.group(3)) < 65536:
        raise PydanticCustomError("address", "must be udp://HOST:PORT or tcp://HOST:PORT")
    return value


Kind = Annotated[str, BeforeValidator(_kind)]


class SiemConfig(BaseModel):
    """``[[audit.siem]]``: one destination every committed event is streamed to as one JSON line.

    ``type`` "file" appends to ``path``; "stdout" writes to the gateway's standard output; "syslog"
    sends RFC 5424 messages to ``address`` (``udp://`` or ``tcp://`` with octet counting); "http"
    POSTs batches of lines (``application/x-ndjson``) to ``url`` with ``token`` as a bearer token.
    A sink never slows the data path: at most ``queue`` events wait for it, the rest are counted as
    dropped and the count is recorded in the audit trail.
    """

    model_config = MODEL_CONFIG

    type: Literal["file", "stdout", "syslog", "http"]
    path: ConfigPath | None = None
    address: Annotated[str, BeforeValidator(_address)] | None = None
    url: Annotated[str | SecretRef, BeforeValidator(_url_or_secret)] | None = None
    token: SecretRef | None = None
    #: event kinds streamed (default every kind)
    kinds: tuple[Kind, ...] = ("*",)
    queue: int = Field(default=10_000, ge=1, le=10_000_000)
    timeout: Seconds = Field(default=5.0, gt=0, le=60)
    #: syslog: APP-NAME and facility (13: log audit)
    app_name: str = Field(default="hoopgw", min_length=1, max_length=48, pattern=r"^[!-~]+$")
    facility: int = Field(default=13, ge=0, le=23)

    @model_validator(mode="after")
    def _target(self, info: ValidationInfo) -> SiemConfig:
        need = {"file": "path", "syslog": "address", "http": "url"}.get(self.type)
        given = {k for k in ("path", "address", "url") if getattr(self, k) is not None}
        if need is not None and need not in given:
            raise PydanticCustomError("siem", "a {type} sink needs {need}", {"type": self.type, "need": need})
        extra = given - {need}
        if extra:
            raise PydanticCustomError(
                "siem", "a {type} sink takes no {keys}", {"type": self.type, "keys": ", ".join(sorted(extra))}
            )
        if self.token is not None and self.type != "http":
            raise PydanticCustomError("siem", "only an http sink takes a token")
        return self


class AuditConfig(BaseModel):
    """``[audit]``: how the audit trail is stored, sealed, kept and streamed."""

    model_config = MODEL_CONFIG

    #: "sqlite" (``data_dir/audit.db``), or a ``postgresql://`` URL (several gateway nodes) or an
    #: ``env:``/``file:`` reference to one (docs/AUDIT.md "Stores")
    store: Annotated[str | SecretRef, BeforeValidator(_store)] = "sqlite"
    #: a statement that is not a read or a session statement is durably committed before it is forwarded
    write_ahead: bool = True
    #: a signed checkpoint at least every this many events, and this long after an unsealed event
    checkpoint_every: int = Field(default=1000, ge=1, le=10_000_000)
    checkpoint_interval: Seconds = Field(default=60.0, gt=0, le=86_400)
    #: days each event kind is kept (``*``: every kind not named); unnamed kinds are kept forever
    retention_days: dict[Kind, int] = Field(default_factory=dict)
    #: how often expired events are purged
    purge_interval: Seconds = Field(default=3600.0, ge=1, le=7 * 86_400)
    siem: tuple[SiemConfig, ...] = ()
    #: rows of each statement's result kept in its record, as the client got them (masked); 0: none
    preview_rows: int = Field(default=5, ge=0, le=100)
    #: characters each previewed value and column name is cut at
    preview_chars: int = Field(default=200, ge=8, le=10_000)

    @model_validator(mode="after")
    def _days(self) -> AuditConfig:
        for kind, days in self.retention_days.items():
            if days < 1:
                raise PydanticCustomError(
                    "retention",
                    "retention_days.{kind} must be at least 1 (got {days})",
                    {"kind": kind, "days": days},
                )
        return self
