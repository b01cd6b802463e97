"""SSH client identities: registered public keys (SshKeyStore, SQLite and PostgreSQL), the gateway's SSH
user CA (SshCertAuthority, checked with the real ``ssh-keygen``), and both at a real asyncssh server that
the real OpenSSH ``ssh`` client logs in to through :class:`SshClientAuth`."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import stat
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, rsa

from hoopgw.audit._db import Store
from hoopgw.identity import Principal, SshCertAuthority, SshClientAuth, SshKeyStore, SshKeyTaken
from hoopgw.identity._sshca import CA_FILE, certificate_from_blob, parse_key_id
from hoopgw.identity._sshkeys import parse_public_key

from ._support.pg import TestPg
from ._support.procs import require_binary, run

ALICE = Principal(subject="alice", groups=frozenset({"dev", "ops"}), auth="token", email="alice@bank.example")


# ------------------------------------------------------------------------------------------------- keys
def keygen(path: Path, kind: str = "ed25519", *extra: str, comment: str = "alice@laptop") -> Path:
    """A key pair made by the real ssh-keygen; returns the private key's path (``.pub`` next to it)."""
    res = run(
        [require_binary("ssh-keygen"), "-q", "-t", kind, *extra, "-N", "", "-C", comment, "-f", str(path)],
        timeout=30,
    )
    assert res.returncode == 0, res.stderr
    return path


def keygen_fingerprint(pub: Path) -> str:
    res = run([require_binary("ssh-keygen"), "-l", "-E", "sha256", "-f", str(pub)], timeout=30)
    assert res.returncode == 0, res.stderr
    return res.stdout.split()[1]


