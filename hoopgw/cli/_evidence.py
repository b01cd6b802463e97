"""``hoopgw evidence export|verify``: evidence packs for examiners (offline, from data_dir).

``export`` writes a time range of the audit store as a signed pack; ``verify`` checks a pack with
nothing but the pack and, ideally, the gateway's public key obtained out of band. docs/EVIDENCE.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from hoopgw.approvals import load_public_key
from hoopgw.audit._db import Store
from hoopgw.cli._common import (
    CliError,
    Subparsers,
    add_config_option,
    format_time,
    load,
    print_json,
    printable,
)
from hoopgw.evidence import ExportError, ExportResult, Progress, VerifyResult, export_pack, verify_pack
from hoopgw.policy._classify import Classifier

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIME_HELP = "YYYY-MM-DD or an ISO 8601 time, UTC unless it says otherwise"


def register(subparsers: Subparsers) -> None:
    """Add ``evidence export`` and ``evidence verify``."""
    parser = subparsers.add_parser(
        "evidence", help="evidence packs for examiners", description="evidence packs for examiners"
    )
    add_config_option(parser)
    sub = parser.add_subparsers(dest="evidence_command", metavar="COMMAND", required=True)
    export = sub.add_parser(
        "export",
        help="export an evidence pack for a time range (offline, from data_dir)",
        description="Write the audit events, sessions, signed approval records and prompts of a time range,"
        " the chain verification result, the public key, an HTML report and a signed MANIFEST.json into a new"
        " directory. Exits 1 (after writing the pack) when the audit chain does not verify.",
    )
    add_config_option(export)
    export.add_argument(
        "--since",
        metavar="DATE",
        type=_since,
        help=f"from this time on ({_TIME_HELP}; default: the beginning)",
    )
    export.add_argument(
        "--until",
        metavar="DATE",
        type=_until,
        help=f"up to this time ({_TIME_HELP}; a date includes that whole day; default: now)",
    )
    export.add_argument("--out", metavar="DIR", type=Path, required=True, help="a new or empty directory")
    export.add_argument("--json", action="store_true", help="print the result as one JSON object")
    export.set_defaults(func=run_export)
    verify = sub.add_parser(
        "verify",
        help="verify an evidence pack offline",
        description="Check a pack: the manifest's signature, every file's SHA-256, no file missing or added,"
        " every event's hash and link, the signed checkpoints and approval records, and the chain result."
        " Exits 1 naming each problem.",
    )
    add_config_option(verify)
    verify.add_argument("dir", metavar="DIR", type=Path, help="the pack's directory")
    verify.add_argument(
        "--public-key",
        metavar="FILE",
        type=Path,
        help="the gateway's public key, obtained out of band (PEM or base64url, as `hoopgw signing-key`"
        " prints it); default: the pack's own public_key.pem, which only shows the pack is consistent",
    )
    verify.add_argument("--json", action="store_true", help="print the result as one JSON object")
    verify.set_defaults(func=run_verify)


def _parse(text: str, *, end: bool) -> float:
    """Seconds since the epoch; a bare date is its first instant (``end``: the next day's)."""
    try:
        if _DATE.fullmatch(text):
            day = dt.date.fromisoformat(text) + dt.timedelta(days=1 if end else 0)
            when = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
        else:
            when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date nor an ISO 8601 time: {text!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def _since(text: str) -> float:
    return _parse(text, end=False)


def _until(text: str) -> float:
    return _parse(text, end=True)


def run_export(args: argparse.Namespace) -> int:
    """Write the pack; print what it holds; exit 1 if the store's chain did not verify."""
    config = load(args)
    try:
        result = export_pack(
            config.gateway.data_dir,
            args.out,
            since=args.since,
            until=args.until,
            classifier=Classifier(config.sql),
            progress=lambda label, total: Progress(f"exporting {label}", total),
            store=Store.for_config(config),
        )
    except ExportError as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print_json(_export_json(result))
    else:
        for line in describe_export(result):
            print(printable(line))
    return 0 if result.chain_ok else 1


def _export_json(result: ExportResult) -> dict[str, object]:
    m = result.manifest
    return {
        "id": str(result.out),
        "status": "written",
        "chain_ok": result.chain_ok,
        "key_id": m["key_id"],
        "since": m["since"],
        "until": m["until"],
        "first_seq": m["first_seq"],
        "last_seq": m["last_seq"],
        "counts": m["counts"],
        "files": m["files"],
        "chain": result.chain,
        "warnings": list(result.stats.warnings),
    }


def describe_export(result: ExportResult) -> list[str]:
    """The human summary of an export."""
    m, counts, stats = result.manifest, result.manifest["counts"], result.stats
    span = f"{format_time(m['since'] / 1000) if m['since'] is not None else 'the beginning'}"
    seqs = f" (seq {m['first_seq']}..{m['last_seq']})" if m["first_seq"] is not None else ""
    chain = result.chain
    if result.chain_ok:
        verdict = f"OK, {_n(chain['events'], 'event')} verified"
        if chain.get("unsigned"):
            verdict += f" (the last {chain['unsigned']:,} not sealed by a signed checkpoint yet)"
    else:
        p = chain.get("problem") or {}
        verdict = f"FAILED at seq {p.get('seq')} ({p.get('code')}): {p.get('message')}"
    return [
        f"evidence pack written to {result.out}",
        f"  range        {span} to {format_time(m['until'] / 1000)} UTC",
        f"  events       {counts['events']:,}{seqs}",
        f"  sessions     {counts['sessions']:,}",
        f"  approvals    {_n(stats.approval_requests, 'request')},"
        f" {_n(stats.approval_decisions, 'decision')}",
        f"  prompts      {counts['prompts']:,}",
        f"  checkpoints  {counts['checkpoints']:,} signed, in the range",
        f"  audit chain  {verdict}",
        *(f"  warning      {w}" for w in stats.warnings),
        f"  manifest     signed by key {m['key_id']}",
        f"open {result.out / 'report.html'}; check the pack with: hoopgw evidence verify {result.out}",
    ]


def _n(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'s' * (count != 1)}"


def _public_key(path: Path | None) -> Ed25519PublicKey | None:
    if path is None:
        return None
    try:
        return load_public_key(path.read_bytes())
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise CliError(f"{path}: {exc}") from None


def run_verify(args: argparse.Namespace) -> int:
    """Check the pack; OK and a summary, or every problem on stderr and exit 1."""
    key = _public_key(args.public_key)
    result = verify_pack(args.dir, key, str(args.public_key) if args.public_key else None)
    if args.json:
        print_json(result.to_json())
    elif result.ok:
        for line in describe_verify(result, given=key is not None):
            print(printable(line))
    else:
        for problem in result.problems:
            where = result.pack / problem.file if problem.file else result.pack
            print(printable(f"hoopgw: {where}: {problem.message}"), file=sys.stderr)
        count = len(result.problems)
        print(
            printable(
                f"hoopgw: evidence pack {result.pack} does NOT verify ({count} problem{'s' * (count != 1)})"
            ),
            file=sys.stderr,
        )
    return 0 if result.ok else 1


def describe_verify(result: VerifyResult, *, given: bool) -> list[str]:
    """The human summary of a pack that verified."""
    m = result.manifest or {}
    seqs = f" (seq {m['first_seq']}..{m['last_seq']})" if m.get("first_seq") is not None else ""
    whose = (
        "the key given (pinned)"
        if given
        else "the pack's own public_key.pem, not pinned: it only shows the pack is consistent (pass"
        " --public-key to pin the gateway's)"
    )
    return [
        f"OK: evidence pack {result.pack}",
        f"  manifest     signature valid, key {result.key_id}: {whose}",
        f"  files        {len(m.get('files', {})) + 1} present, none missing or added, every SHA-256 matches",
        f"  events       {result.events:,}{seqs}: every hash recomputed and linked"
        + (
            f" ({_n(result.erased, 'tombstone')} erased by retention: hash as stored)"
            if result.erased
            else ""
        ),
        f"  checkpoints  {result.checkpoints:,} signed, matching the events",
        f"  approvals    {_n(result.approval_records, 'signed record')} valid, one for each request and"
        " decision the events record",
        "  sessions     as their session_open events in events.jsonl recorded them",
        f"  prompts      {result.prompts_covered:,} matching the digest their registration recorded"
        + (
            f" ({result.prompts_not_covered:,} registered without a digest: not covered)"
            if result.prompts_not_covered
            else ""
        ),
        "  audit chain  verified when the pack was made (chain.json)",
    ]
