"""Config loading: every mistake is reported with file, key and reason; secrets stay references."""

from __future__ import annotations

from pathlib import Path

import pytest

from hoopgw.config import (
    DEFAULT_COMMAND_CLASSES,
    Listen,
    PostgresConnection,
    SecretRef,
    SshConnection,
    check_config,
    default_config_path,
    load_config,
    parse_duration,
    secret_problems,
    unsupported_features,
)
from hoopgw.errors import ConfigError, SecretError

GOOD = """
[gateway]
data_dir = "var"
api_listen = "127.0.0.1:8009"
admins = ["group:platform"]

[identity]
issuer = "local"

[[connections]]
name = "bankdb"
type = "postgres"
listen = "127.0.0.1:15432"
upstream = "postgresql://app@db.internal:5433/bank?sslmode=require&sslrootcert=ca.pem&connect_timeout=5"
password = "env:BANKDB_PASSWORD"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hoopgw.toml"
    path.write_text(text)
    return path


def problems_of(path: Path, *, allow_unsupported: bool = False) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, allow_unsupported=allow_unsupported)
    for file, _key, _reason in info.value.problems:
        assert file == str(path)
    return {key: reason for _file, key, reason in info.value.problems}


def test_good_config(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    assert config.path == tmp_path / "hoopgw.toml"
    assert config.gateway.data_dir == tmp_path / "var"
    assert config.gateway.api_listen == Listen("127.0.0.1", 8009)
    assert config.gateway.shutdown_timeout == 30.0
    assert config.gateway.audit_flush_interval == 0.2
    assert config.identity.audience == "hoopgw"
    assert config.identity.token_ttl == 3600.0
    conn = config.connections[0]
    assert isinstance(conn, PostgresConnection)
    assert conn.listen.port == 15432
    up = conn.upstream
    assert (up.host, up.port, up.user, up.database, up.sslmode) == (
        "db.internal",
        5433,
        "app",
        "bank",
        "require",
    )
    assert up.sslrootcert == tmp_path / "ca.pem"
    assert up.connect_timeout == 5.0
    assert conn.password == SecretRef("env", "BANKDB_PASSWORD")
    assert unsupported_features(config) == []
    with pytest.raises(Exception, match="frozen"):
        config.gateway.log_level = "debug"


def test_defaults_and_durations(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[gateway]\nshutdown_timeout = "1m"\nidle_timeout = "2h"\n'
        '[[connections]]\nname = "a"\ntype = "postgres"\nlisten = "[::1]:5432"\n'
        'upstream = "postgresql://u@[::1]"\n',
    )
    config = load_config(path)
    assert config.gateway.shutdown_timeout == 60.0
    assert config.gateway.idle_timeout == 7200.0
    conn = config.connections[0]
    assert isinstance(conn, PostgresConnection)
    assert conn.listen == Listen("::1", 5432)
    assert str(conn.listen) == "[::1]:5432"
    assert (conn.upstream.host, conn.upstream.port, conn.upstream.database) == ("::1", 5432, "u")
    assert conn.upstream.sslmode == "prefer"
    assert conn.upstream.connect_timeout == 10.0


def test_every_problem_is_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
bogus = 1
[gateway]
api_listen = "127.0.0.1:99999"
tls_cert = "hunter2"
log_level = "loud"

[[connections]]
name = "bankdb"
type = "postgres"
listen = "::1:5432"
upstream = "postgresql://app:pw@db.internal/bank"
password = "s3cret-inline"

[[connections]]
name = "bankdb"
type = "postgres"
listen = "127.0.0.1:6000"
upstream = "postgresql://app@db.internal/bank?sslmode=prefer&foo=1"

[[connections]]
name = "other"
type = "postgres"
listen = "0.0.0.0:6000"
upstream = "postgresql://app@db.internal/bank"

[[connections]]
name = "x"
type = "mysql"
listen = "127.0.0.1:7000"
""",
    )
    problems = problems_of(path)
    assert problems["bogus"] == "unknown key"
    assert problems["gateway.api_listen"] == "port must be a number from 1 to 65535"
    inline = "secrets must be references (env:NAME or file:PATH), never inline"
    assert problems["gateway.tls_cert"] == inline
    assert problems["gateway.log_level"].startswith("must be one of")
    assert "brackets" in problems["connections[0].listen"]
    assert problems["connections[0].upstream"].startswith(inline)
    assert problems["connections[0].password"] == inline
    assert "unknown URL parameter 'foo'" in problems["connections[1].upstream"]
    assert "duplicate connection name" in problems["connections[1].name"]
    assert "already used by connections[1]" in problems["connections[2].listen"]
    assert problems["connections[3].type"] == "must be one of postgres, ssh, kubernetes, http"
    joined = "\n".join(problems.values())
    assert "hunter2" not in joined and "s3cret-inline" not in joined and ":pw@" not in joined


