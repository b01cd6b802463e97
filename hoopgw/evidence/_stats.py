"""What the report shows, gathered while the export streams the store: counts, never the rows.

Memory stays bounded by the number of distinct days, classes, rules, detectors and identities, not by
the number of events. Statement classes are the policy's (docs/POLICY.md), read from the recorded
(masked) text by the same classifier the gateway uses; a statement that holds several classes counts
under the most significant one, and text the parser cannot read falls back to its command tag.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from hoopgw.policy._classify import Classifier

#: Most significant first: a statement is counted under the first of its classes in this order.
CLASS_RANK = ("admin", "dcl", "ddl", "write-without-where", "write", "unknown", "read", "session")
#: The class of a command tag's first word, for statement text the parser cannot read.
TAG_CLASSES = {
    **dict.fromkeys(("SELECT", "FETCH", "SHOW", "EXPLAIN", "MOVE"), "read"),
    **dict.fromkeys(("INSERT", "UPDATE", "DELETE", "MERGE"), "write"),
    **dict.fromkeys(("CREATE", "ALTER", "DROP", "TRUNCATE", "COMMENT"), "ddl"),
    **dict.fromkeys(("GRANT", "REVOKE"), "dcl"),
    **dict.fromkeys(
        (
            "BEGIN", "START", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "SET", "RESET", "LISTEN",
            "UNLISTEN", "DEALLOCATE", "DISCARD", "PREPARE",
        ),
        "session",
    ),
}  # fmt: skip
#: Approval latency histogram: (upper bound in seconds, label).
LATENCY_BUCKETS = (
    (60.0, "< 1 min"),
    (300.0, "1-5 min"),
    (900.0, "5-15 min"),
    (3600.0, "15-60 min"),
    (14400.0, "1-4 h"),
    (float("inf"), "> 4 h"),
)


def statement_classifier(classifier: Classifier | None = None) -> Callable[[str, tuple[str, ...]], str]:
    """``(sql, tags) -> class``: the most significant policy class of a recorded statement (cached)."""
    parse = classifier or Classifier()

    @functools.lru_cache(maxsize=4096)
    def of_text(sql: str) -> str:
        found = parse.classify(sql).classes
        return next((c for c in CLASS_RANK if c in found), "unknown")

    def classify(sql: str, tags: tuple[str, ...]) -> str:
        cls = of_text(sql)
        if cls == "unknown" and tags:
            return TAG_CLASSES.get(tags[0].split(" ", 1)[0].upper(), "unknown")
        return cls

    return classify


#: An identity: its subject and how it authenticated (``token``, ``apikey``; None: not recorded).
Who = tuple[str, str | None]


def identity_name(who: Who) -> str:
    """``user:alice`` (a token), ``key:alice`` (an API key): the config's subject syntax, so a key named
    like a person is never merged with them (a bare subject when the kind was not recorded)."""
    subject, auth = who
    if auth is None:
        return subject
    return f"{'key' if auth == 'apikey' else 'user'}:{subject}"


@dataclass(slots=True)
class Identity:
    """One identity's activity in the range."""

    sessions: int = 0
    statements: int = 0
    denials: int = 0


@dataclass(slots=True)
class Stats:
    """The report's numbers; fed one event, session and approval request at a time."""

    classify: Callable[[str, tuple[str, ...]], str]
    events: int = 0
    event_kinds: Counter[str] = field(default_factory=Counter)
    sessions: int = 0
    sessions_per_day: Counter[str] = field(default_factory=Counter)
    session_types: Counter[str] = field(default_factory=Counter)
    statements: int = 0
    statement_errors: int = 0
    statement_classes: Counter[str] = field(default_factory=Counter)
    denials: int = 0
    denial_classes: Counter[str] = field(default_factory=Counter)
    denial_rules: Counter[str] = field(default_factory=Counter)
    masked: Counter[str] = field(default_factory=Counter)
    identities: dict[Who, Identity] = field(default_factory=dict)
    approval_requests: int = 0
    approval_decisions: int = 0
    approval_status: Counter[str] = field(default_factory=Counter)
    approval_latency: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)  # seconds, one per decided request
    prompts: int = 0
    checkpoints: int = 0
    #: where the store's mutable tables disagree with the chain (the pack follows the chain)
    warnings: list[str] = field(default_factory=list)

    def identity(self, subject: str, auth: str | None) -> Identity:
        """The counters of ``subject`` authenticated by ``auth`` (created on first use)."""
        key = (subject, auth)
        found = self.identities.get(key)
        if found is None:
            found = self.identities[key] = Identity()
        return found

    def add_event(self, kind: str, data_text: str) -> None:
        """Count one exported event (``data_text``: its JSON as stored)."""
        self.events += 1
        self.event_kinds[kind] += 1
        if kind not in ("statement", "policy_denied", "session_close"):
            return
        try:
            data = orjson.loads(data_text)
        except orjson.JSONDecodeError:
            return  # a tampered row: events.jsonl and chain.json show it
        if type(data) is not dict:
            return
        if kind == "statement":
            self.statements += 1
            self.statement_errors += data.get("status") == "error"
            sql, tags = data.get("sql"), data.get("tags")
            tag_words = tuple(t for t in tags if isinstance(t, str)) if isinstance(tags, list) else ()
            self.statement_classes[self.classify(sql, tag_words) if isinstance(sql, str) else "unknown"] += 1
        elif kind == "policy_denied":
            self.denials += 1
            classes = data.get("classes")
            for cls in classes if isinstance(classes, list) and classes else ["(none)"]:
                self.denial_classes[str(cls)] += 1
            self.denial_rules[str(data.get("rule") or "(no matching policy)")] += 1
            if isinstance(data.get("subject"), str):
                auth = data.get("auth")
                self.identity(data["subject"], auth if isinstance(auth, str) else None).denials += 1
        else:
            masked = data.get("masked")
            if isinstance(masked, dict):
                for detector, count in masked.items():
                    if type(count) is int:
                        self.masked[str(detector)] += count

    def add_session(self, session: dict[str, Any], day: str | None) -> None:
        """Count one exported session; ``day`` (``YYYY-MM-DD``) when it started in the range."""
        self.sessions += 1
        self.session_types[str(session["type"])] += 1
        if day is not None:
            self.sessions_per_day[day] += 1
        auth = session["auth"]
        who = self.identity(str(session["subject"]), None if auth is None else str(auth))
        who.sessions += 1
        who.statements += int(session["statements"] or 0)

    def add_request(self, status: str, created_at: int, closed_at: int | None, decisions: int) -> None:
        """Count one exported approval request (times in ms); decided ones give a latency."""
        self.approval_requests += 1
        self.approval_decisions += decisions
        self.approval_status[status] += 1
        if status in ("approved", "denied") and closed_at is not None:
            seconds = max(0, closed_at - created_at) / 1000
            self.latencies.append(seconds)
            label = next(label for bound, label in LATENCY_BUCKETS if seconds < bound)
            self.approval_latency[label] += 1

    def top_identities(self, n: int = 10) -> list[tuple[str, Identity]]:
        """The ``n`` most active identities (``user:alice``, ``key:alice``): by sessions, then
        statements, then name."""
        named = [(identity_name(who), found) for who, found in self.identities.items()]
        ranked = sorted(named, key=lambda kv: (-kv[1].sessions, -kv[1].statements, kv[0]))
        return ranked[:n]