def cert_listing(cert: Path) -> str:
    """``ssh-keygen -L -f CERT``: how OpenSSH reads a certificate."""
    res = run([require_binary("ssh-keygen"), "-L", "-f", str(cert)], timeout=30)
    assert res.returncode == 0, res.stderr
    return res.stdout


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Key pairs of each kind (private key paths)."""
    d = tmp_path_factory.mktemp("keys")
    out = {
        "ed25519": keygen(d / "id_ed25519"),
        "ecdsa": keygen(d / "id_ecdsa", "ecdsa", "-b", "384"),
        "rsa": keygen(d / "id_rsa", "rsa", "-b", "3072"),
        "other": keygen(d / "other_ed25519", comment="bob@desk"),
        "ca2": keygen(d / "other_ca", comment="someone else's CA"),
    }
    # ssh-keygen refuses to make weak keys now: make them with cryptography
    weak = rsa.generate_private_key(65537, 1024)
    (d / "weak_rsa.pub").write_bytes(
        weak.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        + b" weak\n"
    )
    with warnings.catch_warnings():  # cryptography deprecates DSA, which is the point
        warnings.simplefilter("ignore")
        dss = dsa.generate_private_key(1024)
        (d / "dsa.pub").write_bytes(
            dss.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        )
    out["weak_rsa"] = d / "weak_rsa"
    out["dsa"] = d / "dsa"
    return out


def pub(path: Path) -> str:
    return Path(f"{path}.pub").read_text()


def test_parse_accepts_good_keys(keys: dict[str, Path]) -> None:
    for kind, algorithm in (("ed25519", "ssh-ed25519"), ("ecdsa", "ecdsa-sha2-nistp384"), ("rsa", "ssh-rsa")):
        parsed = parse_public_key(pub(keys[kind]))
        assert parsed.algorithm == algorithm
        assert parsed.fingerprint == keygen_fingerprint(Path(f"{keys[kind]}.pub"))
        assert parsed.public_key == " ".join(pub(keys[kind]).split()[:2])
        assert parsed.comment == "alice@laptop"
    # surrounding blank lines and comment lines are fine; a control character in the comment is dropped
    text = "\n# my laptop\n" + pub(keys["ed25519"]).strip() + "\x1b[2J\n\n"
    assert parse_public_key(text).comment == "alice@laptop[2J"


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("private", "PRIVATE key"),
        ("cert", "certificate, not a public key"),
        ("garbage", "not an OpenSSH public key"),
        ("empty", "no public key given"),
        ("two", "exactly one public key"),
        ("truncated", "not a valid ssh-ed25519 public key"),
        ("mismatch", "not of type 'ssh-rsa'"),
        ("dsa", "DSA keys are too weak"),
        ("weak_rsa", "at least 2048 bits (this one has 1024)"),
        ("unknown", "key type 'ssh-foo' is not accepted"),
        ("huge", "longer than"),
    ],
)
def test_parse_refuses(keys: dict[str, Path], tmp_path: Path, case: str, reason: str) -> None:
    good = pub(keys["ed25519"])
    alg, b64 = good.split()[:2]
    if case == "cert":
        ca = SshCertAuthority(tmp_path)
        text = ca.sign(ALICE, good, 3600)
    else:
        text = {
            "private": keys["ed25519"].read_text() if case == "private" else "",
            "garbage": "hello world, this is not a key",
            "empty": "\n  \n# nothing\n",
            "two": good + pub(keys["rsa"]),
            "truncated": f"{alg} {b64[:-12]}",
            "mismatch": f"ssh-rsa {b64}",
            "dsa": pub(keys["dsa"]) if case == "dsa" else "",
            "weak_rsa": pub(keys["weak_rsa"]) if case == "weak_rsa" else "",
            "unknown": "ssh-foo " + __import__("base64").b64encode(b"\0\0\0\x07ssh-foo" + b"x" * 32).decode(),
            "huge": good + " " + "x" * 20000,
        }[case]
    with pytest.raises(ValueError, match=re.escape(reason)):
        parse_public_key(text)


# ------------------------------------------------------------------------------------------------ store
@pytest.fixture(scope="module")
def pg_url(pg: TestPg) -> Iterator[str]:
    """A fresh database of the test cluster (and its owner role) for a PostgreSQL store."""
    from hoopgw._pgcluster import Role

    suffix = secrets.token_hex(4)
    role, database = f"sshkeys_{suffix}", f"sshkeys_{suffix}"
    password = secrets.token_urlsafe(18)
    pg.cluster.add_role(Role(role, password=password))
    pg.cluster.create_database(database, owner=role)
    c = pg.cluster
    yield f"postgresql://{role}:{password}@{c.host}:{c.port}/{database}"
    pg.cluster.kill_backends(db=database)
    pg.cluster.psql(f"DROP DATABASE IF EXISTS {database}")


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SshKeyStore]:
    if request.param == "sqlite":
        where: Path | Store = tmp_path
    else:
        url: str = request.getfixturevalue("pg_url")
        where = Store(tmp_path, url)
        where.connect(create=True).close()  # the gateway creates (and migrates) the store when it starts
    keystore = SshKeyStore(where)
    yield keystore
    keystore.close()


def test_store_add_list_lookup_remove(store: SshKeyStore, keys: dict[str, Path]) -> None:
    # each parametrisation has a fresh SQLite file; the PostgreSQL database is shared by the module
    for record in store.list():
        store.remove(record["id"], "user:cleanup")
    key = asyncssh.import_public_key(pub(keys["ed25519"]))
    assert store.principal_for(key) is None

    added = store.add("alice", ["ops", "dev", "dev"], pub(keys["ed25519"]), "user:root")
    fp = keygen_fingerprint(Path(f"{keys['ed25519']}.pub"))
    assert added["id"] == added["fingerprint"] == fp and added["status"] == "active"
    assert (
        added["groups"] == ["dev", "ops"] and added["subject"] == "alice" and added["added_by"] == "user:root"
    )
    assert added["algorithm"] == "ssh-ed25519" and added["comment"] == "alice@laptop"
    assert added["public_key"] == " ".join(pub(keys["ed25519"]).split()[:2])
    assert added["created_at"] == pytest.approx(time.time(), abs=30)

    principal = store.principal_for(key)
    assert principal == Principal("alice", frozenset({"dev", "ops"}), "sshkey", token_id=fp)
    assert (
        principal.matches("user:alice")
        and principal.matches("group:ops")
        and not principal.matches("key:alice")
    )
    assert store.principal_for(asyncssh.import_public_key(pub(keys["other"]))) is None

    with pytest.raises(SshKeyTaken, match=r"already registered \(to alice\)"):
        store.add("bob", [], pub(keys["ed25519"]), "user:root")
    with pytest.raises(ValueError, match="subject"):
        store.add("", [], pub(keys["rsa"]), "user:root")
    with pytest.raises(ValueError, match="each group"):
        store.add("bob", ["not a group"], pub(keys["rsa"]), "user:root")
    with pytest.raises(ValueError, match="PRIVATE"):
        store.add("bob", [], keys["rsa"].read_text(), "user:root")
    store.add("bob", [], pub(keys["rsa"]), "user:root")
    assert [r["subject"] for r in store.list() if r["status"] == "active"] == ["bob", "alice"]

    # removal: by fingerprint with or without the SHA256: prefix; immediate; history kept; re-adding works
    assert store.remove(fp.removeprefix("SHA256:"), "user:root") is True
    assert store.remove(fp, "user:root") is False
    assert store.remove("not a fingerprint", "user:root") is False
    assert store.principal_for(key) is None
    [old] = [r for r in store.list() if r["id"] == fp]
    assert (
        old["status"] == "removed"
        and old["removed_by"] == "user:root"
        and old["removed_at"] >= old["created_at"]
    )
    again = store.add("alice", ["dev"], pub(keys["ed25519"]), "user:root")
    assert again["id"] == fp and len([r for r in store.list() if r["id"] == fp]) == 2
    replaced = store.principal_for(key)
    assert replaced is not None and replaced.groups == frozenset({"dev"})
    # another store object (another gateway node, or the CLI) sees the same table
    other = SshKeyStore(store.store)
    try:
        assert other.principal_for(key) == replaced
    finally:
        other.close()


def test_store_unavailable_refuses_without_crashing(tmp_path: Path, keys: dict[str, Path]) -> None:
    store = SshKeyStore(Store(tmp_path, "postgresql://nobody:x@127.0.0.1:1/none?connect_timeout=2"))
    assert store.principal_for(asyncssh.import_public_key(pub(keys["ed25519"]))) is None


# --------------------------------------------------------------------------------------------------- CA
def test_ca_key_file_is_private_and_shared(tmp_path: Path) -> None:
    ca = SshCertAuthority(tmp_path)
    public = ca.public_key
    path = tmp_path / CA_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and b"PRIVATE KEY" in path.read_bytes()
    assert SshCertAuthority(tmp_path).public_key.public_data == public.public_data
    assert public.get_algorithm() == "ssh-ed25519"
    assert not [p for p in tmp_path.iterdir() if p.name != CA_FILE]  # no temporary file left behind


def test_signed_certificate_as_openssh_reads_it(tmp_path: Path, keys: dict[str, Path]) -> None:
    ca = SshCertAuthority(tmp_path / "var")
    before = int(time.time())
    text = ca.sign(ALICE, pub(keys["ed25519"]), 8 * 3600)
    assert text.startswith("ssh-ed25519-cert-v01@openssh.com ") and "\n" not in text
    cert_path = tmp_path / "id_ed25519-cert.pub"
    cert_path.write_text(text + "\n")
    listing = cert_listing(cert_path)
    assert "Type: ssh-ed25519-cert-v01@openssh.com user certificate" in listing
    key_id = re.search(r'Key ID: "(.*)"\n', listing)
    assert key_id is not None
    doc = orjson.loads(key_id.group(1).removeprefix("hoopgw:"))
    assert doc["sub"] == "alice" and doc["groups"] == ["dev", "ops"] and doc["email"] == "alice@bank.example"
    assert before + 8 * 3600 <= doc["exp"] <= int(time.time()) + 8 * 3600
    assert re.search(r"Principals: \n\s+alice\n", listing)
    assert "Critical Options: (none)" in listing and "force-command" not in listing
    assert "permit-pty" in listing and "permit-port-forwarding" in listing
    ca_pub = tmp_path / "ca.pub"
    ca_pub.write_bytes(ca.public_key.export_public_key("openssh"))
    assert f"Signing CA: ED25519 {keygen_fingerprint(ca_pub)}" in listing
    user_fp = keygen_fingerprint(Path(f"{keys['ed25519']}.pub"))
    assert f"Public key: ED25519-CERT {user_fp}" in listing

    cert = asyncssh.import_certificate(text)
    principal = ca.principal_of(cert)
    assert principal is not None
    assert (principal.subject, principal.groups, principal.auth) == ("alice", ALICE.groups, "sshcert")
    assert principal.email == "alice@bank.example" and principal.expires_at == doc["exp"]
    assert principal.token_id is not None and re.fullmatch(r"[0-9a-f]{16}", principal.token_id)
    assert principal.matches("user:alice") and not principal.matches("key:alice")
    # the blob a client offers decodes to the same certificate
    blob = cert.public_data
    decoded = certificate_from_blob(blob)
    assert decoded is not None and ca.principal_of(decoded) == principal
    assert certificate_from_blob(asyncssh.import_public_key(pub(keys["ed25519"])).public_data) is None
    assert certificate_from_blob(blob[:-1]) is None and certificate_from_blob(b"\0\0") is None


def test_principal_of_refuses(tmp_path: Path, keys: dict[str, Path]) -> None:
    ca = SshCertAuthority(tmp_path / "a")
    other = SshCertAuthority(tmp_path / "b")
    key = pub(keys["ed25519"])
    now = time.time()

    def cert(text: str) -> asyncssh.SSHCertificate:
        return asyncssh.import_certificate(text)

    good = cert(ca.sign(ALICE, key, 600))
    assert ca.principal_of(good) is not None
    assert other.principal_of(good) is None  # another CA's
    assert ca.principal_of(cert(other.sign(ALICE, key, 600))) is None
    assert ca.principal_of(good, now=now + 601) is None  # expired
    assert ca.principal_of(good, now=now - 120) is None  # not yet valid (60 s of back-dating only)
    assert ca.principal_of(good, now=now - 30) is not None
    assert ca.principal_of(cert(ca.sign(ALICE, key, 3600, now=now - 7200))) is None

    signer = ca.private_key
    user_key = asyncssh.import_public_key(key)

    def made(key_id: str, principals: list[str], host: bool = False) -> asyncssh.SSHCertificate:
        gen = signer.generate_host_certificate if host else signer.generate_user_certificate
        return gen(
            user_key, key_id, principals=principals, valid_after=int(now) - 60, valid_before=int(now) + 600
        )

    kid = 'hoopgw:{"sub":"alice","groups":["dev"],"exp":1}'
    assert ca.principal_of(made(kid, ["alice"])) is not None
    assert ca.principal_of(made(kid, ["alice"], host=True)) is None  # a host certificate
    assert ca.principal_of(made(kid, ["bob"])) is None  # principals disagree with the key id
    assert ca.principal_of(made(kid, [])) is None
    assert ca.principal_of(made(kid, ["alice", "root"])) is None
    for bad in ("alice", "hoopgw:", "hoopgw:[1]", 'hoopgw:{"sub":"alice"}', 'hoopgw:{"sub":"","groups":[]}',
                'hoopgw:{"sub":"alice","groups":[1]}'):  # fmt: skip
        assert ca.principal_of(made(bad, ["alice"])) is None, bad
    assert parse_key_id(kid) == ("alice", frozenset({"dev"}), None)

    with pytest.raises(ValueError, match="lifetime"):
        ca.sign(ALICE, key, 0)
    with pytest.raises(ValueError, match="PRIVATE"):
        ca.sign(ALICE, keys["ed25519"].read_text(), 60)


# --------------------------------------------------------------------- a real asyncssh server + OpenSSH
@dataclass
class Logins:
    """What the test server saw: (ssh user name, Principal) per completed login, and refusals."""

    done: list[tuple[str, Principal | None]] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    #: subjects no "policy" lets in
    banned: frozenset[str] = frozenset()


class GatewayLikeServer(asyncssh.SSHServer):
    """The callbacks the gateway's SSH listener implements, exactly as docs/SSH.md shows them."""

    def __init__(self, keys: SshKeyStore, ca: SshCertAuthority, logins: Logins) -> None:
        self.auth = SshClientAuth(keys, ca, accept=self.accept, refused=self.refused)
        self.logins = logins
        self.username = ""

    def accept(self, principal: Principal) -> bool:
        return principal.subject not in self.logins.banned  # the gateway asks its policies here

    def refused(self, method: str, reason: str) -> None:
        self.logins.refused.append((method, reason))  # the gateway writes an auth_failed event here

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.auth.attach(conn)

    def begin_auth(self, username: str) -> bool:
        self.username = username
        return True  # authentication is required

    def public_key_auth_supported(self) -> bool:
        return True

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return await self.auth.validate_public_key(key)

    def validate_ca_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return self.auth.validate_ca_key(key)

    def auth_completed(self) -> None:
        self.logins.done.append((self.username, self.auth.principal))


