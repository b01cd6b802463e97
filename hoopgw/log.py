"""Structured logging: JSON lines on stderr, with secrets redacted before anything is written.

Use ``log.info("event_name", key=value, ...)`` or ``log.get_logger(__name__).info(...)``.
Values of keys named like password/token/secret/key/authorization, and anything that looks like a
JWT, are replaced by ``"[redacted]"`` in every record, including records from other libraries. Then
every string (message, field values, tracebacks) goes through the masking engine with all built-in
detectors (``hoopgw.masking.log_masker``): card numbers, SSNs, IBANs, emails, phone numbers, IPv4
addresses, AWS keys and ``password=...`` values become ``*****``.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

import orjson

from hoopgw.masking import log_masker

REDACTED = "[redacted]"
_SENSITIVE_PARTS = frozenset({"password", "passwd", "token", "secret", "key", "authorization", "apikey"})
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]*)?")
_SPLIT = re.compile(r"[^a-z0-9]+")
_FIELDS = "hoop_fields"
_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def is_sensitive_key(name: str) -> bool:
    """True for keys such as ``password``, ``api_key``, ``access_token``, ``Authorization``."""
    lowered = name.lower()
    parts = set(_SPLIT.split(lowered))
    return bool(parts & _SENSITIVE_PARTS) or any(p in lowered for p in ("password", "secret", "token"))


def redact(value: Any) -> Any:
    """A copy of ``value`` with sensitive keys and JWT-looking strings replaced, and strings masked."""
    if isinstance(value, str):
        if "eyJ" in value:
            value = _JWT.sub(REDACTED, value)
        return log_masker().mask_text(value)
    if isinstance(value, Mapping):
        return {
            k: REDACTED if isinstance(k, str) and is_sensitive_key(k) else redact(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(v) for v in value]
    if isinstance(value, bytes):
        return redact(value.decode("utf-8", "replace"))
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value))


class RedactFilter(logging.Filter):
    """Rewrites each record in place so no formatter or handler can see a secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        fields = getattr(record, _FIELDS, None)
        merged = dict(fields) if isinstance(fields, Mapping) else {}
        for name, value in list(record.__dict__.items()):
            if name not in _STANDARD_ATTRS and name != _FIELDS:
                merged.setdefault(name, value)  # stdlib ``extra=`` fields
                delattr(record, name)
        setattr(record, _FIELDS, redact(merged))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, event, then the fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        fields = getattr(record, _FIELDS, None)
        if isinstance(fields, Mapping):
            for k, v in fields.items():
                out.setdefault(str(k), v)
        if record.exc_text:
            out["exception"] = record.exc_text
        return orjson.dumps(out, default=str).decode()


class TextFormatter(logging.Formatter):
    """``HH:MM:SS level event key=value ...`` for people at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            time.strftime("%H:%M:%S", time.localtime(record.created)),
            record.levelname.lower(),
            record.getMessage(),
        ]
        fields = getattr(record, _FIELDS, None)
        if isinstance(fields, Mapping):
            parts.extend(f"{k}={v}" for k, v in fields.items())
        text = " ".join(parts)
        if record.exc_text:
            text += "\n" + record.exc_text
        return text


def setup_logging(level: str = "info", json: bool = True, stream: TextIO | None = None) -> None:
    """Send all logging to ``stream`` (stderr) as JSON lines (or text), redacted, at ``level``."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(RedactFilter())
    handler.setFormatter(JsonFormatter() if json else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_hoopgw", False):
            root.removeHandler(old)
    handler._hoopgw = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(_LEVELS.get(level.lower(), logging.INFO))
    # the HTTP client logs every request at INFO (issuer discovery, JWKS): only its problems matter here
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


class Logger:
    """A thin wrapper: ``logger.info("event", field=value)``."""

    __slots__ = ("_logger",)

    def __init__(self, name: str) -> None:
        self._logger = logging.getLogger(name)

    def _log(self, level: int, event: str, fields: dict[str, Any], exc_info: bool = False) -> None:
        if self._logger.isEnabledFor(level):
            self._logger.log(level, event, extra={_FIELDS: fields}, exc_info=exc_info, stacklevel=3)

    def debug(self, event: str, **fields: Any) -> None:
        """Log at debug level."""
        self._log(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        """Log at info level."""
        self._log(logging.INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        """Log at warning level."""
        self._log(logging.WARNING, event, fields)

    def error(self, event: str, **fields: Any) -> None:
        """Log at error level."""
        self._log(logging.ERROR, event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        """Log at error level with the current exception's traceback."""
        self._log(logging.ERROR, event, fields, exc_info=True)


def get_logger(name: str) -> Logger:
    """A structured logger for module ``name``."""
    return Logger(name)


_default = Logger("hoopgw")
debug = _default.debug
info = _default.info
warning = _default.warning
error = _default.error
exception = _default.exception
