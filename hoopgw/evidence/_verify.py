"""``verify_pack``: check an evidence pack offline, with nothing but the pack and a public key.

In order: the manifest's signature (with ``public_key.pem`` or a key given out of band), that the pack
holds exactly the files the manifest lists, each file's size and SHA-256, and then what each file says:
every event's hash recomputed and linked to the one before, the signed checkpoints in the range
matching those hashes, every approval record's signature and each decision bound to its request, the
counts, and the chain verification result; then the files the chain does not seal against the events
that do: sessions as their ``session_open`` recorded them, a signed record for every request and
decision an event names, each prompt matching its ``prompt_registered`` digest. Every problem is
reported, naming its file (and the id at fault)."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from hoopgw.approvals import (
    DECISION,
    RecordError,
    check_binding,
    key_id,
    load_public_key,
    load_records,
    verify_record,
)
from hoopgw.audit._chain import check_checkpoint, check_purge
from hoopgw.audit._prompts import DIGEST_FIELDS, Prompt, prompt_digest
from hoopgw.evidence._events import LineError, line_hash, parse_line
from hoopgw.evidence._manifest import (
    APPROVALS_FILE,
    CHAIN_FILE,
    CHECKPOINTS_FILE,
    EVENTS_FILE,
    MANIFEST_FILE,
    PACK_FILES,
    PROMPTS_FILE,
    PUBLIC_KEY_FILE,
    PURGES_FILE,
    SESSIONS_FILE,
    check_manifest,
    file_sha256,
)
from hoopgw.evidence._pack import _FORMULA, SESSION_COLUMNS

#: The kinds of event whose data the other files of a pack must agree with (statements aside).
_CHAINED_KINDS = frozenset(
    {
        "session_open", "session_close", "prompt_registered", "access_requested", "approval_requested",
        "approval_decided", "approval_callback",
    }
)  # fmt: skip
#: A statement event that failed, as the writer encodes it (the export counts errors the same way).
_ERROR_STATUS = '"status":"error"'
#: The session fields sessions.csv must show as the session's ``session_open`` event recorded them.
_SESSION_FIELDS = ("type", "connection", "subject", "client_addr", "auth")
#: The data of an event a retention purge erased (docs/AUDIT.md): its row keeps the original hash.
_PURGED = re.compile(r'\{"purged":\d+\}')


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem: the file at fault (``""``: the pack as a whole) and what is wrong."""

    file: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.message}" if self.file else self.message


@dataclass(slots=True)
class _Chained:
    """What the verified lines of ``events.jsonl`` say about the other files: the chain vouches for
    it, so sessions.csv, approvals.jsonl and prompts.jsonl must agree."""

    opens: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)  # session -> open event
    closes: set[str] = field(default_factory=set)  # sessions whose session_close is in the pack
    erased: set[str] = field(default_factory=set)  # sessions with an event a retention purge erased
    statements: dict[str, list[int]] = field(default_factory=dict)  # session -> [statements, errors]
    requests: dict[str, tuple[int, str]] = field(default_factory=dict)  # request id -> (seq, kind)
    decisions: dict[str, tuple[int, str, dict[str, Any]]] = field(default_factory=dict)
    prompts: dict[str, tuple[int, str | None]] = field(default_factory=dict)  # id -> (seq, digest)

    def add(self, event: dict[str, Any]) -> None:
        """Note one verified event (not an erased one: its data is gone)."""
        kind, sid, seq = event["kind"], event["session_id"], event["seq"]
        if kind == "statement":
            if sid is not None:
                count = self.statements.setdefault(sid, [0, 0])
                count[0] += 1
                count[1] += _ERROR_STATUS in event["data"]
            return
        if kind not in _CHAINED_KINDS:
            return
        try:
            data = orjson.loads(event["data"])
        except orjson.JSONDecodeError:
            return
        if type(data) is not dict:
            return
        if kind == "session_open" and sid is not None:
            self.opens.setdefault(sid, (seq, data))
        elif kind == "session_close" and sid is not None:
            self.closes.add(sid)
        elif kind == "prompt_registered" and isinstance(data.get("id"), str):
            digest = data.get("digest")
            self.prompts.setdefault(data["id"], (seq, digest if isinstance(digest, str) else None))
        elif kind == "access_requested" and isinstance(data.get("id"), str):
            self.requests.setdefault(data["id"], (seq, kind))
        elif kind == "approval_requested" and isinstance(data.get("request_id"), str):
            self.requests.setdefault(data["request_id"], (seq, kind))
        if kind in ("approval_decided", "approval_callback") and isinstance(data.get("decision_id"), str):
            self.decisions.setdefault(data["decision_id"], (seq, kind, data))


