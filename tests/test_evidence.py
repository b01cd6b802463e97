"""``hoopgw evidence export|verify``: a pack made from a real gateway's store, checked against the store,
then tampered with every way we can think of; time ranges; a refused --out; the progress bar."""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import csv
import datetime as dt
import hashlib
import io
import json
import re
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from psycopg import errors as pgerrors

from hoopgw.approvals import (
    ApprovalStore,
    RecordError,
    load_records,
    load_signing_key,
    public_key_pem,
    verify_record,
)
from hoopgw.audit import AuditWriter, SessionInfo
from hoopgw.audit._chain import check_checkpoint
from hoopgw.cli import _evidence
from hoopgw.cli._common import CliError
from hoopgw.evidence import MANIFEST, PACK_FILES, Progress, check_manifest, verify_pack
from hoopgw.evidence._pack import SESSION_COLUMNS

from ._support.gateway import Gateway
from ._support.pg import TestPg
from ._support.procs import wait_until

CARD = "4111111111111111"
AGENTS = {
    "name": "agents",
    "subjects": ["group:ai-agents"],
    "connections": ["bankdb"],
    "allow": ["read"],
    "approve": ["write"],
    "deny": ["ddl"],
    "approvers": ["group:dba"],
    "approval_timeout": "60s",
}
DBA = {"name": "dba", "subjects": ["group:dba"], "connections": ["*"], "allow": ["*"]}
MASKING = {"connections": ["bankdb"], "detectors": ["credit_card", "email"], "style": "last4"}


def evidence(*argv: str) -> tuple[int, str, str]:
    """Run ``hoopgw evidence ARGV`` in process as the CLI would: (status, stdout, stderr)."""
    parser = argparse.ArgumentParser(prog="hoopgw")
    _evidence.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["evidence", *argv])
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = args.func(args)
        except CliError as exc:
            print(f"hoopgw: {exc}", file=err)
            code = exc.code
    return code, out.getvalue(), err.getvalue()


# -- a store made by the real gateway ------------------------------------------------------------------
@pytest.fixture(scope="module")
def recorded(module_gateway_factory: Any, pg: TestPg) -> Iterator[tuple[Gateway, dict[str, str]]]:
    """A stopped gateway whose store holds: a registered prompt (with a card number in it), a session of
    an agent tagged with it that reads a card, is denied DDL, and has a write approved by a DBA."""
    gw: Gateway = module_gateway_factory(extra={"policy": [AGENTS, DBA], "masking": [MASKING]})
    table = "evidence_accounts"
    pg.psql(f"DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (id int PRIMARY KEY, balance int);"
            f"INSERT INTO {table} VALUES (1, 100), (2, 200);", user="app")  # fmt: skip
    bot = gw.token("bot", ("ai-agents",))
    registered = httpx.post(
        f"{gw.api_url}/api/prompts",
        json={"prompt": f"refund card {CARD}", "assistant": "claude-code", "model": "m-1"},
        headers={"Authorization": f"Bearer {bot}"},
        timeout=15,
        trust_env=False,
    )
    assert registered.status_code == 201, registered.text
    prompt_id = registered.json()["id"]
    write = f"UPDATE {table} SET balance = 150 WHERE id = 1"
    info = gw.conninfo(user="bot", groups=("ai-agents",), application_name=f"agent hoop:prompt={prompt_id}")
    with psycopg.connect(info, autocommit=True) as conn:
        assert conn.execute(f"SELECT '{CARD}' AS pan").fetchone() == ("************1111",)
        assert conn.execute(f"SELECT balance FROM {table} WHERE id = 2").fetchone() == (200,)
        with pytest.raises(pgerrors.InsufficientPrivilege):
            conn.execute("CREATE TABLE evidence_denied (id int)")
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            held = pool.submit(conn.execute, write)
            store = ApprovalStore(gw.data_dir)
            try:
                wait_until(lambda: bool(store.list(status="pending")), timeout=15, what="the held write")
                (request,) = store.list(status="pending")
            finally:
                store.close()
            decided = httpx.post(
                f"{gw.api_url}/api/approvals/{request.id}/approve",
                json={},
                headers={"Authorization": f"Bearer {gw.token('dora', ('dba',))}"},
                timeout=15,
                trust_env=False,
            )
            assert decided.status_code == 200, decided.text
            held.result(timeout=15)
    db = gw.data_dir / "audit.db"

    def closed() -> bool:
        with sqlite3.connect(db) as c:
            return bool(c.execute("SELECT count(*) FROM sessions WHERE status = 'closed'").fetchone()[0])

    wait_until(closed, timeout=15, what="the session's close record")
    assert gw.stop() == 0  # the writer seals the chain with a checkpoint as it closes
    yield gw, {"prompt": prompt_id, "request": request.id, "write": write}
    pg.psql(f"DROP TABLE {table}", user="app")


