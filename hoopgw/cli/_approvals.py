"""``hoopgw approvals list|show|approve|deny|wait|verify``: held commands and their signed records.

Every command but ``verify FILE`` talks to the running gateway's control API (``gateway.api_listen``)
with the caller's token (``--token`` or ``$HOOPGW_TOKEN``); ``verify`` checks signed records offline, read
from a file, or by request id from the store in ``data_dir`` (else from the API).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from hoopgw.approvals import (
    DECISION,
    GRANT,
    REQUEST,
    STATUSES,
    ApprovalStore,
    RecordError,
    check_binding,
    key_id,
    load_public_key,
    load_records,
    load_signing_key,
    verify_record,
)
from hoopgw.audit._db import Store
from hoopgw.cli._common import (
    TOKEN_ENV,
    CliError,
    Subparsers,
    add_api_options,
    add_config_option,
    duration,
    format_seconds,
    format_time,
    load,
    new_parser,
    positive_int,
    print_json,
    printable,
    token_of,
)
from hoopgw.cli._keys import api_base, api_request
from hoopgw.config import Config
from hoopgw.errors import StoreError

_REQUEST_TYPES = (REQUEST, GRANT)
#: seconds of one long poll of ``/api/approvals/{id}/wait`` (below the API client's 15 s read timeout)
WAIT_POLL_S = 10.0
DEFAULT_WAIT_S = 300.0
#: ``approvals wait`` exits with this when the request is still pending at the timeout
EXIT_PENDING = 3
_STATEMENT_WIDTH = 60

#: where a caller gets the token these commands need
_WHERE_TOKENS = "e.g. from `hoopgw login` or `hoopgw token issue`"


def register(subparsers: Subparsers) -> None:
    """Add ``approvals`` and its subcommands."""
    parser = new_parser(subparsers, "approvals", "held commands waiting for a human decision")
    sub = parser.add_subparsers(dest="approvals_command", metavar="COMMAND", required=True)
    _add_list(sub)
    _add_show(sub)
    _add_decide(sub)
    _add_wait(sub)
    _add_verify(sub)


def _add_list(sub: Subparsers) -> None:
    lst = sub.add_parser(
        "list",
        help="list approval requests you may see",
        description=(
            "List approval requests, newest first: admins and auditors see all, anyone else the "
            "requests they made and those they may decide."
        ),
    )
    lst.add_argument("--status", "-s", choices=STATUSES, default=None, help="only requests with this status")
    lst.add_argument("--limit", "-n", type=positive_int, default=None, help="at most this many (default 100)")
    add_api_options(lst, json_help="print one JSON array of objects, each with an id and a status")
    lst.set_defaults(func=run_list)


def _add_show(sub: Subparsers) -> None:
    show = sub.add_parser(
        "show",
        help="show one request and its decisions",
        description="Show one approval request: the statement, who asked, who decides, the decisions so far.",
    )
    show.add_argument("id", metavar="ID", help="the request id")
    add_api_options(
        show, json_help="print the request (a JSON array of one object, with decisions and records)"
    )
    show.set_defaults(func=run_show)


def _add_decide(sub: Subparsers) -> None:
    approve = sub.add_parser(
        "approve",
        help="approve a request",
        description=(
            "Approve a request you are an approver of (never your own). It is released once enough "
            "approvers approved; your decision is a signed record."
        ),
    )
    approve.add_argument("id", metavar="ID", help="the request id")
    approve.add_argument("--reason", "-r", default=None, help="why (optional; kept in the signed decision)")
    add_api_options(approve, json_help="print the result (a JSON array of one object: id, status, decision)")
    approve.set_defaults(func=run_decide, decision="approve")

    deny = sub.add_parser(
        "deny",
        help="deny a request (with a reason)",
        description=(
            "Deny a request you are an approver of: it is closed at once; the reason is shown to the "
            "requester and kept in the signed decision."
        ),
    )
    deny.add_argument("id", metavar="ID", help="the request id")
    deny.add_argument("--reason", "-r", required=True, help="why (required; kept in the signed decision)")
    add_api_options(deny, json_help="print the result (a JSON array of one object: id, status, decision)")
    deny.set_defaults(func=run_decide, decision="deny")


def _add_wait(sub: Subparsers) -> None:
    wait = sub.add_parser(
        "wait",
        help="wait until a request is decided",
        description=(
            "Wait until a request closes. Exit 0 when approved, 1 when denied, expired or void, "
            f"{EXIT_PENDING} when it is still pending at the timeout."
        ),
    )
    wait.add_argument("id", metavar="ID", help="the request id")
    wait.add_argument(
        "--timeout",
        type=duration,
        default=DEFAULT_WAIT_S,
        help="how long to wait, like 90s or 10m (default 5m)",
    )
    add_api_options(wait, json_help="print the request as it is at the end (a JSON array of one object)")
    wait.set_defaults(func=run_wait)


def _add_verify(sub: Subparsers) -> None:
    verify = sub.add_parser(
        "verify",
        help="verify signed approval records (a file, or a request by id)",
        description=(
            "Verify signed approval records with the gateway's public key, from data_dir (-c) or "
            "--public-key: a JSON file of records (a request and its decisions; - for standard input), or "
            "the records of request ID, read from the store in data_dir when it is readable, else from "
            "the gateway API (--token). Decisions are also checked against their request. Exit 0 when "
            "every record verifies, 1 otherwise."
        ),
    )
    add_config_option(verify)
    verify.add_argument(
        "file", metavar="ID|FILE", help="a request id, or a JSON file of records (- for standard input)"
    )
    verify.add_argument(
        "--public-key",
        metavar="PEMFILE",
        type=Path,
        default=None,
        help="the public key (PEM, e.g. saved from `hoopgw signing-key`, or base64url) instead of data_dir's",
    )
    verify.add_argument(
        "--token",
        "-t",
        default=None,
        help=f"your token, to fetch a request's records from the API (default: ${TOKEN_ENV})",
    )
    verify.add_argument(
        "--json", action="store_true", help="print one JSON array: per record its id, type and status"
    )
    verify.set_defaults(func=run_verify)


# --- talking to the API -----------------------------------------------------------------------------------


def _path(request_id: str, *rest: str) -> str:
    return "/".join(["/api/approvals", urllib.parse.quote(request_id, safe=""), *rest])


def _ms(value: int | None) -> str:
    return format_time(value / 1000) if value is not None else "-"


def _line(value: object) -> str:
    """One field of a request as one terminal-safe line (others wrote it: see ``printable``)."""
    return printable(value, newlines=False)


def _one_line(text: str, width: int = _STATEMENT_WIDTH) -> str:
    flat = _line(" ".join(text.split()))
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def _what(a: dict[str, Any]) -> str:
    """The statement, or for an access request what is asked and why."""
    if a.get("statement") is not None:
        return str(a["statement"])
    if a.get("type") == GRANT:
        return f"access for {format_seconds(a['duration_ms'] / 1000)}: {a.get('reason') or '-'}"
    return "-"


def _progress(a: dict[str, Any]) -> str:
    return f"{a['approvals']}/{a['approvals_required']}"


def _expiry(a: dict[str, Any]) -> str:
    at = _ms(a["expires_at"]) + " UTC"
    if a["status"] != "pending":
        return at
    left = a["expires_at"] / 1000 - time.time()
    return f"{at} (in {format_seconds(left)})" if left > 0 else f"{at} (due now)"


def _params(values: list[str | None] | None) -> str:
    if not values:
        return "-"
    return ", ".join(f"${i}=" + ("NULL" if v is None else repr(v)) for i, v in enumerate(values, 1))


def run_list(args: argparse.Namespace) -> int:
    """Print the requests the caller may see as a table or one JSON array."""
    config = load(args)
    query = {k: v for k, v in (("status", args.status), ("limit", args.limit)) if v is not None}
    path = "/api/approvals" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    found: list[dict[str, Any]] = api_request(config, token_of(args, _WHERE_TOKENS), "GET", path)
    if args.json:
        print_json(found)
        return 0
    if not found:
        print("no approval requests" + (f" with status {args.status}" if args.status else ""))
        return 0
    rows = [("ID", "STATUS", "CONNECTION", "REQUESTER", "APPROVALS", "APPROVERS", "EXPIRES (UTC)", "WHAT")]
    for a in found:
        rows.append(
            (
                _line(a["id"]),
                _line(a["status"]),
                _line(a["connection"]),
                _line(a["requester"]),
                _progress(a),
                _line(",".join(a["approvers"])),
                _ms(a["expires_at"]),
                _one_line(_what(a)),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print(_line("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()))
    return 0


def _print_request(a: dict[str, Any]) -> None:
    kind = "access request" if a["type"] == GRANT else "approval request"
    lines = [
        f"{kind} {_line(a['id'])}: {_line(a['status'])}",
        f"  connection:  {_line(a['connection'])}",
        f"  requester:   {_line(a['requester'])}",
        f"  rule:        {_line(a['rule'])}",
    ]
    if a["type"] == GRANT:
        lines.append(f"  access for:  {format_seconds(a['duration_ms'] / 1000)}")
        lines.append(f"  reason:      {_line(a.get('reason') or '-')}")
    else:
        # split on newlines only: a carriage return or another line break of Unicode is shown escaped
        statement = [_line(line) for line in str(a.get("statement") or "-").split("\n")]
        lines.append(f"  statement:   {statement[0]}")
        lines += [f"               {line}" for line in statement[1:]]
        lines.append(f"  parameters:  {_line(_params(a.get('params_masked')))}")
        more = a.get("more_params_masked") or []
        if more:
            lines.append(f"  runs:        {len(more) + 1} times in one batch; the other parameters:")
            lines += [f"               {_line(_params(p))}" for p in more]
        if a.get("prompt_id"):
            lines.append(f"  prompt:      {_line(a['prompt_id'])}")
    every = " (one of each)" if a.get("one_of_each_group") else ""
    lines += [
        f"  approvers:   {_line(', '.join(a['approvers']))}{every}",
        f"  approvals:   {_progress(a)}",
        f"  created:     {_ms(a['created_at'])} UTC",
        f"  expires:     {_expiry(a)}",
    ]
    if a.get("closed_at") is not None:
        why = f" ({_line(a['close_reason'])})" if a.get("close_reason") else ""
        lines.append(f"  closed:      {_ms(a['closed_at'])} UTC{why}")
    decisions = a.get("decisions") or []
    if decisions:
        lines.append("decisions:")
        for d in decisions:
            reason = f": {_line(d['reason'])}" if d.get("reason") else ""
            lines.append(
                f"  {_ms(d['decided_at'])} UTC  {_line(d['approver'])} {_line(d['decision'])}s{reason}"
            )
    print(printable("\n".join(lines)))


def run_show(args: argparse.Namespace) -> int:
    """Print one request as a block, or a JSON array of one object."""
    config = load(args)
    found: dict[str, Any] = api_request(config, token_of(args, _WHERE_TOKENS), "GET", _path(args.id))
    if args.json:
        print_json([found])
        return 0
    _print_request(found)
    return 0


def run_decide(args: argparse.Namespace) -> int:
    """Approve or deny one request; print what it did and the request's status now."""
    config = load(args)
    token = token_of(args, _WHERE_TOKENS)
    body = {"reason": args.reason} if args.reason is not None else {}
    result: dict[str, Any] = api_request(config, token, "POST", _path(args.id, args.decision), body)
    if args.json:
        print_json([result])
        return 0
    verb = "approved" if args.decision == "approve" else "denied"
    status = result["status"]
    then = {
        "approved": "it is approved and released",
        "denied": "it is denied",
        "pending": "it waits for more approvals",
    }.get(status, f"it is {status}")
    print(_line(f"{verb} request {result['id']}; {then}"))
    return 0