@dataclass(slots=True)
class VerifyResult:
    """What ``verify_pack`` found."""

    pack: Path
    problems: list[Finding] = field(default_factory=list)
    key_id: str | None = None
    manifest: dict[str, Any] | None = None
    events: int = 0  # events whose hash and link were checked
    erased: int = 0  # of which tombstones: data erased by a retention purge, hash and link kept
    checkpoints: int = 0
    approval_records: int = 0
    key_pinned: bool = False  # checked with a key given out of band, not the pack's own
    key_source: str | None = None
    prompts_covered: int = 0  # prompts matched against their prompt_registered event's digest
    prompts_not_covered: int = 0  # registered by a gateway that recorded no digest

    @property
    def ok(self) -> bool:
        """Nothing wrong."""
        return not self.problems

    def add(self, file: str, message: str) -> None:
        """Record a problem."""
        self.problems.append(Finding(file, message))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        manifest = self.manifest or {}
        return {
            "ok": self.ok,
            "pack": str(self.pack),
            "key_id": self.key_id,
            "key_pinned": self.key_pinned,
            "key_source": self.key_source,
            "created_at": manifest.get("created_at"),
            "since": manifest.get("since"),
            "until": manifest.get("until"),
            "first_seq": manifest.get("first_seq"),
            "last_seq": manifest.get("last_seq"),
            "events": self.events,
            "erased": self.erased,
            "checkpoints": self.checkpoints,
            "approval_records": self.approval_records,
            "prompts_covered": self.prompts_covered,
            "prompts_not_covered": self.prompts_not_covered,
            "problems": [{"file": p.file, "message": p.message} for p in self.problems],
        }


def verify_pack(
    pack: Path, public_key: Ed25519PublicKey | None = None, key_source: str | None = None
) -> VerifyResult:
    """Check the pack in ``pack`` with ``public_key`` (default: the pack's own ``public_key.pem``;
    ``key_source`` names where a given key came from, for messages)."""
    result = VerifyResult(Path(pack))
    if not result.pack.is_dir():
        result.add("", "is not a directory: there is no evidence pack here")
        return result
    key = _pack_key(result, public_key, key_source)
    result.key_pinned = public_key is not None
    result.key_source = (key_source or "--public-key") if public_key is not None else PUBLIC_KEY_FILE
    if key is None:
        return result
    result.key_id = key_id(key)
    manifest = _manifest(result, key, key_source or PUBLIC_KEY_FILE)
    if manifest is None:
        return result
    result.manifest = manifest
    present = _files(result, manifest)
    counts = manifest["counts"]
    erasable = _purges(result, key, counts["purges"]) if PURGES_FILE in present else []
    chained = _Chained()
    if CHECKPOINTS_FILE in present and EVENTS_FILE in present:
        cps = _checkpoints(result, key, manifest)
        _events(result, manifest, cps, erasable, chained)
    if APPROVALS_FILE in present:
        records = _approvals(result, key, counts["approval_records"])
        _approvals_chained(result, records, chained)
    if PROMPTS_FILE in present:
        _lines_counted(result, PROMPTS_FILE, counts["prompts"])
        _prompts_chained(result, chained)
    if SESSIONS_FILE in present:
        rows = _sessions(result, counts["sessions"])
        _sessions_chained(result, rows, chained)
    if CHAIN_FILE in present:
        _chain(result, result.key_id)
    return result


