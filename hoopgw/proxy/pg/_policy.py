"""The statement policy of one PostgreSQL session: who may connect, and the check behind every statement.

The Rust core asks :meth:`StatementGuard.check` about a Query, Parse or FunctionCall only when it has
not seen the statement's shape (normalized text) before, or when the shape's classes are not all
allowed outright (``allow_mask``); repeated allowed shapes never reach Python. A refused statement gets
an ErrorResponse with SQLSTATE 42501 naming the rule, the session stays usable, and the refusal is
recorded with the identity and the rule.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hoopgw import _core
from hoopgw.policy import ALL, classes_of, mask_of
from hoopgw.policy._engine import Decision, policies_for, refusal
from hoopgw.policy._settings import SAFE_PG_ENCODINGS

if TYPE_CHECKING:
    from hoopgw.identity import Principal
    from hoopgw.policy._classify import Classification
    from hoopgw.proxy.pg._session import PgClientSession
    from hoopgw.server import Gateway

log = logging.getLogger("hoopgw.pg")

#: most SQL text kept in a denial record
_RECORD_SQL_MAX = 64 * 1024


#: what the core's check callback returns (the 4-tuple holds the statement)
Answer = tuple[int, bool, bytes | None] | tuple[int, bool, bytes | None, bool]


@dataclass(frozen=True, slots=True)
class HoldReason:
    """Why a statement is held: the ``approve`` decision, the statement text (None for a
    FunctionCall, or a Bind of a statement from a SQL PREPARE) and the statement name of a Bind."""

    decision: Decision
    sql: str | None
    name: str | None


def _grants(gw: Gateway, principal: Principal, connection: str) -> dict[str, dt.datetime]:
    """The caller's approved, running access grants of ``jit`` policies on ``connection``."""
    active = getattr(gw.approvals, "active_grants", None)
    if active is None:
        return {}
    ends: dict[str, int] = active(principal, connection)
    return {rule: dt.datetime.fromtimestamp(ms / 1000, dt.UTC) for rule, ms in ends.items()}


