"""``hoopgw demo``'s SSH part: an sshd behind the gateway, a masked ``cat`` and a refused ``rm -rf``.

Runs the demo as ``make demo`` does (a child process, until it prints "Press Ctrl-C", then SIGTERM), reads
what it printed, runs the printed OpenSSH commands and checks that the demo's sshd is gone afterwards
(the last test stops the demo the module shares).
"""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hoopgw._sshd import alive, process_tree
from hoopgw.demo import TEST_PANS, cards_file_text

from ._support.procs import free_port, run, running_demo, tcp_accepts, wait_until


@dataclass
class RunningDemo:
    proc: subprocess.Popen[str]
    text: str
    workdir: Path
    port_base: int

    def ssh_section(self) -> str:
        """The printed lines from "SSH:" up to the next section."""
        start = self.text.index("\nSSH: ")
        return self.text[start : self.text.index("\nSee what was recorded:", start)]

    def printed(self, pattern: str) -> list[list[str]]:
        """The indented command lines that match ``pattern`` (a regex), split like a shell would."""
        return [shlex.split(m) for m in re.findall(rf"^  ({pattern})$", self.text, re.M)]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDemo]:
    """The demo, started once for this module and stopped with SIGTERM at the end."""
    workdir = tmp_path_factory.mktemp("demo")
    base = free_port()
    with running_demo(base, workdir) as (proc, text):
        yield RunningDemo(proc, text, workdir, base)


def test_cards_file_has_the_test_pans() -> None:
    text = cards_file_text()
    assert all(pan in text for pan in TEST_PANS)
    assert "@example.com" in text and re.search(r"\bDE\d{20}\b", text)
    assert cards_file_text() == text  # deterministic


def test_config_has_the_ssh_connection(demo: RunningDemo) -> None:
    cfg = tomllib.loads((demo.workdir / "hoopgw.toml").read_text())
    assert cfg["connections"][0]["name"] == "bankdb"
    (ssh,) = (c for c in cfg["connections"] if c["type"] == "ssh")
    assert ssh["name"] == "bankhost"
    assert re.fullmatch(r"127\.0\.0\.1:\d+", ssh["listen"])
    assert ssh["private_key"] == f"file:{demo.workdir / 'sshd' / 'id_ed25519'}"
    assert re.fullmatch(r"SHA256:[A-Za-z0-9+/]{43}", ssh["host_key"])
    assert any("bankhost" in m["connections"] and "credit_card" in m["detectors"] for m in cfg["masking"])
    assert {"ssh-dba", "ssh-agents"} <= {p["name"] for p in cfg["policy"]}


def test_tour_shows_masked_cards_and_a_refused_rm(demo: RunningDemo) -> None:
    section = demo.ssh_section()
    # the tour ran `cat cards.txt` with the real ssh through the gateway: masked, last four digits kept
    assert re.search(r"^  \$ ssh .* cat \S+/cards\.txt$", section, re.M), section
    assert not any(pan in section for pan in TEST_PANS), section
    assert "************1111" in section and "***********0005" in section, section
    assert "(exit status 0)" in section
    # and `rm -rf`: refused by the policy, exit 126, the directory untouched
    assert re.search(r"^  \$ ssh .* rm -rf \S+/statements$", section, re.M), section
    assert 'hoopgw policy "ssh-dba" denies this command (destructive) for dana on "bankhost"' in section
    assert "(exit status 126)" in section
    assert "statements/ is still there." in section
    assert (demo.workdir / "sshd" / "work" / "statements" / "2024-06.txt").is_file()
    # the sshd's file itself holds the raw numbers: the gateway masked them
    assert TEST_PANS[0] in (demo.workdir / "sshd" / "work" / "cards.txt").read_text()
    fp = re.search(r"The gateway's host key is (SHA256:\S{43}),", section)
    assert fp is not None, section


def test_printed_ssh_commands_work(demo: RunningDemo) -> None:
    # the agent may cat: output masked
    (agent,) = demo.printed(r"ssh -i \S+/id_alice .* cat \S+/cards\.txt")
    assert "-p" in agent and "IdentitiesOnly=yes" in agent
    res = run(["ssh", "-o", "BatchMode=yes", *agent[1:]], timeout=30)
    assert res.returncode == 0, res.stderr
    assert "************1111" in res.stdout and TEST_PANS[0] not in res.stdout
    # ... but not delete
    res = run(["ssh", "-o", "BatchMode=yes", *agent[1:-2], "rm", "-rf", "/tmp/nothing-here"], timeout=30)
    assert res.returncode == 126 and "denies" in res.stderr, res.stderr
    # the DBA's grep: masked too (the host key is pinned by the printed known_hosts: no prompt)
    (dba,) = demo.printed(r"ssh -i \S+/id_dana .* grep 4111 \S+/cards\.txt")
    res = run(["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", *dba[1:]], timeout=30)
    assert res.returncode == 0, res.stderr
    assert re.search(r"^\*{12}1111 ", res.stdout, re.M) and "4111" not in res.stdout, res.stdout
    # the printed scp upload works as the DBA
    (scp,) = demo.printed(r"scp -i \S+/id_dana .*")
    res = run(["scp", "-o", "BatchMode=yes", *scp[1:]], timeout=30)
    assert res.returncode == 0, res.stderr
    assert (demo.workdir / "sshd" / "work" / "hoopgw.toml").is_file()


def test_sshd_stops_with_the_demo(demo: RunningDemo) -> None:
    pid_file = demo.workdir / "sshd" / "sshd.pid"
    cfg = tomllib.loads((demo.workdir / "hoopgw.toml").read_text())
    (ssh,) = (c for c in cfg["connections"] if c["type"] == "ssh")
    sshd_port = int(ssh["upstream"].rpartition(":")[2])
    gw_port = int(ssh["listen"].rpartition(":")[2])
    pid = int(pid_file.read_text().split()[0])
    tree = process_tree(pid)
    assert alive(pid) and tcp_accepts("127.0.0.1", sshd_port)
    demo.proc.send_signal(signal.SIGTERM)
    assert demo.proc.wait(60) == 0
    assert not any(alive(p) for p in tree), [p for p in tree if alive(p)]
    wait_until(lambda: not tcp_accepts("127.0.0.1", sshd_port), 5, what="the sshd port to close")
    assert not tcp_accepts("127.0.0.1", gw_port)
    assert not pid_file.exists()