def run_wait(args: argparse.Namespace) -> int:
    """Long-poll until the request closes or ``--timeout`` passes; exit by how it ended."""
    config = load(args)
    token = token_of(args, _WHERE_TOKENS)
    deadline = time.monotonic() + args.timeout
    current: dict[str, Any] = api_request(config, token, "GET", _path(args.id))
    while current["status"] == "pending" and (left := deadline - time.monotonic()) > 0:
        poll = min(left, WAIT_POLL_S)
        current = api_request(config, token, "GET", _path(args.id, "wait") + f"?timeout={poll:.3f}")
    current.pop("records", None)
    if args.json:
        print_json([current])
    status = current["status"]
    if status == "pending":
        if not args.json:
            progress = _progress(current)
            print(_line(f"request {current['id']} is still pending ({progress} approvals)"), file=sys.stderr)
        return EXIT_PENDING
    if not args.json:
        why = f": {current['close_reason']}" if current.get("close_reason") else ""
        print(_line(f"request {current['id']} is {status}{why}"))
    return 0 if status == "approved" else 1


@dataclass
class _Result:
    index: int
    record: dict[str, Any]
    error: RecordError | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def id(self) -> str | None:
        value = self.record.get("id")
        return value if isinstance(value, str) else None

    @property
    def type(self) -> str | None:
        value = self.record.get("type")
        return value if isinstance(value, str) else None


