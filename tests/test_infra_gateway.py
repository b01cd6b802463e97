"""The gateway fixture, the demo and their helpers, against the real gateway process."""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import time
import tomllib
from pathlib import Path

import pytest

from hoopgw.demo import DEMO_USERS, TEST_PANS, bank_schema_sql, http_get, luhn_valid, toml_dumps

from ._support.gateway import Gateway
from ._support.pg import TestPg
from ._support.procs import clean_env, free_port, running_demo, tcp_accepts


def test_toml_dumps_round_trips() -> None:
    doc = {
        "gateway": {"data_dir": "/tmp/x y", "api_listen": "127.0.0.1:1", "admins": ["group:a"], "t": 1.5},
        "identity": {"issuer": "local", "quote": 'a"b\\c\n'},
        "connections": [{"name": "a", "flag": True}, {"name": "b", "n": 3}],
    }
    assert tomllib.loads(toml_dumps(doc)) == doc


def test_demo_data_is_plausible() -> None:
    sql = bank_schema_sql()
    for pan in TEST_PANS:
        assert pan in sql and luhn_valid(pan)
    pans = re.findall(r"\b\d{15,16}\b", sql)
    assert pans and all(luhn_valid(p) for p in pans if p[0] in "3456")
    for ssn in re.findall(r"'(\d{3})-(\d{2})-(\d{4})'", sql):
        assert ssn[0] not in ("000", "666") and not ssn[0].startswith("9")
        assert ssn[1] != "00" and ssn[2] != "0000"
    for iban in re.findall(r"'(DE\d{20})'", sql):
        digits = "".join(str(int(c, 36)) for c in iban[4:] + iban[:4])
        assert int(digits) % 97 == 1
    assert not luhn_valid("4111111111111112")


def test_demo_schema_loads(pg: TestPg) -> None:
    pg.cluster.psql("DROP DATABASE IF EXISTS demo_probe")
    pg.cluster.create_database("demo_probe", owner="app")
    try:
        pg.cluster.psql(bank_schema_sql(), db="demo_probe", user="app")
        counts = pg.cluster.psql(
            "SELECT (SELECT count(*) FROM customers), (SELECT count(*) FROM cards), "
            "(SELECT count(*) FROM transactions)",
            db="demo_probe",
        )
        assert counts == "20|27|200"
    finally:
        pg.cluster.psql("DROP DATABASE demo_probe")


def test_gateway_fixture_is_healthy_and_proxies(gateway: Gateway, pg: TestPg) -> None:
    status, body = http_get("127.0.0.1", gateway.api_port, "/healthz")
    assert status == 200, body
    token = gateway.token("alice", ["dev"])
    assert token and len(token) < 512
    res = gateway.psql("SELECT current_user, 40 + 2")
    assert res.returncode == 0, res.stderr + gateway.log_tail()
    assert res.stdout.strip() == "app|42"
    # The brokered upstream password stays out of the gateway's log.
    password = pg.password("app")
    assert password and password not in gateway.log_text()


def test_gateway_stops_gracefully(gateway: Gateway) -> None:
    port = gateway.port()
    assert gateway.stop() == 0, gateway.log_tail()
    assert not tcp_accepts("127.0.0.1", port)