def _pack_key(
    result: VerifyResult, given: Ed25519PublicKey | None, source: str | None
) -> Ed25519PublicKey | None:
    """The key to check with; a pack key that differs from a given one is a problem."""
    path = result.pack / PUBLIC_KEY_FILE
    try:
        own = load_public_key(path.read_bytes()) if path.is_file() else None
    except ValueError as exc:
        own = None
        result.add(PUBLIC_KEY_FILE, str(exc))
    if given is None:
        if own is None and not result.problems:
            result.add(PUBLIC_KEY_FILE, "is missing: without it, pass the gateway's key with --public-key")
        return own
    if own is not None and key_id(own) != key_id(given):
        result.add(
            PUBLIC_KEY_FILE,
            f"is not the key given with --public-key{f' ({source})' if source else ''}: key id {key_id(own)},"
            f" expected {key_id(given)}",
        )
    return given


def _manifest(result: VerifyResult, key: Ed25519PublicKey, source: str) -> dict[str, Any] | None:
    path = result.pack / MANIFEST_FILE
    if not path.is_file():
        result.add(MANIFEST_FILE, "is missing: nothing in the pack can be checked")
        return None
    try:
        records = load_records(path.read_bytes())
        if len(records) != 1:
            raise RecordError("must hold one JSON object", code="malformed")  # noqa: TRY301
        check_manifest(key, records[0])
    except RecordError as exc:
        result.add(MANIFEST_FILE, f"{exc} (key: {source}): nothing in the pack can be trusted")
        return None
    return records[0]


def _files(result: VerifyResult, manifest: dict[str, Any]) -> set[str]:
    """Exactly the listed files, each of the listed size and SHA-256; the names of those present."""
    listed: dict[str, Any] = manifest["files"]
    for name in PACK_FILES:
        if name not in listed:
            result.add(MANIFEST_FILE, f"does not list {name}")
    present: set[str] = set()
    for name, entry in listed.items():
        path = result.pack / name
        if Path(name).name != name or name in (".", "..", MANIFEST_FILE):
            result.add(MANIFEST_FILE, f"lists {name!r}, which is not a file of the pack")
        elif not path.exists():
            result.add(name, "is missing (MANIFEST.json lists it): it was deleted")
        elif path.is_symlink() or not path.is_file():
            result.add(name, "is not a regular file")
        elif path.stat().st_size != entry["bytes"]:
            result.add(
                name,
                f"has {path.stat().st_size:,} bytes, MANIFEST.json says {entry['bytes']:,}: it was changed",
            )
            present.add(name)
        elif file_sha256(path) != entry["sha256"]:
            result.add(name, "its SHA-256 does not match MANIFEST.json: it was changed")
            present.add(name)
        else:
            present.add(name)
    for path in sorted(result.pack.iterdir()):
        if path.name not in listed and path.name != MANIFEST_FILE:
            result.add(path.name, "is not listed in MANIFEST.json: it was added to the pack")
    return present


def _lines(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().split(b"\n") if line]


def _checkpoints(result: VerifyResult, key: Ed25519PublicKey, manifest: dict[str, Any]) -> dict[int, str]:
    """``{seq: hash hex}`` of the valid signed checkpoints in the range."""
    out: dict[int, str] = {}
    first, last = manifest["first_seq"], manifest["last_seq"]
    lines = _lines(result.pack / CHECKPOINTS_FILE)
    for n, raw in enumerate(lines, 1):
        try:
            [record] = load_records(raw)
            check_checkpoint(key, record)
        except (RecordError, ValueError) as exc:
            result.add(CHECKPOINTS_FILE, f"line {n}: {exc}")
            continue
        seq = record["seq"]
        if first is None or not first <= seq <= last:
            result.add(
                CHECKPOINTS_FILE, f"line {n}: the checkpoint at seq {seq} lies outside the exported events"
            )
            continue
        out[seq] = str(record["hash"])[7:]
    if len(lines) != manifest["counts"]["checkpoints"]:
        result.add(
            CHECKPOINTS_FILE,
            f"holds {len(lines)} checkpoints, MANIFEST.json counts {manifest['counts']['checkpoints']}",
        )
    result.checkpoints = len(out)
    return out


