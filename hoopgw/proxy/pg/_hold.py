"""A statement held for approval in one PostgreSQL session (docs/APPROVALS.md, "Held statements").

When the policy says ``approve``, the Rust core holds the statement and everything the client sends
after it (the rest of an extended-protocol batch, pipelined statements). :class:`HeldStatements`
then, per held statement:

1. lets a Bind through at once when a running ``covers = "shape"`` approval covers its statement —
   the statement text is always the core's, which follows the server's prepared statements (Close,
   failed Parses, names as bytes), never a text the client sent under the name earlier;
2. waits until the held batch is complete (its Sync is in; at most :data:`BATCH_WAIT_S`), so the
   request can show the parameters of the statement's first Bind;
3. opens a signed approval request (the statement text masked as results are, the parameters masked,
   a keyed digest of what is sent) and tells the client in a NoticeResponse — unless the statement or
   a parameter is too long to show in full (:data:`STATEMENT_MAX`): an approver must see all of it;
4. waits for the decision; on approval the core releases the held bytes (the client gets its normal
   result), on denial, expiry or a void request it answers the held statement with 42501 naming the
   request — the session stays usable either way — then goes on with what followed, which may be held
   in turn. An approval does not release the statement when the policy denies its classes by then
   (a time window closed), nor when the client added to an incomplete batch after the request was
   opened (Binds the approver never saw would run under it).

The request is voided when the session ends under it (the client leaves or cancels, the upstream ends
the session) — but not when the gateway shuts down: then the request stays decidable on record and
the client is told so.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import time
from typing import TYPE_CHECKING, Any

from hoopgw import _core
from hoopgw.audit._prompt import statement_prompt
from hoopgw.audit._secrets import redact_params, redact_sql
from hoopgw.errors import HoopError

if TYPE_CHECKING:
    from hoopgw.approvals import StoredRequest
    from hoopgw.proxy.pg._policy import HoldReason
    from hoopgw.proxy.pg._session import PgClientSession

log = logging.getLogger("hoopgw.pg")

#: longest wait for the rest of a held Parse/Bind batch (up to its Sync) before opening the request
BATCH_WAIT_S = 0.5
#: longest statement text (and parameter) put to an approver: a longer one is refused, not truncated
STATEMENT_MAX = 64 * 1024
#: most executions (Binds of the held statement in its batch) one request may put to an approver
EXECUTIONS_MAX = 1000
_FORMAT_BINARY = 1


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class HeldStatements:
    """The approval flow of one session's held statements (one at a time, in stream order)."""

    def __init__(self, session: PgClientSession) -> None:
        self.session = session
        self.request_id: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._more = asyncio.Event()
        #: set when the gateway shuts down: the request stays pending for a later decision
        self.keep_request = False
        #: set while the request is being written (the flow voids it itself if the session ended)
        self._opening = False
        self._ended: str | None = None
        #: the client sent a CancelRequest for the held statement
        self._cancelled = False
        #: (batch complete, client bytes received) when the open request's parameters were read
        self._shown: tuple[bool, int] = (True, 0)

    @property
    def active(self) -> bool:
        return self._task is not None and not self._task.done()

    def poke(self) -> None:
        """Called after the core processed client bytes: start the flow for a new hold, or tell a
        flow waiting for the rest of its batch that more arrived."""
        state = self.session.state
        if state is None or not state.holding:
            return
        if self.active:
            self._more.set()
            return
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        session = self.session
        try:
            guard = session.guard
            assert guard is not None
            while (state := session.state) is not None and state.holding and not session.closed:
                reason, guard.hold = guard.hold, None
                if reason is None:  # cannot happen: the guard sets it whenever it holds
                    session.apply(*state.reject(b"", time.monotonic_ns()))
                    continue
                sql = self._text(reason)
                coverable = reason.cacheable if reason.sql is not None else self._coverable(sql)
                if reason.sql is None and sql is not None and coverable and guard.shape_approved(sql):
                    session.apply(*state.release(time.monotonic_ns()))  # a Bind of an approved shape
                    continue
                await self._await_batch()
                if self._gone():
                    return
                request = await self._open(reason, sql, coverable)
                if request is None:
                    if self._gone():
                        return
                    continue  # answered with an error: on with what followed
                closed = await session.gateway.approvals.wait(request["id"])
                self.request_id = None
                if self._gone():
                    return
                self._decided(reason, sql, request, closed)
        except Exception:
            log.exception("approval flow failed", extra={"session": session.session_id})
            session.terminate("XX000", "hoopgw could not complete the approval of a held statement")

    def _text(self, reason: HoldReason) -> str | None:
        """The held statement's text: the Query's, or the core's for a Bind (None: not known)."""
        if reason.sql is not None:
            return reason.sql
        state = self.session.state
        held = state.held if state is not None else None
        return held[1] if held is not None and held[0] == "bind" else None

    def _coverable(self, sql: str | None) -> bool:
        guard = self.session.guard
        return sql is not None and guard is not None and guard.shape_coverable(sql)

    def _gone(self) -> bool:
        """True when there is nothing to decide any more (the session ended, or the hold went)."""
        state = self.session.state
        return self.session.closed or state is None or not state.holding

    async def _await_batch(self) -> None:
        state = self.session.state
        deadline = time.monotonic() + BATCH_WAIT_S
        while state is not None and state.holding and not state.held_batch[0]:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._more.clear()
            try:
                await asyncio.wait_for(self._more.wait(), left)
            except TimeoutError:
                return

    # -- opening --------------------------------------------------------------------------------
    async def _open(self, reason: HoldReason, sql: str | None, coverable: bool) -> dict[str, Any] | None:
        """Open the request (None: the flow answered the statement with an error instead, or the
        session ended meanwhile)."""
        session = self.session
        state, guard = session.state, session.guard
        assert state is not None and guard is not None
        held = state.held
        kind = held[0] if held is not None else "query"
        if sql is None:
            sql = (
                "<fast-path function call>" if kind == "function" else f"<bind of statement {reason.name!r}>"
            )
            coverable = False
        complete, binds = state.held_batch
        self._shown = (complete, session.client_bytes)
        if len(binds) > EXECUTIONS_MAX:
            self._answer(
                _core.encode_error(
                    "ERROR",
                    "42501",
                    f"hoopgw cannot put this batch to an approver: it runs the held statement {len(binds)} "
                    "times; it was not run",
                    f"at most {EXECUTIONS_MAX} executions of a held statement per batch (up to its Sync)",
                    "send smaller batches",
                )
            )
            return None
        # parameters the statement uses as passwords are never shown to approvers (nor recorded)
        every = [(sent, redact_params(sql, shown) or []) for sent, shown in map(self._params, binds)]
        every = every or [([], [])]
        (params, shown), more = every[0], every[1:]
        longest = max([len(sql), *(len(p) for _, each in every for p in each if p is not None)])
        if longest > STATEMENT_MAX:
            self._answer(
                _core.encode_error(
                    "ERROR",
                    "42501",
                    "hoopgw cannot put this statement to an approver: it is too long to be shown in full; "
                    "it was not run",
                    f"{longest} characters in the statement or a parameter; at most {STATEMENT_MAX}",
                    None,
                )
            )
            return None
        masker = session.listener.masker
        text = redact_sql(masker.mask_text(sql) if masker is not None else sql)
        decision = reason.decision
        rules = decision.rules
        assert rules is not None and decision.rule is not None
        service = session.gateway.approvals
        covers = None
        if rules.covers == "shape" and rules.covers_for is not None and coverable:
            shape = _core.normalize_sql(sql.encode())
            if shape is not None:
                covers = service.shape_covers(
                    shape.decode("utf-8", "replace"), round(rules.covers_for * 1000)
                )
        open_request = functools.partial(
            service.open_request,
            guard.principal,
            guard.connection,
            sql,
            shown,
            self._prompt_of(sql),
            decision.rule,
            rules.approvers,
            rules.approvals_required,
            rules.approval_timeout,
            covers,
            params=params,
            statement_masked=text,
            more_params=[p for p, _ in more],
            more_params_masked=[s for _, s in more],
            one_of_each_group=rules.one_of_each_group,
        )
        self._opening = True
        try:
            record = await asyncio.get_running_loop().run_in_executor(None, open_request)
        except (HoopError, OSError, ValueError) as exc:
            self._opening = False
            where = {"session": session.session_id, "error": str(exc)}
            log.error("cannot open an approval request", extra=where)  # noqa: TRY400 - no traceback
            session.gateway.writer.event(
                session.session_id, "approval_error", {"error": str(exc)}, self._prompt_of(sql)
            )
            self._answer(
                _core.encode_error(
                    "ERROR",
                    "42501",
                    "hoopgw could not open an approval request for this statement; it was not run",
                    str(exc),
                    None,
                )
            )
            return None
        self._opening = False
        self.request_id = record["id"]
        if self._ended is not None:  # the session ended while the request was written
            self.session_ended(self._ended)
            return None
        session.gateway.writer.event(
            session.session_id,
            "approval_requested",
            {
                "request_id": record["id"],
                "subject": guard.principal.subject,
                "connection": guard.connection,
                "rule": decision.rule,
                "classes": list(decision.classes),
                "sql": text,
                "params": list(shown),
                "prompt_id": record["prompt_id"],
                "more_params": [s for _, s in more],
                "expires_at": record["expires_at"],
            },
            record["prompt_id"],
        )
        log.info(
            "statement held for approval", extra={"session": session.session_id, "request": record["id"]}
        )
        session.client.write(self._notice(record, decision.classes))
        if session.draining:
            session.drain()  # the gateway began shutting down meanwhile: tell the client now
        return record

    def _prompt_of(self, sql: str) -> str | None:
        """The statement's own prompt tag (leading comment), else the session's."""
        return statement_prompt(sql) or self.session.prompt_id

    def _params(
        self, bind: list[tuple[int, bytes | None]]
    ) -> tuple[list[str | bytes | None], list[str | None]]:
        """A Bind's parameters as sent (for the digest) and as the record shows them."""
        masker = self.session.listener.masker
        sent: list[str | bytes | None] = []
        shown: list[str | None] = []
        for fmt, value in bind:
            sent.append(value)
            if value is None:
                shown.append(None)
            elif fmt == _FORMAT_BINARY:
                shown.append(f"<binary, {len(value)} bytes>")
            else:
                text = value.decode("utf-8", "replace")
                shown.append(masker.mask_text(text) if masker is not None else text)
        return sent, shown

    def _notice(self, record: dict[str, Any], classes: tuple[str, ...]) -> bytes:
        rid = record["id"]
        approvers = ", ".join(record["approvers"])
        n = record["approvals_required"]
        url = self.session.gateway.approvals_url
        where = f" or POST {url}/api/approvals/{rid}/approve" if url else ""
        runs = len(record["more_params_masked"]) + 1
        times = f" (it runs {runs} times in this batch)" if runs > 1 else ""
        return _core.encode_error(
            "NOTICE",
            "00000",
            f"hoopgw: statement held for approval: request {rid}",
            f'policy "{record["rule"]}" needs {n} approval{"s" if n != 1 else ""} from {approvers} for '
            f"{'/'.join(classes) or 'these'} statements{times}; the request expires at "
            f"{_iso(record['expires_at'])}",
            f"an approver runs: hoopgw approvals approve {rid}{where}; this session waits for the decision",
            notice=True,
        )

    # -- deciding -------------------------------------------------------------------------------
    def _decided(
        self, reason: HoldReason, sql: str | None, record: dict[str, Any], closed: StoredRequest
    ) -> None:
        session = self.session
        state, guard = session.state, session.guard
        assert state is not None and guard is not None
        rid = record["id"]
        session.gateway.writer.event(
            session.session_id,
            "approval_closed",
            {"request_id": rid, "status": closed.status, "reason": closed.close_reason},
            record["prompt_id"],
        )
        if closed.status == "approved":
            refused = guard.still_allows(reason.classes, sql)
            if refused is not None:  # the policy changed while it waited: deny wins over the approval
                log.info("approved statement refused", extra={"session": session.session_id, "request": rid})
                self._answer(refused)
                return
            complete, received = self._shown
            if not complete and session.client_bytes != received:
                log.info("held batch grew", extra={"session": session.session_id, "request": rid})
                self._answer(
                    _core.encode_error(
                        "ERROR",
                        "42501",
                        f"hoopgw approval request {rid} was approved, but the client added to the held "
                        "batch after the request was opened; the statement was not run",
                        "the approver saw the batch only up to the request",
                        "send the whole batch, up to its Sync, before the request is opened",
                    )
                )
                return
            self._remember_shape(sql, record, closed)
            log.info("held statement released", extra={"session": session.session_id, "request": rid})
            session.apply(*state.release(time.monotonic_ns()))
            return
        why = closed.close_reason or closed.status
        if self._cancelled:
            self._cancelled = False
            self._answer(
                _core.encode_error(
                    "ERROR",
                    "57014",
                    "canceling statement due to user request",
                    f"the statement held for approval request {rid} was not run; the request is void",
                    None,
                )
            )
            return
        log.info(
            "held statement refused",
            extra={"session": session.session_id, "request": rid, "status": closed.status},
        )
        message = {
            "denied": f"hoopgw approval request {rid} was denied: {why}",
            "expired": f"hoopgw approval request {rid} expired: nobody decided by {_iso(closed.expires_at)}",
        }.get(closed.status, f"hoopgw approval request {rid} was voided: {why}")
        self._answer(
            _core.encode_error(
                "ERROR",
                "42501",
                message,
                f'the statement was held by policy "{record["rule"]}" and was not run',
                "the session is still usable; a new attempt opens a new request",
            )
        )

    def _remember_shape(self, sql: str | None, record: dict[str, Any], closed: StoredRequest) -> None:
        covers = record["covers"]
        if covers.get("kind") != "shape" or self.session.guard is None:
            return
        key = self.session.guard.shape_key(sql) if sql is not None else None
        if key is not None:
            start = (closed.closed_at or closed.created_at) / 1000
            self.session.listener.shape_approvals[key] = start + covers["duration_ms"] / 1000

    def _answer(self, error: bytes) -> None:
        state = self.session.state
        assert state is not None
        self.session.apply(*state.reject(error, time.monotonic_ns()))

    def cancel(self) -> bool:
        """The client cancelled: void the pending request (the flow answers 57014). False when no
        statement is held for a pending request (or it was decided meanwhile): the cancel then goes
        to the server."""
        rid = self.request_id
        if rid is None:
            return False
        self._cancelled = True
        try:
            self.session.gateway.approvals.void(rid, "the client cancelled the statement")
        except HoopError as exc:  # decided at the same moment: that decision stands
            self._cancelled = False
            log.info("approval request not voided", extra={"request": rid, "error": str(exc)})
            return False  # an approved statement may be running by now: the server gets the cancel
        self.session.gateway.writer.event(
            self.session.session_id,
            "approval_void",
            {"request_id": rid, "reason": "cancelled by the client"},
            self.session.prompt_id,
        )
        return True

    # -- the session ends -----------------------------------------------------------------------
    def session_ended(self, why: str) -> None:
        """The session is closing: void the pending request (unless the gateway is shutting down)."""
        task, rid = self._task, self.request_id
        self.request_id = None
        if self._opening:  # the flow voids the request once it is written
            self._ended = why
            return
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
        if rid is None or self.keep_request:
            return
        session = self.session
        try:
            session.gateway.approvals.void(rid, why)
        except HoopError as exc:  # already closed (decided at the same moment), or the store failed
            log.info("approval request not voided", extra={"request": rid, "error": str(exc)})
            return
        session.gateway.writer.event(
            session.session_id, "approval_void", {"request_id": rid, "reason": why}, session.prompt_id
        )