@pytest.fixture(scope="module")
def pack(recorded: tuple[Gateway, dict[str, str]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole store exported once."""
    gw, _ = recorded
    out = tmp_path_factory.mktemp("packs") / "pack"
    code, stdout, stderr = evidence("export", "--out", str(out), "-c", str(gw.config_path))
    assert code == 0, stdout + stderr
    assert f"evidence pack written to {out}" in stdout and "audit chain  OK" in stdout
    assert stderr == ""  # not a TTY: no progress bar
    return out


@pytest.fixture
def copy(pack: Path, tmp_path: Path) -> Path:
    """A copy of the pack to tamper with."""
    return Path(shutil.copytree(pack, tmp_path / "copy"))


def lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_pack_holds_the_store(recorded: tuple[Gateway, dict[str, str]], pack: Path) -> None:
    gw, ids = recorded
    assert sorted(p.name for p in pack.iterdir()) == sorted([*PACK_FILES, "MANIFEST.json"])
    with sqlite3.connect(gw.data_dir / "audit.db") as db:
        stored = db.execute("SELECT seq, kind, data, hash FROM events ORDER BY seq").fetchall()
        sessions = db.execute("SELECT id, subject, masked FROM sessions ORDER BY started_at").fetchall()
        checkpoints = db.execute("SELECT record FROM checkpoints ORDER BY seq").fetchall()
    events = lines(pack / "events.jsonl")
    assert [(e["seq"], e["kind"], e["data"], e["hash"]) for e in events] == [
        (seq, kind, data, digest.hex()) for seq, kind, data, digest in stored
    ]
    statements = [json.loads(e["data"]) for e in events if e["kind"] == "statement"]
    assert ids["write"] in [s["sql"] for s in statements]
    assert {"policy_denied", "approval_requested", "session_open", "session_close"} <= {
        e["kind"] for e in events
    }
    assert all(e["prompt_id"] == ids["prompt"] for e in events if e["kind"] == "statement")
    assert [lines_ for lines_ in (pack / "checkpoints.jsonl").read_text().splitlines()] == [
        r for (r,) in checkpoints
    ]

    with (pack / "sessions.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == SESSION_COLUMNS and len(rows) - 1 == len(sessions)
    (bot,) = [dict(zip(rows[0], r, strict=True)) for r in rows[1:] if r[3] == "bot"]
    assert bot["prompt_id"] == ids["prompt"] and json.loads(bot["masked"]) == {"credit_card": 1}
    assert bot["status"] == "closed" and re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", bot["started_at"]
    )

    public = load_signing_key(gw.data_dir, create=False).public_key()
    approvals = lines(pack / "approvals.jsonl")
    assert [(r["type"], r.get("decision")) for r in approvals] == [
        ("approval_request", None),
        ("approval_decision", "approve"),
    ]
    assert approvals[0]["id"] == ids["request"] and approvals[0]["statement"] == ids["write"]
    for record in approvals:
        verify_record(public, record)
    (prompt,) = lines(pack / "prompts.jsonl")
    assert prompt["id"] == ids["prompt"] and prompt["prompt"] == "refund card ************1111"
    assert prompt["registered_by"] == "user:bot"

    chain = json.loads((pack / "chain.json").read_text())
    assert chain["ok"] is True and chain["events"] == len(stored) and chain["unsigned"] == 0
    assert (pack / "public_key.pem").read_text() == public_key_pem(public)
    for path in pack.iterdir():  # nothing unmasked anywhere, in any spelling the masker would catch
        assert CARD.encode() not in path.read_bytes(), path.name


def test_manifest_is_signed_and_only_a_manifest(recorded: tuple[Gateway, dict[str, str]], pack: Path) -> None:
    gw, _ = recorded
    public = load_signing_key(gw.data_dir, create=False).public_key()
    [manifest] = load_records((pack / "MANIFEST.json").read_bytes())
    check_manifest(public, manifest)
    assert manifest["type"] == MANIFEST == "evidence_manifest"
    assert sorted(manifest["files"]) == sorted(PACK_FILES)
    for name, entry in manifest["files"].items():
        data = (pack / name).read_bytes()
        assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    assert manifest["counts"]["events"] == len(lines(pack / "events.jsonl")) == manifest["last_seq"]
    # the gateway's signature on a manifest never passes as an approval record or a checkpoint
    with pytest.raises(RecordError) as as_approval:
        verify_record(public, manifest)
    assert as_approval.value.code in ("unknown_type", "missing_field", "extra_field")
    with pytest.raises(RecordError):
        check_checkpoint(public, manifest)
    other = Ed25519PrivateKey.generate().public_key()
    with pytest.raises(RecordError, match="unknown key"):
        check_manifest(other, manifest)


def test_report_is_offline_and_has_the_charts(pack: Path) -> None:
    html = (pack / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert "default-src 'none'" in html  # the browser may load nothing
    assert len(re.findall(r"<svg\b", html)) == 7
    for title in ("Sessions per day", "Statements by class", "Denied statements by class",
                  "Approval requests by status", "Time from request to decision", "Masked values by detector",
                  "Sessions by identity"):  # fmt: skip
        assert f'aria-label="{title}"' in html, title
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    assert "http://" not in html and "https://" not in html
    assert "<script" not in html.lower() and "@import" not in html and "url(" not in html
    assert ">user:bot<" in html and ">credit_card<" in html and ">agents<" in html  # identity, detector, rule
    assert "The audit chain verified" in html
    assert re.search(r"<title>write: 1</title>", html)  # the approved UPDATE, by class
    assert re.search(r"<title>ddl: 1</title>", html)  # the denied CREATE TABLE


def test_verify_accepts_the_pack(
    recorded: tuple[Gateway, dict[str, str]], pack: Path, tmp_path: Path
) -> None:
    gw, _ = recorded
    code, out, err = evidence("verify", str(pack))
    assert (code, err) == (0, ""), err
    assert out.startswith(f"OK: evidence pack {pack}") and "the pack's own public_key.pem" in out
    key_file = tmp_path / "gateway.pem"
    key_file.write_text(public_key_pem(load_signing_key(gw.data_dir, create=False).public_key()))
    code, out, err = evidence("verify", str(pack), "--public-key", str(key_file), "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["ok"] is True and result["problems"] == [] and result["events"] > 10
    assert result["approval_records"] == 2 and result["checkpoints"] >= 1


# -- tampering --------------------------------------------------------------------------------------------
def problems(pack: Path, key_file: Path | None = None) -> list[str]:
    """``verify_pack`` and the CLI agree: the CLI exits 1 and prints each problem naming its file."""
    argv = [str(pack)] + (["--public-key", str(key_file)] if key_file else [])
    code, out, err = evidence("verify", *argv)
    found = [
        str(p) for p in verify_pack(pack, *((_key(key_file), str(key_file)) if key_file else ())).problems
    ]
    assert code == 1 and out == "", out
    assert found, "no problem found"
    for p in found:
        assert f"hoopgw: {pack}/{p}" in err, err
    assert f"evidence pack {pack} does NOT verify" in err
    return found


def _key(path: Path) -> Any:
    from hoopgw.approvals import load_public_key

    return load_public_key(path.read_bytes())


def test_an_edited_event_is_named(copy: Path) -> None:
    path = copy / "events.jsonl"
    text = path.read_text()
    assert "evidence_accounts SET balance = 150" in text
    path.write_text(text.replace("SET balance = 150", "SET balance = 151", 1))
    found = problems(copy)
    assert "events.jsonl: its SHA-256 does not match MANIFEST.json: it was changed" in found
    (line,) = [p for p in found if "line" in p]
    assert re.fullmatch(
        r"events\.jsonl: line \d+ \(seq \d+\): was changed: its hash does not match its contents", line
    )


def test_a_deleted_event_line_is_named(copy: Path) -> None:
    path = copy / "events.jsonl"
    kept = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(kept[:3] + kept[4:]))
    found = problems(copy)
    assert (
        "events.jsonl: line 4 (seq 5): expected seq 4: events are missing, inserted or out of order" in found
    )


def test_a_deleted_file_is_named(copy: Path) -> None:
    (copy / "report.html").unlink()
    assert problems(copy) == ["report.html: is missing (MANIFEST.json lists it): it was deleted"]


def test_an_added_file_is_named(copy: Path) -> None:
    (copy / "notes.txt").write_text("nothing to see")
    assert problems(copy) == ["notes.txt: is not listed in MANIFEST.json: it was added to the pack"]


def test_an_edited_manifest_is_refused(copy: Path) -> None:
    path = copy / "MANIFEST.json"
    manifest = json.loads(path.read_text())
    manifest["counts"]["events"] -= 1
    path.write_text(json.dumps(manifest, indent=2))
    (found,) = problems(copy)
    assert found.startswith("MANIFEST.json: bad signature: the manifest was changed after it was signed")


def test_a_manifest_without_its_signature_is_refused(copy: Path) -> None:
    path = copy / "MANIFEST.json"
    manifest = json.loads(path.read_text())
    del manifest["signature"]
    path.write_text(json.dumps(manifest))
    (found,) = problems(copy)
    assert found.startswith("MANIFEST.json: the manifest is not signed")


def test_another_public_key_is_refused(
    recorded: tuple[Gateway, dict[str, str]], copy: Path, tmp_path: Path
) -> None:
    gw, _ = recorded
    other = public_key_pem(Ed25519PrivateKey.generate().public_key())
    (copy / "public_key.pem").write_text(other)  # the signature kept: it no longer matches the key
    (found,) = problems(copy)
    assert found.startswith("MANIFEST.json: signed by an unknown key") and "(key: public_key.pem)" in found
    # with the right key given out of band, the swapped file itself is named
    key_file = tmp_path / "gateway.pem"
    key_file.write_text(public_key_pem(load_signing_key(gw.data_dir, create=False).public_key()))
    pinned = problems(copy, key_file)
    assert pinned[0].startswith("public_key.pem: is not the key given with --public-key")
    assert "public_key.pem: its SHA-256 does not match MANIFEST.json: it was changed" in pinned
    # and a forged pack signed by another key fails against the gateway's key
    other_file = tmp_path / "other.pem"
    other_file.write_text(other)
    (forged,) = [p for p in problems(copy, other_file) if p.startswith("MANIFEST.json")]
    assert "signed by an unknown key" in forged and str(other_file) in forged


def test_an_edited_approval_signature_is_named(copy: Path) -> None:
    path = copy / "approvals.jsonl"
    request, decision = path.read_bytes().splitlines()
    record = orjson.loads(request)
    sig = record["signature"]["sig"]
    record["signature"]["sig"] = ("A" if sig[0] != "A" else "B") + sig[1:]
    path.write_bytes(orjson.dumps(record, option=orjson.OPT_SORT_KEYS) + b"\n" + decision + b"\n")
    found = problems(copy)
    assert "approvals.jsonl: its SHA-256 does not match MANIFEST.json: it was changed" in found
    assert (
        f"approvals.jsonl: line 1 (approval_request {record['id']}): bad signature: the record was changed"
        " after it was signed, or signed by another key"
    ) in found
    # the decision is bound to a request no longer in the file as verified
    assert any(
        p.startswith("approvals.jsonl: line 2 (approval_decision") and "not before it" in p for p in found
    )


def test_a_chain_that_failed_is_reported(recorded: tuple[Gateway, dict[str, str]], tmp_path: Path) -> None:
    gw, _ = recorded
    data = tmp_path / "gw"
    shutil.copytree(gw.data_dir, data / "var")
    config = data / "gw.toml"
    config.write_text(gw.config_path.read_text().replace(str(gw.data_dir), str(data / "var")))
    with sqlite3.connect(data / "var" / "audit.db") as db:  # an edit behind the gateway's back
        db.execute(
            "UPDATE events SET data = replace(data, 'balance = 150', 'balance = 1') WHERE kind = 'statement'"
        )
    code, out, err = evidence("export", "--out", str(tmp_path / "pack"), "-c", str(config))
    assert code == 1 and "audit chain  FAILED at seq" in out and "(changed)" in out, out + err
    chain = json.loads((tmp_path / "pack" / "chain.json").read_text())
    assert chain["ok"] is False and chain["problem"]["code"] == "changed"
    found = problems(tmp_path / "pack")
    assert any(
        p.startswith("chain.json: the audit store FAILED verification when the pack was made: at seq")
        for p in found
    )
    # the edited row is in the pack as stored: its hash fails there too
    assert any(p.startswith("events.jsonl: line") and "was changed" in p for p in found)


# -- ranges, --out, progress --------------------------------------------------------------------------------
def _config(tmp_path: Path) -> Path:
    config = tmp_path / "gw.toml"
    config.write_text(f'[gateway]\ndata_dir = "{tmp_path / "var"}"\n\n[identity]\nissuer = "local"\n')
    return config


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat()


def _session(writer: AuditWriter, subject: str, sql: str) -> str:
    sid = writer.new_session_id()
    writer.session_open(SessionInfo(sid, "postgres", "bankdb", subject, ["dev"], "127.0.0.1:5000", "token"))
    writer.event(
        sid, "statement", {"kind": "query", "sql": sql, "tags": ["SELECT 1"], "status": "ok", "rows": 1}
    )
    writer.session_close(sid, "client_terminated", {"email": 2})
    assert writer.flush(10)
    return sid


def test_time_range(tmp_path: Path) -> None:
    config = _config(tmp_path)
    writer = AuditWriter(tmp_path / "var", 0.01)
    before = _session(writer, "early", "SELECT 'before'")
    time.sleep(0.05)
    since = time.time()
    time.sleep(0.05)
    inside = _session(writer, "middle", "SELECT 'inside'")
    time.sleep(0.05)
    until = time.time()
    time.sleep(0.05)
    _session(writer, "late", "SELECT 'after'")
    writer.close()

    out = tmp_path / "range"
    code, stdout, err = evidence("export", "--since", _iso(since), "--until", _iso(until), "--out", str(out),
                                 "-c", str(config))  # fmt: skip
    assert code == 0, stdout + err
    events = lines(out / "events.jsonl")
    assert [e["kind"] for e in events] == ["session_open", "statement", "session_close"]
    assert {e["session_id"] for e in events} == {inside} and "'inside'" in events[1]["data"]
    sessions = (out / "sessions.csv").read_text().splitlines()
    assert len(sessions) == 2 and sessions[1].startswith(f"{inside},postgres,bankdb,middle,")
    [manifest] = load_records((out / "MANIFEST.json").read_bytes())
    assert (manifest["since"], manifest["until"]) == (round(since * 1000), round(until * 1000))
    assert manifest["first_seq"] == events[0]["seq"] > 1 and manifest["counts"]["events"] == 3
    assert verify_pack(out).ok  # a range that starts mid-chain links within itself

    everything = tmp_path / "all"
    assert evidence("export", "--out", str(everything), "-c", str(config))[0] == 0
    assert {e["session_id"] for e in lines(everything / "events.jsonl") if e["session_id"]} >= {
        before,
        inside,
    }
    assert len((everything / "sessions.csv").read_text().splitlines()) == 4

    empty = tmp_path / "empty"
    code, stdout, err = evidence("export", "--until", "2001-01-01", "--out", str(empty), "-c", str(config))
    assert code == 0 and "events       0" in stdout, stdout + err
    assert (empty / "events.jsonl").read_bytes() == b"" and verify_pack(empty).ok
    assert "nothing in this range" in (empty / "report.html").read_text()


def test_dates_and_bad_ranges(tmp_path: Path) -> None:
    parse = _evidence._parse
    assert parse("2024-05-01", end=False) == dt.datetime(2024, 5, 1, tzinfo=dt.UTC).timestamp()
    assert (
        parse("2024-05-01", end=True) == dt.datetime(2024, 5, 2, tzinfo=dt.UTC).timestamp()
    )  # the whole day
    assert (
        parse("2024-05-01T12:00:00+02:00", end=True) == dt.datetime(2024, 5, 1, 10, tzinfo=dt.UTC).timestamp()
    )
    with pytest.raises(argparse.ArgumentTypeError, match="not a date"):
        parse("yesterday", end=False)
    config = _config(tmp_path)
    AuditWriter(tmp_path / "var", 0.01).close()
    code, _, err = evidence("export", "--since", "2024-05-02", "--until", "2024-05-01", "--out",
                            str(tmp_path / "p"), "-c", str(config))  # fmt: skip
    assert code == 1 and "--since must be before --until" in err and not (tmp_path / "p").exists()


def test_out_must_be_new_or_empty(tmp_path: Path) -> None:
    config = _config(tmp_path)
    writer = AuditWriter(tmp_path / "var", 0.01)
    _session(writer, "someone", "SELECT 1")
    writer.close()
    out = tmp_path / "packs" / "out"
    out.mkdir(parents=True)
    (out / "keep.txt").write_text("mine")
    code, stdout, err = evidence("export", "--out", str(out), "-c", str(config))
    assert code == 1 and stdout == "" and f"{out} is not empty" in err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"]  # no temporary directory left behind
    (out / "keep.txt").unlink()  # an empty directory is fine
    assert evidence("export", "--out", str(out), "-c", str(config))[0] == 0
    assert verify_pack(out).ok and sorted(p.name for p in out.parent.iterdir()) == ["out"]


def test_progress_bar_only_on_a_tty() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    plain = io.StringIO()
    bar = Progress("exporting events", 4, plain)
    for _ in range(4):
        bar.advance()
    bar.finish()
    assert plain.getvalue() == ""
    tty = Tty()
    bar = Progress("exporting events", 4, tty)
    bar.advance(2)
    bar.finish()
    drawn = tty.getvalue()
    assert drawn.startswith("\rexporting events [") and drawn.endswith("]  50% 2/4\n")
    assert "[" + "#" * 15 + "-" * 15 + "]" in drawn


def test_a_tombstone_keeps_its_link_but_an_edit_does_not() -> None:
    from hoopgw.audit._chain import GENESIS, event_hash
    from hoopgw.evidence._verify import _event_problem

    data = '{"sql":"SELECT 1"}'
    digest = event_hash(7, 1.5, b"s1", b"statement", data.encode(), None, GENESIS)
    event = {"seq": 7, "ts": 1.5, "session_id": "s1", "kind": "statement", "data": data, "prompt_id": None,
             "prev_hash": GENESIS, "hash": digest}  # fmt: skip
    signed = [(5, 9)]  # tombstoned ranges of the pack's signed purge records
    assert _event_problem(event, 7, GENESIS, {}, signed) == (None, False)
    erased = {**event, "data": '{"purged":3}'}
    assert _event_problem(erased, 7, GENESIS, {}, signed) == (None, True)  # erased by a signed purge
    assert _event_problem(erased, 7, GENESIS, {}, [(8, 9)]) == (
        "its data is erased, but no signed purge record in purges.jsonl lists it",
        False,
    )
    assert _event_problem({**event, "data": '{"sql":"SELECT 2"}'}, 7, GENESIS, {}, signed)[0] == (
        "was changed: its hash does not match its contents"
    )
    assert (
        _event_problem(event, 7, b"\1" * 32, {}, signed)[0]
        == "does not link to the event before it (its prev_hash differs)"
    )
    assert (
        _event_problem(event, 8, GENESIS, {}, signed)[0]
        == "expected seq 8: events are missing, inserted or out of order"
    )
    assert (
        _event_problem(event, 7, GENESIS, {7: "00" * 32}, signed)[0]
        == "differs from the signed checkpoint at its seq"
    )


def test_a_purged_store_exports_its_signed_purges(tmp_path: Path) -> None:
    from hoopgw.approvals import load_signing_key
    from hoopgw.audit._retention import purge

    config = _config(tmp_path)
    writer = AuditWriter(tmp_path / "var", 0.01, checkpoint_every=5)
    for i in range(12):
        writer.event(None, "auth_failed", {"client_addr": f"10.0.0.{i}:5000", "user": "mallory"})
    kept = _session(writer, "alice", "SELECT 'kept'")
    writer.close()
    # auth_failed kept 1 day; a week later they go; the session's events are kept forever
    result = purge(
        tmp_path / "var", {"auth_failed": 1}, time.time() + 7 * 86400, load_signing_key(tmp_path / "var")
    )
    assert result.deleted + result.tombstoned >= 10, result.to_json()
    out = tmp_path / "pack"
    code, stdout, err = evidence("export", "--out", str(out), "-c", str(config))
    assert code == 0, stdout + err
    purges = lines(out / "purges.jsonl")
    assert [p["type"] for p in purges] == ["audit_purge"] * len(purges) and purges
    assert {e["session_id"] for e in lines(out / "events.jsonl") if e["session_id"]} == {kept}
    result_ok = verify_pack(out)
    assert result_ok.ok, result_ok.problems
    # a pack whose purge record is forged no longer verifies (and names purges.jsonl)
    forged = tmp_path / "forged"
    shutil.copytree(out, forged)
    record = purges[0]
    record["tombstoned"] = [[1, 10**6]]
    (forged / "purges.jsonl").write_bytes(orjson.dumps(record) + b"\n")
    assert any(p.file == "purges.jsonl" for p in verify_pack(forged).problems)


# -- the pack is bound to the chain: edits of the tables it does not cover ---------------------------------
def _store_copy(recorded: tuple[Gateway, dict[str, str]], tmp_path: Path, *edits: str) -> Path:
    """A copy of the recorded store with ``edits`` made behind the gateway's back; its config."""
    gw, _ = recorded
    data = tmp_path / "gw"
    shutil.copytree(gw.data_dir, data / "var")
    config = data / "gw.toml"
    config.write_text(gw.config_path.read_text().replace(str(gw.data_dir), str(data / "var")))
    with sqlite3.connect(data / "var" / "audit.db") as db:
        for sql in edits:
            db.execute(sql)
    return config


def _export(config: Path, out: Path) -> str:
    code, stdout, err = evidence("export", "--out", str(out), "-c", str(config))
    assert code == 0, stdout + err  # the chain itself is intact: `audit verify` is OK
    return stdout


def _resign(pack: Path, key: Ed25519PrivateKey) -> None:
    """What whoever holds the gateway's key can do: re-sign a pack after editing its files."""
    from hoopgw.evidence import sign_manifest
    from hoopgw.evidence._manifest import file_sha256

    [manifest] = load_records((pack / "MANIFEST.json").read_bytes())
    body = {k: v for k, v in manifest.items() if k not in ("version", "type", "key_id", "signature")}
    body["files"] = {
        name: {"sha256": file_sha256(pack / name), "bytes": (pack / name).stat().st_size}
        for name in PACK_FILES
    }
    (pack / "MANIFEST.json").write_bytes(orjson.dumps(sign_manifest(key, body)))


def _bot_row(pack: Path) -> dict[str, str]:
    with (pack / "sessions.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    (bot,) = [r for r in rows if r["subject"] == "bot"]
    return bot


def test_prompt_registered_carries_the_stored_prompts_digest(
    recorded: tuple[Gateway, dict[str, str]],
) -> None:
    from hoopgw.audit._prompts import PromptStore, prompt_digest

    gw, ids = recorded
    with sqlite3.connect(gw.data_dir / "audit.db") as db:
        (data,) = db.execute(
            "SELECT data FROM events WHERE kind = 'prompt_registered' AND prompt_id = ?", (ids["prompt"],)
        ).fetchone()
    store = PromptStore(gw.data_dir)
    try:
        stored = store.get(ids["prompt"])
    finally:
        store.close()
    assert stored is not None
    assert json.loads(data)["digest"] == prompt_digest(stored)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", prompt_digest(stored))


def test_edited_sessions_table_the_chain_wins(
    recorded: tuple[Gateway, dict[str, str]], pack: Path, tmp_path: Path
) -> None:
    config = _store_copy(
        recorded,
        tmp_path,
        "UPDATE sessions SET subject = 'bob', auth = 'apikey', client_addr = '10.6.6.6:1', statements = 0,"
        " errors = 0 WHERE subject = 'bot'",
    )
    out = tmp_path / "pack"
    stdout = _export(config, out)
    assert "warning      the sessions table differs from the audit chain for 1 session" in stdout
    chain = json.loads((out / "chain.json").read_text())
    assert chain["ok"] is True and any("sessions table differs" in w for w in chain["warnings"])
    assert "Warning: the sessions table differs from the audit chain" in (out / "report.html").read_text()
    bot, real = _bot_row(out), _bot_row(pack)
    assert bot == real  # what the chain recorded, not the edited row
    assert bot["auth"] == "token" and int(bot["statements"]) >= 2
    assert verify_pack(out).ok
    assert "warnings" not in json.loads((pack / "chain.json").read_text())  # none for an intact store


def test_a_resigned_sessions_csv_is_checked_against_the_chain(
    recorded: tuple[Gateway, dict[str, str]], copy: Path, tmp_path: Path
) -> None:
    gw, _ = recorded
    bot = _bot_row(copy)
    text = (copy / "sessions.csv").read_bytes().decode()
    row = next(line for line in text.split("\r\n") if line.startswith(bot["id"] + ","))
    edited = row.replace(",bot,", ",bob,", 1).replace(",token,", ",apikey,", 1)
    edited = edited.replace(f",{bot['statements']},{bot['errors']},", ",0,0,", 1)
    (copy / "sessions.csv").write_bytes(text.replace(row, edited).encode())
    key = load_signing_key(gw.data_dir, create=False)
    _resign(copy, key)
    key_file = tmp_path / "gateway.pem"
    key_file.write_text(public_key_pem(key.public_key()))
    found = problems(copy, key_file)
    assert any(
        p.startswith(
            f"sessions.csv: line 2 (session {bot['id']}): its subject, auth differ from its session_open"
        )
        or (p.startswith("sessions.csv: line") and f"(session {bot['id']}): its subject, auth differ" in p)
        for p in found
    ), found
    assert any(f"(session {bot['id']}): 0 statements, 0 errors, but events.jsonl" in p for p in found), found


def test_deleted_approval_decisions_are_named(
    recorded: tuple[Gateway, dict[str, str]], tmp_path: Path
) -> None:
    config = _store_copy(
        recorded, tmp_path, "DELETE FROM approval_decisions", "UPDATE approval_requests SET status = 'denied'"
    )
    out = tmp_path / "pack"
    stdout = _export(config, out)
    assert "have no signed record in the store" in stdout or "has no signed record in the store" in stdout
    # the report counts the status the signed records give: no decision, not denied
    html = (out / "report.html").read_text()
    assert "<title>denied: 1</title>" not in html
    found = problems(out)
    assert any(
        p.startswith("approvals.jsonl: the signed record of decision ")
        and "approval_decided event at seq" in p
        for p in found
    ), found


def test_an_edited_request_status_is_reported_and_not_trusted(
    recorded: tuple[Gateway, dict[str, str]], tmp_path: Path
) -> None:
    _, ids = recorded
    config = _store_copy(recorded, tmp_path, "UPDATE approval_requests SET status = 'denied'")
    out = tmp_path / "pack"
    stdout = _export(config, out)
    assert f"status differs from the signed decisions for 1 request ({ids['request']})" in stdout
    html = (out / "report.html").read_text()
    assert "<title>approved: 1</title>" in html and "<title>denied: 1</title>" not in html
    assert verify_pack(out).ok  # every signed record is there


def test_a_deleted_request_is_named(recorded: tuple[Gateway, dict[str, str]], tmp_path: Path) -> None:
    _, ids = recorded
    config = _store_copy(
        recorded, tmp_path, "DELETE FROM approval_decisions", "DELETE FROM approval_requests"
    )
    out = tmp_path / "pack"
    _export(config, out)
    found = problems(out)
    assert any(
        p.startswith(f"approvals.jsonl: the signed record of request {ids['request']} is missing")
        and "approval_requested event at seq" in p
        for p in found
    ), found


def test_an_edited_prompt_is_named(recorded: tuple[Gateway, dict[str, str]], tmp_path: Path) -> None:
    _, ids = recorded
    config = _store_copy(
        recorded, tmp_path, "UPDATE prompts SET prompt = 'harmless', assistant = 'human-typed'"
    )
    out = tmp_path / "pack"
    _export(config, out)
    found = problems(out)
    assert any(
        p.startswith(f"prompts.jsonl: line 1 (prompt {ids['prompt']}): does not match the digest")
        for p in found
    ), found
    code, stdout, _ = evidence("verify", str(out), "--json")
    assert code == 1 and json.loads(stdout)["prompts_covered"] == 0


def test_a_deleted_prompt_is_named(recorded: tuple[Gateway, dict[str, str]], tmp_path: Path) -> None:
    _, ids = recorded
    config = _store_copy(recorded, tmp_path, "DELETE FROM prompts")
    out = tmp_path / "pack"
    _export(config, out)
    found = problems(out)
    assert any(p.startswith(f"prompts.jsonl: prompt {ids['prompt']} is missing") for p in found), found


def test_verify_json_says_whether_the_key_was_pinned(
    recorded: tuple[Gateway, dict[str, str]], pack: Path, tmp_path: Path
) -> None:
    gw, _ = recorded
    code, out, _ = evidence("verify", str(pack), "--json")
    own = json.loads(out)
    assert code == 0 and own["key_pinned"] is False and own["key_source"] == "public_key.pem"
    assert own["prompts_covered"] == 1 and own["prompts_not_covered"] == 0
    key_file = tmp_path / "gateway.pem"
    key_file.write_text(public_key_pem(load_signing_key(gw.data_dir, create=False).public_key()))
    code, out, _ = evidence("verify", str(pack), "--public-key", str(key_file), "--json")
    pinned = json.loads(out)
    assert code == 0 and pinned["key_pinned"] is True and pinned["key_source"] == str(key_file)


def test_a_prompt_registered_without_a_digest_is_not_covered(tmp_path: Path) -> None:
    from hoopgw.audit._prompts import Prompt, PromptStore

    config = _config(tmp_path)
    writer = AuditWriter(tmp_path / "var", 0.01)
    writer.event(None, "auth_failed", {"client_addr": "10.0.0.1:5000", "user": "x"})  # creates the store
    assert writer.flush(10)
    store = PromptStore(tmp_path / "var")
    old = Prompt(id="prm_0000000000000001", created_at=time.time(), subject="bot", auth="token", prompt="p")
    try:
        store.add(old)
    finally:
        store.close()
    writer.event(None, "prompt_registered", {"id": old.id, "subject": "bot", "auth": "token"}, old.id)
    writer.close()
    out = tmp_path / "pack"
    assert evidence("export", "--out", str(out), "-c", str(config))[0] == 0
    result = verify_pack(out)
    assert result.ok, result.problems
    assert (result.prompts_covered, result.prompts_not_covered) == (0, 1)


def test_identities_are_split_by_credential(tmp_path: Path) -> None:
    config = _config(tmp_path)
    writer = AuditWriter(tmp_path / "var", 0.01)
    for auth in ("token", "apikey", "apikey"):
        sid = writer.new_session_id()
        writer.session_open(SessionInfo(sid, "postgres", "bankdb", "alice", [], "127.0.0.1:5000", auth))
        writer.session_close(sid, "client_terminated", {})
    writer.close()
    out = tmp_path / "pack"
    assert evidence("export", "--out", str(out), "-c", str(config))[0] == 0
    html = (out / "report.html").read_text()
    assert re.search(r"<td>key:alice</td><td class=\"n\">2</td>", html), html
    assert re.search(r"<td>user:alice</td><td class=\"n\">1</td>", html), html
    assert verify_pack(out).ok