def run_verify(args: argparse.Namespace) -> int:
    """Verify every record of FILE, or of request ID; print OK or the reason per record."""
    request_id: str | None = None
    if _names_a_file(args.file):
        public_key = _public_key(args)
        name = "standard input" if args.file == "-" else args.file
        try:
            data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
        except OSError as exc:
            raise CliError(f"cannot read {name}: {exc.strerror or exc}") from None
    else:
        config = load(args)
        public_key = _public_key(args, config)
        request_id = args.file
        name = f"request {request_id}"
        fetched, source = _records_of(args, config, request_id)
        print(
            _line(f"hoopgw: verifying the {len(fetched)} record(s) of {name} from {source}"), file=sys.stderr
        )
        data = orjson.dumps(fetched)  # then read as strictly as a file
    try:
        records = load_records(data)
    except RecordError as exc:
        raise CliError(f"{name}: {exc}") from None
    results = verify_all(public_key, records)
    missing = _only_of(results, request_id) if request_id is not None else None
    if args.json:
        print_json([_as_json(r, public_key) for r in results])
    else:
        for r in results:
            label = " ".join(filter(None, [r.type or "record", r.id]))
            if len(results) > 1:
                label = f"record {r.index + 1} ({label})"
            if r.error is None:
                print(_line(f"OK: {label}{_summary(r.record)}" + "".join(f"; {n}" for n in r.notes)))
            else:
                print(_line(f"hoopgw: {name}: {label}: {r.error}"), file=sys.stderr)
    if missing is not None:
        print(_line(f"hoopgw: {name}: {missing}"), file=sys.stderr)
        return 1
    return 1 if any(r.error is not None for r in results) else 0