def _exit_ok(process: asyncssh.SSHServerProcess[Any]) -> None:
    process.exit(0)


@dataclass
class Client:
    """Key files for the OpenSSH client (0600, as ssh insists)."""

    dir: Path

    def key(self, source: Path, name: str) -> Path:
        dest = self.dir / name
        dest.write_bytes(source.read_bytes())
        dest.chmod(0o600)
        Path(f"{dest}.pub").write_text(pub(source))
        return dest


async def _ssh(port: int, key: Path, cert: Path | None, user: str = "bankhost") -> tuple[int, str]:
    """Run the real ssh client (batch mode, publickey only, this key and certificate only)."""
    cmd = [
        require_binary("ssh"),
        "-F", "/dev/null",
        "-i", str(key),
        "-o", f"CertificateFile={cert}" if cert else "CertificateFile=none",
        "-o", "IdentitiesOnly=yes",
        "-o", "IdentityAgent=none",
        "-o", "BatchMode=yes",
        "-o", "PreferredAuthentications=publickey",
        "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null",
        "-o", "ConnectTimeout=10",
        "-p", str(port),
        f"{user}@127.0.0.1",
        "true",
    ]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    async with asyncio.timeout(30):
        _, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, err.decode(errors="replace")


def test_openssh_logs_in_with_registered_keys_and_gateway_certificates(
    tmp_path: Path, keys: dict[str, Path]
) -> None:
    store = SshKeyStore(tmp_path / "var")
    ca = SshCertAuthority(tmp_path / "var")
    other_ca = SshCertAuthority(tmp_path / "other")
    client = Client(tmp_path)
    registered = client.key(keys["ed25519"], "id_registered")
    store.add("alice", ["dev"], pub(registered), "user:root")
    stranger = client.key(keys["other"], "id_stranger")  # never registered
    carol = client.key(keys["ecdsa"], "id_carol")  # registered, then removed
    store.add("carol", ["ops"], pub(carol), "user:root")

    def cert(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text + "\n")
        return path

    bob = Principal("bob", frozenset({"dba"}), "token")
    good_cert = cert("good-cert.pub", ca.sign(bob, pub(stranger), 3600))
    expired = cert("expired-cert.pub", ca.sign(bob, pub(stranger), 3600, now=time.time() - 7200))
    foreign = cert("foreign-cert.pub", other_ca.sign(bob, pub(stranger), 3600))
    # a certificate of another CA made by ssh-keygen with a key id and principal of our format
    ssh_keygen_cert = tmp_path / "id_stranger-cert.pub"
    kid = 'hoopgw:{"sub":"bob","groups":["admins"],"exp":9999999999}'
    res = run(
        [require_binary("ssh-keygen"), "-q", "-s", str(keys["ca2"]), "-I", kid, "-n", "bob", "-V", "-5m:+1h",
         str(Path(f"{stranger}.pub"))],
        timeout=30,
    )  # fmt: skip
    assert res.returncode == 0 and ssh_keygen_cert.exists(), res.stderr
    logins = Logins()

    async def main() -> None:
        host_key = asyncssh.generate_private_key("ssh-ed25519")
        server = await asyncssh.create_server(
            lambda: GatewayLikeServer(store, ca, logins),
            "127.0.0.1",
            0,
            server_host_keys=[host_key],
            process_factory=_exit_ok,
        )
        port = server.sockets[0].getsockname()[1]
        try:
            # a registered key, with either spelling of the user name
            for user in ("bankhost", "alice@bankhost"):
                code, err = await _ssh(port, registered, None, user)
                assert code == 0, err
            # the gateway's certificate for a key nobody registered
            code, err = await _ssh(port, stranger, good_cert)
            assert code == 0, err
            # refused: an unknown key, an expired certificate, other CAs' certificates, a removed key
            refused = [
                (stranger, None),
                (stranger, expired),
                (stranger, foreign),
                (stranger, ssh_keygen_cert),
            ]
            for key, certificate in refused:
                code, err = await _ssh(port, key, certificate)
                assert code == 255 and "Permission denied (publickey)" in err, (certificate, err)
            code, err = await _ssh(port, carol, None)
            assert code == 0, err
            # refused by "policy" (accept says no): a registered key and a good certificate
            logins.banned = frozenset({"carol", "bob"})
            for key, certificate in ((carol, None), (stranger, good_cert)):
                code, err = await _ssh(port, key, certificate)
                assert code == 255 and "Permission denied (publickey)" in err, err
            logins.banned = frozenset()
            store.remove(keygen_fingerprint(Path(f"{carol}.pub")), "user:root")
            code, err = await _ssh(port, carol, None)
            assert code == 255 and "Permission denied (publickey)" in err, err
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(main(), debug=True)
    fp = keygen_fingerprint(Path(f"{registered}.pub"))
    alice = Principal("alice", frozenset({"dev"}), "sshkey", token_id=fp)
    carol_fp = keygen_fingerprint(Path(f"{carol}.pub"))
    carol_p = Principal("carol", frozenset({"ops"}), "sshkey", token_id=carol_fp)
    assert [(u, p) for u, p in logins.done if p is None or p.auth == "sshkey"] == [
        ("bankhost", alice),
        ("alice@bankhost", alice),
        ("bankhost", carol_p),
    ]
    [(user, by_cert)] = [(u, p) for u, p in logins.done if p is not None and p.auth == "sshcert"]
    assert user == "bankhost" and by_cert is not None
    assert (by_cert.subject, by_cert.groups) == ("bob", frozenset({"dba"}))
    assert len(logins.done) == 4
    # each refusal of an unknown key or a bad certificate was reported (OpenSSH tries the certificate, then
    # the bare key: both are refused)
    stranger_fp = keygen_fingerprint(Path(f"{stranger}.pub"))
    assert ("publickey", f"no registered key {stranger_fp}") in logins.refused
    assert ("publickey", f"no registered key {carol_fp}") in logins.refused
    certs = [r for r in logins.refused if r[0] == "certificate"]
    assert len(certs) >= 3 and all("not from the gateway's SSH user CA" in why for _, why in certs)
    store.close()


