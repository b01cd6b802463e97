"""``hoopgw audit verify|purge``: check the audit hash chain offline; purge what retention expires."""

from __future__ import annotations

import argparse
import datetime as dt
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from hoopgw.approvals import key_id, load_public_key, load_signing_key
from hoopgw.audit import Report, open_readonly, verify_chain
from hoopgw.audit._db import Store
from hoopgw.audit._retention import PurgeResult, purge
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
    prune = sub.add_parser(
        "purge",
        help="purge the events [audit] retention_days expires (offline, from data_dir)",
        description="Delete the oldest expired events up to a signed checkpoint and erase the data of"
        " other expired events, sealing each step with a signed purge record, so that what remains"
        " still verifies. Events of sessions under legal hold, and events after the last checkpoint,"
        " are never touched. The gateway runs the same purge every purge_interval.",
    )
    add_config_option(prune)
    prune.add_argument("--dry-run", action="store_true", help="say what would be purged; change nothing")
    prune.add_argument("--json", action="store_true", help="print the result as one JSON object")
    prune.set_defaults(func=run_purge)


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
    config = load(args)
    data_dir = config.gateway.data_dir
    store = Store.for_config(config)
    since = args.since
    conn = open_readonly(store)
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
        print_json({**report.to_json(), "store": store.label, "key_id": key_id(public)})
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
        where = f"purge {p.purge}" if p.purge is not None and not p.seq else f"seq {p.seq}"
        out.append(f"FAILED at {where} ({p.code}): {p.message}")
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
    if report.purges:
        out.append(f"purges: {report.purges} signed purge record{'s' * (report.purges != 1)} verified")
    if report.tombstones:
        out.append(
            f"tombstones: the data of {report.tombstones:,} event{'s' * (report.tombstones != 1)} was erased"
            " by a signed purge (their rows and links verified; their data is gone)"
        )
    out.extend(report.notes)
    return out


def run_purge(args: argparse.Namespace) -> int:
    """Purge (or, --dry-run, plan to purge) what retention_days expires; print what it did."""
    config = load(args)
    data_dir = config.gateway.data_dir
    retention = config.audit.retention_days
    store = Store.for_config(config)
    if not store.exists():
        raise CliError(f"no audit store at {store.label}")
    key = load_signing_key(data_dir, create=False)
    result = purge(store, retention, time.time(), key, dry_run=args.dry_run, record_events=True)
    if args.json:
        print_json({**result.to_json(), "store": store.label})
    else:
        for line in describe_purge(result):
            print(printable(line))
    return 0


def describe_purge(result: PurgeResult) -> list[str]:
    """The human summary of a purge."""
    if not result.retention:
        return ["nothing to purge: [audit] retention_days is not set, every event is kept"]
    policy = ", ".join(f"{kind}={days}d" for kind, days in result.retention.items())
    dry = result.dry_run
    if not (result.deleted or result.tombstoned):
        out = [f"nothing to purge (retention: {policy})"]
    else:
        out = [f"{'dry run, nothing changed: would purge' if dry else 'purged'} (retention: {policy})"]
        if result.deleted:
            n = result.deleted
            out.append(
                f"{'would delete' if dry else 'deleted'}: {n:,} event{'s' * (n != 1)}; the chain"
                f" {'would start' if dry else 'now starts'} after the signed checkpoint at seq {result.cut}"
            )
        if result.tombstoned:
            n = result.tombstoned
            out.append(
                f"{'would erase' if dry else 'erased'}: the data of {n:,} event{'s' * (n != 1)} (tombstones:"
                " each row and its links kept)"
            )
        out.append("by kind: " + ", ".join(f"{k}={n:,}" for k, n in sorted(result.kinds.items())))
        if result.sessions_deleted:
            n = result.sessions_deleted
            out.append(f"sessions: {n:,} left without any event, their summary row{'s' * (n != 1)} removed")
        if result.records:
            ids = [r["id"] for r in result.records]
            span = str(ids[0]) if len(ids) == 1 else f"{ids[0]}..{ids[-1]}"
            out.append(f"signed purge record{'s' * (len(ids) != 1)}: {span}")
    if result.held:
        out.append(f"legal hold: {result.held} session{'s' * (result.held != 1)} kept expired events")
    out.append(f"untouched: events after the last checkpoint (seq {result.sealed})")
    return out


def _checkpoint(cp: dict[str, Any]) -> str:
    return (
        f"at seq {cp['seq']} ({cp['events']:,} events), {format_time(cp['ts'] / 1000)} UTC,"
        f" key {cp['signature']['kid']}"
    )