class StatementGuard:
    """Policy state of one session: verdicts (refreshed at time-window edges) and prepared statements."""

    def __init__(self, session: PgClientSession, principal: Principal) -> None:
        self.session = session
        self.principal = principal
        gw = session.listener.gateway
        self.connection = session.listener.cfg.name
        self.policy = policies_for(
            gw.config, principal, self.connection, _grants(gw, principal, self.connection)
        )
        self.verdicts = self.policy.at()
        #: what the last hold was for (set when check() holds a statement; taken by the session)
        self.hold: HoldReason | None = None
        #: text of each protocol statement whose Parse needs approval (its Binds are held)
        self._held_texts: dict[str, str] = {}
        #: classes of every statement name prepared in this session (SQL PREPARE and protocol Parse);
        #: names only ever gain classes: a failed DEALLOCATE or PREPARE must not launder a statement
        self.prepared: dict[str, frozenset[str]] = {}
        self._state: _core.PgSession | None = None
        self._timers: list[asyncio.TimerHandle] = []

    # -- session start -----------------------------------------------------------------------------
    def access_refusal(self) -> str | None:
        """Why this caller may not open a session on this connection now (None: it may)."""
        who = self.principal.subject
        if self.policy.empty:
            return f'hoopgw: no policy gives {who} access to connection "{self.connection}"'
        if not self.verdicts.any_access:
            grantable = self.policy.grantable
            if grantable:
                return (
                    f'hoopgw: {who} has no access to connection "{self.connection}" now; policy '
                    f'"{grantable[0]}" opens it for a time once approved: hoopgw access request '
                    f"--connection {self.connection} --for 30m --reason ..."
                )
            return f'hoopgw: no policy gives {who} access to connection "{self.connection}" at this time'
        return None

    @property
    def checks_statements(self) -> bool:
        """Whether statements are classified and checked (not for a caller allowed ``*`` always)."""
        return self.verdicts.allow_mask != ALL or self.policy.windowed

    def upstream_settings(self, settings: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        """The client's settings, plus what the gateway's parse relies on, plus a read-only session
        when no policy lets this caller write (startup values: ``RESET ALL`` returns to them)."""
        out = list(settings)
        if self.checks_statements:
            out.append(("standard_conforming_strings", "on"))
        if not self.policy.may_write:
            out.append(("default_transaction_read_only", "on"))
        return out

    def parameter_guard(self, reported: dict[str, str]) -> list[tuple[str, list[str]]]:
        """Server parameters that must keep these values for the session's checks to hold.

        ``reported`` are the upstream's ParameterStatus values after login. The gateway parses
        statements with standard_conforming_strings on, in an ASCII-safe client encoding; a reader's
        session must stay read-only; the session must not become someone else.
        """
        if not self.checks_statements:
            return []
        guard = [
            ("standard_conforming_strings", ["on"]),
            ("client_encoding", list(SAFE_PG_ENCODINGS)),
        ]
        if not self.policy.may_write:
            guard.append(("default_transaction_read_only", ["on"]))
        for name in ("session_authorization", "is_superuser"):
            if name in reported:
                guard.append((name, [reported[name]]))
        return guard

    def upstream_refusal(self, reported: dict[str, str]) -> str | None:
        """Why the upstream session as opened breaks a guard (None: it does not)."""
        for name, accepted in self.parameter_guard(reported):
            value = reported.get(name)
            if value is not None and value.lower() not in {a.lower() for a in accepted}:
                return (
                    f"upstream {self.connection!r} reports {name}={value}: hoopgw cannot check statements "
                    "safely in that session"
                )
        return None

    @property
    def read_only(self) -> bool:
        return not self.policy.may_write

    def start(self, state: _core.PgSession) -> None:
        """Install the check on ``state`` and arm the window and credential-expiry timers."""
        self._state = state
        gw = self.session.listener.gateway
        if self.checks_statements:
            state.set_policy(gw.sql_cache, self.check, self.verdicts.allow_mask)
        self._arm_window()
        expires = self.principal.expires_at
        if expires is not None:
            delay = max(0.0, expires + gw.config.identity.session_grace - time.time())
            self._timers.append(asyncio.get_running_loop().call_later(delay, self._expired))

    def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

    def _arm_window(self) -> None:
        nxt = self.policy.next_change()
        if nxt is None:
            return
        delay = max(0.0, (nxt - dt.datetime.now(dt.UTC)).total_seconds()) + 0.05
        self._timers.append(asyncio.get_running_loop().call_later(delay, self._window_edge))

    def _window_edge(self) -> None:
        before, self.verdicts = self.verdicts, self.policy.at()
        if self._state is not None:
            self._state.allow_mask = self.verdicts.allow_mask
        lost = before.allow_mask & ~self.verdicts.allow_mask
        if lost:
            # Cursors, portals, prepared statements and a COPY in progress were allowed under the
            # old verdicts and would go on running under the new ones: end the session instead.
            classes = "/".join(sorted(classes_of(lost)))
            self.session.listener.gateway.writer.event(
                self.session.session_id, "policy_window_closed", {"subject": self.principal.subject,
                                                                   "classes": sorted(classes_of(lost))},
            )  # fmt: skip
            self.session.terminate(
                "42501",
                f"a hoopgw policy time window closed: {classes} statements are no longer allowed for "
                f'{self.principal.subject} on "{self.connection}"; reconnect to continue',
            )
            return
        log.info(
            "policy window changed",
            extra={"session": self.session.session_id, "allow": sorted(classes_of(self.verdicts.allow_mask))},
        )
        self._arm_window()

    def _expired(self) -> None:
        who = self.principal.subject
        kind = "API key" if self.principal.auth == "apikey" else "token"
        self.session.listener.gateway.writer.event(
            self.session.session_id, "credential_expired", {"subject": who, "auth": self.principal.auth}
        )
        self.session.terminate("28000", f"the {kind} of {who} has expired: reconnect with a fresh one")

    # -- the check ---------------------------------------------------------------------------------
    def check(self, sql: str | None, cached: int, name: str | None) -> Answer:
        """Called by the core: ``(class mask, cacheable, ErrorResponse or None to forward[, hold])``.

        ``sql`` is a Query's or Parse's text (``name`` None for a Query, the statement name — empty
        for the unnamed one — for a Parse); None with a ``name`` is a Bind of that statement whose
        classes (``cached``, or -1 for a statement from a SQL PREPARE) are not all allowed now; None
        without a name is a FunctionCall. A statement whose verdict is ``approve`` is held (unless a
        ``covers = "shape"`` approval of its shape is still running): :attr:`hold` says why, and the
        session opens the approval request.
        """
        if sql is None and name is not None:
            return self._bind(cached, name)
        classifier = self.session.listener.gateway.classifier
        found: Classification | None = None
        if sql is None:
            found = classifier.function_call()
            classes, cacheable = found.classes, False
        elif cached >= 0:
            classes, cacheable = classes_of(cached), True
        else:
            found = classifier.classify(sql, self.prepared)
            # a PREPARE must reach Python every time: it defines a name this guard tracks
            classes, cacheable = found.classes, found.cacheable and not found.prepares
        mask = mask_of(classes)
        decision = self.verdicts.decide(classes)
        if decision.verdict == "allow":
            if found is not None:
                for pname, pclasses in found.prepares:
                    self._remember(pname, pclasses)
            if name:
                self._remember(name, classes)
            return mask, cacheable, None
        if decision.verdict == "approve":
            if found is not None:
                for pname, pclasses in found.prepares:
                    self._remember(pname, pclasses)
            if name:
                self._remember(name, classes)
            if name is not None and sql is not None:
                # a Parse only prepares: its Bind, which carries the parameters, is held instead
                self._held_texts[name] = sql
                return mask, cacheable, None
            if self._shape_approved(sql):
                return mask, cacheable, None
            self.hold = HoldReason(decision, sql, name)
            return mask, cacheable, None, True
        if found is None and sql is not None:
            found = classifier.classify(sql, self.prepared)  # for the reasons in the error detail
        return mask, cacheable, self._refuse(sql, decision, found)

    def _bind(self, cached: int, name: str) -> Answer:
        classes = classes_of(cached) if cached >= 0 else self.prepared.get(name)
        if classes is None:
            return 0, False, None  # never prepared through the gateway: the server refuses the Bind
        decision = self.verdicts.decide(classes)
        if decision.verdict == "allow":
            return mask_of(classes), False, None
        if decision.verdict == "approve":
            sql = self._held_texts.get(name)
            if self._shape_approved(sql):
                return mask_of(classes), False, None
            self.hold = HoldReason(decision, sql, name)
            return mask_of(classes), False, None, True
        return (
            mask_of(classes),
            False,
            self._refuse(None, decision, None, what=f"<bind of statement {name!r}>"),
        )

    # -- approvals covering a statement shape -------------------------------------------------------
    def shape_key(self, sql: str) -> tuple[str, str, str, bytes] | None:
        """The key of ``sql``'s shape in the listener's shape approvals (None: it has no shape)."""
        shape = _core.normalize_sql(sql.encode())
        if shape is None:
            return None
        return (self.principal.subject, self.principal.auth, self.connection, shape)

    def _shape_approved(self, sql: str | None) -> bool:
        if sql is None:
            return False
        key = self.shape_key(sql)
        if key is None:
            return False
        approvals = self.session.listener.shape_approvals
        until = approvals.get(key)
        if until is None:
            return False
        if until <= time.time():
            del approvals[key]
            return False
        return True

    def _remember(self, name: str, classes: frozenset[str]) -> None:
        self.prepared[name] = self.prepared.get(name, frozenset()) | classes

    def _refuse(
        self, sql: str | None, decision: Decision, found: Classification | None, what: str | None = None
    ) -> bytes:
        who, session = self.principal.subject, self.session
        message, hint = refusal(decision, who, self.connection)
        reasons = found.reasons if found is not None else ()
        detail = "; ".join(reasons) if reasons else None
        masker = session.listener.masker
        text = (what or "<fast-path function call>") if sql is None else sql[:_RECORD_SQL_MAX]
        if masker is not None and sql is not None:
            text = masker.mask_text(text)
        session.listener.gateway.writer.event(
            session.session_id,
            "policy_denied" if decision.verdict == "deny" else "approval_required",
            {
                "subject": who,
                "auth": self.principal.auth,
                "connection": self.connection,
                "rule": decision.rule,
                "verdict": decision.verdict,
                "classes": list(decision.classes),
                "reasons": list(reasons),
                "sql": text,
            },
        )
        log.info(
            "statement refused",
            extra={"session": session.session_id, "rule": decision.rule, "classes": list(decision.classes)},
        )
        return _core.encode_error("ERROR", "42501", message, detail, hint)
