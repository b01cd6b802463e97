"""Policy semantics: deny beats approve beats allow, unnamed classes are denied, windows, defaults."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from hoopgw.config import load_config
from hoopgw.config._load import check_config
from hoopgw.demo import toml_dumps
from hoopgw.identity import Principal
from hoopgw.policy import BIT, mask_of
from hoopgw.policy._engine import policies_for, refusal, window_open

ALICE = Principal("alice", frozenset({"dev"}), "token")
AGENT = Principal("bot", frozenset({"ai-agents"}), "apikey")
DBA = Principal("dora", frozenset({"dba"}), "token")


def config(tmp_path: Path, policies: list[dict[str, Any]], defaults: dict[str, Any] | None = None) -> Any:
    conns: list[dict[str, Any]] = [
        {
            "name": "bankdb",
            "type": "postgres",
            "listen": "127.0.0.1:25432",
            "upstream": "postgresql://app@127.0.0.1:1/bank",
        },
        {
            "name": "other",
            "type": "postgres",
            "listen": "127.0.0.1:25433",
            "upstream": "postgresql://app@127.0.0.1:1/bank",
        },
    ]
    if defaults is not None:
        conns[0]["defaults"] = defaults
    path = tmp_path / "hoopgw.toml"
    path.write_text(toml_dumps({"connections": conns, "policy": policies}))
    return load_config(path)


AGENTS = {
    "name": "agents",
    "subjects": ["group:ai-agents"],
    "connections": ["bankdb"],
    "allow": ["read"],
    "approve": ["write"],
    "deny": ["ddl", "write-without-where"],
    "approvers": ["group:dba"],
}


def test_deny_beats_approve_beats_allow(tmp_path: Path) -> None:
    wide = {"name": "wide", "subjects": ["key:bot"], "connections": ["*"], "allow": ["*"]}
    cfg = config(tmp_path, [AGENTS, wide])
    v = policies_for(cfg, AGENT, "bankdb").at()
    assert v.decide({"read"}).verdict == "allow"
    d = v.decide({"write"})
    assert (d.verdict, d.rule, d.approvers) == ("approve", "agents", ("group:dba",))
    d = v.decide({"write", "write-without-where"})
    assert (d.verdict, d.rule, d.classes) == ("deny", "agents", ("write-without-where",))
    assert v.decide({"ddl", "read"}).verdict == "deny"
    assert v.decide({"admin"}).verdict == "allow"  # only "wide" names it (via *)
    assert v.decide(set()).verdict == "allow"
    # on the other connection only "wide" counts
    assert policies_for(cfg, AGENT, "other").at().decide({"ddl"}).verdict == "allow"


def test_unnamed_class_is_denied_and_session_follows_access(tmp_path: Path) -> None:
    cfg = config(tmp_path, [AGENTS])
    v = policies_for(cfg, AGENT, "bankdb").at()
    d = v.decide({"dcl"})
    assert (d.verdict, d.rule) == ("deny", None)
    assert v.decide({"unknown"}).verdict == "deny"
    assert v.decide({"session"}).verdict == "allow"
    assert v.allow_mask == BIT["read"] | BIT["session"]
    assert v.allow_mask & mask_of({"write"}) == 0
    assert v.any_access
    # nobody else is named by any policy
    for who in (ALICE, DBA):
        assert policies_for(cfg, who, "bankdb").empty
    assert policies_for(cfg, AGENT, "other").empty


def test_session_can_be_denied_outright(tmp_path: Path) -> None:
    p = {
        "name": "p",
        "subjects": ["user:alice"],
        "connections": ["*"],
        "allow": ["read"],
        "deny": ["session"],
    }
    v = policies_for(config(tmp_path, [p]), ALICE, "bankdb").at()
    assert v.decide({"session"}).verdict == "deny"
    assert v.decide({"read"}).verdict == "allow"


def test_deny_only_gives_no_access(tmp_path: Path) -> None:
    p = {"name": "p", "subjects": ["group:dev"], "connections": ["*"], "deny": ["*"]}
    v = policies_for(config(tmp_path, [p]), ALICE, "bankdb").at()
    assert not v.any_access and v.allow_mask == 0
    assert v.decide({"session"}).verdict == "deny"


def test_subject_kinds(tmp_path: Path) -> None:
    p = {"name": "p", "subjects": ["user:bot", "key:alice"], "connections": ["*"], "allow": ["read"]}
    cfg = config(tmp_path, [p])
    # user: matches tokens only, key: matches API keys only
    assert policies_for(cfg, Principal("bot", frozenset(), "token"), "bankdb").policies
    assert policies_for(cfg, AGENT, "bankdb").empty
    assert policies_for(cfg, Principal("alice", frozenset(), "apikey"), "bankdb").policies
    assert policies_for(cfg, ALICE, "bankdb").empty


def test_connection_defaults_count_for_everyone(tmp_path: Path) -> None:
    cfg = config(tmp_path, [AGENTS], defaults={"allow": ["read"], "deny": ["admin"]})
    v = policies_for(cfg, ALICE, "bankdb").at()
    assert v.decide({"read"}).verdict == "allow"
    d = v.decide({"admin"})
    assert (d.verdict, d.rule) == ("deny", "bankdb.defaults")
    assert policies_for(cfg, ALICE, "other").empty
    # defaults add up with the named policies
    assert policies_for(cfg, AGENT, "bankdb").at().decide({"admin"}).rule == "bankdb.defaults"


def test_may_write_decides_read_only_upstream(tmp_path: Path) -> None:
    readers = {"name": "r", "subjects": ["group:dev"], "connections": ["*"], "allow": ["read", "session"]}
    cfg = config(tmp_path, [AGENTS, readers])
    assert not policies_for(cfg, ALICE, "bankdb").may_write
    assert policies_for(cfg, AGENT, "bankdb").may_write  # approve counts: a held write may be approved


UTC = dt.UTC


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(UTC)


def test_time_windows(tmp_path: Path) -> None:
    office = {
        "name": "office",
        "subjects": ["group:dev"],
        "connections": ["*"],
        "allow": ["read"],
        "window": {"weekdays": ["mon-fri"], "hours": "09:00-17:30", "timezone": "Europe/Berlin"},
    }
    night = {
        "name": "night",
        "subjects": ["group:dev"],
        "connections": ["*"],
        "allow": ["write"],
        "window": {"weekdays": ["fri"], "hours": "22:00-02:00"},
    }
    cfg = config(tmp_path, [office, night])
    sp = policies_for(cfg, ALICE, "bankdb")
    assert sp.windowed
    # 2026-11-26 is a Thursday; Berlin is UTC+1 in November
    assert sp.at(at("2026-11-26T08:00:00+00:00")).decide({"read"}).verdict == "allow"
    assert sp.at(at("2026-11-26T07:59:00+00:00")).decide({"read"}).verdict == "deny"
    assert sp.at(at("2026-11-26T16:30:00+00:00")).decide({"read"}).verdict == "deny"
    assert sp.at(at("2026-11-28T10:00:00+00:00")).decide({"read"}).verdict == "deny"  # Saturday
    # overnight window: Friday 22:00 to Saturday 02:00 UTC, not Thursday night
    assert sp.at(at("2026-11-27T23:00:00+00:00")).decide({"write"}).verdict == "allow"
    assert sp.at(at("2026-11-28T01:59:00+00:00")).decide({"write"}).verdict == "allow"
    assert sp.at(at("2026-11-28T02:00:00+00:00")).decide({"write"}).verdict == "deny"
    assert sp.at(at("2026-11-26T23:00:00+00:00")).decide({"write"}).verdict == "deny"
    # the next change after Thursday 12:00 UTC is the office closing at 17:30 Berlin
    assert sp.next_change(at("2026-11-26T12:00:00+00:00")) == at("2026-11-26T16:30:00+00:00")
    assert not policies_for(config(tmp_path, [AGENTS]), AGENT, "bankdb").windowed


def test_window_weekday_ranges_wrap(tmp_path: Path) -> None:
    p = {
        "name": "w",
        "subjects": ["group:dev"],
        "connections": ["*"],
        "allow": ["read"],
        "window": {"weekdays": "fri-mon"},
    }
    w = config(tmp_path, [p]).policies[0].window
    assert w.weekdays == (0, 4, 5, 6)
    assert window_open(w, at("2026-11-30T12:00:00+00:00"))  # Monday
    assert not window_open(w, at("2026-12-01T12:00:00+00:00"))  # Tuesday


def test_refusal_messages_name_the_rule(tmp_path: Path) -> None:
    v = policies_for(config(tmp_path, [AGENTS]), AGENT, "bankdb").at()
    message, _ = refusal(v.decide({"ddl"}), "bot", "bankdb")
    assert message == 'hoopgw policy "agents" denies ddl statements for bot on "bankdb"'
    message, hint = refusal(v.decide({"write"}), "bot", "bankdb")
    assert "requires approval" in message and "group:dba" in hint
    message, _ = refusal(v.decide({"dcl"}), "bot", "bankdb")
    assert message == 'hoopgw: no policy allows dcl statements for bot on "bankdb"'


@pytest.mark.parametrize(
    ("block", "key", "needle"),
    [
        ({"allow": ["reed"]}, "policy[0].allow[0]", "unknown class 'reed'"),
        ({"window": {"timezone": "Mars/Olympus"}}, "policy[0].window.timezone", "unknown time zone"),
        ({"window": {"hours": "9-17"}}, "policy[0].window.hours", "08:00-18:00"),
        ({"window": {"hours": "10:00-10:00"}}, "policy[0].window.hours", "08:00-18:00"),
        ({"window": {"weekdays": ["funday"]}}, "policy[0].window.weekdays", "unknown weekday"),
        ({"window": {"weekdays": ["mon"], "days": 1}}, "policy[0].window.days", ""),
    ],
)
def test_policy_config_mistakes(tmp_path: Path, block: dict[str, Any], key: str, needle: str) -> None:
    policy = {"name": "p", "subjects": ["group:dev"], "connections": ["*"], "allow": ["read"], **block}
    path = tmp_path / "hoopgw.toml"
    path.write_text(toml_dumps({"policy": [policy]}))
    _, problems, _ = check_config(path)
    found = {k: r for _f, k, r in problems}
    assert key in found, found
    assert needle in found[key]
