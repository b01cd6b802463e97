"""Approval notifications: POST every request that opens or closes to the ``[[approvals.webhooks]]``.

Each webhook gets JSON (``format = "json"``) or a Slack-compatible message with ``blocks``
(``format = "slack"``; Approve / Deny buttons when the interactive callback is on). With
``[approvals] webhook_secret`` set, each POST is signed like a Slack request, so a receiver can tell
the gateway sent it (a secret of its own: a receiver never learns the callback secret)::

    X-Hoopgw-Request-Timestamp: <unix seconds>
    X-Hoopgw-Signature: v0=<hex HMAC-SHA256(secret, "v0:" + timestamp + ":" + body)>

Sending never blocks whoever opened or decided the request: :meth:`WebhookNotifier.notify` (a service
listener, called on any thread) appends to a bounded queue per webhook — overflow is dropped, counted
and logged — and one task per webhook posts its queue in order from the gateway's event loop, with a
per-attempt timeout and a few retries (connection errors, timeouts, 429 and 5xx) with backoff.
Webhook URLs are never logged whole (a Slack webhook URL is a credential): only ``webhooks[N] (host)``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
import orjson

from hoopgw import __version__
from hoopgw.approvals._store import StoredRequest
from hoopgw.config import ApprovalsConfig, SecretRef
from hoopgw.errors import SecretError

log = logging.getLogger("hoopgw.approvals")

SIGNATURE_HEADER = "X-Hoopgw-Signature"
TIMESTAMP_HEADER = "X-Hoopgw-Request-Timestamp"
#: a callback secret shorter than this is refused at startup
MIN_SECRET_BYTES = 16
#: notifications waiting per webhook; beyond this new ones are dropped (and counted)
QUEUE_MAX = 1000
#: attempts after the first, on connection errors, timeouts, 429 and 5xx
RETRIES = 2
#: the first retry waits this long, each next one twice as long
BACKOFF_S = 0.5
#: how long shutdown waits for queued notifications to go out
DRAIN_S = 5.0
#: Slack refuses a section text longer than 3000 characters
SLACK_TEXT_MAX = 3000
#: most of a statement shown in a Slack message (the JSON payload carries all of it)
SLACK_STATEMENT_MAX = 2900
_ELLIPSIS = "…"
_OUTCOME = {
    "approved": ":white_check_mark: Approved",
    "denied": ":no_entry: Denied",
    "expired": ":hourglass: Expired",
    "void": ":heavy_minus_sign: Void",
    "pending": "Pending",
}

Event = Literal["opened", "closed"]


# --- signatures ---------------------------------------------------------------------------------------


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """``v0=`` + hex HMAC-SHA256(secret, ``"v0:{timestamp}:{body}"``), as Slack signs its requests."""
    mac = hmac.new(secret, b"v0:" + timestamp.encode("ascii") + b":" + body, hashlib.sha256)
    return "v0=" + mac.hexdigest()


def signature_valid(secret: bytes, timestamp: str, body: bytes, signature: str) -> bool:
    """Whether ``signature`` is :func:`sign` of this timestamp and body (constant-time compare)."""
    if not timestamp.isascii() or not timestamp.isdigit():
        return False
    expected = sign(secret, timestamp, body).encode("ascii")
    return hmac.compare_digest(expected, signature.encode("utf-8", "surrogatepass"))


def callback_key(config: ApprovalsConfig) -> bytes | None:
    """The ``callback_secret`` (read now), or None when it is not set; SecretError if unusable."""
    return _secret(config.callback_secret, "callback")


def webhook_key(config: ApprovalsConfig) -> bytes | None:
    """The ``webhook_secret`` (read now), or None when it is not set; SecretError if unusable."""
    return _secret(config.webhook_secret, "webhook")


def _secret(ref: SecretRef | None, what: str) -> bytes | None:
    if ref is None:
        return None
    key = ref.resolve().encode("utf-8")
    if len(key) < MIN_SECRET_BYTES:
        raise SecretError(f"{ref.reference}: the {what} secret must be at least {MIN_SECRET_BYTES} bytes")
    return key


# --- payloads -----------------------------------------------------------------------------------------


def request_url(base_url: str | None, request_id: str) -> str | None:
    """Where the request is shown in the API: ``<base>/api/approvals/<id>``."""
    return f"{base_url.rstrip('/')}/api/approvals/{request_id}" if base_url else None


def request_view(request: StoredRequest) -> dict[str, Any]:
    """What a webhook tells about a request (a held statement or an access request); times in ms."""
    record = request.record
    return {
        "id": request.id,
        "type": record["type"],
        "status": request.status,
        "connection": request.connection,
        "requester": record["requester"],
        "rule": record["rule"],
        "statement": record.get("statement"),
        "params_masked": record.get("params_masked"),
        "more_params_masked": record.get("more_params_masked"),
        "reason": record.get("reason"),
        "duration_ms": record.get("duration_ms"),
        "approvers": list(record["approvers"]),
        "approvals_required": record["approvals_required"],
        "approvals": sum(1 for d in request.decisions if d.decision == "approve"),
        "created_at": request.created_at,
        "expires_at": request.expires_at,
        "closed_at": request.closed_at,
        "close_reason": request.close_reason,
        "prompt_id": record.get("prompt_id"),
    }


def json_message(event: Event, request: StoredRequest, base_url: str | None) -> dict[str, Any]:
    """The ``format = "json"`` payload: ``{"event": "approval.opened|closed", "request", "url"}``."""
    return {
        "event": f"approval.{event}",
        "request": request_view(request),
        "url": request_url(base_url, request.id),
    }


def _escape(text: str) -> str:
    """Slack mrkdwn escaping: ``&``, ``<``, ``>`` (so a statement cannot ping ``<!channel>``)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _code(text: str, limit: int) -> str:
    """``text`` in a Slack code block of at most ``limit`` characters, escaped (never cut mid-entity)."""
    body = _escape(text).replace("```", "`\u200b`\u200b`")
    room = max(0, limit - 6)  # the fences
    if len(body) > room:
        body = body[: max(0, room - 1)]
        amp = body.rfind("&", len(body) - 5)
        if amp != -1 and ";" not in body[amp:]:
            body = body[:amp]
        body += _ELLIPSIS
    return f"```{body}```"