def test_duplicate_listen_with_api(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[gateway]\napi_listen = "127.0.0.1:8009"\n[[connections]]\nname = "a"\ntype = "postgres"\n'
        'listen = "127.0.0.1:8009"\nupstream = "postgresql://u@h/d"\n',
    )
    assert (
        problems_of(path)["connections[0].listen"]
        == "address 127.0.0.1:8009 is already used by gateway.api_listen"
    )


def test_missing_keys(tmp_path: Path) -> None:
    path = write(tmp_path, '[[connections]]\nname = "a"\nlisten = "127.0.0.1:1"\n')
    problems = problems_of(path)
    assert problems["connections[0].type"].startswith("required key is missing")
    assert problems["connections[0].upstream"] == "required key is missing"


def test_toml_syntax_error_has_position(tmp_path: Path) -> None:
    path = write(tmp_path, '[gateway]\ndata_dir = "var"\napi_listen = \n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    [(file, key, reason)] = info.value.problems
    assert file == str(path)
    assert key == "line 3, column 14"
    assert reason.startswith("TOML syntax error")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.toml")
    assert info.value.problems == [(str(tmp_path / "nope.toml"), "", "config file not found")]


FULL = """
[gateway]
data_dir = "/srv/hoopgw"

[identity]
issuer = "https://login.example.com/"

[[connections]]
name = "bankdb"
type = "postgres"
listen = "127.0.0.1:15432"
upstream = "postgresql://app@db.internal:5432/bank?sslmode=prefer"

[[connections]]
name = "core-host"
type = "ssh"
listen = "127.0.0.1:12222"
upstream = "ssh://deploy@core.internal:22"
private_key = "file:/etc/hoopgw/core-host.key"
host_key = "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"

[[masking]]
connections = ["bankdb", "core-host"]
detectors = ["credit_card", "us_ssn", "iban", "email", "phone"]
patterns = ["ACCT-[0-9]{8}"]
columns = ["*.account_number"]
style = "last4"

[[policy]]
name = "agents"
subjects = ["group:ai-agents"]
connections = ["bankdb", "core-host"]
allow = ["read"]
approve = ["write"]
deny = ["ddl", "write-without-where"]
approvers = ["group:dba"]
approvals_required = 1
"""


def test_whole_schema_parses_but_unsupported_features_stop_it(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL))
    assert config.gateway.data_dir == Path("/srv/hoopgw")
    assert config.masking[0].style == "last4"
    assert config.masking[0].effective_column_style == "last4"
    assert config.policies[0].approvers == ("group:dba",)
    assert unsupported_features(config) == []
    path = write(
        tmp_path,
        FULL + '[[connections]]\nname = "k8s"\ntype = "kubernetes"\nlisten = "127.0.0.1:16443"\n'
        'upstream = "https://api.internal:6443"\n',
    )
    config = load_config(path, allow_unsupported=True)
    expected = {
        "connections[2].type": "kubernetes connections are not supported yet",
    }
    assert {k: r for _f, k, r in unsupported_features(config)} == expected
    assert problems_of(path) == expected


