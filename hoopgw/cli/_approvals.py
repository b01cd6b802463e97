"""``hoopgw approvals``: held commands and their signed records.

Built so far: ``verify FILE`` (offline). ``list``, ``show``, ``approve`` and ``deny`` are placeholders
that exit 2; each becomes a ``_add_NAME(sub)`` function here when it is built.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from hoopgw.approvals import (
    DECISION,
    GRANT,
    REQUEST,
    RecordError,
    check_binding,
    key_id,
    load_public_key,
    load_records,
    load_signing_key,
    verify_record,
)
from hoopgw.cli._common import CliError, Subparsers, add_config_option, load, new_parser, print_json
from hoopgw.cli._pending import add_pending_subcommands

_TOKEN_OPTION = "--token"  # noqa: S105 - an option name
_NOT_YET = {
    "list": ("list approval requests", [], ["--json", _TOKEN_OPTION]),
    "show": ("show one request", ["ID"], ["--json", _TOKEN_OPTION]),
    "approve": ("approve a request", ["ID"], [_TOKEN_OPTION]),
    "deny": ("deny a request", ["ID"], [_TOKEN_OPTION]),
}
_REQUEST_TYPES = (REQUEST, GRANT)


def register(subparsers: Subparsers) -> None:
    """Add ``approvals`` and its subcommands."""
    parser = new_parser(subparsers, "approvals", "held commands waiting for a human decision")
    sub = parser.add_subparsers(dest="approvals_command", metavar="COMMAND", required=True)
    add_pending_subcommands(sub, "approvals", _NOT_YET)
    _add_verify(sub)


def _add_verify(sub: Subparsers) -> None:
    verify = sub.add_parser(
        "verify",
        help="verify signed approval records offline",
        description=(
            "Verify a signed record, or a JSON array of records (a request and its decisions), offline "
            "with the gateway's public key: from data_dir (-c) or --public-key. Decisions are also checked "
            "against the request in the same file. Exit 0 when every record verifies, 1 otherwise."
        ),
    )
    add_config_option(verify)
    verify.add_argument("file", metavar="FILE", help="a JSON file of records (- for standard input)")
    verify.add_argument(
        "--public-key",
        metavar="PEMFILE",
        type=Path,
        default=None,
        help="the public key (PEM, e.g. saved from `hoopgw signing-key`, or base64url) instead of data_dir's",
    )
    verify.add_argument(
        "--json", action="store_true", help="print one JSON array: per record its id, type and status"
    )
    verify.set_defaults(func=run_verify)


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
    """Verify every record of FILE; print OK or the reason per record."""
    public_key = _public_key(args)
    name = "standard input" if args.file == "-" else args.file
    try:
        data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {name}: {exc.strerror or exc}") from None
    try:
        records = load_records(data)
    except RecordError as exc:
        raise CliError(f"{name}: {exc}") from None
    results = verify_all(public_key, records)
    if args.json:
        print_json([_as_json(r, public_key) for r in results])
    else:
        for r in results:
            label = " ".join(filter(None, [r.type or "record", r.id]))
            if len(results) > 1:
                label = f"record {r.index + 1} ({label})"
            if r.error is None:
                print(f"OK: {label}{_summary(r.record)}" + "".join(f"; {n}" for n in r.notes))
            else:
                print(f"hoopgw: {name}: {label}: {r.error}", file=sys.stderr)
    return 1 if any(r.error is not None for r in results) else 0


def verify_all(public_key: Ed25519PublicKey, records: list[dict[str, Any]]) -> list[_Result]:
    """Verify each record, then bind each decision to the request of the same file."""
    results = [_Result(i, record) for i, record in enumerate(records)]
    for r in results:
        try:
            verify_record(public_key, r.record)
        except RecordError as exc:
            r.error = exc
    requests: dict[str, _Result] = {}
    for r in results:
        if r.type in _REQUEST_TYPES and r.id is not None:
            if r.id in requests and r.error is None:
                r.error = RecordError(f"a second request with id {r.id} in this file", code="malformed")
            requests.setdefault(r.id, r)
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


def _public_key(args: argparse.Namespace) -> Ed25519PublicKey:
    path: Path | None = args.public_key
    if path is not None:
        try:
            return load_public_key(path.read_bytes())
        except OSError as exc:
            raise CliError(f"cannot read the public key {path}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise CliError(f"{path}: {exc}") from None
    config = load(args)
    return load_signing_key(config.gateway.data_dir, create=False).public_key()
