"""Loading a config file: TOML -> validated ``Config``, or every problem as (file, key, reason)."""

from __future__ import annotations

import contextlib
import os
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from hoopgw.config._listen import Listen
from hoopgw.config._masking import (
    MIN_MASKING_KEY_BYTES,
    PATTERN_TAGS,
    masking_cross_checks,
    masking_key_too_short,
)
from hoopgw.config._models import CONNECTION_TYPES, Config
from hoopgw.config._secrets import SecretRef
from hoopgw.errors import ConfigError, SecretError

Problem = tuple[str, str, str]

_TOML_POS = re.compile(
    r"^(?P<reason>.*?) \(at (?:line (?P<line>\d+), column (?P<col>\d+)|end of document)\)$"
)
_TYPES = ", ".join(CONNECTION_TYPES)
_SIMPLE_REASONS = {
    "missing": "required key is missing",
    "extra_forbidden": "unknown key",
    "tuple_type": "must be a list",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
    "dict_type": "must be a table",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "bool_type": "must be true or false",
    "float_type": "must be a number",
    "model_attributes": "must be a table",
}


def default_config_path() -> Path:
    """``$HOOPGW_CONFIG`` when set, else ``./hoopgw.toml``."""
    env = os.environ.get("HOOPGW_CONFIG")
    return Path(env) if env else Path("hoopgw.toml")


def load_config(path: str | os.PathLike[str], *, allow_unsupported: bool = False) -> Config:
    """Read and validate the TOML config at ``path``.

    Raises ConfigError listing every problem found. Unless ``allow_unsupported``, blocks for
    capabilities that are not built yet are problems too (see ``unsupported_features``).
    """
    config, problems, unsupported = check_config(path)
    if not allow_unsupported:
        problems = problems + unsupported
    if problems or config is None:
        raise ConfigError(problems)
    return config


def check_config(path: str | os.PathLike[str]) -> tuple[Config | None, list[Problem], list[Problem]]:
    """Validate without raising for the schema: ``(config or None, problems, unsupported features)``.

    An unreadable file or a TOML syntax error still raises ConfigError (nothing else can be checked).
    """
    file = Path(path)
    name = str(file)
    data = _read_toml(file)
    base = file.absolute().parent
    problems: list[Problem] = []
    if "path" in data:
        problems.append((name, "path", "unknown key"))
        del data["path"]
    config: Config | None = None
    candidate = dict(data)
    connections = data.get("connections")
    if isinstance(connections, tuple):
        # A block without ``type`` is reported once, then checked as postgres so its other problems show.
        fixed = []
        for i, conn in enumerate(connections):
            if isinstance(conn, dict) and "type" not in conn:
                problems.append(
                    (name, f"connections[{i}].type", f"required key is missing (one of {_TYPES})")
                )
                conn = {**conn, "type": "postgres"}
            fixed.append(conn)
        candidate["connections"] = tuple(fixed)
    try:
        config = Config.model_validate({**candidate, "path": file.absolute()}, context={"base_dir": base})
    except ValidationError as exc:
        problems.extend((name, key, reason) for key, reason in _pydantic_problems(exc))
    problems.extend((name, key, reason) for key, reason in _cross_checks(data))
    unsupported = [(name, key, reason) for key, reason in _unsupported_raw(data)]
    if problems:
        config = None
    return config, _dedup(problems), unsupported


def unsupported_features(config: Config) -> list[Problem]:
    """Blocks naming capabilities that are not built yet: the gateway must refuse to start with them."""
    raw = {
        "identity": {"issuer": config.identity.issuer},
        "connections": tuple({"type": c.type} for c in config.connections),
        "policy": config.policies,
    }
    return [(str(config.path), key, reason) for key, reason in _unsupported_raw(raw)]


def secret_problems(config: Config) -> list[Problem]:
    """Secret references that cannot be resolved now (unset variable, missing or unreadable file).

    A ``gateway.masking_key`` shorter than 16 bytes is a problem too.
    """
    problems: list[Problem] = []
    for key, ref in _secrets(config, ""):
        try:
            value = ref.resolve()
        except SecretError as exc:
            problems.append((str(config.path), key, str(exc)))
            continue
        if key == "gateway.masking_key" and len(value.encode()) < MIN_MASKING_KEY_BYTES:
            problems.append((str(config.path), key, masking_key_too_short(ref, len(value.encode()))))
    return problems


def _secrets(value: object, key: str) -> Iterator[tuple[str, SecretRef]]:
    if isinstance(value, SecretRef):
        yield key, value
    elif isinstance(value, BaseModel):
        for field, info in type(value).model_fields.items():
            sub = f"{key}.{info.alias or field}" if key else (info.alias or field)
            yield from _secrets(getattr(value, field), sub)
    elif isinstance(value, tuple):
        for i, item in enumerate(value):
            yield from _secrets(item, f"{key}[{i}]")


