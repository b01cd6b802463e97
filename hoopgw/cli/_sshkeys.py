"""``hoopgw ssh-keys add|list|remove``: SSH public keys registered to people, through the gateway's API."""

from __future__ import annotations

import argparse
import sys
import urllib.parse
from pathlib import Path
from typing import Any

from hoopgw.cli._common import (
    CliError,
    Subparsers,
    add_api_options,
    add_config_option,
    format_time,
    load,
    print_json,
    printable,
    token_of,
)
from hoopgw.cli._keys import api_request

#: where a caller gets the token these commands need
_WHERE_TOKENS = "an admin's token, e.g. from `hoopgw token issue` or `hoopgw login --print-token`"
#: read no more of a key file than this (an RSA-16384 public key is about 2.8 KB)
MAX_KEY_FILE = 16 * 1024


def register(subparsers: Subparsers) -> None:
    """Add ``ssh-keys add``, ``ssh-keys list`` and ``ssh-keys remove``."""
    parser = subparsers.add_parser(
        "ssh-keys",
        help="SSH public keys that log people in to the gateway's SSH connections",
        description="SSH public keys registered to people: the key logs its owner in to the gateway's SSH "
        "connections as that person (through the running gateway; admins only).",
    )
    add_config_option(parser)
    sub = parser.add_subparsers(dest="ssh_keys_command", metavar="COMMAND", required=True)

    add = sub.add_parser(
        "add",
        help="register a public key for a person",
        description="Register an OpenSSH public key (a .pub file) for a person. Never give the private key.",
    )
    add.add_argument(
        "file", metavar="FILE", help="the public key file, e.g. id_ed25519.pub ('-' reads stdin)"
    )
    add.add_argument("--subject", "-s", required=True, help="the person the key logs in as, e.g. alice")
    add.add_argument("--groups", "-g", default="", help="comma-separated groups, e.g. dev,ops")
    add_api_options(add, who="your token", json_help="print the registered key (a JSON array of one object)")
    add.set_defaults(func=run_add)

    lst = sub.add_parser(
        "list", help="list registered keys", description="List registered SSH keys, newest first."
    )
    add_api_options(
        lst, who="your token", json_help="print one JSON array of objects, each with an id and a status"
    )
    lst.set_defaults(func=run_list)

    remove = sub.add_parser(
        "remove",
        help="remove a key now (logins with it are refused)",
        description="Remove a registered SSH key: new logins with it are refused at once.",
    )
    remove.add_argument("id", metavar="ID", help="the key's fingerprint, SHA256:... (as `list` shows it)")
    add_api_options(remove, who="your token", json_help="print the removed key (a JSON array of one object)")
    remove.set_defaults(func=run_remove)


def read_key_file(name: str) -> str:
    """The text of a public key file (``-``: stdin); CliError for a private key, which is never sent."""
    try:
        if name == "-":
            text = sys.stdin.read(MAX_KEY_FILE + 1)
        else:
            with Path(name).open(encoding="utf-8", errors="replace") as f:
                text = f.read(MAX_KEY_FILE + 1)
    except OSError as exc:
        raise CliError(f"cannot read {name}: {exc.strerror or exc}") from None
    if len(text) > MAX_KEY_FILE:
        raise CliError(f"{name} is larger than {MAX_KEY_FILE} bytes: not an SSH public key file")
    if "PRIVATE KEY" in text or "PuTTY-User-Key-File" in text:
        raise CliError(
            f"{name} is a PRIVATE key: it was not sent; give its public half (the .pub file) instead"
        )
    return text


def run_add(args: argparse.Namespace) -> int:
    """Register one key; print its fingerprint and owner (or the JSON object with --json)."""
    config = load(args)
    token = token_of(args, _WHERE_TOKENS)
    text = read_key_file(args.file)
    groups = [g.strip() for g in str(args.groups).split(",") if g.strip()]
    body = {"subject": args.subject, "groups": groups, "public_key": text}
    added = api_request(config, token, "POST", "/api/ssh-keys", body)
    if args.json:
        print_json([added])
        return 0
    print(
        f"registered {added['id']} ({added['algorithm']}) for {printable(added['subject'], newlines=False)}"
        f" (groups {', '.join(added['groups']) or '-'})"
    )
    return 0


def run_list(args: argparse.Namespace) -> int:
    """Print keys as a table or one JSON array."""
    config = load(args)
    keys: list[dict[str, Any]] = api_request(config, token_of(args, _WHERE_TOKENS), "GET", "/api/ssh-keys")
    if args.json:
        print_json(keys)
        return 0
    if not keys:
        print("no SSH keys")
        return 0
    rows = [("ID", "SUBJECT", "STATUS", "GROUPS", "TYPE", "COMMENT", "ADDED (UTC)", "ADDED BY")]
    for k in keys:
        rows.append(
            (
                k["id"],
                printable(k["subject"], newlines=False),
                k["status"],
                ",".join(k["groups"]) or "-",
                k["algorithm"],
                printable(k["comment"], newlines=False) or "-",
                format_time(k["created_at"]),
                printable(k["added_by"], newlines=False),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    return 0


def run_remove(args: argparse.Namespace) -> int:
    """Remove one key by fingerprint."""
    config = load(args)
    token = token_of(args, _WHERE_TOKENS)
    path = "/api/ssh-keys/" + urllib.parse.quote(args.id, safe="")
    removed = api_request(config, token, "DELETE", path)
    if args.json:
        print_json([removed])
        return 0
    print(f"removed {removed['id']} of {printable(removed['subject'], newlines=False)}")
    return 0
