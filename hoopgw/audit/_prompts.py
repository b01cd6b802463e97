"""Registered AI prompts (the ``prompts`` table) and what each one caused (DESIGN.md "Prompt provenance").

An agent's harness registers a prompt through ``POST /api/prompts``; its text and generated code are
masked before they reach :meth:`PromptStore.add`. Clients then tag their work with the prompt's id
(:mod:`hoopgw.audit._prompt`). A tag is a claim, not a proof: it is recorded as given, and judged
when read — :func:`prompt_known` is ``True`` when the id names a prompt registered by the same identity
as the one that did the work, ``"foreign"`` when another identity registered it, and ``False`` when no
prompt has that id. Judging at read time keeps the statement path free of look-ups, and it holds
across gateway nodes and for prompts registered while a session runs.

What a prompt caused (:func:`prompt_report`): the events tagged with its id (statements — with their
result summary: tags, rows, status, error — and any other event recorded with the id), the events
without a tag of their own of sessions whose ``application_name`` carries the id (denials, approval
events; a leading comment tag of another prompt in a denied statement's text still wins), and the
approval requests whose signed record names the id.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

from hoopgw.audit._db import INTEGRITY_ERRORS, Store, as_store
from hoopgw.audit._ids import new_session_id
from hoopgw.audit._prompt import statement_prompt
from hoopgw.audit._store import AuditStore
from hoopgw.audit._tables import SqliteTables

#: every registered prompt id starts with this (the rest is a time-sortable session-style id)
ID_PREFIX = "prm_"
_COLUMNS = "id, created_at, subject, auth, assistant, model, human, prompt, generated_code"
#: events of a session tagged through application_name that belong to an approval request
_REQUEST_KINDS = frozenset(
    {"approval_requested", "approval_closed", "approval_void", "approval_error", "approval_decided"}
)
#: events whose ``sql`` is the refused statement's (masked) text: its own leading tag wins
_REFUSAL_KINDS = frozenset({"policy_denied", "approval_required"})

Known = bool | Literal["foreign"]


def new_prompt_id() -> str:
    """A new prompt id: ``prm_`` and 16 time-sortable characters (a valid tag id)."""
    return ID_PREFIX + new_session_id()


def identity_ref(subject: str, auth: str | None) -> str:
    """``key:NAME`` for an API key, ``user:NAME`` for a token (the config's subject syntax)."""
    return f"{'key' if auth == 'apikey' else 'user'}:{subject}"


def prompt_known(owner: str | None, who: str | None) -> Known:
    """How far a tag can be trusted: ``owner`` registered the prompt (None: no such prompt), ``who``
    did the tagged work (an :func:`identity_ref`)."""
    if owner is None:
        return False
    return True if owner == who else "foreign"


@dataclass(frozen=True, slots=True)
class Prompt:
    """One registered prompt; ``prompt`` and ``generated_code`` are stored masked."""

    id: str
    created_at: float
    subject: str
    auth: str
    prompt: str
    generated_code: str | None = None
    assistant: str | None = None
    model: str | None = None
    human: str | None = None

    @property
    def owner(self) -> str:
        """Who registered it, as an :func:`identity_ref`."""
        return identity_ref(self.subject, self.auth)

    def public(self) -> dict[str, Any]:
        """What the API and CLI show: every column."""
        return {
            "id": self.id,
            "created_at": self.created_at,
            "subject": self.subject,
            "auth": self.auth,
            "registered_by": self.owner,
            "assistant": self.assistant,
            "model": self.model,
            "human": self.human,
            "prompt": self.prompt,
            "generated_code": self.generated_code,
        }


#: the fields a prompt's digest covers, in this order (docs/PROMPTS.md)
DIGEST_FIELDS = (
    "id", "created_at", "subject", "auth", "assistant", "model", "human", "prompt", "generated_code",
)  # fmt: skip


def prompt_digest(prompt: Prompt) -> str:
    """``sha256:<hex>`` of the prompt as stored (texts masked): the SHA-256 of the compact JSON array
    of :data:`DIGEST_FIELDS`' values in that order (``created_at`` the stored double, as JSON carries
    it exactly). The ``prompt_registered`` event carries it, so the chain vouches for the prompt."""
    values = [getattr(prompt, name) for name in DIGEST_FIELDS]
    values[1] = float(values[1])  # a REAL column: reads back as a double whatever was written
    return "sha256:" + hashlib.sha256(orjson.dumps(values)).hexdigest()


def _prompt(row: tuple[Any, ...]) -> Prompt:
    return Prompt(
        id=row[0],
        created_at=row[1],
        subject=row[2],
        auth=row[3],
        assistant=row[4],
        model=row[5],
        human=row[6],
        prompt=row[7],
        generated_code=row[8],
    )


class PromptStore(SqliteTables):
    """Reads and writes the ``prompts`` table (and reads what refers to a prompt); thread-safe."""

    def __init__(self, data_dir: Path | Store) -> None:
        super().__init__(data_dir, "prompt table")

    def add(self, prompt: Prompt) -> None:
        """Insert a registered prompt (durable when this returns); KeyError if its id exists."""
        with self._use() as conn:
            try:
                conn.execute(
                    f"INSERT INTO prompts ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
                    (
                        prompt.id,
                        prompt.created_at,
                        prompt.subject,
                        prompt.auth,
                        prompt.assistant,
                        prompt.model,
                        prompt.human,
                        prompt.prompt,
                        prompt.generated_code,
                    ),
                )
            except INTEGRITY_ERRORS:
                raise KeyError(prompt.id) from None

    def register(
        self,
        subject: str,
        auth: str,
        prompt: str,
        *,
        generated_code: str | None = None,
        assistant: str | None = None,
        model: str | None = None,
        human: str | None = None,
        now: float | None = None,
    ) -> Prompt:
        """Store a new prompt (texts already masked) under a new id; return it."""
        record = Prompt(
            id=new_prompt_id(),
            created_at=time.time() if now is None else now,
            subject=subject,
            auth=auth,
            prompt=prompt,
            generated_code=generated_code,
            assistant=assistant,
            model=model,
            human=human,
        )
        self.add(record)
        return record

    def get(self, prompt_id: str) -> Prompt | None:
        """The prompt with this id, or None."""
        with self._peek() as conn:
            if conn is None:
                return None
            row = conn.execute(f"SELECT {_COLUMNS} FROM prompts WHERE id = ?", (prompt_id,)).fetchone()  # noqa: S608
        return _prompt(row) if row is not None else None

    def owners(self, prompt_ids: Iterable[str]) -> dict[str, str]:
        """``{id: identity_ref of its registrant}`` for those of ``prompt_ids`` that are registered."""
        ids = sorted(set(prompt_ids))
        out: dict[str, str] = {}
        with self._peek() as conn:
            if conn is None:
                return out
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ", ".join("?" * len(chunk))
                rows = conn.execute(
                    f"SELECT id, subject, auth FROM prompts WHERE id IN ({marks})",  # noqa: S608
                    chunk,
                ).fetchall()
                out.update((row[0], identity_ref(row[1], row[2])) for row in rows)
        return out

    def tagged_sessions(self, prompt_id: str) -> list[str]:
        """Ids of the sessions whose ``application_name`` carries ``prompt_id``, oldest first."""
        with self._peek() as conn:
            if conn is None:
                return []
            rows = conn.execute(
                f"SELECT id FROM sessions WHERE {conn.dialect.json('params', 'prompt_id')} = ?"  # noqa: S608
                " ORDER BY started_at, id",
                (prompt_id,),
            ).fetchall()
        return [row[0] for row in rows]

    def approvals(self, prompt_id: str) -> list[dict[str, Any]]:
        """The approval requests whose signed record names ``prompt_id``, oldest first, each with its
        decisions (what the records say; ``hoopgw approvals verify ID`` checks their signatures)."""
        with self._peek() as conn:
            if conn is None:
                return []
            rows = conn.execute(
                "SELECT id, status, created_at, closed_at, close_reason, record FROM approval_requests"  # noqa: S608
                f" WHERE {conn.dialect.json('record', 'prompt_id')} = ? ORDER BY created_at, id",
                (prompt_id,),
            ).fetchall()
            out = []
            for request_id, status, created_at, closed_at, close_reason, text in rows:
                record = orjson.loads(text)
                decisions = conn.execute(
                    "SELECT approver, decision, decided_at, record FROM approval_decisions"
                    " WHERE request_id = ? ORDER BY decided_at, rowid",
                    (request_id,),
                ).fetchall()
                requester = record.get("requester") or {}
                out.append(
                    {
                        "id": request_id,
                        "status": status,
                        "type": record.get("type"),
                        "connection": record.get("connection"),
                        "requester": requester.get("subject"),
                        "requester_auth": requester.get("auth"),
                        "rule": record.get("rule"),
                        "statement": record.get("statement"),
                        "params_masked": record.get("params_masked"),
                        "prompt_id": record.get("prompt_id"),
                        "created_at": created_at,
                        "closed_at": closed_at,
                        "close_reason": close_reason,
                        "decisions": [
                            {
                                "approver": d[0],
                                "decision": d[1],
                                "decided_at": d[2],
                                "reason": orjson.loads(d[3]).get("reason"),
                            }
                            for d in decisions
                        ],
                    }
                )
        return out


def _own_tag(event: dict[str, Any]) -> str | None:
    """The prompt a refused statement's own leading comment names (read from its recorded text)."""
    sql = event["data"].get("sql") if isinstance(event.get("data"), dict) else None
    return statement_prompt(sql) if isinstance(sql, str) else None


def prompt_report(
    data_dir: Path | Store, prompt_id: str, *, viewer: str | None = None
) -> dict[str, Any] | None:
    """The prompt ``prompt_id`` (``registered`` says whether it is) and ``caused``: what it caused, in
    time order, each item with ``prompt_known`` (see :func:`prompt_known`), ``subject``, ``auth``.

    ``viewer`` (an :func:`identity_ref`) keeps only the work of that identity (a registrant asking
    through the API sees their own sessions only). None when there is no store, or when the id is
    neither registered nor found on any event or approval request.
    """
    store = as_store(data_dir)
    if not store.exists():
        return None
    prompts = PromptStore(store)
    try:
        prompt = prompts.get(prompt_id)
        sessions_tagged = prompts.tagged_sessions(prompt_id)
        approvals = prompts.approvals(prompt_id)
    finally:
        prompts.close()
    with AuditStore.open(store, create=False) as reader:
        # the registration itself is in the head, not among what the prompt caused
        events = [e for e in reader.prompt_events(prompt_id) if e["kind"] != "prompt_registered"]
        requests = {a["id"] for a in approvals}
        for session_id in sessions_tagged:
            for event in reader.session_events(session_id):
                if event.get("prompt_id") is not None:
                    continue  # tagged itself: with this prompt (listed already) or another one
                data = event["data"]
                if event["kind"] in _REQUEST_KINDS and data.get("request_id") not in requests:
                    continue  # a request of a statement that named another prompt
                if event["kind"] == "approval_requested":
                    continue  # the request itself is listed from the approval store
                own = _own_tag(event) if event["kind"] in _REFUSAL_KINDS else None
                if own is not None and own != prompt_id:
                    continue
                events.append(event)
        who = {
            sid: (s["subject"], s["auth"])
            for sid in {e["session_id"] for e in events if e["session_id"] is not None}
            if (s := reader.get_session(sid)) is not None
        }
    if prompt is None and not events and not approvals:
        return None
    owner = prompt.owner if prompt is not None else None
    caused: list[tuple[float, int, int, dict[str, Any]]] = []
    for event in events:
        data = event["data"]
        subject, auth = who.get(event["session_id"]) or (data.get("subject"), data.get("auth"))
        ref = identity_ref(subject, auth) if subject is not None else None
        if viewer is not None and ref != viewer:
            continue
        item = {**event, "subject": subject, "auth": auth, "prompt_known": prompt_known(owner, ref)}
        caused.append((float(event["ts"]), 1, int(event["seq"]), item))
    for request in approvals:
        ref = identity_ref(request["requester"], request["requester_auth"])
        if viewer is not None and ref != viewer:
            continue
        item = {
            "kind": "approval_request",
            "ts": request["created_at"] / 1000,
            "session_id": None,
            "subject": request["requester"],
            "auth": request["requester_auth"],
            "prompt_known": prompt_known(owner, ref),
            "request": request,
        }
        caused.append((item["ts"], 0, 0, item))
    caused.sort(key=lambda c: c[:3])
    head = prompt.public() if prompt is not None else {"id": prompt_id}
    return {**head, "registered": prompt is not None, "caused": [c[3] for c in caused]}
