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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hoopgw import _core
from hoopgw.audit._prompt import statement_prompt
from hoopgw.audit._secrets import redact_sql
from hoopgw.policy import ALL, classes_of, mask_of
from hoopgw.policy._engine import Decision, policies_for, refusal
from hoopgw.policy._settings import SAFE_PG_ENCODINGS
from hoopgw.proxy._grants import access_grants

if TYPE_CHECKING:
    from hoopgw.identity import Principal
    from hoopgw.policy._classify import Classification
    from hoopgw.proxy.pg._session import PgClientSession

log = logging.getLogger("hoopgw.pg")

#: most SQL text kept in a denial record
_RECORD_SQL_MAX = 64 * 1024
#: a SQL statement name this long may have been cut (at 63 bytes) by the gateway's parser where the
#: server did not cut it, or the other way round (4 bytes: the widest UTF-8 character)
_NAME_CUT = 63 - 3


class _Names(Mapping[str, frozenset[str]]):
    """The session's prepared statement names as the classifier sees them, noting each name it
    looks up (every ``EXECUTE``)."""

    def __init__(self, names: Mapping[str, frozenset[str]]) -> None:
        self._names = names
        self.asked: list[str] = []

    def __getitem__(self, key: str) -> frozenset[str]:  # Mapping.get comes here too
        self.asked.append(key)
        return self._names[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __bool__(self) -> bool:
        return True  # never replaced by an empty dict: the look-ups must be seen


def _unsure_name(name: str, sql: str) -> bool:
    """Whether the server may read SQL statement name ``name`` (as the gateway parsed it from
    ``sql``) as another name. The gateway parses the text decoded as UTF-8 (undecodable bytes as
    U+FFFD); the server decodes it in the client encoding, which may be LATIN1 or EUC_JP: non-ASCII
    characters differ, and so does where an identifier is cut at 63 bytes. Pure ASCII is read alike."""
    return not name.isascii() or (len(name) >= _NAME_CUT and not sql.isascii())


#: what the core's check callback returns (the 4-tuple holds the statement)
Answer = tuple[int, bool, bytes | None] | tuple[int, bool, bytes | None, bool]


@dataclass(frozen=True, slots=True)
class HoldReason:
    """Why a statement is held: the ``approve`` decision, every class of the statement, the text of a
    Query (None for a FunctionCall and for a Bind, whose statement text is the core's: see
    :meth:`HeldStatements._text`), the statement name of a Bind, and whether the Query's
    classification is independent of session state (only then may a shape approval cover it)."""

    decision: Decision
    classes: frozenset[str]
    sql: str | None
    name: str | None
    cacheable: bool = False


class StatementGuard:
    """Policy state of one session: verdicts (refreshed at time-window edges) and prepared statements."""

    def __init__(self, session: PgClientSession, principal: Principal) -> None:
        self.session = session
        self.principal = principal
        gw = session.listener.gateway
        self.connection = session.listener.cfg.name
        self.policy = policies_for(
            gw.config, principal, self.connection, access_grants(gw, principal, self.connection)
        )
        self.verdicts = self.policy.at()
        #: what the last hold was for (set when check() holds a statement; taken by the session)
        self.hold: HoldReason | None = None
        #: names prepared with a protocol Parse: a SQL PREPARE may not redefine them (the core keeps
        #: the classes and text of the Parse for its Binds and would not see the change)
        self._protocol_names: set[str] = set()
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
        """Whether statements are classified and checked (not for a caller allowed ``*`` always,
        unless write-ahead audit needs their classes)."""
        return (
            self.verdicts.allow_mask != ALL
            or self.policy.windowed
            or self.session.listener.gateway.config.audit.write_ahead
        )

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
            names = _Names(self.prepared)
            found = classifier.classify(sql, names)
            # a PREPARE must reach Python every time: it defines a name this guard tracks
            classes, cacheable = found.classes, found.cacheable and not found.prepares
            unsure = [n for n in (*names.asked, *(p for p, _ in found.prepares)) if _unsure_name(n, sql)]
            if unsure:
                return mask_of(classes), False, self._refuse_name(sql, unsure[0])
        mask = mask_of(classes)
        decision = self.verdicts.decide(classes)
        if decision.verdict != "deny" and found is not None and found.prepares:
            clash = next((p for p, _ in found.prepares if p in self._protocol_names), None)
            if clash is not None:
                return mask, False, self._refuse_redefinition(sql, clash)
        if decision.verdict in ("allow", "approve"):
            if found is not None:
                for pname, pclasses in found.prepares:
                    self._remember(pname, pclasses)
            if name:
                self._remember(name, classes)
                if sql is not None:
                    self._protocol_names.add(name)
        if decision.verdict == "allow":
            return mask, cacheable, None
        if decision.verdict == "approve":
            if name is not None and sql is not None:
                # a Parse only prepares: its Bind, which carries the parameters, is held instead
                return mask, cacheable, None
            if sql is not None and cacheable and self.shape_approved(sql):
                return mask, cacheable, None
            self.hold = HoldReason(decision, classes, sql, name, cacheable=sql is not None and cacheable)
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
            # The statement's text is the core's (it follows Close and failed Parses, and names as
            # bytes); a shape approval is looked up against it once held (HeldStatements).
            self.hold = HoldReason(decision, frozenset(classes), None, name)
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

    def shape_coverable(self, sql: str) -> bool:
        """Whether a shape approval may cover ``sql``: its classes do not depend on session state
        (an ``EXECUTE name`` has the same shape whatever the name was prepared as)."""
        found = self.session.listener.gateway.classifier.classify(sql, self.prepared)
        return found.cacheable and not found.prepares

    def shape_approved(self, sql: str) -> bool:
        """Whether a running ``covers = "shape"`` approval of this caller covers ``sql``."""
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

    def still_allows(self, classes: frozenset[str], sql: str | None) -> bytes | None:
        """The 42501 error for a held statement whose classes the policy denies now (a time window
        closed, a grant ended while it waited), or None when it may still run once approved."""
        decision = self.verdicts.decide(classes)
        if decision.verdict != "deny":
            return None
        return self._refuse(sql, decision, None, what="<statement held for approval>")

    def _refuse_redefinition(self, sql: str | None, name: str) -> bytes:
        message = (
            f'hoopgw: prepared statement "{name}" was prepared with the extended protocol in this session; '
            "a SQL PREPARE may not redefine it"
        )
        self._record_refusal(sql, None, "policy_denied", [f"PREPARE {name} over a protocol statement"])
        return _core.encode_error(
            "ERROR", "42501", message, None, "use another name, or Close and Parse it again with the protocol"
        )

    def _refuse_name(self, sql: str, name: str) -> bytes:
        self._record_refusal(sql, None, "policy_denied", [f"statement name {name!r} is not plain ASCII"])
        return _core.encode_error(
            "ERROR",
            "42501",
            "hoopgw: a SQL PREPARE or EXECUTE statement name must be ASCII (and, when the statement holds "
            f"other characters, shorter than {_NAME_CUT} characters)",
            "the gateway and the server could read the name differently in this client encoding",
            None,
        )

    def _refuse(
        self, sql: str | None, decision: Decision, found: Classification | None, what: str | None = None
    ) -> bytes:
        who = self.principal.subject
        message, hint = refusal(decision, who, self.connection)
        reasons = [self._masked(r) for r in found.reasons] if found is not None else []
        detail = "; ".join(reasons) if reasons else None
        kind = "policy_denied" if decision.verdict == "deny" else "approval_required"
        self._record_refusal(sql, decision, kind, reasons, what)
        return _core.encode_error("ERROR", "42501", message, detail, hint)

    def _masked(self, text: str) -> str:
        masker = self.session.listener.masker
        return redact_sql(masker.mask_text(text) if masker is not None else text)

    def _record_refusal(
        self,
        sql: str | None,
        decision: Decision | None,
        kind: str,
        reasons: list[str],
        what: str | None = None,
    ) -> None:
        """The audit event and log line of a refusal; every text in them masked like results."""
        session = self.session
        text = (what or "<fast-path function call>") if sql is None else sql[:_RECORD_SQL_MAX]
        session.listener.gateway.writer.event(
            session.session_id,
            kind,
            {
                "subject": self.principal.subject,
                "auth": self.principal.auth,
                "connection": self.connection,
                "rule": decision.rule if decision is not None else None,
                "verdict": decision.verdict if decision is not None else "deny",
                "classes": list(decision.classes) if decision is not None else [],
                "reasons": reasons,
                "sql": self._masked(text),
            },
            (statement_prompt(sql) if sql is not None else None) or session.prompt_id,
        )
        log.info(
            "statement refused",
            extra={
                "session": session.session_id,
                "rule": decision.rule if decision is not None else None,
                "classes": list(decision.classes) if decision is not None else [],
            },
        )