def _read_toml(file: Path) -> dict[str, Any]:
    name = str(file)
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError([(name, "", "config file not found")]) from None
    except IsADirectoryError:
        raise ConfigError([(name, "", "is a directory, not a config file")]) from None
    except PermissionError:
        raise ConfigError([(name, "", "config file is not readable (permission denied)")]) from None
    except OSError as exc:
        raise ConfigError([(name, "", f"cannot read config file ({exc.strerror})")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([(name, "", f"not UTF-8 text (byte {exc.start})")]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = _TOML_POS.match(str(exc))
        reason = match.group("reason") if match else str(exc)
        reason = "TOML syntax error: " + reason[:1].lower() + reason[1:]
        if match and match.group("line"):
            where = f"line {match.group('line')}, column {match.group('col')}"
        else:
            where = "end of file"
        raise ConfigError([(name, where, reason)]) from None
    return _tuples(data)  # type: ignore[no-any-return]


def _tuples(value: Any) -> Any:
    """Lists become tuples (the models hold tuples; strict mode would refuse lists)."""
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def _key(loc: tuple[int | str, ...]) -> str:
    out = ""
    skip_tag = False
    for part in loc:
        if part in PATTERN_TAGS:
            continue
        if isinstance(part, int):
            out += f"[{part}]"
            skip_tag = out.startswith("connections") and out.count("[") == 1 and out.endswith("]")
            continue
        if skip_tag and part in CONNECTION_TYPES:
            skip_tag = False
            continue
        skip_tag = False
        out = f"{out}.{part}" if out else part
    return out


def _reason(err: ErrorDetails) -> str:
    kind = err["type"]
    ctx: dict[str, Any] = dict(err.get("ctx") or {})
    if kind in _SIMPLE_REASONS:
        return _SIMPLE_REASONS[kind]
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected', '')}".replace("'", '"')
    if kind in ("greater_than_equal", "greater_than"):
        return f"must be at least {ctx.get('ge', ctx.get('gt'))}"
    if kind in ("less_than_equal", "less_than"):
        return f"must be at most {ctx.get('le', ctx.get('lt'))}"
    if kind in ("too_short", "string_too_short"):
        return "must not be empty"
    msg = err["msg"]
    return msg.removeprefix("Value error, ")


def _pydantic_problems(exc: ValidationError) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for err in exc.errors(include_url=False, include_input=False):
        key = _key(err["loc"])
        if err["type"] == "union_tag_invalid":
            out.append((f"{key}.type", f"must be one of {_TYPES}"))
        elif err["type"] == "union_tag_not_found":
            out.append((f"{key}.type", f"required key is missing (one of {_TYPES})"))
        else:
            out.append((key, _reason(err)))
    # A list whose items failed is not also "empty".
    failed_items = {key.rpartition("[")[0] for key, _ in out if key.endswith("]")}
    return [(k, r) for k, r in out if not (r == "must not be empty" and k in failed_items)]


def _items(data: dict[str, Any], section: str) -> list[tuple[int, dict[str, Any]]]:
    value = data.get(section)
    if not isinstance(value, tuple):
        return []
    return [(i, item) for i, item in enumerate(value) if isinstance(item, dict)]


def _cross_checks(data: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Checks across blocks, on the raw data so they run even when some block is invalid."""
    names: dict[str, int] = {}
    # (address, where, shareable): ssh connections may share one address (the user name picks the target)
    listens: list[tuple[Listen, str, bool]] = []
    gateway = data.get("gateway")
    if isinstance(gateway, dict) and isinstance(gateway.get("api_listen"), str):
        with contextlib.suppress(ValueError):
            listens.append((Listen.parse(gateway["api_listen"]), "gateway.api_listen", False))
    for i, conn in _items(data, "connections"):
        name = conn.get("name")
        if isinstance(name, str):
            if name in names:
                yield (
                    f"connections[{i}].name",
                    f'duplicate connection name "{name}" (also connections[{names[name]}])',
                )
            else:
                names[name] = i
        if isinstance(conn.get("listen"), str):
            try:
                listen = Listen.parse(conn["listen"])
            except ValueError:
                continue
            ssh = conn.get("type") == "ssh"
            for other, where, shareable in listens:
                if ssh and shareable and listen == other:
                    continue
                if listen.conflicts_with(other):
                    reason = f"address {listen} is already used by {where}"
                    if ssh and shareable:
                        reason += " (ssh connections share a port only with the very same listen address)"
                    yield f"connections[{i}].listen", reason
                    break
            else:
                where = f"connections[{i}]" + (f' ("{name}")' if isinstance(name, str) else "")
                listens.append((listen, where, ssh))
    policy_names: dict[str, int] = {}
    for section in ("masking", "policy"):
        for i, block in _items(data, section):
            conns = block.get("connections")
            if isinstance(conns, tuple):
                for k, conn_name in enumerate(conns):
                    if isinstance(conn_name, str) and conn_name != "*" and conn_name not in names:
                        yield f"{section}[{i}].connections[{k}]", f'no connection is named "{conn_name}"'
            name = block.get("name")
            if section == "policy" and isinstance(name, str):
                if name in policy_names:
                    yield (
                        f"policy[{i}].name",
                        f'duplicate policy name "{name}" (also policy[{policy_names[name]}])',
                    )
                else:
                    policy_names[name] = i
    masking = data.get("masking")
    if isinstance(masking, tuple):
        yield from masking_cross_checks(masking, list(names))


def _unsupported_raw(data: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for i, conn in _items(data, "connections"):
        kind = conn.get("type")
        if isinstance(kind, str) and kind in CONNECTION_TYPES and kind not in ("postgres", "ssh"):
            yield f"connections[{i}].type", f"{kind} connections are not supported yet"


def _dedup(problems: list[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))