def _only_of(results: list[_Result], request_id: str) -> str | None:
    """``verify ID``: every record must be request ``ID`` or a decision on it (whoever sent them — an API
    may lie). Marks the others unbound; returns why it fails when request ``ID`` itself is missing."""
    found = False
    for r in results:
        if r.type in _REQUEST_TYPES:
            if r.id == request_id:
                found = True
            elif r.error is None:
                r.error = RecordError(
                    f"request {r.id} is not request {request_id}", code="unbound", field="id"
                )
        elif r.type == DECISION and r.error is None and r.record.get("request_id") != request_id:
            r.error = RecordError(
                f"a decision on request {r.record.get('request_id')}, not on {request_id}",
                code="unbound",
                field="request_id",
            )
    if found:
        return None
    return f"the records sent hold no request record {request_id}: nothing about it was verified"


def _names_a_file(arg: str) -> bool:
    """``-``, an existing path, or anything shaped like a path (request ids have no ``/`` nor ``.``)."""
    return arg == "-" or Path(arg).exists() or any(c in arg for c in ("/", os.sep, "."))


def _records_of(args: argparse.Namespace, config: Config, request_id: str) -> tuple[list[Any], str]:
    """The signed records of a request, and where they came from: the configured store (data_dir's
    SQLite file, or the PostgreSQL store), else the API."""
    where = Store.for_config(config)
    store = ApprovalStore(where)
    why = f"the store {where.label} cannot be read"
    try:
        readable = where.source is not None or (store.path.is_file() and os.access(store.path, os.R_OK))
        if readable:
            found = store.get(request_id)
            if found is not None:
                return [found.record, *(d.record for d in found.decisions)], f"the store {where.label}"
            why = f"the store {where.label} has no request {request_id}"
        else:
            why = f"there is no readable store in {config.gateway.data_dir}"
    except StoreError:
        pass
    finally:
        store.close()
    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV)
    if not token or not token.strip():
        raise CliError(f"{why}; to ask the gateway API instead, pass --token or set {TOKEN_ENV}")
    records = api_request(config, token.strip(), "GET", _path(request_id, "records"))
    if not isinstance(records, list):
        raise CliError(f"the gateway API at {api_base(config)} did not answer with a list of records")
    return records, f"the gateway API at {api_base(config)} ({why})"