def test_demo_runs_until_sigterm(tmp_path: Path) -> None:
    base = free_port()
    with running_demo(base, tmp_path, timeout=60) as (proc, text):
        commands = re.findall(r'^\s+(psql "[^"]+")$', text, re.M)
        assert len(commands) == len(DEMO_USERS), text
        conninfo = commands[0][len('psql "') : -1]
        res = subprocess.run(
            ["psql", "-X", "-A", "-t", "-c", "SELECT count(*) FROM customers", conninfo],
            capture_output=True, text=True, timeout=30, env=clean_env(),
        )  # fmt: skip
        assert (res.returncode, res.stdout.strip()) == (0, "20"), res.stderr
        # masking is on by default: card numbers come back masked, only their last four digits shown
        res = subprocess.run(
            ["psql", "-X", "-A", "-t", "-c", "SELECT pan FROM cards ORDER BY id LIMIT 5", conninfo],
            capture_output=True, text=True, timeout=30, env=clean_env(),
        )  # fmt: skip
        pans = res.stdout.split()
        assert res.returncode == 0 and len(pans) == 5, res.stderr
        assert all(re.fullmatch(r"\*{11,15}\d{4}", p) for p in pans), pans
        # policy: the agent is refused DDL with the rule named, and the demo printed that refusal
        refusal = 'hoopgw policy "agents" denies ddl statements for alice on "bankdb"'
        assert f"ERROR:  {refusal}" in text, text
        res = subprocess.run(
            ["psql", "-X", "-c", "DROP TABLE customers", conninfo],
            capture_output=True, text=True, timeout=30, env=clean_env(),
        )  # fmt: skip
        assert res.returncode == 1 and refusal in res.stderr, res.stderr
        dba = commands[1][len('psql "') : -1]
        res = subprocess.run(
            ["psql", "-X", "-q", "-A", "-t", "-c", "CREATE TABLE dba_notes (n text); SELECT 'made'", dba],
            capture_output=True, text=True, timeout=30, env=clean_env(),
        )  # fmt: skip
        assert (res.returncode, res.stdout.strip()) == (0, "made"), res.stderr
        # approvals: the demo left a write by the agent waiting; the printed DBA command approves it
        waiting = re.search(r"waiting as approval request (\S+) ", text)
        assert waiting is not None, text
        rid = waiting.group(1)
        held_log = tmp_path / "held-write.log"
        assert "UPDATE" not in held_log.read_text()
        approve = next(line.strip() for line in text.splitlines() if f"approvals approve {rid}" in line)
        export = re.search(r"^\s+export HOOPGW_TOKEN=(\S+)$", text, re.M)
        assert export is not None, text
        dba_env = clean_env({"HOOPGW_TOKEN": export.group(1)})
        res = subprocess.run(shlex.split(approve), capture_output=True, text=True, timeout=60, env=dba_env)
        assert res.returncode == 0, res.stderr
        deadline = time.monotonic() + 20
        while "UPDATE 1" not in held_log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "UPDATE 1" in held_log.read_text() and rid in held_log.read_text()
        verify = next(line.strip() for line in text.splitlines() if f"approvals verify {rid}" in line)
        verify = verify.removeprefix("offline:").strip()
        res = subprocess.run(shlex.split(verify), capture_output=True, text=True, timeout=60, env=clean_env())
        assert res.returncode == 0 and "OK" in res.stdout, res.stdout + res.stderr
        # the audit trail verifies, as the printed command says
        audit = next(line.strip() for line in text.splitlines() if "audit verify" in line)
        res = subprocess.run(shlex.split(audit), capture_output=True, text=True, timeout=60, env=clean_env())
        assert res.returncode == 0, res.stdout + res.stderr
        # the tour ends with an evidence pack: exported while the gateway runs, then verified offline
        dump = next(line.strip() for line in text.splitlines() if "evidence export --out" in line)
        res = subprocess.run(shlex.split(dump), capture_output=True, text=True, timeout=60, env=clean_env())
        assert res.returncode == 0 and "evidence pack written to" in res.stdout, res.stdout + res.stderr
        check = next(line.strip() for line in text.splitlines() if "evidence verify" in line)
        res = subprocess.run(shlex.split(check), capture_output=True, text=True, timeout=60, env=clean_env())
        assert res.returncode == 0 and res.stdout.startswith("OK: evidence pack"), res.stdout + res.stderr
        pack = Path(shlex.split(check)[-1])
        assert pack.parent == tmp_path and (pack / "report.html").is_file()
        request, decision = (json.loads(r) for r in (pack / "approvals.jsonl").read_text().splitlines())
        assert (request["id"], decision["request_id"], decision["decision"]) == (rid, rid, "approve")
        cfg = tomllib.loads((tmp_path / "hoopgw.toml").read_text())
        upstream_port = int(re.search(r":(\d+)/", cfg["connections"][0]["upstream"]).group(1))  # type: ignore[union-attr]
        assert "password" not in cfg["connections"][0]["upstream"]
        assert tcp_accepts("127.0.0.1", upstream_port)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, text
        assert not tcp_accepts("127.0.0.1", upstream_port)
        assert not tcp_accepts("127.0.0.1", base)


def test_gateway_start_failure_reports_the_log(tmp_path: Path, pg: TestPg) -> None:
    gw = Gateway(tmp_path / "gw", pg, gateway={"api_listen": "not-an-address"})
    with pytest.raises(Exception, match="exited with 1 while starting") as exc:
        gw.start(timeout=20)
    assert "gateway.api_listen" in str(exc.value)
    assert not gw.running