def _when(ms: int) -> str:
    """A Slack date token (shown in the reader's time zone) with a UTC fallback."""
    iso = datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{ms // 1000}^{{date_short_pretty}} {{time}}|{iso}>"


def _duration(ms: int) -> str:
    minutes = max(1, round(ms / 60_000))
    if minutes % (24 * 60) == 0:
        return f"{minutes // (24 * 60)}d"
    if minutes % 60 == 0:
        return f"{minutes // 60}h"
    return f"{minutes}m"


def _what(request: StoredRequest) -> str:
    """The one-line summary: who asks for what, where, under which rule."""
    record = request.record
    who = _escape(request.requester)
    where = f"*{_escape(request.connection)}* (rule *{_escape(record['rule'])}*)"
    if record["type"] == "access_grant":
        return f"*{who}* requests access to {where} for {_duration(record['duration_ms'])}"
    return f"*{who}* wants to run a statement on {where}"


def _detail(request: StoredRequest, room: int) -> str:
    """The statement (with its masked parameters) in a code block, or an access request's reason."""
    record = request.record
    if record["type"] == "access_grant":
        return "> " + _escape(record.get("reason") or "")[: max(0, room - 2)]
    text = record.get("statement") or ""
    for params in [record.get("params_masked") or [], *(record.get("more_params_masked") or [])]:
        if params:
            shown = ", ".join(f"${i} = {'NULL' if p is None else p}" for i, p in enumerate(params, 1))
            text = f"{text}\n-- {shown}"
    return _code(text, min(SLACK_STATEMENT_MAX, room))


def _context(request: StoredRequest, url: str | None) -> dict[str, Any]:
    record = request.record
    n = record["approvals_required"]
    parts = [
        f"request `{request.id}`",
        f"{n} approval{'s' if n != 1 else ''} from {_escape(', '.join(record['approvers']))}",
        f"expires {_when(request.expires_at)}",
    ]
    if url:
        parts.append(f"<{url}|details>")
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(parts)}]}


