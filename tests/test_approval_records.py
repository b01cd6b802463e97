"""Signed approval records: canonical JSON, signatures, tamper detection, keyed digests, and the CLI."""

from __future__ import annotations

import copy
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hoopgw.approvals import (
    RecordError,
    canonical,
    check_binding,
    digest_key_path,
    key_id,
    load_digest_key,
    load_public_key,
    load_records,
    load_signing_key,
    public_key_b64,
    public_key_pem,
    record_digest,
    sign_record,
    signing_key_path,
    statement_digest,
    verify_record,
)

from ._support.procs import hoopgw

DIGEST_KEY = bytes(range(32))
T0 = 1_714_564_800_000  # 2024-05-01T12:00:00Z in milliseconds


def request_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "version": 1,
        "type": "approval_request",
        "id": "apr_01",
        "requester": {"subject": "alice", "auth": "token", "groups": ["ai-agents", "readers"]},
        "connection": "bankdb",
        "statement_digest": statement_digest(
            DIGEST_KEY, "update accounts set x = $1 where id = $2", ["1", "2"]
        ),
        "statement": "update accounts set x = $1 where id = $2",
        "params_masked": ["****1111", None],
        "more_params_masked": [],
        "prompt_id": "prm_7",
        "rule": "agents",
        "approvers": ["group:dba"],
        "approvals_required": 1,
        "created_at": T0,
        "expires_at": T0 + 600_000,
        "covers": {"kind": "statement"},
    }
    body.update(changes)
    return body


def decision_body(request: dict[str, Any], **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "version": 1,
        "type": "approval_decision",
        "id": "apd_01",
        "request_id": request["id"],
        "request_digest": record_digest(request),
        "approver": {"subject": "bob", "auth": "oidc", "groups": ["dba"]},
        "decision": "approve",
        "reason": "ticket OPS-1",
        "decided_at": T0 + 30_000,
    }
    body.update(changes)
    return body


def grant_body() -> dict[str, Any]:
    return {
        "version": 1,
        "type": "access_grant",
        "id": "agr_01",
        "requester": {"subject": "carol", "auth": "apikey", "groups": []},
        "connection": "bankdb",
        "reason": "incident 42",
        "duration_ms": 1_800_000,
        "rule": "oncall",
        "approvers": ["group:dba", "group:sec"],
        "approvals_required": 2,
        "created_at": T0,
        "expires_at": T0 + 3_600_000,
    }


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def request_(key: Ed25519PrivateKey) -> dict[str, Any]:
    return sign_record(
        key,
        request_body(
            covers={
                "kind": "shape",
                "duration_ms": 60_000,
                "shape_digest": statement_digest(DIGEST_KEY, "update accounts set x = $1 where id = $2"),
            }
        ),
    )


@pytest.fixture(scope="module")
def decision(key: Ed25519PrivateKey, request_: dict[str, Any]) -> dict[str, Any]:
    return sign_record(key, decision_body(request_))


def test_round_trip(key: Ed25519PrivateKey, request_: dict[str, Any], decision: dict[str, Any]) -> None:
    grant = sign_record(key, grant_body())
    for record in (request_, decision, grant):
        verify_record(key.public_key(), record)
        assert record["signature"]["alg"] == "EdDSA"
        assert record["signature"]["kid"] == key_id(key.public_key())
        # survives a trip through a file
        verify_record(key.public_key(), load_records(orjson.dumps(record))[0])
    check_binding(request_, decision)
    deny = sign_record(key, decision_body(request_, id="apd_02", decision="deny", reason="no ticket"))
    verify_record(key.public_key(), deny)
    check_binding(request_, deny)


def test_sign_refuses_bad_records(key: Ed25519PrivateKey, request_: dict[str, Any]) -> None:
    with pytest.raises(RecordError) as info:
        sign_record(key, request_)
    assert info.value.code == "malformed"
    bad = request_body()
    del bad["rule"]
    with pytest.raises(RecordError) as info:
        sign_record(key, bad)
    assert (info.value.code, info.value.field) == ("missing_field", "rule")
    with pytest.raises(RecordError) as info:
        sign_record(key, decision_body(request_, decision="deny", reason=None))
    assert (info.value.code, info.value.field) == ("bad_field", "reason")
    with pytest.raises(RecordError) as info:
        sign_record(key, request_body(expires_at=T0))
    assert info.value.field == "expires_at"


def leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path of every value in a JSON document, containers included."""
    if path:
        yield path
    if isinstance(value, dict):
        for k, v in value.items():
            yield from leaves(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from leaves(v, (*path, i))


def tampered(record: dict[str, Any], path: tuple[Any, ...]) -> Iterator[dict[str, Any]]:
    """Copies of ``record`` with the value at ``path`` changed in every plausible way."""

    def at(doc: Any) -> tuple[Any, Any]:
        for step in path[:-1]:
            doc = doc[step]
        return doc, path[-1]

    value = at(record)[0][path[-1]]
    if isinstance(value, bool):
        replacements: list[Any] = [not value]
    elif isinstance(value, int):
        replacements = [value + 1, value - 1, str(value)]
    elif isinstance(value, str):
        replacements = [
            value + "x",
            value[:-1],
            value.upper() if value != value.upper() else value.lower(),
            None,
        ]
    elif value is None:
        replacements = ["x", 0]
    elif isinstance(value, list):
        replacements = [
            [*value, value[0] if value else "x"],
            value[:-1] if value else None,
            list(reversed(value)) if len(value) > 1 else {},
        ]
    else:
        replacements = [{**value, "extra": 1}, {k: v for k, v in list(value.items())[1:]}, []]
    for new in replacements:
        doc = copy.deepcopy(record)
        parent, last = at(doc)
        if parent[last] == new and type(parent[last]) is type(new):
            continue
        parent[last] = new
        yield doc
    if isinstance(path[-1], str):  # remove the field
        doc = copy.deepcopy(record)
        parent, last = at(doc)
        del parent[last]
        yield doc


@pytest.mark.parametrize("which", ["request", "decision", "grant"])
def test_tampering_with_any_field_fails(
    which: str, key: Ed25519PrivateKey, request_: dict[str, Any], decision: dict[str, Any]
) -> None:
    record = {"request": request_, "decision": decision, "grant": sign_record(key, grant_body())}[which]
    public = key.public_key()
    paths = list(leaves(record))
    assert ("signature", "sig") in paths and ("signature", "kid") in paths
    assert which != "request" or {("requester", "groups", 1), ("covers", "shape_digest")} <= set(paths)
    checked = 0
    for path in paths:
        for doc in tampered(record, path):
            with pytest.raises(RecordError):
                verify_record(public, doc)
            checked += 1
    # an extra field anywhere an object is
    for path in [(), *(p for p in paths if isinstance(_get(record, p), dict))]:
        doc = copy.deepcopy(record)
        _get(doc, path)["zzz"] = "x"
        with pytest.raises(RecordError) as info:
            verify_record(public, doc)
        assert info.value.code == "extra_field"
        checked += 1
    assert checked > 3 * len(paths)


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        doc = doc[step]
    return doc


def test_precise_errors(key: Ed25519PrivateKey, request_: dict[str, Any]) -> None:
    public = key.public_key()

    def code(doc: Any) -> tuple[str, str | None]:
        with pytest.raises(RecordError) as info:
            verify_record(public, doc)
        return info.value.code, info.value.field

    assert code({**request_, "version": 2}) == ("wrong_version", "version")
    assert code({**request_, "version": True}) == ("wrong_version", "version")
    assert code({**request_, "type": "approval"}) == ("unknown_type", "type")
    assert code({k: v for k, v in request_.items() if k != "signature"}) == ("missing_field", "signature")
    assert code({k: v for k, v in request_.items() if k != "connection"}) == ("missing_field", "connection")
    assert code({**request_, "note": "hi"}) == ("extra_field", "note")
    assert code({**request_, "connection": "otherdb"}) == ("bad_signature", "signature.sig")
    assert code({**request_, "signature": {**request_["signature"], "alg": "none"}}) == (
        "unsupported_alg",
        "signature.alg",
    )
    assert code({**request_, "signature": {**request_["signature"], "kid": "abc"}}) == (
        "unknown_kid",
        "signature.kid",
    )
    assert code({**request_, "created_at": float(T0)}) == ("bad_field", "created_at")
    assert code([request_]) == ("malformed", None)


def test_key_order_does_not_matter(key: Ed25519PrivateKey, request_: dict[str, Any]) -> None:
    def reverse(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: reverse(value[k]) for k in reversed(list(value))}
        return value

    shuffled = reverse(request_)
    assert list(shuffled) != list(request_)
    verify_record(key.public_key(), shuffled)
    text = json.dumps(shuffled, indent=4).encode()  # whitespace and order as a person might write them
    verify_record(key.public_key(), load_records(text)[0])
    assert canonical(shuffled) == canonical(request_)


def test_canonical_form_is_plain_sorted_json() -> None:
    doc = {"z": 'é\u2028\x00\x1f"\\/', "a": [1, True, None, -(2**53 - 1)], "m": {"b": {}, "a": []}}
    expected = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert canonical(doc) == expected  # the same bytes RFC 8785 gives for these values
    for bad in (float("nan"), float("inf"), 1.5, 2**53, "\ud800", b"x", (1,)):
        with pytest.raises(RecordError) as info:
            canonical({"x": bad})
        assert info.value.code == "not_canonical"


def test_load_records_is_strict() -> None:
    for text, reason in [
        (b'{"a": 1, "a": 2}', "duplicate key"),
        (b'{"a": NaN}', "NaN"),
        (b'{"a": 1.0}', "integer"),
        (b"[]", "non-empty"),
        (b"[1]", "not a JSON object"),
        (b"\xff", "UTF-8"),
        (b"{", "not JSON"),
    ]:
        with pytest.raises(RecordError, match=reason):
            load_records(text)


def test_decision_bound_to_another_request_fails(key: Ed25519PrivateKey, request_: dict[str, Any]) -> None:
    other = sign_record(key, request_body(id="apr_02"))
    # same id, different content (a later edit of the request): the digest no longer matches
    edited = sign_record(key, request_body(approvals_required=2))
    assert edited["id"] == request_["id"]
    decision = sign_record(key, decision_body(request_))
    for req, field in [(other, "request_id"), (edited, "request_digest")]:
        with pytest.raises(RecordError) as info:
            check_binding(req, decision)
        assert (info.value.code, info.value.field) == ("unbound", field)
    forged = sign_record(key, decision_body(request_, request_id="apr_02"))
    with pytest.raises(RecordError) as info:
        check_binding(other, forged)
    assert info.value.field == "request_digest"
    late = sign_record(key, decision_body(request_, decided_at=request_["expires_at"] + 1))
    self_approved = sign_record(
        key, decision_body(request_, approver={"subject": "alice", "auth": "apikey", "groups": ["dba"]})
    )
    for bad, field in [(late, "decided_at"), (self_approved, "approver.subject")]:
        with pytest.raises(RecordError) as info:
            check_binding(request_, bad)
        assert info.value.field == field


def test_wrong_key_fails(request_: dict[str, Any]) -> None:
    other = Ed25519PrivateKey.generate()
    with pytest.raises(RecordError) as info:
        verify_record(other.public_key(), request_)
    assert info.value.code == "unknown_kid"
    # claiming the other key's id does not help: the signature is still not its
    relabelled = {**request_, "signature": {**request_["signature"], "kid": key_id(other.public_key())}}
    with pytest.raises(RecordError) as info:
        verify_record(other.public_key(), relabelled)
    assert info.value.code == "bad_signature"


def test_statement_digest_is_keyed_and_unambiguous() -> None:
    other_key = bytes(32)
    digest = statement_digest(DIGEST_KEY, "select $1", ["4111111111111111"])
    assert digest == statement_digest(DIGEST_KEY, "select $1", ["4111111111111111"])
    assert digest != statement_digest(other_key, "select $1", ["4111111111111111"])
    assert digest.startswith("hmac-sha256:") and len(digest) == len("hmac-sha256:") + 64
    pairs: list[tuple[str, list[str | None]]] = [
        ("ab", ["c"]),
        ("a", ["bc"]),
        ("abc", []),
        ("ab", ["c", None]),
        ("ab", ["c", ""]),
        ("ab", [None, "c"]),
        ("ab", ["", "c"]),
        ("a", ["b", "c"]),
    ]
    same = [statement_digest(DIGEST_KEY, sql, params) for sql, params in pairs]
    assert len(set(same)) == len(same)
    assert statement_digest(DIGEST_KEY, "x", [b"\x00\x01"]) != statement_digest(DIGEST_KEY, "x", ["\x00"])
    with pytest.raises(ValueError, match="at least 32"):
        statement_digest(b"short", "x")


def test_key_files_are_private_and_reused(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    with pytest.raises(Exception, match="no approvals signing key"):
        load_signing_key(data_dir, create=False)
    first = load_signing_key(data_dir)
    digest_key = load_digest_key(data_dir)
    for path in (signing_key_path(data_dir), digest_key_path(data_dir)):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(digest_key) == 32
    assert key_id(load_signing_key(data_dir, create=False).public_key()) == key_id(first.public_key())
    assert load_digest_key(data_dir) == digest_key
    assert sorted(p.name for p in data_dir.iterdir()) == [
        "approvals_ed25519.pem",
        "digest_key",
    ]  # no temp files
    digest_key_path(data_dir).write_bytes(b"short")
    with pytest.raises(Exception, match="holds 5 bytes"):
        load_digest_key(data_dir)


def test_public_key_exports(key: Ed25519PrivateKey) -> None:
    public = key.public_key()
    raw = public_key_b64(public)
    assert len(raw) == 43 and "=" not in raw
    for text in (public_key_pem(public), raw, f"key id: x\n{public_key_pem(public)}"):
        assert key_id(load_public_key(text.encode())) == key_id(public)
    assert len(key_id(public)) == 43
    with pytest.raises(ValueError, match="not a PEM public key"):
        load_public_key(b"hello")


# --- the command line -------------------------------------------------------------------------------


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "gw.toml"
    path.write_text('[gateway]\ndata_dir = "var"\n')
    return path


def test_signing_key_command(config_file: Path) -> None:
    first = hoopgw("signing-key", "-c", config_file)
    assert first.returncode == 0, first.stderr
    second = hoopgw("signing-key", "-c", config_file)
    assert second.returncode == 0 and second.stdout == first.stdout
    kid = first.stdout.splitlines()[0].removeprefix("key id: ")
    data_dir = config_file.parent / "var"
    assert kid == key_id(load_signing_key(data_dir, create=False).public_key())
    assert "-----BEGIN PUBLIC KEY-----" in first.stdout
    assert key_id(load_public_key(first.stdout.encode())) == kid  # the output is itself a key file
    as_json = hoopgw("signing-key", "--json", "-c", config_file)
    [entry] = json.loads(as_json.stdout)
    assert entry["id"] == kid and entry["status"] == "active" and entry["pem"] in first.stdout


def test_cli_verify(config_file: Path, tmp_path: Path) -> None:
    assert hoopgw("signing-key", "-c", config_file).returncode == 0
    key = load_signing_key(config_file.parent / "var", create=False)
    request = sign_record(key, request_body())
    decision = sign_record(key, decision_body(request))
    one = tmp_path / "request.json"
    one.write_bytes(orjson.dumps(request, option=orjson.OPT_INDENT_2))
    both = tmp_path / "both.json"
    both.write_bytes(orjson.dumps([request, decision]))

    result = hoopgw("approvals", "verify", one, "-c", config_file)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK: approval_request apr_01: alice on bankdb")
    result = hoopgw("approvals", "verify", both, "-c", config_file)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and lines[1].startswith("OK: record 2 (approval_decision apd_01): bob approves")
    assert "bound to request apr_01 in this file" in lines[1]

    # with only the public key, saved from `hoopgw signing-key`, and no config at all
    pem = tmp_path / "gateway.pem"
    pem.write_text(hoopgw("signing-key", "-c", config_file).stdout)
    result = hoopgw("approvals", "verify", both, "--public-key", pem, cwd=tmp_path / "var")
    assert result.returncode == 0, result.stderr

    tampered = tmp_path / "tampered.json"
    tampered.write_bytes(orjson.dumps({**request, "connection": "otherdb"}))
    result = hoopgw("approvals", "verify", tampered, "-c", config_file)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == (
        f"hoopgw: {tampered}: approval_request apr_01: bad signature: the record was changed after it was"
        " signed, or signed by another key\n"
    )

    other = sign_record(key, request_body(id="apr_02"))
    wrong = tmp_path / "wrong.json"
    wrong.write_bytes(orjson.dumps([other, decision]))
    result = hoopgw("approvals", "verify", wrong, "-c", config_file, "--json")
    assert result.returncode == 1
    out = json.loads(result.stdout)
    assert [(o["id"], o["status"]) for o in out] == [("apr_02", "valid"), ("apd_01", "invalid")]
    assert out[1]["code"] == "unbound" and "apr_01 is not in this file" in out[1]["error"]

    missing = hoopgw("approvals", "verify", tmp_path / "nope.json", "-c", config_file)
    assert missing.returncode == 1 and "cannot read" in missing.stderr and "Traceback" not in missing.stderr
    no_key = hoopgw("approvals", "verify", one, "--public-key", one)
    assert no_key.returncode == 1 and "not a PEM public key" in no_key.stderr


def test_cli_verify_does_not_create_a_key(tmp_path: Path) -> None:
    config = tmp_path / "gw.toml"
    config.write_text('[gateway]\ndata_dir = "fresh"\n')
    record = tmp_path / "r.json"
    record.write_text("{}")
    result = hoopgw("approvals", "verify", record, "-c", config)
    assert result.returncode == 1 and "no approvals signing key" in result.stderr
    assert not (tmp_path / "fresh" / "approvals_ed25519.pem").exists()