def test_a_server_that_forgets_attach_refuses_everyone(tmp_path: Path, keys: dict[str, Path]) -> None:
    """Fail closed: without ``attach`` the helper accepts neither keys nor certificates."""
    store = SshKeyStore(tmp_path / "var")
    ca = SshCertAuthority(tmp_path / "var")
    client = Client(tmp_path)
    key = client.key(keys["ed25519"], "id_key")
    store.add("alice", [], pub(key), "user:root")
    cert = tmp_path / "c-cert.pub"
    cert.write_text(ca.sign(ALICE, pub(key), 600) + "\n")

    class Forgetful(GatewayLikeServer):
        def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
            pass

    logins = Logins()

    async def main() -> None:
        server = await asyncssh.create_server(
            lambda: Forgetful(store, ca, logins),
            "127.0.0.1",
            0,
            server_host_keys=[asyncssh.generate_private_key("ssh-ed25519")],
            process_factory=_exit_ok,
        )
        port = server.sockets[0].getsockname()[1]
        try:
            for certificate in (None, cert):
                code, err = await _ssh(port, key, certificate)
                assert code == 255 and "Permission denied" in err, err
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(main(), debug=True)
    assert logins.done == []
    store.close()


def test_no_private_material_in_the_store(tmp_path: Path, keys: dict[str, Path]) -> None:
    store = SshKeyStore(tmp_path)
    store.add("alice", [], pub(keys["ed25519"]), "user:root")
    store.close()
    private_body = "".join(keys["ed25519"].read_text().splitlines()[1:-1])
    data = b"".join(p.read_bytes() for p in sorted(tmp_path.glob("audit.db*")))
    assert private_body[:40].encode() not in data
    assert os.path.exists(tmp_path / "audit.db")