def slack_message(
    event: Event, request: StoredRequest, base_url: str | None, *, buttons: bool
) -> dict[str, Any]:
    """The ``format = "slack"`` payload: ``{"text": fallback, "blocks": [...]}``.

    "opened": a section (who, connection, rule, the statement in a code block), a context (id, approvers,
    expiry, link) and — with ``buttons`` — Approve / Deny buttons whose ``value`` is the request id.
    "closed": the outcome, then the same summary and context.
    """
    url = request_url(base_url, request.id)
    what = _what(request)
    if event == "opened":
        head = f":raised_hand: *Approval requested* — {what}:"
        text = f"Approval requested: {what}" + (f" — {url}" if url else "")
    else:
        outcome = _OUTCOME.get(request.status, request.status)
        reason = f" — {_escape(request.close_reason)}" if request.close_reason else ""
        head = f"*{outcome}*{reason}\n{what}:"
        text = f"{outcome}: request {request.id} by {_escape(request.requester)}{reason}"
    head = head[: SLACK_TEXT_MAX // 2]
    section = f"{head}\n{_detail(request, SLACK_TEXT_MAX - len(head) - 1)}"
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": section}},
        _context(request, url),
    ]
    if event == "opened" and buttons:
        blocks.append(
            {
                "type": "actions",
                "block_id": "hoopgw_approval",
                "elements": [
                    {
                        "type": "button",
                        "action_id": "approve",
                        "style": "primary",
                        "text": {"type": "plain_text", "text": "Approve"},
                        "value": request.id,
                    },
                    {
                        "type": "button",
                        "action_id": "deny",
                        "style": "danger",
                        "text": {"type": "plain_text", "text": "Deny"},
                        "value": request.id,
                    },
                ],
            }
        )
    return {"text": text[:SLACK_TEXT_MAX], "blocks": blocks}


# --- sending ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Webhook:
    """One resolved ``[[approvals.webhooks]]`` entry; ``name`` (``webhooks[N] (host)``) is what logs show."""

    url: str
    format: Literal["json", "slack"]
    timeout: float
    name: str


@dataclass
class _Target:
    """A webhook with its queue, its sender task and its counters."""

    hook: Webhook
    queue: collections.deque[tuple[Event, StoredRequest]] = field(default_factory=collections.deque)
    wake: asyncio.Event | None = None
    task: asyncio.Task[None] | None = None
    sent: int = 0
    failed: int = 0
    dropped: int = 0