def test_masking_and_policy_mistakes(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[identity]
issuer = "http://idp.example.com"
[[connections]]
name = "bankdb"
type = "ssh"
listen = "127.0.0.1:2222"
upstream = "ssh://core"
private_key = "inline-key"
host_key = "MD5:aa"
[[masking]]
connections = ["nope"]
detectors = ["credit_cards"]
patterns = ["(unclosed"]
style = "blur"
[[policy]]
name = "agents"
subjects = ["ai-agents"]
connections = ["ghost"]
approvals_required = 0
[[policy]]
name = "p2"
subjects = ["user:bob"]
connections = ["*"]
approve = ["write"]
""",
    )
    problems = problems_of(path, allow_unsupported=True)
    assert "https" in problems["identity.issuer"]
    assert problems["connections[0].upstream"].startswith("URL needs a user name")
    assert problems["connections[0].private_key"].startswith("secrets must be references")
    assert "SHA256" in problems["connections[0].host_key"]
    assert problems["masking[0].connections[0]"] == 'no connection is named "nope"'
    assert problems["masking[0].detectors[0]"].startswith("unknown detector")
    assert problems["masking[0].patterns[0]"].startswith('invalid regex "(unclosed": ')
    assert problems["masking[0].style"].startswith("must be one of")
    assert problems["policy[0].subjects[0]"].startswith("subjects are group:NAME")
    assert problems["policy[0].connections[0]"] == 'no connection is named "ghost"'
    assert problems["policy[0].approvals_required"] == "must be at least 1"
    assert problems["policy[1]"] == "approve needs approvers (who decides the held commands)"
    assert "policy[1].connections[0]" not in problems  # "*" is every connection


def test_loopback_http_issuer_is_valid(tmp_path: Path) -> None:
    path = write(tmp_path, '[identity]\nissuer = "http://127.0.0.1:9000/realms/x"\n')
    config, problems, unsupported = check_config(path)
    assert config is not None and problems == []
    assert unsupported == [] and config.identity.issuer == "http://127.0.0.1:9000/realms/x"


def test_secret_refs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret_file = tmp_path / "pw"
    secret_file.write_text("file-secret\n\n")
    ref = SecretRef.parse("file:pw", tmp_path)
    assert ref.target == str(secret_file)
    assert ref.resolve() == "file-secret\n"  # exactly one trailing newline is stripped
    env = SecretRef.parse("env:HOOPGW_TEST_SECRET")
    monkeypatch.setenv("HOOPGW_TEST_SECRET", "env-secret")
    assert env.resolve() == "env-secret"
    for shown in (repr(env), str(env), repr(ref), f"{env}"):
        assert "env-secret" not in shown and "file-secret" not in shown
    monkeypatch.delenv("HOOPGW_TEST_SECRET")
    with pytest.raises(SecretError, match="HOOPGW_TEST_SECRET is not set"):
        env.resolve()
    with pytest.raises(SecretError, match="file not found"):
        SecretRef.parse("file:/nonexistent/x").resolve()
    for bad in ("hunter2", "env:", "env:1BAD", "file:", "vault:x"):
        with pytest.raises(ValueError, match=r"never inline|variable name|needs a path") as info:
            SecretRef.parse(bad)
        assert "hunter2" not in str(info.value)


def test_secret_problems_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "key").mkdir()  # unreadable as a file, even for root
    path = write(
        tmp_path,
        GOOD.replace('password = "env:BANKDB_PASSWORD"', 'password = "env:HOOPGW_UNSET_VAR"')
        + '\n[[connections]]\nname = "b"\ntype = "postgres"\nlisten = "127.0.0.1:15433"\n'
        'upstream = "postgresql://u@h/d"\npassword = "file:key"\n',
    )
    monkeypatch.delenv("HOOPGW_UNSET_VAR", raising=False)
    problems = {k: r for _f, k, r in secret_problems(load_config(path))}
    assert problems["connections[0].password"].endswith("environment variable HOOPGW_UNSET_VAR is not set")
    assert problems["connections[1].password"].endswith("is a directory, not a file")


def test_default_config_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOOPGW_CONFIG", raising=False)
    assert default_config_path() == Path("hoopgw.toml")
    monkeypatch.setenv("HOOPGW_CONFIG", "/etc/hoopgw/gw.toml")
    assert default_config_path() == Path("/etc/hoopgw/gw.toml")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("15m", 900), ("1h", 3600), ("7d", 604800), ("1h30m", 5400), ("2.5", 2.5)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5x", "-1s", "0", "1h 5", "h"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    "text", ["127.0.0.1", "127.0.0.1:0", "host:65536", ":5432", "[::1]5432", "[zz]:1", "a b:1"]
)
def test_listen_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        Listen.parse(text)


@pytest.mark.parametrize("listen", ["0.0.0.0:8009", "10.1.2.3:8009", "[::]:8009"])
def test_the_plain_http_api_stays_on_loopback(tmp_path: Path, listen: str) -> None:
    path = write(tmp_path, f'[gateway]\napi_listen = "{listen}"\n')
    _, problems, _ = check_config(path)
    assert [(k, r.split(":")[0]) for _f, k, r in problems] == [
        ("gateway.api_listen", "the control API speaks plain HTTP (bearer tokens, new API keys)")
    ]


SSH = """
[[connections]]
name = "{name}"
type = "ssh"
listen = "{listen}"
upstream = "ssh://deploy@core.internal:2022"
{extra}
"""
FINGERPRINT = "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"


def ssh_block(name: str, listen: str = "127.0.0.1:12222", extra: str = "") -> str:
    return SSH.format(name=name, listen=listen, extra=extra)


def test_ssh_connections_load(tmp_path: Path) -> None:
    (tmp_path / "hosts").write_text("")
    path = write(
        tmp_path,
        ssh_block("a", extra=f'private_key = "file:a.key"\nhost_key = "{FINGERPRINT}"\n'
                  'defaults = { allow = ["exec", "shell"], deny = ["destructive"] }')
        + ssh_block("b", extra='password = "env:B_PW"\nknown_hosts = "hosts"\nrecord_max_bytes = 0'),
    )  # fmt: skip
    config = load_config(path)
    a, b = config.connections
    assert isinstance(a, SshConnection) and isinstance(b, SshConnection)
    assert (a.upstream.user, a.upstream.host, a.upstream.port) == ("deploy", "core.internal", 2022)
    assert a.private_key == SecretRef("file", str(tmp_path / "a.key")) and a.password is None
    assert (a.host_key, a.known_hosts) == (FINGERPRINT, None)
    assert a.defaults is not None and a.defaults.deny == ("destructive",)
    assert a.record_max_bytes is None
    assert b.password == SecretRef("env", "B_PW") and b.private_key is None
    assert (b.host_key, b.known_hosts, b.record_max_bytes) == (None, tmp_path / "hosts", 0)
    assert a.listen == b.listen  # two ssh connections share a port: the user name picks the target
    assert unsupported_features(config) == []
    # [ssh] defaults
    assert config.ssh.host_key is None
    assert config.ssh.record_max_bytes == 64 * 1024 * 1024
    assert config.ssh.certificate_ttl == 8 * 3600
    assert config.ssh.idle_flush == 0.05
    assert set(config.ssh.command_classes) == {"destructive", "power", "packages"}
    assert "rm -[rR]*" in config.ssh.command_classes["destructive"]


def test_ssh_connection_mistakes(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        ssh_block("neither", "127.0.0.1:2201", f'host_key = "{FINGERPRINT}"')
        + ssh_block("both", "127.0.0.1:2202", 'private_key = "file:k"\npassword = "env:P"\nknown_hosts = "h"')
        + ssh_block("unpinned", "127.0.0.1:2203", 'password = "env:P"')
        + ssh_block("inline", "127.0.0.1:2204", 'password = "hunter2"\nhost_key = "MD5:aa"')
        + ssh_block(
            "negative", "127.0.0.1:2205", 'password = "env:P"\nknown_hosts = "h"\nrecord_max_bytes = -1'
        ),
    )
    problems = problems_of(path)
    assert problems["connections[0]"].startswith("give exactly one upstream credential: private_key")
    assert problems["connections[1]"].startswith("give exactly one upstream credential")
    assert problems["connections[2]"] == (
        'pin the upstream host key: host_key = "SHA256:..." (ssh-keygen -lf) or known_hosts = PATH'
    )
    assert problems["connections[3].password"].startswith("secrets must be references")
    assert "SHA256" in problems["connections[3].host_key"]
    assert problems["connections[4].record_max_bytes"] == "must be at least 0"
    assert "hunter2" not in "\n".join(problems.values())


def test_only_ssh_connections_share_a_listen_address(tmp_path: Path) -> None:
    creds = f'password = "env:P"\nhost_key = "{FINGERPRINT}"'
    pg = '[[connections]]\nname = "db"\ntype = "postgres"\nlisten = "127.0.0.1:12222"\nupstream = "postgresql://u@h/d"\n'
    path = write(tmp_path, ssh_block("a", extra=creds) + pg + ssh_block("b", extra=creds))
    problems = problems_of(path)
    assert problems == {
        "connections[1].listen": 'address 127.0.0.1:12222 is already used by connections[0] ("a")'
    }
    path = write(tmp_path, pg + ssh_block("a", extra=creds))
    assert problems_of(path) == {
        "connections[1].listen": 'address 127.0.0.1:12222 is already used by connections[0] ("db")'
    }
    path = write(tmp_path, ssh_block("a", "0.0.0.0:12222", creds) + ssh_block("b", extra=creds))
    assert problems_of(path)["connections[1].listen"] == (
        'address 127.0.0.1:12222 is already used by connections[0] ("a") '
        "(ssh connections share a port only with the very same listen address)"
    )


def test_ssh_block_and_command_classes(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[ssh]\nhost_key = "keys/host"\nrecord_max_bytes = 1024\ncertificate_ttl = "1h"\n'
        'idle_flush = "20ms"\n'
        'command_classes = { power = ["reboot"], secrets = ["cat /etc/shadow*"] }\n'
        + ssh_block("a", extra=f'password = "env:P"\nhost_key = "{FINGERPRINT}"')
        + '[[policy]]\nname = "p"\nsubjects = ["group:ops"]\nconnections = ["a"]\n'
        'allow = ["exec", "exec:ls *", "file-read:/var/*", "forward:local:*"]\n'
        'deny = ["secrets", "destructive", "power", "file-write:/etc/*", "forward"]\n',
    )
    config = load_config(path)
    assert config.ssh.host_key == tmp_path / "keys" / "host"
    assert (config.ssh.record_max_bytes, config.ssh.certificate_ttl, config.ssh.idle_flush) == (
        1024,
        3600,
        0.02,
    )
    classes = config.ssh.command_classes
    assert classes["power"] == ("reboot",)  # replaced
    assert classes["secrets"] == ("cat /etc/shadow*",)  # added
    assert "packages" in classes and "destructive" in classes  # kept
    assert config.policies[0].deny[0] == "secrets"
    config = load_config(write(tmp_path, "[ssh]\ncommand_classes = { destructive = [] }\n"))
    assert config.ssh.command_classes["destructive"] == ()  # turned off
    assert config.ssh.command_classes["power"] == DEFAULT_COMMAND_CLASSES["power"]


def test_unknown_command_class_in_a_policy(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        ssh_block(
            "a", extra=f'password = "env:P"\nhost_key = "{FINGERPRINT}"\ndefaults = {{ deny = ["nukes"] }}'
        )
        + '[[policy]]\nname = "p"\nsubjects = ["group:ops"]\nconnections = ["a"]\n'
        'allow = ["exec"]\ndeny = ["destructive", "destructiv"]\n',
    )
    problems = problems_of(path)
    assert problems["policy[0].deny[1]"] == (
        "unknown class 'destructiv': not a built-in class nor a command class of [ssh] command_classes "
        "(those are destructive, packages, power)"
    )
    assert problems["connections[0].defaults.deny[0]"].startswith("unknown class 'nukes'")


@pytest.mark.parametrize(
    ("block", "key", "reason"),
    [
        ("command_classes = { Bad = ['x'] }", "ssh.command_classes", "command class name 'Bad' must be"),
        (
            "command_classes = { exec = ['x'] }",
            "ssh.command_classes",
            "command class name 'exec' is a built-in",
        ),
        ("command_classes = { x = [1] }", "ssh.command_classes", "command class 'x' must be a list"),
        ("certificate_ttl = '8d'", "ssh.certificate_ttl", "must be at most 604800"),
        ("record_max_bytes = -1", "ssh.record_max_bytes", "must be at least 0"),
        ("idle_flush = 0", "ssh.idle_flush", "a duration must be positive"),
        ("bogus = 1", "ssh.bogus", "unknown key"),
    ],
)
def test_ssh_block_mistakes(tmp_path: Path, block: str, key: str, reason: str) -> None:
    assert problems_of(write(tmp_path, f"[ssh]\n{block}\n"))[key].startswith(reason)


@pytest.mark.parametrize(
    ("cls", "ok"),
    [("exec:rm -rf *", True), ("file-read:/etc/*", True), ("file-write:*", True), ("forward:local:*", True),
     ("exec:", False), ("forward:", False), ("shell:x", False), ("Read", False), (" exec", False)],
)  # fmt: skip
def test_policy_class_forms(tmp_path: Path, cls: str, ok: bool) -> None:
    path = write(
        tmp_path, f'[[policy]]\nname = "p"\nsubjects = ["group:g"]\nconnections = ["*"]\nallow = ["{cls}"]\n'
    )
    _, problems, _ = check_config(path)
    assert (problems == []) == ok, problems
