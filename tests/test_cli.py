"""The hoopgw command, run as a real subprocess: check, token issue, sessions, help."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from hoopgw.audit import AuditWriter, SessionInfo
from hoopgw.config import load_config
from hoopgw.identity import LocalIssuer

from ._support.procs import hoopgw

CONFIG = """
[gateway]
data_dir = "var"

[[connections]]
name = "bankdb"
type = "postgres"
listen = "127.0.0.1:15432"
upstream = "postgresql://app@127.0.0.1:5432/bank"
password = "env:HOOPGW_TEST_PW"
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "gw.toml"
    path.write_text(CONFIG)
    return path


def test_check_ok(config_file: Path) -> None:
    result = hoopgw("check", "-c", config_file, env={"HOOPGW_TEST_PW": "x"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == f"OK: {config_file} (1 connection)\n"
    # no policy names the connection: valid, but every login would be refused, so say so
    assert "[[policy]]" not in CONFIG
    assert result.stderr == (
        f'{config_file}: warning: no [[policy]] names connection "bankdb" and it has no defaults: '
        "every login to it will be refused\n"
    )
    with_policy = (
        CONFIG + '[[policy]]\nname = "p"\nsubjects = ["group:a"]\nconnections = ["*"]\nallow = ["read"]\n'
    )
    config_file.write_text(with_policy)
    result = hoopgw("check", "-c", config_file, env={"HOOPGW_TEST_PW": "x"})
    assert (result.returncode, result.stderr) == (0, "")


def test_check_uses_env_and_default_paths(config_file: Path) -> None:
    result = hoopgw("check", env={"HOOPGW_CONFIG": str(config_file), "HOOPGW_TEST_PW": "x"})
    assert result.returncode == 0 and result.stdout.startswith(f"OK: {config_file}")
    (config_file.parent / "hoopgw.toml").write_text(CONFIG)
    result = hoopgw("check", cwd=config_file.parent, env={"HOOPGW_TEST_PW": "x"})
    assert result.returncode == 0 and result.stdout == "OK: hoopgw.toml (1 connection)\n"


def test_check_reports_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        CONFIG.replace('"127.0.0.1:15432"', '"127.0.0.1:0"')
        + '[[connections]]\nname = "h"\ntype = "kubernetes"\nlisten = "127.0.0.1:2222"\n'
        'upstream = "https://k8s.internal:6443"\n'
        '[[masking]]\nconnections = ["*"]\ndetectors = ["email"]\n'
    )
    result = hoopgw("check", "-c", path)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert f"{path}: connections[0].listen: port must be a number from 1 to 65535" in lines
    assert f"{path}: connections[1].type: kubernetes connections are not supported yet [unsupported]" in lines
    assert not any(line.startswith(f"{path}: masking[0]") for line in lines)  # masking is supported
    assert "Traceback" not in result.stderr


def test_check_reports_unset_secret(config_file: Path) -> None:
    result = hoopgw("check", "-c", config_file)
    assert result.returncode == 1
    reason = "env:HOOPGW_TEST_PW: environment variable HOOPGW_TEST_PW is not set"
    assert f"{config_file}: connections[0].password: {reason}" in result.stdout.splitlines()


def test_check_syntax_error_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_text("[gateway\n")
    result = hoopgw("check", "-c", path)
    assert result.returncode == 1 and f"{path}: line 1, column 9: TOML syntax error" in result.stdout
    result = hoopgw("check", "-c", tmp_path / "missing.toml")
    assert result.returncode == 1 and "config file not found" in result.stdout
    assert "Traceback" not in result.stderr


def test_token_issue(config_file: Path) -> None:
    # options after positionals and -c anywhere
    result = hoopgw(
        "token", "issue", "--subject", "alice", "-c", config_file, "--groups", "dba,ai-agents", "--ttl", "15m"
    )
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert result.stdout == token + "\n" and len(token) < 512
    config = load_config(config_file, allow_unsupported=True)
    principal = LocalIssuer(config.gateway.data_dir, config.identity.audience).verify(token)
    assert principal.subject == "alice" and principal.groups == {"dba", "ai-agents"}
    assert principal.expires_at is not None and 880 < principal.expires_at - time.time() <= 900
    assert result.stderr == ""


def test_token_issue_bad_ttl(config_file: Path) -> None:
    result = hoopgw("token", "issue", "-c", config_file, "--subject", "a", "--ttl", "soon")
    assert result.returncode == 2 and "invalid duration" in result.stderr and result.stdout == ""


def record_sessions(config_file: Path) -> list[str]:
    config = load_config(config_file, allow_unsupported=True)
    writer = AuditWriter(config.gateway.data_dir, flush_interval=0.05)
    ids = []
    for n in range(3):
        sid = writer.new_session_id()
        ids.append(sid)
        writer.session_open(
            SessionInfo(sid, "postgres", "bankdb", f"user{n}", ["dba"], "127.0.0.1:1", "token", {})
        )

    class Stmt:
        kind, sql, statement_name, portal, params = "execute", "select $1", "", "", ["7", None]
        tags, rows, status, error = ["SELECT 1"], 1, "error", ("42P01", 'relation "x" does not exist')
        started_ns = time.time_ns()
        ended_ns = started_ns + 1_000_000

    writer.statement(ids[0], Stmt())
    writer.session_close(ids[0], "client_terminated")
    writer.close()
    return ids


def test_sessions_list_and_show(config_file: Path) -> None:
    empty = hoopgw("sessions", "list", "--json", "-c", config_file)
    assert empty.returncode == 0 and json.loads(empty.stdout) == []
    ids = record_sessions(config_file)
    result = hoopgw("sessions", "list", "--json", "-c", config_file)
    assert result.returncode == 0, result.stderr
    sessions = json.loads(result.stdout)
    assert isinstance(sessions, list) and [s["id"] for s in sessions] == ids[::-1]
    for s in sessions:
        assert s["status"] in ("open", "closed") and s["type"] == "postgres"
    assert {s["id"]: s["status"] for s in sessions}[ids[0]] == "closed"
    limited = hoopgw("sessions", "list", "-c", config_file, "--limit", "1", "--json")
    assert [s["id"] for s in json.loads(limited.stdout)] == [ids[2]]
    table = hoopgw("sessions", "list", "-c", config_file)
    assert table.returncode == 0 and all(i in table.stdout for i in ids)

    shown = hoopgw("sessions", "show", ids[0], "--json", "-c", config_file)
    assert shown.returncode == 0, shown.stderr
    [session] = json.loads(shown.stdout)
    assert session["id"] == ids[0] and session["status"] == "closed" and session["type"] == "postgres"
    assert [e["kind"] for e in session["events"]] == ["session_open", "statement", "session_close"]
    prefix = next(ids[0][:n] for n in range(1, 17) if not any(o.startswith(ids[0][:n]) for o in ids[1:]))
    text = hoopgw("sessions", "show", prefix, "-c", config_file)
    assert text.returncode == 0
    assert "select $1" in text.stdout and "42P01" in text.stdout and "$1='7', $2=NULL" in text.stdout
    missing = hoopgw("sessions", "show", "zzzz", "-c", config_file)
    assert missing.returncode == 1 and "no session" in missing.stderr


@pytest.mark.parametrize(
    "command", [["check"], ["token", "issue"], ["sessions", "show"], ["serve"], ["demo"], ["ssh-keys", "add"]]
)
def test_help(command: list[str]) -> None:
    result = hoopgw(*command, "--help")
    assert result.returncode == 0 and "-c FILE, --config FILE" in result.stdout


def test_serve_refuses_bad_config(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text(
        '[[connections]]\nname = "web"\ntype = "http"\nlisten = "127.0.0.1:18080"\n'
        'upstream = "http://127.0.0.1:8080"\n'
    )
    result = hoopgw("serve", "-c", path)
    assert result.returncode == 1
    assert result.stderr.strip() == f"{path}: connections[0].type: http connections are not supported yet"