class WebhookNotifier:
    """Posts approval requests to webhooks when they open and close (see the module docstring).

    Register :meth:`notify` with ``ApprovalService.add_listener``; call :meth:`start` on the event loop
    that sends and :meth:`close` at shutdown. ``secret`` (``webhook_secret``) signs the bodies;
    ``buttons`` (the callback is on) adds Approve / Deny buttons to Slack messages.
    """

    def __init__(
        self,
        webhooks: Sequence[Webhook],
        *,
        base_url: str | None = None,
        secret: bytes | None = None,
        buttons: bool = False,
        queue_max: int = QUEUE_MAX,
        retries: int = RETRIES,
        backoff_s: float = BACKOFF_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._targets = [_Target(h) for h in webhooks]
        self._base_url = base_url
        self._secret = secret
        self._buttons = buttons
        self._queue_max = queue_max
        self._retries = retries
        self._backoff_s = backoff_s
        self._clock = clock
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: httpx.AsyncClient | None = None
        self._closing = False

    @classmethod
    def from_config(
        cls, config: ApprovalsConfig, *, base_url: str | None, secret: bytes | None, buttons: bool
    ) -> WebhookNotifier:
        """A notifier for ``[approvals] webhooks`` (URL references are read now: SecretError if unset)."""
        hooks = []
        for i, hook in enumerate(config.webhooks):
            url = hook.resolve_url()
            hooks.append(Webhook(url, hook.format, hook.timeout, f"webhooks[{i}] ({urlsplit(url).hostname})"))
        return cls(hooks, base_url=base_url, secret=secret, buttons=buttons)

    @property
    def active(self) -> bool:
        """True when there is any webhook to notify."""
        return bool(self._targets)

    def stats(self) -> list[dict[str, Any]]:
        """Per webhook: ``name``, ``queued``, ``sent``, ``failed``, ``dropped``."""
        with self._lock:
            return [
                {"name": t.hook.name, "queued": len(t.queue), "sent": t.sent, "failed": t.failed,
                 "dropped": t.dropped}
                for t in self._targets
            ]  # fmt: skip

    # -- the listener (any thread) -----------------------------------------------------------------

    def notify(self, event: str, request: StoredRequest) -> None:
        """Queue ``event`` ("opened" or "closed") of ``request`` for every webhook; never blocks."""
        if event not in ("opened", "closed"):
            return
        item: tuple[Event, StoredRequest] = ("opened" if event == "opened" else "closed", request)
        full: list[tuple[str, int]] = []
        with self._lock:
            if self._closing:
                log.info("approval notification after shutdown not sent",
                         extra={"request": request.id, "event": event})  # fmt: skip
                return
            for target in self._targets:
                if len(target.queue) >= self._queue_max:
                    target.dropped += 1
                    full.append((target.hook.name, target.dropped))
                else:
                    target.queue.append(item)
        for name, dropped in full:
            if dropped == 1 or dropped % 100 == 0:
                log.warning(
                    "approval webhook queue full: notification dropped",
                    extra={"webhook": name, "request": request.id, "event": event, "dropped": dropped},
                )
        self._wake()

    def _wake(self) -> None:
        loop = self._loop
        if loop is None:
            return  # not started: start() sends what is queued
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake_all()
        else:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing sends any more
                loop.call_soon_threadsafe(self._wake_all)

    def _wake_all(self) -> None:
        for target in self._targets:
            if target.wake is not None:
                target.wake.set()

    # -- the senders (event loop) ------------------------------------------------------------------

    async def start(self) -> None:
        """Start one sender task per webhook on the running loop."""
        if not self._targets or self._loop is not None:
            return
        loop = asyncio.get_running_loop()
        self._client = httpx.AsyncClient(
            trust_env=False,  # no proxy or netrc from the environment
            follow_redirects=False,
            headers={"User-Agent": f"hoopgw/{__version__}"},
        )
        for target in self._targets:
            target.wake = asyncio.Event()
            target.task = loop.create_task(self._run(target), name=f"approval {target.hook.name}")
        self._loop = loop

    async def close(self, drain_s: float = DRAIN_S) -> None:
        """Stop taking notifications, send what is queued for at most ``drain_s`` s, then stop."""
        with self._lock:
            self._closing = True
        self._wake_all()
        tasks = [t.task for t in self._targets if t.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=drain_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for target in self._targets:
            with self._lock:
                left = len(target.queue)
                target.queue.clear()
                target.dropped += left
            if left:
                log.warning("approval notifications not sent at shutdown",
                            extra={"webhook": target.hook.name, "dropped": left})  # fmt: skip
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _run(self, target: _Target) -> None:
        assert target.wake is not None
        while True:
            with self._lock:
                item = target.queue[0] if target.queue else None
            if item is None:
                if self._closing:
                    return
                target.wake.clear()
                with self._lock:
                    empty = not target.queue
                if empty:
                    await target.wake.wait()
                continue
            ok = await self._deliver(target.hook, *item)
            with self._lock:
                if target.queue and target.queue[0] is item:
                    target.queue.popleft()
                if ok:
                    target.sent += 1
                else:
                    target.failed += 1

    def body(self, hook: Webhook, event: Event, request: StoredRequest) -> bytes:
        """The JSON body ``hook`` is sent for ``event`` of ``request``."""
        if hook.format == "slack":
            message = slack_message(event, request, self._base_url, buttons=self._buttons)
        else:
            message = json_message(event, request, self._base_url)
        return orjson.dumps(message)

    def headers(self, body: bytes) -> dict[str, str]:
        """Content type and, with a secret, the timestamp and signature of ``body`` (signed now)."""
        headers = {"Content-Type": "application/json"}
        if self._secret is not None:
            timestamp = str(int(self._clock()))
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = sign(self._secret, timestamp, body)
        return headers

    async def _deliver(self, hook: Webhook, event: Event, request: StoredRequest) -> bool:
        """POST one notification, retrying transient failures; True once a 2xx answered."""
        client = self._client
        assert client is not None
        try:
            body = self.body(hook, event, request)
        except Exception:  # a record this code cannot render must not stop the queue
            log.exception("cannot build approval notification", extra={"request": request.id})
            return False
        error = ""
        attempts = 0
        for attempt in range(self._retries + 1):
            attempts = attempt + 1
            try:
                async with asyncio.timeout(hook.timeout):
                    # stream: the answer's status is all we need; its body is never read
                    async with client.stream(
                        "POST", hook.url, content=body, headers=self.headers(body), timeout=hook.timeout
                    ) as response:
                        status = response.status_code
            except (httpx.HTTPError, TimeoutError) as exc:
                error = type(exc).__name__  # never str(exc): it may hold the URL
            else:
                if 200 <= status < 300:
                    return True
                error = f"HTTP {status}"
                if status != 429 and status < 500:
                    break
            if attempt < self._retries:
                await asyncio.sleep(self._backoff_s * 2**attempt)
        log.warning(
            "approval webhook failed",
            extra={"webhook": hook.name, "request": request.id, "event": f"approval.{event}",
                   "error": error, "attempts": attempts},
        )  # fmt: skip
        return False