def verify_all(public_key: Ed25519PublicKey, records: list[dict[str, Any]]) -> list[_Result]:
    """Verify each record, then bind each decision to the request of the same file."""
    results = [_Result(i, record) for i, record in enumerate(records)]
    for r in results:
        try:
            verify_record(public_key, r.record)
        except RecordError as exc:
            r.error = exc
    requests: dict[str, _Result] = {}
    decisions: set[str] = set()
    for r in results:
        if r.type in _REQUEST_TYPES and r.id is not None:
            if r.id in requests and r.error is None:
                r.error = RecordError(f"a second request with id {r.id} in this file", code="malformed")
            requests.setdefault(r.id, r)
        elif r.type == DECISION and r.id is not None:
            # the same decision twice would read as two approvals
            if r.id in decisions and r.error is None:
                r.error = RecordError(f"a second decision with id {r.id} in this file", code="malformed")
            decisions.add(r.id)
    for r in results:
        if r.error is not None or r.type != DECISION:
            continue
        request_id = r.record["request_id"]
        request = requests.get(request_id)
        if request is None:
            if requests:
                r.error = RecordError(f"its request {request_id} is not in this file", code="unbound")
            else:
                r.notes.append(f"request {request_id} is not in this file, so the binding was not checked")
        elif request.error is not None:
            r.error = RecordError(f"its request {request_id} in this file does not verify", code="unbound")
        else:
            try:
                check_binding(request.record, r.record)
            except RecordError as exc:
                r.error = exc
            else:
                r.notes.append(f"bound to request {request_id} in this file")
    return results


def _summary(record: dict[str, Any]) -> str:
    if record["type"] == DECISION:
        verb = "approves" if record["decision"] == "approve" else "denies"
        return f": {record['approver']['subject']} {verb} request {record['request_id']}"
    return (
        f": {record['requester']['subject']} on {record['connection']}, rule {record['rule']},"
        f" {record['approvals_required']} approval(s) from {', '.join(record['approvers'])}"
    )


def _as_json(r: _Result, public_key: Ed25519PublicKey) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": r.id,
        "type": r.type,
        "status": "valid" if r.error is None else "invalid",
        "kid": key_id(public_key),
    }
    if r.error is not None:
        out.update(error=str(r.error), code=r.error.code, field=r.error.field)
    if r.notes:
        out["notes"] = r.notes
    return out


def _public_key(args: argparse.Namespace, config: Config | None = None) -> Ed25519PublicKey:
    path: Path | None = args.public_key
    if path is not None:
        try:
            return load_public_key(path.read_bytes())
        except OSError as exc:
            raise CliError(f"cannot read the public key {path}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise CliError(f"{path}: {exc}") from None
    config = config if config is not None else load(args)
    return load_signing_key(config.gateway.data_dir, create=False).public_key()