def _purges(result: VerifyResult, key: Ed25519PublicKey, expected: int) -> list[tuple[int, int]]:
    """Each purge record's signature; the seq ranges whose data they erased."""
    ranges: list[tuple[int, int]] = []
    lines = _lines(result.pack / PURGES_FILE)
    for n, raw in enumerate(lines, 1):
        try:
            [record] = load_records(raw)
            check_purge(key, record)
        except (RecordError, ValueError) as exc:
            result.add(PURGES_FILE, f"line {n}: {exc}")
            continue
        ranges.extend((int(a), int(b)) for a, b in record["tombstoned"])
    if len(lines) != expected:
        result.add(PURGES_FILE, f"holds {len(lines)} records, MANIFEST.json counts {expected}")
    return ranges


def _events(
    result: VerifyResult,
    manifest: dict[str, Any],
    checkpoints: dict[int, str],
    erasable: list[tuple[int, int]],
    chained: _Chained,
) -> None:
    """Every event's hash recomputed, each linked to the one before, seqs contiguous from first_seq;
    an event whose data a purge erased must be listed by a signed purge record of the pack.

    Stops at the first bad line: what follows it cannot be linked anyway.
    """
    expect: int | None = manifest["first_seq"]
    prev: bytes | None = None
    count = 0
    with (result.pack / EVENTS_FILE).open("rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                event = parse_line(raw)
            except LineError as exc:
                result.add(EVENTS_FILE, f"line {n}: {exc}")
                return
            wrong, erased = _event_problem(event, expect, prev, checkpoints, erasable)
            if wrong is not None:
                result.add(EVENTS_FILE, f"line {n} (seq {event['seq']}): {wrong}")
                return
            prev = event["hash"]
            expect = event["seq"] + 1
            count += 1
            result.erased += erased
            if not erased:
                chained.add(event)
            elif event["session_id"] is not None:
                chained.erased.add(event["session_id"])
    result.events = count
    counted, first, last = manifest["counts"]["events"], manifest["first_seq"], manifest["last_seq"]
    if count != counted or (count and expect is not None and expect - 1 != last):
        result.add(EVENTS_FILE, f"holds {count} events, MANIFEST.json counts {counted} (seq {first}..{last})")


def _event_problem(
    event: dict[str, Any],
    expect: int | None,
    prev: bytes | None,
    checkpoints: dict[int, str],
    erasable: list[tuple[int, int]],
) -> tuple[str | None, bool]:
    """What is wrong with one parsed event line (or None), and whether a purge erased its data."""
    if event["seq"] != expect:
        return f"expected seq {expect}: events are missing, inserted or out of order", False
    if event["hash"] is None:
        return ("carries no hash, yet the events before it are chained" if prev is not None else None), False
    if prev is not None and event["prev_hash"] != prev:
        return "does not link to the event before it (its prev_hash differs)", False
    try:
        digest = line_hash(event)
    except LineError as exc:
        return str(exc), False
    erased = False
    if digest != event["hash"]:
        if not _PURGED.fullmatch(event["data"]):
            return "was changed: its hash does not match its contents", False
        if not any(a <= event["seq"] <= b for a, b in erasable):
            return "its data is erased, but no signed purge record in purges.jsonl lists it", False
        erased, digest = True, event["hash"]
    signed = checkpoints.get(event["seq"])
    if signed is not None and signed != digest.hex():
        return "differs from the signed checkpoint at its seq", erased
    return None, erased


def _approvals(result: VerifyResult, key: Ed25519PublicKey, expected: int) -> dict[str, dict[str, Any]]:
    """Each record's signature; each decision bound to its request, which must come before it.
    The valid records, by id."""
    requests: dict[str, dict[str, Any]] = {}
    valid: dict[str, dict[str, Any]] = {}
    lines = _lines(result.pack / APPROVALS_FILE)
    good = 0
    for n, raw in enumerate(lines, 1):
        what = f"line {n}"
        try:
            [record] = load_records(raw)
            what = f"line {n} ({record.get('type')} {record.get('id')})"
            verify_record(key, record)
            if record["type"] == DECISION:
                _bound(requests, record)
            else:
                requests[record["id"]] = record
        except (RecordError, ValueError) as exc:
            result.add(APPROVALS_FILE, f"{what}: {exc}")
            continue
        good += 1
        valid[record["id"]] = record
    result.approval_records = good
    if len(lines) != expected:
        result.add(APPROVALS_FILE, f"holds {len(lines)} records, MANIFEST.json counts {expected}")
    return valid


def _approvals_chained(result: VerifyResult, records: dict[str, dict[str, Any]], chained: _Chained) -> None:
    """Every request and decision an event of the pack records has its signed record, saying the same."""
    for rid, (seq, kind) in sorted(chained.requests.items(), key=lambda kv: kv[1]):
        record = records.get(rid)
        if record is None or record["type"] == DECISION:
            result.add(
                APPROVALS_FILE,
                f"the signed record of request {rid} is missing ({kind} event at seq {seq} in events.jsonl)",
            )
    for did, (seq, kind, data) in sorted(chained.decisions.items(), key=lambda kv: kv[1][0]):
        record = records.get(did)
        if record is None or record["type"] != DECISION:
            result.add(
                APPROVALS_FILE,
                f"the signed record of decision {did} is missing ({kind} event at seq {seq} in events.jsonl)",
            )
            continue
        said = {
            "request_id": (data.get("request_id"), record["request_id"]),
            "decision": (data.get("decision"), record["decision"]),
            "approver": (data.get("approver"), record["approver"]["subject"]),
        }
        wrong = [name for name, (event, signed) in said.items() if event is not None and event != signed]
        if wrong:
            result.add(
                APPROVALS_FILE,
                f"decision {did}: its {', '.join(wrong)} differ{'s' * (len(wrong) == 1)} from its {kind}"
                f" event at seq {seq} in events.jsonl",
            )


def _prompts_chained(result: VerifyResult, chained: _Chained) -> None:
    """Each prompt whose ``prompt_registered`` event is in the pack matches that event's digest."""
    found: set[str] = set()
    for n, raw in enumerate(_lines(result.pack / PROMPTS_FILE), 1):
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue  # reported already
        if type(value) is not dict or value.get("id") not in chained.prompts:
            continue
        pid = value["id"]
        found.add(pid)
        seq, digest = chained.prompts[pid]
        if digest is None:
            result.prompts_not_covered += 1
            continue
        try:
            mine = prompt_digest(Prompt(**{name: value[name] for name in DIGEST_FIELDS}))
        except (KeyError, TypeError, ValueError):
            mine = None
        if mine != digest:
            result.add(
                PROMPTS_FILE,
                f"line {n} (prompt {pid}): does not match the digest its prompt_registered event (seq {seq}"
                " in events.jsonl) recorded: it was changed",
            )
        else:
            result.prompts_covered += 1
    for pid, (seq, _) in sorted(chained.prompts.items(), key=lambda kv: kv[1][0]):
        if pid not in found:
            result.add(
                PROMPTS_FILE,
                f"prompt {pid} is missing (its prompt_registered event is at seq {seq} in events.jsonl)",
            )


def _sessions_chained(result: VerifyResult, rows: list[dict[str, str]], chained: _Chained) -> None:
    """Each session whose ``session_open`` event is in the pack as that event recorded it; its counts
    as its ``statement`` events give them when the whole session is in the pack."""
    for n, row in enumerate(rows, 2):
        sid = row["id"]
        opened = chained.opens.get(sid)
        if opened is None:
            continue
        seq, data = opened
        wrong = [name for name in _SESSION_FIELDS if row[name] != _csv_text(data.get(name))]
        if wrong:
            result.add(
                SESSIONS_FILE,
                f"line {n} (session {sid}): its {', '.join(wrong)} differ{'s' * (len(wrong) == 1)} from its"
                f" session_open event (seq {seq} in events.jsonl): it was changed",
            )
        if sid in chained.closes and sid not in chained.erased:
            counted = chained.statements.get(sid, [0, 0])
            shown = [row["statements"], row["errors"]]
            if shown != [str(c) for c in counted]:
                result.add(
                    SESSIONS_FILE,
                    f"line {n} (session {sid}): {shown[0]} statements, {shown[1]} errors, but events.jsonl"
                    f" holds {counted[0]} statement events of it, {counted[1]} failed: it was changed",
                )


def _csv_text(value: object) -> str:
    """A value as sessions.csv writes it (a would-be formula with its leading ')."""
    if value is None:
        return ""
    text = str(value)
    return "'" + text if text.startswith(_FORMULA) else text


def _bound(requests: dict[str, dict[str, Any]], decision: dict[str, Any]) -> None:
    """A verified decision belongs to a request earlier in the file; RecordError ``unbound``."""
    request = requests.get(decision["request_id"])
    if request is None:
        raise RecordError(
            f"its request {decision['request_id']} is not before it in the file", code="unbound"
        )
    check_binding(request, decision)


def _lines_counted(result: VerifyResult, name: str, expected: int) -> None:
    lines = _lines(result.pack / name)
    for n, raw in enumerate(lines, 1):
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            result.add(name, f"line {n}: not JSON: {exc}")
            continue
        if type(value) is not dict or not isinstance(value.get("id"), str):
            result.add(name, f"line {n}: not an object with an id")
    if len(lines) != expected:
        result.add(name, f"holds {len(lines)} lines, MANIFEST.json counts {expected}")


def _sessions(result: VerifyResult, expected: int) -> list[dict[str, str]]:
    """The header and count; the rows (as dicts) when they can be read."""
    with (result.pack / SESSIONS_FILE).open(encoding="utf-8", newline="") as f:
        try:
            rows = list(csv.reader(f))
        except (csv.Error, UnicodeDecodeError) as exc:
            result.add(SESSIONS_FILE, f"not CSV: {exc}")
            return []
    if not rows or tuple(rows[0]) != SESSION_COLUMNS:
        result.add(SESSIONS_FILE, "its header is not the sessions.csv columns")
        return []
    if len(rows) - 1 != expected:
        result.add(SESSIONS_FILE, f"holds {len(rows) - 1} sessions, MANIFEST.json counts {expected}")
    good = [row for row in rows[1:] if len(row) == len(SESSION_COLUMNS)]
    if len(good) != len(rows) - 1:
        result.add(
            SESSIONS_FILE, f"{len(rows) - 1 - len(good)} rows do not have the {len(SESSION_COLUMNS)} columns"
        )
    return [dict(zip(SESSION_COLUMNS, row, strict=True)) for row in good]


def _chain(result: VerifyResult, kid: str | None) -> None:
    try:
        chain = orjson.loads((result.pack / CHAIN_FILE).read_bytes())
    except orjson.JSONDecodeError as exc:
        result.add(CHAIN_FILE, f"not JSON: {exc}")
        return
    if type(chain) is not dict or type(chain.get("ok")) is not bool:
        result.add(CHAIN_FILE, "holds no chain verification result (no ok)")
        return
    if chain.get("key_id") != kid:
        result.add(CHAIN_FILE, f"the chain was verified with key {chain.get('key_id')!r}, not {kid!r}")
    if not chain["ok"]:
        problem = chain.get("problem") or {}
        result.add(
            CHAIN_FILE,
            f"the audit store FAILED verification when the pack was made: at seq {problem.get('seq')}"
            f" ({problem.get('code')}): {problem.get('message')}",
        )
