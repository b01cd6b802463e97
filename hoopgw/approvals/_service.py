"""The approval decision service: open signed requests, decide them by the rules, wait for them to close.

Requests are held statements (:meth:`ApprovalService.open_request`) or just-in-time access requests
(:meth:`ApprovalService.open_grant`); both are decided the same way, and an approved access request is a
grant that runs ``duration_ms`` from its approval (:meth:`ApprovalService.active_grants`).

Rules enforced by :meth:`ApprovalService.decide` (docs/APPROVALS.md, "Requests and decisions"):

- the requester never decides their own request: compared by subject whatever the auth kind, and also
  through API keys — an API key counts as its own subject *and* as the subject that created it;
- only a principal matching one of the request's ``approvers`` (``group:``, ``user:``, ``key:``) decides;
- a denial needs a reason; any denial closes the request as denied;
- a closed (approved, denied, expired, void) request cannot be decided;
- an approver counts once; the request is approved once ``approvals_required`` distinct approvers approved
  (and, in ``one_of_each_group`` mode, every ``approvers`` entry is covered by a different approver).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hoopgw.approvals._digest import statement_digest
from hoopgw.approvals._records import DECISION, GRANT, RECORD_VERSION, REQUEST, record_digest, sign_record
from hoopgw.approvals._store import (
    MAX_GRANT_MS,
    ActiveGrant,
    ApprovalError,
    ApprovalStore,
    RequestNotFound,
    Status,
    StoredDecision,
    StoredRequest,
    closed_error,
    owner_subject,
)
from hoopgw.audit._ids import new_session_id
from hoopgw.identity._keystore import ApiKeyStore
from hoopgw.identity._principal import Auth, Principal

log = logging.getLogger("hoopgw.approvals")

Clock = Callable[[], int]
#: ``listener(event, request)``: ``event`` is "opened" or "closed" (called once per request each).
Listener = Callable[[str, "StoredRequest"], None]
_ANNOUNCED_MAX = 4096
#: how many access requests one requester may have pending at once (:meth:`ApprovalService.open_grant`)
MAX_PENDING_GRANTS = 10
#: held statements one requester may have waiting at once (one per session; sessions are many)
MAX_PENDING_STATEMENTS = 25
#: a time no request was created at (ms): "no grants" for :meth:`ApprovalService.active_grants`
_NEVER = 2**53 - 1
#: ``(loop, future)`` of one caller of :meth:`ApprovalService.wait`.
_Waiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[StoredRequest]"]


def now_ms() -> int:
    """The current time in integer milliseconds since the epoch (the unit of records)."""
    return time.time_ns() // 1_000_000


def _party(principal: Principal) -> dict[str, Any]:
    return {"subject": principal.subject, "auth": principal.auth, "groups": sorted(principal.groups)}


def _matches(party: Mapping[str, Any], ref: str) -> bool:
    """Whether an ``approvers`` entry names the approver of a decision record (as Principal.matches)."""
    auth = cast("Auth", party["auth"])
    return Principal(subject=party["subject"], groups=frozenset(party["groups"]), auth=auth).matches(ref)


def _covers_each(approvers: Sequence[str], approvals: Sequence[StoredDecision]) -> bool:
    """True when each ``approvers`` entry can be given its own approver (a bipartite matching)."""
    owner: dict[int, int] = {}  # approval index -> approvers entry index

    def assign(entry: int, seen: set[int]) -> bool:
        for i, d in enumerate(approvals):
            if i in seen or not _matches(d.record["approver"], approvers[entry]):
                continue
            seen.add(i)
            if i not in owner or assign(owner[i], seen):
                owner[i] = entry
                return True
        return False

    return all(assign(entry, set()) for entry in range(len(approvers)))


def tally(request: StoredRequest, decisions: Sequence[StoredDecision]) -> tuple[Status, str | None]:
    """The status a pending request takes given all its decisions: ``(status, close_reason)``."""
    for d in decisions:
        if d.decision == "deny":
            return "denied", f"denied by {d.approver}: {d.record['reason']}"
    approvals = [d for d in decisions if d.decision == "approve"]
    if len(approvals) < request.record["approvals_required"]:
        return "pending", None
    if request.one_of_each_group and not _covers_each(request.record["approvers"], approvals):
        return "pending", None
    return "approved", "approved by " + ", ".join(d.approver for d in approvals)


class ApprovalService:
    """Opens and decides approval requests in an :class:`ApprovalStore`, signing every record.

    ``api_keys``, when given, tells who created an API key (``created_by``), so a person cannot approve
    through a key they made, nor have a key they made approve for them. ``clock`` gives integer ms.
    Thread-safe; :meth:`wait` is for asyncio callers in this process.
    """

    def __init__(
        self,
        store: ApprovalStore,
        signing_key: Ed25519PrivateKey,
        digest_key: bytes,
        *,
        api_keys: ApiKeyStore | None = None,
        clock: Clock = now_ms,
        mask_text: Callable[[str, str], str] | None = None,
    ) -> None:
        self.store = store
        #: ``mask_text(connection, text)``: free text people type (reasons) is masked with the
        #: connection's rules before it is signed and stored, like statements
        self._mask_text = mask_text
        self._key = signing_key
        self._digest_key = digest_key
        self._api_keys = api_keys
        #: a connection of its own for the key look-ups of :meth:`active_grants` (session start, on the
        #: event loop): never waits behind a key being created or revoked on ``api_keys``
        self._grant_keys = ApiKeyStore(api_keys.store) if api_keys is not None else None
        self._clock = clock
        self._lock = threading.Lock()
        self._waiters: dict[str, list[_Waiter]] = {}
        self._listeners: list[Listener] = []
        #: ids of requests whose closing was announced (bounded: oldest dropped first)
        self._announced: dict[str, None] = {}

    def _masked(self, connection: str, text: str) -> str:
        return self._mask_text(connection, text) if self._mask_text is not None else text

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener("opened" | "closed", request)`` when a request opens or closes (webhooks,
        audit). Called on the thread that made the change; it must not block and should not raise."""
        self._listeners.append(listener)

    def _announce(self, event: str, request: StoredRequest) -> None:
        if event == "closed":
            with self._lock:
                if request.id in self._announced:
                    return
                self._announced[request.id] = None
                if len(self._announced) > _ANNOUNCED_MAX:
                    self._announced.pop(next(iter(self._announced)))
        for listener in self._listeners:
            try:
                listener(event, request)
            except Exception:  # a broken listener must not break a decision
                log.exception("approval listener failed", extra={"request": request.id, "event": event})

    # --- opening ----------------------------------------------------------------------------------------

    def shape_covers(self, normalized_sql: str, duration_ms: int) -> dict[str, Any]:
        """A ``covers`` value letting through statements of this normalized shape for ``duration_ms``."""
        return {
            "kind": "shape",
            "duration_ms": duration_ms,
            "shape_digest": statement_digest(self._digest_key, normalized_sql),
        }

    def open_request(
        self,
        requester: Principal,
        connection: str,
        sql: str,
        params_masked: Sequence[str | None],
        prompt_id: str | None,
        rule: str,
        approvers: Sequence[str],
        approvals_required: int,
        timeout_s: float,
        covers: Mapping[str, Any] | None = None,
        *,
        params: Sequence[str | bytes | None] | None = None,
        statement_masked: str | None = None,
        more_params: Sequence[Sequence[str | bytes | None]] = (),
        more_params_masked: Sequence[Sequence[str | None]] = (),
        one_of_each_group: bool = False,
        max_pending: int | None = MAX_PENDING_STATEMENTS,
        now: int | None = None,
    ) -> dict[str, Any]:
        """Store and return a signed ``approval_request`` record for a held statement.

        The statement digest is keyed and covers ``sql`` and ``params`` — the parameters exactly as sent
        (never stored). ``params_masked`` is what the record shows of them, and ``statement_masked``
        (default: ``sql`` itself) the statement text it shows: pass the masked text when the
        connection masks. ``params`` may be left out only for a statement without parameters.
        ``covers`` defaults to ``{"kind": "statement"}``. ``more_params`` / ``more_params_masked``
        are the parameters of the further executions of the statement the approval releases (the
        other Binds of a pipelined batch), as sent and as shown; the digest covers them too. A
        requester has at most ``max_pending`` held statements pending (:class:`TooManyPending`).
        """
        if len(more_params) != len(more_params_masked) or any(
            len(a) != len(b) for a, b in zip(more_params, more_params_masked, strict=True)
        ):
            raise ValueError("more_params and more_params_masked differ in shape")
        if params is None:
            if params_masked:
                raise ValueError("pass the parameters as sent (params=) so the statement digest covers them")
            params = ()
        if len(params) != len(params_masked):
            raise ValueError(f"{len(params)} parameters but {len(params_masked)} masked parameters")
        if not timeout_s > 0:
            raise ValueError("the approval timeout must be positive")
        created = self._clock() if now is None else now
        record = sign_record(
            self._key,
            {
                "version": RECORD_VERSION,
                "type": REQUEST,
                "id": new_session_id(),
                "requester": _party(requester),
                "connection": connection,
                "statement": sql if statement_masked is None else statement_masked,
                "statement_digest": statement_digest(self._digest_key, sql, params, more_params),
                "params_masked": list(params_masked),
                "more_params_masked": [list(p) for p in more_params_masked],
                "prompt_id": prompt_id,
                "rule": rule,
                "approvers": list(approvers),
                "approvals_required": approvals_required,
                "created_at": created,
                "expires_at": created + max(1, round(timeout_s * 1000)),
                "covers": dict(covers) if covers is not None else {"kind": "statement"},
            },
        )
        return self._add(record, requester, one_of_each_group, max_pending)

    def open_grant(
        self,
        requester: Principal,
        connection: str,
        rule: str,
        reason: str,
        duration_s: float,
        approvers: Sequence[str],
        approvals_required: int,
        timeout_s: float,
        *,
        one_of_each_group: bool = False,
        max_pending: int | None = MAX_PENDING_GRANTS,
        now: int | None = None,
    ) -> dict[str, Any]:
        """Store and return a signed ``access_grant`` record: ``requester`` asks for the ``jit`` policy
        ``rule`` on ``connection`` for ``duration_s`` from the moment it is approved.

        Decided with :meth:`decide`, like a held statement; undecided, it expires after ``timeout_s``.
        The caller checks that ``rule`` names the requester and bounds the duration (``max_grant``).
        A requester (subject) has at most ``max_pending`` access requests pending at once
        (:class:`TooManyPending` beyond): thousands of requests would bury the approvers' channel and
        overflow the webhook queues, so that real requests are no longer announced.
        """
        reason = reason.strip()
        if not reason:
            raise ValueError("an access request needs a reason")
        reason = self._masked(connection, reason)
        duration_ms = round(duration_s * 1000)
        if not 1 <= duration_ms <= MAX_GRANT_MS:
            raise ValueError(
                f"an access grant must last at least 1 ms and at most {MAX_GRANT_MS // 86_400_000} days"
            )
        if not timeout_s > 0:
            raise ValueError("the approval timeout must be positive")
        created = self._clock() if now is None else now
        record = sign_record(
            self._key,
            {
                "version": RECORD_VERSION,
                "type": GRANT,
                "id": new_session_id(),
                "requester": _party(requester),
                "connection": connection,
                "reason": reason,
                "duration_ms": duration_ms,
                "rule": rule,
                "approvers": list(approvers),
                "approvals_required": approvals_required,
                "created_at": created,
                "expires_at": created + max(1, round(timeout_s * 1000)),
            },
        )
        return self._add(record, requester, one_of_each_group, max_pending)

    def _add(
        self,
        record: dict[str, Any],
        requester: Principal,
        one_of_each_group: bool,
        max_pending: int | None,
    ) -> dict[str, Any]:
        """Store a new signed request or grant record and announce it; returns the record."""
        stored = self.store.add_request(
            record,
            requester_owner=self._key_owner(requester),
            one_of_each_group=one_of_each_group,
            max_pending=max_pending,
        )
        self._announce("opened", stored)
        return record

    def active_grants(
        self, principal: Principal, connection: str, now_ms: int | None = None
    ) -> dict[str, int]:
        """The ``jit`` policies ``principal`` holds a running grant of on ``connection``: name -> end (ms).

        A grant applies to the identity that asked for it: a person's sessions however they log in
        (token, registered SSH key, SSH certificate), or one API key's sessions (never a key with the
        person's name). One indexed query; cheap at session start.
        """
        at = self._clock() if now_ms is None else now_ms
        ends: dict[str, int] = {}
        for grant in self.store.active_grants(
            principal.subject, principal.auth, at, connection, since=self._key_since(principal)
        ):
            ends[grant.rule] = max(grant.until, ends.get(grant.rule, 0))
        return ends

    def grants_of(self, principal: Principal, now_ms: int | None = None) -> list[ActiveGrant]:
        """Every running grant of ``principal``, on any connection, oldest first."""
        at = self._clock() if now_ms is None else now_ms
        return self.store.active_grants(
            principal.subject, principal.auth, at, since=self._key_since(principal)
        )

    def _key_since(self, principal: Principal) -> int | None:
        """For an API key: when it was created (ms, floored, less 1 ms of float rounding); its grants
        were asked for since. A key named like a revoked one must not inherit that key's grants."""
        if principal.auth != "apikey" or principal.token_id is None or self._grant_keys is None:
            return None
        key = self._grant_keys.lookup(principal.token_id)
        if key is None:  # not a key of this gateway (deleted): it holds no grant
            return _NEVER
        return int(key.created_at * 1000) - 1

    def _key_owner(self, principal: Principal) -> str | None:
        """Who created the API key ``principal`` authenticated with, when that is known."""
        if principal.auth != "apikey" or principal.token_id is None or self._api_keys is None:
            return None
        key = self._api_keys.lookup(principal.token_id)
        return owner_subject(key.created_by) if key is not None else None

    # --- deciding ---------------------------------------------------------------------------------------

    def decide(
        self,
        request_id: str,
        approver: Principal,
        decision: str,
        reason: str | None = None,
        *,
        now: int | None = None,
    ) -> tuple[dict[str, Any], Status]:
        """Record ``approver``'s signed decision; returns it and the request's status afterwards.

        Raises :class:`ApprovalError` (the message says why) when the rules refuse the decision.
        """
        at = self._clock() if now is None else now
        request = self.store.get(request_id)
        if request is None:
            raise RequestNotFound(f"no approval request {request_id}")
        if request.status == "pending" and at >= request.expires_at:
            self.expire_due(now=at)
            request = self.store.get(request_id) or request
        if request.closed:
            raise closed_error(request)
        if decision not in ("approve", "deny"):
            raise ApprovalError(f"a decision is 'approve' or 'deny', not {decision!r}")
        reason = reason.strip() if reason is not None else None
        if decision == "deny" and not reason:
            raise ApprovalError("a denial needs a reason (it is shown to the requester and kept on record)")
        if reason:
            reason = self._masked(request.connection, reason)
        owner = self._key_owner(approver)
        mine = {approver.subject, *([owner] if owner else [])}
        if mine & request.identities:
            via = f" (through an API key created by {owner})" if owner and owner in request.identities else ""
            raise ApprovalError(
                f"{approver.subject} cannot decide approval request {request_id}{via}:"
                f" it was requested by {request.requester}, and nobody decides their own request"
            )
        approvers: list[str] = request.record["approvers"]
        if not any(approver.matches(ref) for ref in approvers):
            raise ApprovalError(
                f"{approver.subject} is not an approver of request {request_id}"
                f" (approvers: {', '.join(approvers)})"
            )
        record = sign_record(
            self._key,
            {
                "version": RECORD_VERSION,
                "type": DECISION,
                "id": new_session_id(),
                "request_id": request_id,
                "request_digest": record_digest(request.record),
                "approver": _party(approver),
                "decision": decision,
                "reason": reason or None,
                "decided_at": at,
            },
        )
        try:
            after = self.store.add_decision(record, tally, approver_owner=owner)
        except ApprovalError:
            self._notify_if_closed(request_id)  # it may have just expired
            raise
        if after.closed:
            self._resolve(after)
        return record, after.status

    def expire_due(self, now: int | None = None) -> list[StoredRequest]:
        """Expire every pending request due at ``now``; wake their waiters; return them."""
        expired = self.store.expire_due(self._clock() if now is None else now)
        for request in expired:
            self._resolve(request)
        return expired

    def void(self, request_id: str, reason: str, *, now: int | None = None) -> StoredRequest:
        """Mark a pending request void (its session ended while it was held); wake its waiters."""
        after = self.store.void(request_id, reason, self._clock() if now is None else now)
        self._resolve(after)
        return after

    # --- waiting ----------------------------------------------------------------------------------------

    async def wait(self, request_id: str, *, now: int | None = None) -> StoredRequest:
        """The request once it is closed (approved, denied, expired or void).

        Woken in-process by :meth:`decide`, :meth:`expire_due` and :meth:`void`, and by a timer at the
        request's ``expires_at`` (``now``, when given, is the current time in ms the delay is computed
        from), which expires it — or, if another process closed it, returns it as it is in the store.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[StoredRequest] = loop.create_future()
        waiter: _Waiter = (loop, future)
        with self._lock:
            self._waiters.setdefault(request_id, []).append(waiter)
        try:
            request = self.store.get(request_id)  # read after registering: a close cannot slip between
            if request is None:
                raise RequestNotFound(f"no approval request {request_id}")
            if request.closed:
                return request
            current = self._clock() if now is None else now
            delay = max(0, request.expires_at - current) / 1000
            timer = loop.call_later(delay, self._on_timer, request_id, request.expires_at)
            try:
                return await future
            finally:
                timer.cancel()
        finally:
            with self._lock:
                waiters = self._waiters.get(request_id, [])
                if waiter in waiters:
                    waiters.remove(waiter)
                if not waiters:
                    self._waiters.pop(request_id, None)

    def _on_timer(self, request_id: str, expires_at: int) -> None:
        self.expire_due(now=expires_at)
        self._notify_if_closed(request_id)

    def poll_waiters(self) -> int:
        """Wake the waiters of requests another process closed (another gateway node, or a tool on
        the same ``data_dir``): the in-process wake-ups cannot see those. Returns how many woke."""
        with self._lock:
            ids = list(self._waiters)
        woken = 0
        for request_id in ids:
            request = self.store.get(request_id)
            if request is not None and request.closed:
                self._resolve(request)
                woken += 1
        return woken

    def _notify_if_closed(self, request_id: str) -> None:
        request = self.store.get(request_id)
        if request is not None and request.closed:
            self._resolve(request)

    def _resolve(self, request: StoredRequest) -> None:
        self._announce("closed", request)
        with self._lock:
            waiters = self._waiters.pop(request.id, [])
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits any more
                loop.call_soon_threadsafe(_set_result, future, request)


def _set_result(future: asyncio.Future[StoredRequest], request: StoredRequest) -> None:
    if not future.done():
        future.set_result(request)
