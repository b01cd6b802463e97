"""``hoopgw access request|list``: just-in-time access grants, through the running gateway's control API."""

from __future__ import annotations

import argparse
import sys
import time
import urllib.parse
from typing import Any

from hoopgw.cli._common import (
    Subparsers,
    add_api_options,
    add_config_option,
    duration,
    format_time,
    load,
    print_json,
    printable,
    token_of,
)
from hoopgw.cli._keys import api_request
from hoopgw.config import Config

#: seconds of one long poll of ``/api/approvals/{id}/wait`` (below the client's 15 s read timeout)
WAIT_POLL_S = 10
#: how long past a request's expiry ``--wait`` still polls (the gateway closes it within a second)
_EXPIRY_GRACE_S = 5.0

#: where a caller gets the token these commands need
_WHERE_TOKENS = "e.g. from `hoopgw login`"


def register(subparsers: Subparsers) -> None:
    """Add ``access request`` and ``access list``."""
    parser = subparsers.add_parser(
        "access",
        help="just-in-time access grants",
        description=(
            "Just-in-time access: ask for a time-boxed grant of a jit policy (approved like a held "
            "statement), and list your running grants."
        ),
    )
    add_config_option(parser)
    sub = parser.add_subparsers(dest="access_command", metavar="COMMAND", required=True)

    request = sub.add_parser(
        "request",
        help="ask for access to a connection for a while",
        description=(
            "Ask for a grant of the jit policy that names you on a connection, for a while (at most the "
            "policy's max_grant). The policy's approvers decide it (`hoopgw approvals approve ID`); the "
            "grant runs from the approval, and new sessions opened meanwhile get the policy's access."
        ),
    )
    request.add_argument("--connection", "-C", required=True, help="the connection, e.g. bankdb")
    request.add_argument(
        "--for", dest="duration", required=True, type=_duration_text, help="how long, like 30m or 2h"
    )
    request.add_argument("--reason", "-r", required=True, help="why you need the access (shown to approvers)")
    request.add_argument("--policy", "-p", default=None, help="the jit policy, when several name you there")
    request.add_argument(
        "--wait",
        action="store_true",
        help="wait for the decision: exit 0 once approved, 1 when denied or expired",
    )
    add_api_options(
        request, json_help="print the request (a JSON array of one object; with --wait, as decided)"
    )
    request.set_defaults(func=run_request)

    lst = sub.add_parser(
        "list", help="list your running grants", description="List your running access grants."
    )
    add_api_options(lst, json_help="print one JSON array: per grant its id, connection, rule and until (ms)")
    lst.set_defaults(func=run_list)


def _duration_text(text: str) -> str:
    """argparse ``type=``: a valid duration, kept as written (the gateway's messages quote it)."""
    duration(text)
    return text.strip()


def _ms(value: int | None) -> str:
    return format_time(value / 1000) if value is not None else "-"


def _granted_until(request: dict[str, Any]) -> int | None:
    if request.get("status") != "approved" or request.get("closed_at") is None:
        return None
    return int(request["closed_at"]) + int(request["duration_ms"])


def run_request(args: argparse.Namespace) -> int:
    """Ask for a grant; print its id and how it is approved; with --wait, wait for the decision."""
    config = load(args)
    token = token_of(args, _WHERE_TOKENS)
    body: dict[str, Any] = {"connection": args.connection, "for": args.duration, "reason": args.reason}
    if args.policy is not None:
        body["policy"] = args.policy
    created: dict[str, Any] = api_request(config, token, "POST", "/api/access-requests", body)
    created.pop("record", None)
    rid = created["id"]
    if not args.json:
        needed = created["approvals_required"]
        print(
            printable(
                f'access request {rid} is pending: policy "{created["rule"]}" on {created["connection"]}'
                f" for {args.duration}\n"
                f"  approvers: {', '.join(created['approvers'])}"
                f" ({needed} approval{'s' if needed > 1 else ''} needed);"
                f" it expires at {_ms(created['expires_at'])} UTC\n"
                f"  an approver runs: hoopgw approvals approve {rid}"
            )
        )
        sys.stdout.flush()
    if not args.wait:
        if args.json:
            print_json([created])
        return 0
    final = _wait(config, token, created, quiet=args.json)
    final["granted_until"] = _granted_until(final)
    if args.json:
        print_json([final])
    status = final["status"]
    if status == "approved":
        if not args.json:
            print(
                printable(
                    f"approved: {final['close_reason']}; access to {final['connection']} until"
                    f" {_ms(final['granted_until'])} UTC (new sessions)",
                    newlines=False,
                )
            )
        return 0
    if not args.json:
        why = final.get("close_reason") or "no decision before it expired"
        print(printable(f"hoopgw: access request {rid} is {status}: {why}", newlines=False), file=sys.stderr)
    return 1


def _wait(config: Config, token: str, request: dict[str, Any], *, quiet: bool) -> dict[str, Any]:
    """Long-poll ``/api/approvals/{id}/wait`` until the request closes or its expiry is well past."""
    path = f"/api/approvals/{urllib.parse.quote(request['id'], safe='')}/wait?timeout={WAIT_POLL_S}"
    deadline = request["expires_at"] / 1000 + _EXPIRY_GRACE_S
    if not quiet:
        print("waiting for a decision (Ctrl-C stops waiting; the request stays open)", file=sys.stderr)
    current = request
    while current["status"] == "pending" and time.time() < deadline:
        current = api_request(config, token, "GET", path)
    return current


def run_list(args: argparse.Namespace) -> int:
    """Print the caller's running grants as a table or one JSON array."""
    config = load(args)
    grants: list[dict[str, Any]] = api_request(
        config, token_of(args, _WHERE_TOKENS), "GET", "/api/access-grants"
    )
    if args.json:
        print_json(grants)
        return 0
    if not grants:
        print("no running access grants")
        return 0
    rows = [("ID", "CONNECTION", "POLICY", "GRANTED (UTC)", "UNTIL (UTC)")]
    for g in grants:
        rows.append((g["id"], g["connection"], g["rule"], _ms(g["granted_at"]), _ms(g["until"])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        line = "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
        print(printable(line, newlines=False))
    return 0
