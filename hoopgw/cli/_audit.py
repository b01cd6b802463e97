"""``hoopgw audit verify``: recompute the audit hash chain offline and check its signed checkpoints."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from hoopgw.approvals import key_id, load_public_key, load_signing_key
from hoopgw.audit import DB_FILE, Report, open_readonly, verify_chain
from hoopgw.cli._common import (
    CliError,
    Subparsers,
    add_config_option,
    format_time,
    load,
    print_json,
    printable,
)


def register(subparsers: Subparsers) -> None:
    """Add ``audit verify``."""
    parser = subparsers.add_parser(
        "audit", help="the tamper-evident audit chain", description="the tamper-evident audit chain"
    )
    add_config_option(parser)
    sub = parser.add_subparsers(dest="audit_command", metavar="COMMAND", required=True)
    verify = sub.add_parser(
        "verify",
        help="verify the hash chain and its signed checkpoints (offline, from data_dir)",
        description="Recompute the audit store's hash chain and check every signed checkpoint. Exits 0 when"
        " intact, 1 with the first bad event when anything was edited, deleted, inserted or reordered.",
    )
    add_config_option(verify)
    verify.add_argument(
        "--since",
        metavar="DATE|SEQ",
        type=_since,
        help="start from the last signed checkpoint before event SEQ, or written before DATE"
        " (YYYY-MM-DD or an ISO 8601 time, UTC unless it says otherwise)",
    )
    verify.add_argument(
        "--public-key",
        metavar="FILE",
        type=Path,
        help="the gateway's public key (PEM or base64url, as `hoopgw signing-key` prints it);"
        " default: the key in data_dir",
    )
    verify.add_argument("--json", action="store_true", help="print the result as one JSON object")
    verify.set_defaults(func=run_verify)


def _since(text: str) -> int | float:
    """``--since``: an event seq (int) or a time (float, seconds since the epoch)."""
    if text.isdigit():
        return int(text)
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an event seq nor a date: {text!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def _public_key(args: argparse.Namespace, data_dir: Path) -> Ed25519PublicKey:
    if args.public_key is None:
        return load_signing_key(data_dir, create=False).public_key()
    try:
        return load_public_key(args.public_key.read_bytes())
    except OSError as exc:
        raise CliError(f"cannot read {args.public_key}: {exc.strerror}") from None
    except ValueError as exc:
        raise CliError(f"{args.public_key}: {exc}") from None


def run_verify(args: argparse.Namespace) -> int:
    """Verify the chain; print a summary (or JSON); exit 1 at the first bad event."""
    data_dir = load(args).gateway.data_dir
    path = data_dir / DB_FILE
    since = args.since
    conn = open_readonly(path)
    try:
        public = _public_key(args, data_dir)
        report = verify_chain(
            conn,
            public,
            since_seq=since if isinstance(since, int) else None,
            since_ts=since if isinstance(since, float) else None,
        )
    finally:
        conn.close()
    if args.json:
        print_json({**report.to_json(), "store": str(path), "key_id": key_id(public)})
    else:
        for line in describe(report):
            print(printable(line))
    return 0 if report.ok else 1


def describe(report: Report) -> list[str]:
    """The human summary of a verification."""
    rate = ""
    if report.seconds > 0 and report.events:
        rate = f" ({report.events / report.seconds:,.0f} events/s)"
    span = f" (seq {report.first_seq}..{report.last_seq})" if report.events else ""
    verified = f"{report.events:,} event{'s' * (report.events != 1)}{span}"
    out: list[str] = []
    if report.problem is None:
        out.append(f"OK: {verified} verified in {report.seconds:.2f} s{rate}")
    else:
        p = report.problem
        out.append(f"FAILED at seq {p.seq} ({p.code}): {p.message}")
        out.append(f"verified before it: {verified}")
    if report.anchor is not None:
        out.append(f"started from the signed checkpoint at seq {report.anchor}")
    cp = report.last_checkpoint
    if cp is not None:
        out.append(f"checkpoints: {report.checkpoints} verified; last {_checkpoint(cp)}")
    else:
        out.append("checkpoints: none yet")
    if report.problem is None and report.unsigned:
        out.append(
            f"unsigned: the last {report.unsigned:,} event{'s' * (report.unsigned != 1)} (after the last"
            " checkpoint) are chained but not signed yet"
        )
    if report.unchained:
        out.append(f"not covered: {report.unchained:,} older events predate the chain (no hash)")
    out.extend(report.notes)
    return out


def _checkpoint(cp: dict[str, Any]) -> str:
    return (
        f"at seq {cp['seq']} ({cp['events']:,} events), {format_time(cp['ts'] / 1000)} UTC,"
        f" key {cp['signature']['kid']}"
    )
