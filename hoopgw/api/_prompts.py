"""``/api/prompts``: register an AI prompt, and read back a prompt with what it caused (docs/PROMPTS.md).

- ``POST /api/prompts`` ``{"prompt", "assistant", "model", "generated_code"?, "human"?}`` (any caller
  with a token or API key) → 201 ``{"id": ...}``. ``prompt`` and ``generated_code`` are masked with
  every configured masking rule before they are stored; the body is at most :data:`MAX_BODY` bytes.
- ``GET /api/prompts/{id}`` → the prompt and ``caused``: the statements (with their result summary),
  other events and approval requests tagged with its id, oldest first, each with ``prompt_known``.
  Admins and auditors see every prompt and everything it caused; the identity that registered it
  sees it with its own work only; anyone else (and any unregistered id) gets 404.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from hoopgw.api._http import HttpError, authenticate, endpoint, json_response, read_json
from hoopgw.audit._db import Store
from hoopgw.audit._prompts import Prompt, PromptStore, identity_ref, prompt_digest, prompt_report
from hoopgw.identity import Authenticator, Principal

log = logging.getLogger("hoopgw.api")

#: the whole request body, prompt and generated code included
MAX_BODY = 256 * 1024
#: assistant, model and human: short names, one line each
MAX_NAME = 200
_MAX_ID = 64
_FIELDS = frozenset({"prompt", "generated_code", "assistant", "model", "human"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Recorder(Protocol):
    """The gateway's ``AuditWriter.event``."""

    def __call__(
        self, session_id: str | None, kind: str, payload: dict[str, Any], prompt_id: str | None = None
    ) -> None: ...


@dataclass(frozen=True)
class PromptApi:
    """What the prompt endpoints need from the gateway.

    ``mask`` masks a text with every configured masking rule (``Gateway.mask_prompt``); ``data_dir``
    holds the audit store read back by ``GET``.
    """

    store: PromptStore
    data_dir: Path | Store
    authenticator: Authenticator
    mask: Callable[[str], str]
    admins: Sequence[str] = ()
    auditors: Sequence[str] = ()
    audit: Recorder | None = None

    async def caller(self, request: Request) -> Principal:
        return await authenticate(request, self.authenticator, self.audit)

    def sees_all(self, principal: Principal) -> bool:
        """Admins and auditors see every prompt and all it caused."""
        return any(principal.matches(s) for s in (*self.admins, *self.auditors))

    def register(self, principal: Principal, fields: dict[str, str | None]) -> Prompt:
        """Mask the texts and store the prompt (blocking: run in a thread)."""
        code = fields["generated_code"]
        return self.store.register(
            principal.subject,
            principal.auth,
            self.mask(fields["prompt"] or ""),
            generated_code=self.mask(code) if code is not None else None,
            assistant=fields["assistant"],
            model=fields["model"],
            human=fields["human"],
        )


def _name(body: dict[str, Any], key: str, *, required: bool) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise HttpError(
            400, f"{key} is required: a non-empty string" if required else f"{key} must be a string"
        )
    value = value.strip()
    if len(value) > MAX_NAME:
        raise HttpError(400, f"{key} must be at most {MAX_NAME} characters")
    if _CONTROL.search(value):
        raise HttpError(400, f"{key} must be one line without control characters")
    return value


def _fields(body: object) -> dict[str, str | None]:
    if not isinstance(body, dict):
        raise HttpError(400, "the request body must be a JSON object")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise HttpError(400, f"unknown field(s): {', '.join(unknown)}")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise HttpError(400, "prompt is required: the prompt's text, a non-empty string")
    code = body.get("generated_code")
    if code is not None and not isinstance(code, str):
        raise HttpError(400, "generated_code must be a string or null")
    return {
        "prompt": prompt,
        "generated_code": code,
        "assistant": _name(body, "assistant", required=True),
        "model": _name(body, "model", required=True),
        "human": _name(body, "human", required=False),
    }


def prompt_routes(api: PromptApi) -> list[BaseRoute]:
    """The ``/api/prompts`` routes bound to ``api``."""

    @endpoint
    async def create(request: Request) -> Response:
        principal = await api.caller(request)
        fields = _fields(await read_json(request, MAX_BODY))
        prompt = await asyncio.to_thread(api.register, principal, fields)
        if api.audit is not None:
            api.audit(
                None,
                "prompt_registered",
                {
                    "id": prompt.id,
                    "subject": principal.subject,
                    "auth": principal.auth,
                    "assistant": prompt.assistant,
                    "model": prompt.model,
                    "human": prompt.human,
                    "digest": prompt_digest(prompt),  # the stored prompt, bound to the chain
                },
                prompt.id,
            )
        log.info("prompt registered", extra={"prompt": prompt.id, "subject": principal.subject})
        return json_response({"id": prompt.id}, 201)

    @endpoint
    async def show(request: Request) -> Response:
        principal = await api.caller(request)
        prompt_id: str = request.path_params["id"]
        found = None
        if len(prompt_id) <= _MAX_ID:
            found = await asyncio.to_thread(api.store.get, prompt_id)
        mine = found is not None and found.owner == identity_ref(principal.subject, principal.auth)
        if found is None or not (mine or api.sees_all(principal)):
            raise HttpError(404, f"no prompt {prompt_id}")
        viewer = None if api.sees_all(principal) else found.owner
        report = await asyncio.to_thread(prompt_report, api.data_dir, prompt_id, viewer=viewer)
        if report is None:  # the store went away meanwhile
            raise HttpError(404, f"no prompt {prompt_id}")
        return json_response(report)

    return [
        Route("/api/prompts", create, methods=["POST"]),
        Route("/api/prompts/{id}", show, methods=["GET"]),
    ]
