"""The allow / approve / deny decision (DESIGN.md "Policy semantics").

Every ``[[policy]]`` whose subjects name the caller and whose connections name the connection counts
(plus the connection's ``defaults``), as long as its time window is open. Per class: deny beats approve
beats allow; a class no counted policy names is denied; ``session`` is allowed wherever any other class
is allowed or approvable; ``*`` names every class. A statement with several classes gets the strictest
verdict of its classes.

:func:`policies_for` picks the policies of one principal on one connection once per session;
:meth:`SessionPolicy.at` turns them into :class:`Verdicts` for a moment in time, whose ``allow_mask``
the Rust core uses to pass already-classified statement shapes without calling back into Python.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from hoopgw.policy._classes import BIT, PG_CLASSES, WRITING

if TYPE_CHECKING:
    from hoopgw.config import Config, PolicyRules, TimeWindow
    from hoopgw.identity import Principal

Verdict = Literal["allow", "approve", "deny"]
_RANK: dict[Verdict, int] = {"allow": 0, "approve": 1, "deny": 2}


@dataclass(frozen=True, slots=True)
class CountedPolicy:
    """One policy (or a connection's defaults) that names this caller on this connection."""

    name: str
    rules: PolicyRules
    window: TimeWindow | None = None
    #: end of the caller's access grant of a ``jit`` policy (None: not granted, or not jit)
    granted_until: dt.datetime | None = None

    def open_at(self, now: dt.datetime) -> bool:
        """True when the policy counts at ``now`` (an aware datetime)."""
        if self.rules.jit and (self.granted_until is None or now >= self.granted_until):
            return False
        return self.window is None or window_open(self.window, now)


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict on one statement."""

    verdict: Verdict
    #: the policy that decided (None: no counted policy names the class)
    rule: str | None
    #: the classes that produced the verdict
    classes: tuple[str, ...]
    #: the rules of the policy that said ``approve`` (approvers, timeout, what an approval covers)
    rules: PolicyRules | None = None

    @property
    def approvers(self) -> tuple[str, ...]:
        return self.rules.approvers if self.rules is not None else ()


@dataclass(frozen=True, slots=True)
class _ClassVerdict:
    verdict: Verdict
    rule: str | None
    rules: PolicyRules | None = None


@dataclass(frozen=True)
class Verdicts:
    """The per-class verdicts at one moment."""

    per_class: dict[str, _ClassVerdict]
    #: bit mask of the classes allowed outright (see hoopgw.policy.BIT)
    allow_mask: int
    #: True when any class other than ``session`` is allowed or approvable: the caller has access
    any_access: bool = field(default=False)

    def decide(self, classes: Iterable[str]) -> Decision:
        """The strictest verdict over ``classes`` (an empty statement is allowed)."""
        return _strictest(self.per_class, classes)


def _strictest(per_class: Mapping[str, _ClassVerdict], classes: Iterable[str]) -> Decision:
    worst: _ClassVerdict | None = None
    named: list[str] = []
    for name in sorted(classes):
        cv = per_class[name]
        if (
            worst is None
            or _RANK[cv.verdict] > _RANK[worst.verdict]
            or (cv.verdict == worst.verdict and worst.rule is None and cv.rule is not None)
        ):
            # the strictest verdict; among equals, one a policy says out loud
            worst, named = cv, [name]
        elif cv.verdict == worst.verdict and cv.rule == worst.rule:
            named.append(name)
    if worst is None or worst.verdict == "allow":
        return Decision("allow", None if worst is None else worst.rule, tuple(named))
    return Decision(worst.verdict, worst.rule, tuple(named), worst.rules)


class SessionPolicy:
    """The counted policies of one caller on one connection."""

    def __init__(self, policies: Sequence[CountedPolicy]) -> None:
        self.policies = tuple(policies)

    @property
    def empty(self) -> bool:
        """No policy names this caller on this connection at any time."""
        return not self.policies

    @property
    def windowed(self) -> bool:
        """Some counted policy has a time window or a grant (verdicts change over time)."""
        return any(p.window is not None or p.granted_until is not None for p in self.policies)

    @property
    def grantable(self) -> tuple[str, ...]:
        """Names of the ``jit`` policies naming this caller that are not granted now."""
        now = dt.datetime.now(dt.UTC)
        return tuple(p.name for p in self.policies if p.rules.jit and not p.open_at(now))

    @property
    def may_write(self) -> bool:
        """Some counted policy (at any time) allows or approves a writing class."""
        for p in self.policies:
            for name in (*p.rules.allow, *p.rules.approve):
                if name == "*" or name in WRITING:
                    return True
        return False

    def at(self, now: dt.datetime | None = None) -> Verdicts:
        """The verdicts at ``now`` (default: the current time)."""
        when = now or dt.datetime.now(dt.UTC)
        open_ = [p for p in self.policies if p.open_at(when)]
        per_class: dict[str, _ClassVerdict] = {}
        for name in PG_CLASSES:
            per_class[name] = _verdict(name, open_)
        access = any(v.verdict != "deny" for k, v in per_class.items() if k != "session")
        session = per_class["session"]
        if session.rule is None and access:
            # "session" is allowed wherever any other class is (unless a policy denies it outright)
            source = next(v.rule for k, v in per_class.items() if k != "session" and v.verdict != "deny")
            per_class["session"] = _ClassVerdict("allow", source)
        allow_mask = 0
        for name, cv in per_class.items():
            if cv.verdict == "allow":
                allow_mask |= BIT[name]
        return Verdicts(per_class, allow_mask, access)

    def decide_classes(self, classes: Iterable[str], now: dt.datetime | None = None) -> Decision:
        """The strictest verdict over any class names at ``now`` (SSH: ``exec``, ``exec:GLOB``, command
        classes …); the same rules as :meth:`at` without the PostgreSQL ``session`` rule. No classes:
        denied (there is nothing a policy allowed)."""
        when = now or dt.datetime.now(dt.UTC)
        open_ = [p for p in self.policies if p.open_at(when)]
        names = set(classes)
        if not names:
            return Decision("deny", None, ())
        return _strictest({name: _verdict(name, open_) for name in names}, names)

    def named(self, prefix: str, now: dt.datetime | None = None) -> tuple[str, ...]:
        """The GLOB parts of the ``PREFIXGLOB`` classes (``prefix`` like ``"exec:"``) that the policies open
        at ``now`` name in allow, approve or deny, in config order without repeats."""
        when = now or dt.datetime.now(dt.UTC)
        out: dict[str, None] = {}
        for p in self.policies:
            if not p.open_at(when):
                continue
            for name in (*p.rules.deny, *p.rules.approve, *p.rules.allow):
                if name.startswith(prefix) and len(name) > len(prefix):
                    out[name[len(prefix) :]] = None
        return tuple(out)

    def next_change(self, now: dt.datetime | None = None) -> dt.datetime | None:
        """The next moment after ``now`` at which a time window opens or closes (None: never)."""
        when = now or dt.datetime.now(dt.UTC)
        best: dt.datetime | None = None
        for p in self.policies:
            marks = [_next_boundary(p.window, when)] if p.window is not None else []
            if p.granted_until is not None and p.granted_until > when:
                marks.append(p.granted_until)
            for nxt in marks:
                if best is None or nxt < best:
                    best = nxt
        return best


def _verdict(name: str, policies: Sequence[CountedPolicy]) -> _ClassVerdict:
    """deny beats approve beats allow; not named at all: denied with no rule."""
    found: dict[Verdict, _ClassVerdict] = {}
    for p in policies:
        r = p.rules
        lists: tuple[tuple[Verdict, tuple[str, ...]], ...] = (
            ("deny", r.deny),
            ("approve", r.approve),
            ("allow", r.allow),
        )
        for verdict, names in lists:
            if verdict not in found and (name in names or "*" in names):
                found[verdict] = _ClassVerdict(verdict, p.name, r if verdict == "approve" else None)
    for order in ("deny", "approve", "allow"):
        if order in found:
            return found[order]
    return _ClassVerdict("deny", None)


def policies_for(
    config: Config,
    principal: Principal,
    connection: str,
    grants: Mapping[str, dt.datetime] | None = None,
) -> SessionPolicy:
    """The policies (and connection defaults) that name ``principal`` on ``connection``, in config order.

    ``grants`` maps the names of ``jit`` policies the caller holds an approved access grant of to the
    grant's end; a jit policy counts only until then.
    """
    counted: list[CountedPolicy] = []
    for policy in config.policies:
        if connection not in policy.connections and "*" not in policy.connections:
            continue
        if any(principal.matches(s) for s in policy.subjects):
            until = (grants or {}).get(policy.name) if policy.jit else None
            counted.append(CountedPolicy(policy.name, policy, policy.window, until))
    try:
        conn = config.connection(connection)
    except KeyError:
        conn = None
    defaults = getattr(conn, "defaults", None)
    if defaults is not None:
        counted.append(CountedPolicy(f"{connection}.defaults", defaults))
    return SessionPolicy(counted)


def connections_without_policy(config: Config) -> list[str]:
    """Connections no policy names and without ``defaults``: every login to them is refused."""
    named: set[str] = set()
    for policy in config.policies:
        named.update(policy.connections)
    return [
        c.name
        for c in config.connections
        if c.name not in named and "*" not in named and getattr(c, "defaults", None) is None
    ]


# -- time windows ------------------------------------------------------------------------------------
def window_open(window: TimeWindow, now: dt.datetime) -> bool:
    """True when ``now`` falls inside ``window`` (overnight ranges belong to the day they start on)."""
    local = now.astimezone(zoneinfo.ZoneInfo(window.timezone))
    minute = local.hour * 60 + local.minute
    day = local.weekday()
    if window.hours is None:
        return day in window.weekdays
    start, end = window.hours
    if start < end:
        return day in window.weekdays and start <= minute < end
    # overnight: from start until midnight on a listed day, or until end on the day after one
    return (day in window.weekdays and minute >= start) or ((day - 1) % 7 in window.weekdays and minute < end)


def _next_boundary(window: TimeWindow, now: dt.datetime) -> dt.datetime:
    """The first moment after ``now`` at which :func:`window_open` may change."""
    zone = zoneinfo.ZoneInfo(window.timezone)
    local = now.astimezone(zone)
    marks = [0] if window.hours is None else sorted({0, window.hours[0] % 1440, window.hours[1] % 1440})
    for days in range(9):
        date = local.date() + dt.timedelta(days=days)
        for mark in marks:
            candidate = dt.datetime.combine(date, dt.time(mark // 60, mark % 60), zone)
            if candidate > local:
                return candidate.astimezone(dt.UTC)
    return (local + dt.timedelta(days=1)).astimezone(dt.UTC)  # pragma: no cover - a day always has a mark


# -- messages -----------------------------------------------------------------------------------------
def refusal(decision: Decision, subject: str, connection: str) -> tuple[str, str]:
    """(message, hint) of the 42501 error for a statement that is not allowed."""
    what = "/".join(decision.classes) or "these"
    if decision.verdict == "approve":
        approvers = ", ".join(decision.approvers) or "an approver"
        return (
            f'hoopgw policy "{decision.rule}" requires approval for {what} statements by {subject} '
            f'on "{connection}"; the statement was refused',
            f"held statements are not available yet: ask {approvers} to run it, or for a policy change",
        )
    if decision.rule is None:
        return (
            f'hoopgw: no policy allows {what} statements for {subject} on "{connection}"',
            "ask a gateway administrator for a policy that allows this class of statement",
        )
    return (
        f'hoopgw policy "{decision.rule}" denies {what} statements for {subject} on "{connection}"',
        "this class of statement is not permitted through the gateway for you",
    )


def ssh_refusal(decision: Decision, subject: str, connection: str, what: str = "") -> str:
    """The one-line message for an SSH request that is not allowed.

    ``what`` says what was refused ("this command", "interactive shells" …) and is followed by the
    classes in parentheses; without it the classes stand alone:
    ``hoopgw policy "ops" denies this command (destructive) for alice on "bankhost"``,
    ``hoopgw: no policy allows exec for alice on "bankhost"``.
    """
    classes = "/".join(decision.classes) or "this"
    label = f"{what} ({classes})" if what else classes
    if decision.verdict == "approve":
        return f'hoopgw policy "{decision.rule}" requires approval for {label} by {subject} on "{connection}"'
    if decision.rule is None:
        return f'hoopgw: no policy allows {label} for {subject} on "{connection}"'
    return f'hoopgw policy "{decision.rule}" denies {label} for {subject} on "{connection}"'
