"""``hoopgw keys create|list|revoke``: API keys, managed through the running gateway's control API."""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import orjson

from hoopgw.cli._common import (
    TOKEN_ENV,
    CliError,
    Subparsers,
    add_api_options,
    add_config_option,
    duration,
    format_time,
    load,
    print_json,
    token_of,
)
from hoopgw.config import Config

TIMEOUT = 15.0
MAX_RESPONSE = 4 * 1024 * 1024

#: where a caller gets the token these commands need
_WHERE_TOKENS = "an admin's token, e.g. from `hoopgw token issue`"


def register(subparsers: Subparsers) -> None:
    """Add ``keys create``, ``keys list`` and ``keys revoke``."""
    parser = subparsers.add_parser(
        "keys",
        help="API keys for service accounts and AI agents",
        description="API keys for service accounts and AI agents (through the running gateway; admins only).",
    )
    add_config_option(parser)
    sub = parser.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)

    create = sub.add_parser(
        "create",
        help="create a key (prints only the key; it is shown once)",
        description="Create an API key. Prints only the key on stdout (details on stderr); it is shown once.",
    )
    create.add_argument(
        "--name", "-n", required=True, help="the key's name, e.g. ci-bot (its policy subject key:NAME)"
    )
    create.add_argument("--groups", "-g", default="", help="comma-separated groups, e.g. ai-agents,readers")
    create.add_argument(
        "--expires", type=duration, default=None, help="lifetime like 30d, 12h (default 90d, at most 366d)"
    )
    add_api_options(
        create, who="your token", json_help="print the new key and its details (a JSON array of one object)"
    )
    create.set_defaults(func=run_create)

    lst = sub.add_parser(
        "list", help="list keys (never their secrets)", description="List API keys, newest first."
    )
    add_api_options(
        lst, who="your token", json_help="print one JSON array of objects, each with an id and a status"
    )
    lst.set_defaults(func=run_list)

    revoke = sub.add_parser(
        "revoke",
        help="revoke a key now (its open sessions are ended)",
        description="Revoke an API key: new connections are refused and its open sessions are ended.",
    )
    revoke.add_argument("name", metavar="NAME", help="the key's name (or id)")
    add_api_options(revoke, who="your token", json_help="print the revoked key (a JSON array of one object)")
    revoke.set_defaults(func=run_revoke)


def api_base(config: Config) -> str:
    """``http://HOST:PORT`` of ``gateway.api_listen`` (wildcard addresses become loopback)."""
    listen = config.gateway.api_listen
    if listen is None:
        raise CliError(f"{config.path}: gateway.api_listen is not set, so there is no control API to talk to")
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(listen.host, listen.host)  # noqa: S104
    return f"http://[{host}]:{listen.port}" if ":" in host else f"http://{host}:{listen.port}"


def api_request(config: Config, token: str, method: str, path: str, body: Any = None) -> Any:
    """Call the gateway's API; the decoded JSON answer, or CliError with a message for a person."""
    base = api_base(config)
    data = orjson.dumps(body) if body is not None else None
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(base + path, data=data, method=method, headers=headers)  # noqa: S310
    # straight to the gateway: a proxy from the environment must never see the bearer token or a new key
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=TIMEOUT) as response:
            payload = response.read(MAX_RESPONSE + 1)
    except urllib.error.HTTPError as exc:
        raise _http_error(exc, base) from None
    except urllib.error.URLError as exc:
        reason = getattr(exc.reason, "strerror", None) or str(exc.reason)
        raise CliError(
            f"cannot reach the gateway API at {base}: {reason} (is `hoopgw serve` running?)"
        ) from None
    except TimeoutError:
        raise CliError(f"the gateway API at {base} did not answer within {TIMEOUT:.0f} s") from None
    except OSError as exc:
        raise CliError(f"cannot talk to the gateway API at {base}: {exc.strerror or exc}") from None
    if len(payload) > MAX_RESPONSE:
        raise CliError(f"the gateway API at {base} sent an answer larger than {MAX_RESPONSE} bytes")
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise CliError(f"the gateway API at {base} sent an answer that is not JSON") from None


def _http_error(exc: urllib.error.HTTPError, base: str) -> CliError:
    try:
        message = orjson.loads(exc.read(64 * 1024)).get("error")
    except (orjson.JSONDecodeError, AttributeError, OSError):
        message = None
    finally:
        exc.close()
    if exc.code == 401:
        return CliError(
            f"the gateway refused the token (401): pass a valid admin token with --token or ${TOKEN_ENV}"
        )
    if exc.code == 403:
        return CliError(f"not allowed (403): {message or 'your token is not an admin of this gateway'}")
    if exc.code == 404 and not message:
        return CliError(f"the gateway at {base} has no key API (404): is it a hoopgw of this version?")
    return CliError(f"{message or exc.reason} ({exc.code})")


def run_create(args: argparse.Namespace) -> int:
    """Create a key; print it alone on stdout (or the JSON object with --json)."""
    config = load(args)
    token = token_of(args, _WHERE_TOKENS)
    groups = [g.strip() for g in str(args.groups).split(",") if g.strip()]
    body = {"name": args.name, "groups": groups, "expires": args.expires}
    created = api_request(config, token, "POST", "/api/keys", body)
    if args.json:
        print_json([created])
        return 0
    sys.stdout.write(f"{created['key']}\n")
    sys.stdout.flush()
    print(
        f"created API key {created['name']!r} (id {created['id']},"
        f" groups {', '.join(created['groups']) or '-'}, expires {format_time(created['expires_at'])} UTC);"
        " it is shown only this once",
        file=sys.stderr,
    )
    return 0


def run_list(args: argparse.Namespace) -> int:
    """Print keys as a table or one JSON array."""
    config = load(args)
    keys: list[dict[str, Any]] = api_request(config, token_of(args, _WHERE_TOKENS), "GET", "/api/keys")
    if args.json:
        print_json(keys)
        return 0
    if not keys:
        print("no API keys")
        return 0
    rows = [("ID", "NAME", "STATUS", "GROUPS", "CREATED (UTC)", "EXPIRES (UTC)", "CREATED BY")]
    for k in keys:
        rows.append(
            (
                k["id"],
                k["name"],
                k["status"],
                ",".join(k["groups"]) or "-",
                format_time(k["created_at"]),
                format_time(k["expires_at"]),
                k["created_by"],
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    """Revoke one key by name (or id)."""
    config = load(args)
    token = token_of(args, _WHERE_TOKENS)
    revoked = api_request(config, token, "DELETE", "/api/keys/" + urllib.parse.quote(args.name, safe=""))
    if args.json:
        print_json([revoked])
        return 0
    print(f"revoked API key {revoked['name']!r} (id {revoked['id']})")
    return 0
