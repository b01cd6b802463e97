"""The OpenAPI 3.1 description of the control API, served at ``/api/openapi.json`` (written by hand)."""

from __future__ import annotations

from typing import Any

from hoopgw import __version__


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


_UNAUTHORIZED = {"401": {"$ref": "#/components/responses/Unauthorized"}}
_NOT_FOUND = _error("no such request, or one the caller may not see (the same answer)")
_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "the approval request id",
    "schema": {"type": "string"},
}
_MS = {"type": "integer", "description": "milliseconds since 1970-01-01T00:00:00Z"}
_ISO = {"type": ["string", "null"], "format": "date-time", "description": "the same instant, RFC 3339 (UTC)"}
_BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
_SECONDS = {"type": "number", "description": "seconds since the epoch"}
_PROMPT_KNOWN = {
    "enum": [True, False, "foreign"],
    "description": (
        "true: the same identity registered the prompt; foreign: another identity did; false: no prompt "
        "has this id"
    ),
}
_SESSION_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "the session id",
    "schema": {"type": "string"},
}

_APPROVAL: dict[str, Any] = {
    "type": "object",
    "description": "An approval request (a held statement, or a just-in-time access grant).",
    "required": [
        "id",
        "status",
        "type",
        "connection",
        "requester",
        "rule",
        "approvers",
        "approvals_required",
        "approvals",
        "created_at",
        "expires_at",
    ],
    "properties": {
        "id": {"type": "string"},
        "status": {"enum": ["pending", "approved", "denied", "expired", "void"]},
        "type": {"type": "string", "description": "the record type: approval_request or access_grant"},
        "connection": {"type": "string"},
        "requester": {"type": "string", "description": "the requester's subject"},
        "rule": {"type": "string", "description": "the policy that asked for approval"},
        "statement": {"type": ["string", "null"], "description": "the statement as masked (null for grants)"},
        "params_masked": {"type": ["array", "null"], "items": {"type": ["string", "null"]}},
        "more_params_masked": {
            "type": ["array", "null"],
            "description": "parameters of the further executions it releases (other Binds of a batch)",
            "items": {"type": "array", "items": {"type": ["string", "null"]}},
        },
        "prompt_id": {"type": ["string", "null"]},
        "covers": {"type": ["object", "null"]},
        "reason": {"type": ["string", "null"], "description": "why access is asked for (grants)"},
        "duration_ms": {"type": ["integer", "null"], "description": "how long a grant lasts (grants)"},
        "approvers": {"type": "array", "items": {"type": "string"}},
        "approvals_required": {"type": "integer", "minimum": 1},
        "approvals": {"type": "integer", "minimum": 0, "description": "approvals so far"},
        "one_of_each_group": {"type": "boolean"},
        "created_at": _MS,
        "expires_at": _MS,
        "closed_at": {"type": ["integer", "null"]},
        "created": _ISO,
        "expires": _ISO,
        "closed": _ISO,
        "close_reason": {"type": ["string", "null"]},
    },
}

_SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
    "Approval": _APPROVAL,
    "Record": {
        "type": "object",
        "description": "A signed record (docs/APPROVALS.md): a request, a decision or an access grant.",
        "required": ["version", "type", "id", "signature"],
        "properties": {
            "version": {"const": 1},
            "type": {"enum": ["approval_request", "approval_decision", "access_grant"]},
            "id": {"type": "string"},
            "signature": {
                "type": "object",
                "required": ["alg", "kid", "sig"],
                "properties": {
                    "alg": {"const": "EdDSA"},
                    "kid": {"type": "string"},
                    "sig": {"type": "string"},
                },
            },
        },
    },
    "ApprovalDetail": {
        "allOf": [
            _ref("Approval"),
            {
                "type": "object",
                "required": ["decisions", "records"],
                "properties": {
                    "decisions": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "id": {"type": "string"},
                                "approver": {"type": "string"},
                                "decision": {"enum": ["approve", "deny"]},
                                "reason": {"type": ["string", "null"]},
                                "decided_at": _MS,
                                "decided": _ISO,
                            },
                        },
                    },
                    "records": {
                        "type": "array",
                        "description": "the signed request record, then its signed decision records",
                        "items": _ref("Record"),
                    },
                },
            },
        ]
    },
    "DecisionResult": {
        "type": "object",
        "required": ["id", "status", "decision"],
        "properties": {
            "id": {"type": "string"},
            "status": {"enum": ["pending", "approved", "denied", "expired", "void"]},
            "decision": _ref("Record"),
        },
    },
    "SigningKey": {
        "type": "object",
        "required": ["kid", "alg", "crv", "x", "pem"],
        "properties": {
            "kid": {"type": "string", "description": "RFC 7638 JWK thumbprint"},
            "kty": {"const": "OKP"},
            "alg": {"const": "EdDSA"},
            "crv": {"const": "Ed25519"},
            "x": {"type": "string", "description": "the raw public key, base64url"},
            "pem": {"type": "string"},
        },
    },
    "AccessRequest": {
        "description": "A just-in-time access request (access_grant), decided under /api/approvals.",
        "allOf": [
            _ref("Approval"),
            {
                "type": "object",
                "required": ["granted_until", "record"],
                "properties": {
                    "granted_until": {
                        "type": ["integer", "null"],
                        "description": "when the grant ends, once approved",
                    },
                    "record": _ref("Record"),
                },
            },
        ],
    },
    "Prompt": {
        "type": "object",
        "description": "A registered AI prompt; `prompt` and `generated_code` as stored (masked).",
        "required": ["id", "created_at", "subject", "auth", "registered_by", "prompt"],
        "properties": {
            "id": {"type": "string", "description": "what clients tag their work with: hoop:prompt=<id>"},
            "created_at": {"type": "number", "description": "seconds since the epoch"},
            "subject": {"type": "string", "description": "who registered it"},
            "auth": {"enum": ["token", "apikey"]},
            "registered_by": {"type": "string", "description": "user:SUBJECT or key:NAME"},
            "assistant": {"type": ["string", "null"]},
            "model": {"type": ["string", "null"]},
            "human": {"type": ["string", "null"]},
            "prompt": {"type": "string"},
            "generated_code": {"type": ["string", "null"]},
        },
    },
    "PromptReport": {
        "allOf": [
            _ref("Prompt"),
            {
                "type": "object",
                "required": ["registered", "caused"],
                "properties": {
                    "registered": {"type": "boolean"},
                    "caused": {
                        "type": "array",
                        "description": (
                            "what the prompt caused, oldest first: audit events (statements with their "
                            "result summary, denials, approval events, sessions tagged through "
                            "application_name) and approval requests (kind approval_request)"
                        ),
                        "items": {
                            "type": "object",
                            "required": ["kind", "ts", "prompt_known"],
                            "properties": {
                                "kind": {"type": "string"},
                                "ts": {"type": "number", "description": "seconds since the epoch"},
                                "seq": {"type": "integer", "description": "the event's position (events)"},
                                "session_id": {"type": ["string", "null"]},
                                "subject": {"type": ["string", "null"], "description": "who did the work"},
                                "auth": {"type": ["string", "null"]},
                                "prompt_id": {
                                    "type": ["string", "null"],
                                    "description": "the event's own tag; null: its session's tag",
                                },
                                "prompt_known": {
                                    "enum": [True, False, "foreign"],
                                    "description": (
                                        "true: the same identity registered the prompt; foreign: "
                                        "another identity did; false: no prompt has this id"
                                    ),
                                },
                                "data": {"type": "object", "description": "the event's data (events)"},
                                "request": {
                                    "type": "object",
                                    "description": "the request and its decisions (approval_request)",
                                },
                            },
                        },
                    },
                },
            },
        ]
    },
    "ApiKey": {
        "type": "object",
        "required": ["id", "name", "status"],
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "status": {"enum": ["active", "revoked", "expired"]},
            "groups": {"type": "array", "items": {"type": "string"}},
            "created_at": {"type": "number"},
            "expires_at": {"type": "number"},
            "created_by": {"type": "string"},
            "revoked_at": {"type": ["number", "null"]},
            "revoked_by": {"type": ["string", "null"]},
        },
    },
    "SshKey": {
        "type": "object",
        "description": "An SSH public key registered to a person (docs/SSH.md, Client authentication).",
        "required": ["id", "status", "subject", "groups", "algorithm", "public_key"],
        "properties": {
            "id": {"type": "string", "description": "the SHA256 fingerprint, as ssh-keygen -l prints it"},
            "fingerprint": {"type": "string", "description": "the same as id"},
            "status": {"enum": ["active", "removed"]},
            "subject": {"type": "string", "description": "the person the key logs in as"},
            "groups": {"type": "array", "items": {"type": "string"}},
            "algorithm": {"type": "string", "description": "ssh-ed25519, ecdsa-sha2-nistp256, ssh-rsa, ..."},
            "public_key": {"type": "string", "description": "ALGORITHM BASE64 (without the comment)"},
            "comment": {"type": "string"},
            "added_by": {"type": "string", "description": "user:SUBJECT of the admin"},
            "created_at": {"type": "number", "description": "seconds since the epoch"},
            "removed_at": {"type": ["number", "null"]},
            "removed_by": {"type": ["string", "null"]},
        },
    },
    "SshCertificate": {
        "type": "object",
        "required": [
            "certificate",
            "fingerprint",
            "subject",
            "key_id",
            "serial",
            "valid_after",
            "valid_before",
        ],
        "properties": {
            "certificate": {"type": "string", "description": "the OpenSSH user certificate (KEY-cert.pub)"},
            "fingerprint": {"type": "string", "description": "of the certified public key"},
            "subject": {"type": "string"},
            "key_id": {
                "type": "string",
                "description": 'hoopgw:{"sub":...,"groups":[...],"exp":...} ("email" too when known)',
            },
            "serial": {"type": "string", "description": "16 hex digits"},
            "valid_after": {"type": "integer", "description": "seconds since the epoch"},
            "valid_before": {"type": "integer", "description": "seconds since the epoch"},
        },
    },
    "Session": {
        "type": "object",
        "description": "A recorded session, as `hoopgw sessions list --json` shows it.",
        "required": ["id", "status", "type", "connection", "subject", "started_at"],
        "properties": {
            "id": {"type": "string"},
            "status": {"enum": ["open", "closed"]},
            "type": {"type": "string", "description": "postgres, ..."},
            "connection": {"type": "string"},
            "subject": {"type": "string", "description": "who opened it"},
            "auth": {
                "type": ["string", "null"],
                "description": "token, apikey, sshkey (a registered SSH key) or sshcert (an SSH certificate)",
            },
            "groups": {"type": "array", "items": {"type": "string"}},
            "client_addr": {"type": ["string", "null"]},
            "params": {
                "type": "object",
                "description": "user, database, application_name, prompt_id (its application_name tag)",
            },
            "started_at": _SECONDS,
            "ended_at": {"type": ["number", "null"], "description": "seconds since the epoch"},
            "close_reason": {"type": ["string", "null"]},
            "statements": {"type": "integer", "minimum": 0},
            "errors": {"type": "integer", "minimum": 0},
            "masked": {
                "type": "object",
                "description": "values masked on the way to the client, per detector",
                "additionalProperties": {"type": "integer"},
            },
        },
    },
    "SessionDetail": {
        "allOf": [
            _ref("Session"),
            {
                "type": "object",
                "required": ["events", "next_after"],
                "properties": {
                    "prompt_known": _PROMPT_KNOWN,
                    "events": {
                        "type": "array",
                        "description": (
                            "the session's audit events in order: session_open, statements (with their "
                            "result summary), denials, approval events, session_close, ..."
                        ),
                        "items": {
                            "type": "object",
                            "required": ["seq", "ts", "kind", "data"],
                            "properties": {
                                "seq": {"type": "integer", "description": "the event's position"},
                                "ts": _SECONDS,
                                "session_id": {"type": ["string", "null"]},
                                "kind": {"type": "string"},
                                "data": {"type": "object"},
                                "prompt_id": {"type": ["string", "null"]},
                                "prompt_known": _PROMPT_KNOWN,
                            },
                        },
                    },
                    "next_after": {
                        "type": ["integer", "null"],
                        "description": "more events follow: ask again with after=this; null: no more",
                    },
                },
            },
        ]
    },
}

_DECIDE_RESPONSES: dict[str, Any] = {
    "200": _json(_ref("DecisionResult"), "the decision was recorded"),
    "400": _error("a bad body (a denial needs a reason)"),
    **_UNAUTHORIZED,
    "403": _error("not an approver of this request, or the requester"),
    "404": _NOT_FOUND,
    "409": _error("the request is closed (decided, expired, void) or this approver approved already"),
}


def _op(summary: str, responses: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"summary": summary, "security": _BEARER, "responses": responses, **more}


def _public(summary: str, responses: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"summary": summary, "security": [], "responses": responses, **more}


def _body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


_PATHS: dict[str, Any] = {
    "/healthz": {
        "get": _public(
            "liveness and live numbers",
            {"200": _json({"type": "object", "properties": {"status": {"const": "ok"}}}, "the gateway runs")},
        )
    },
    "/api/keys": {
        "get": _op(
            "list API keys, newest first (admins)",
            {
                "200": _json({"type": "array", "items": _ref("ApiKey")}, "every key, never a secret"),
                **_UNAUTHORIZED,
                "403": _error("not a gateway admin"),
            },
        ),
        "post": _op(
            "create an API key (admins, with a person's token)",
            {
                "201": _json(
                    {"allOf": [_ref("ApiKey"), {"properties": {"key": {"type": "string"}}}]},
                    "the key, shown only this once",
                ),
                "400": _error("a bad body"),
                **_UNAUTHORIZED,
                "403": _error("not a gateway admin, or an API key"),
                "409": _error("a key with this name exists"),
                "413": _error("the body is too large"),
            },
            requestBody=_body(
                {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string"},
                        "groups": {"type": "array", "items": {"type": "string"}},
                        "expires": {"type": ["string", "integer", "null"], "description": "'30d' or seconds"},
                    },
                }
            ),
        ),
    },
    "/api/keys/{name}": {
        "delete": _op(
            "revoke an API key (its sessions are ended)",
            {
                "200": _json(_ref("ApiKey"), "the revoked key"),
                **_UNAUTHORIZED,
                "403": _error("not a gateway admin"),
                "404": _error("no such key"),
            },
            parameters=[{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
        )
    },
    "/api/keys/{name}/revoke": {
        "post": _op(
            "revoke an API key (the same as DELETE /api/keys/{name})",
            {
                "200": _json(_ref("ApiKey"), "the revoked key"),
                **_UNAUTHORIZED,
                "403": _error("not a gateway admin"),
                "404": _error("no such key"),
            },
            parameters=[{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
        )
    },
    "/api/ssh-keys": {
        "get": _op(
            "list registered SSH keys, newest first, removed ones too (admins and auditors)",
            {
                "200": _json({"type": "array", "items": _ref("SshKey")}, "every key"),
                **_UNAUTHORIZED,
                "403": _error("not a gateway admin or auditor"),
            },
        ),
        "post": _op(
            "register an SSH public key for a person (admins, with a person's token)",
            {
                "201": _json(_ref("SshKey"), "the registered key"),
                "400": _error("a bad body, subject, group or key (private key, certificate, weak key)"),
                **_UNAUTHORIZED,
                "403": _error("not a gateway admin, or an API key"),
                "409": _error("the key is registered already"),
                "413": _error("the body is too large"),
            },
            requestBody=_body(
                {
                    "type": "object",
                    "required": ["subject", "public_key"],
                    "additionalProperties": False,
                    "properties": {
                        "subject": {"type": "string"},
                        "groups": {"type": "array", "items": {"type": "string"}},
                        "public_key": {"type": "string", "description": "one OpenSSH public key line"},
                    },
                }
            ),
        ),
    },
    "/api/ssh-keys/{id}": {
        "delete": _op(
            "remove a registered SSH key: logins with it are refused from now on (admins)",
            {
                "200": _json(_ref("SshKey"), "the removed key"),
                **_UNAUTHORIZED,
                "403": _error("not a gateway admin"),
                "404": _error("no such key registered"),
            },
            parameters=[
                {
                    "name": "id",
                    "in": "path",
                    "required": True,
                    "description": "the fingerprint, SHA256:... (the prefix optional; it may hold '/')",
                    "schema": {"type": "string"},
                }
            ],
        )
    },
    "/api/ssh/certificate": {
        "post": _op(
            "an SSH user certificate for the caller's public key, signed by the gateway's SSH user CA "
            "(people with a token; not API keys)",
            {
                "201": _json(_ref("SshCertificate"), "the certificate"),
                "400": _error("a bad body or key"),
                **_UNAUTHORIZED,
                "403": _error("an API key"),
                "413": _error("the body is too large"),
            },
            requestBody=_body(
                {
                    "type": "object",
                    "required": ["public_key"],
                    "additionalProperties": False,
                    "properties": {"public_key": {"type": "string"}},
                }
            ),
        )
    },
    "/api/approvals": {
        "get": _op(
            "approval requests the caller may see, newest first",
            {
                "200": _json({"type": "array", "items": _ref("Approval")}, "the requests"),
                "400": _error("a bad status or limit"),
                **_UNAUTHORIZED,
            },
            description=(
                "Admins and auditors see every request; anyone else the requests they made and those "
                "they may decide."
            ),
            parameters=[
                {
                    "name": "status",
                    "in": "query",
                    "schema": {"enum": ["pending", "approved", "denied", "expired", "void"]},
                },
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                },
            ],
        )
    },
    "/api/approvals/{id}": {
        "get": _op(
            "one request, its decisions and its signed records",
            {"200": _json(_ref("ApprovalDetail"), "the request"), **_UNAUTHORIZED, "404": _NOT_FOUND},
            parameters=[_ID],
        )
    },
    "/api/approvals/{id}/records": {
        "get": _op(
            "the signed records of a request (request first), for `hoopgw approvals verify`",
            {
                "200": _json({"type": "array", "items": _ref("Record")}, "the records"),
                **_UNAUTHORIZED,
                "404": _NOT_FOUND,
            },
            parameters=[_ID],
        )
    },
    "/api/approvals/{id}/approve": {
        "post": _op(
            "approve a request",
            _DECIDE_RESPONSES,
            parameters=[_ID],
            requestBody=_body(
                {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"reason": {"type": ["string", "null"]}},
                },
                required=False,
            ),
        )
    },
    "/api/approvals/{id}/deny": {
        "post": _op(
            "deny a request (a reason is required)",
            _DECIDE_RESPONSES,
            parameters=[_ID],
            requestBody=_body(
                {
                    "type": "object",
                    "required": ["reason"],
                    "additionalProperties": False,
                    "properties": {"reason": {"type": "string", "minLength": 1}},
                }
            ),
        )
    },
    "/api/approvals/{id}/wait": {
        "get": _op(
            "wait for a request to close (long poll, or server-sent events)",
            {
                "200": {
                    "description": (
                        "the request once closed, or still pending when the timeout passed; with "
                        "`Accept: text/event-stream`, `status` events: one at once, one when it closes"
                    ),
                    "content": {
                        "application/json": {"schema": _ref("Approval")},
                        "text/event-stream": {"schema": {"type": "string"}},
                    },
                },
                "400": _error("a bad timeout"),
                **_UNAUTHORIZED,
                "404": _NOT_FOUND,
                "429": _error("the caller already holds 32 long polls or streams open"),
            },
            parameters=[
                _ID,
                {
                    "name": "timeout",
                    "in": "query",
                    "description": "seconds (default 30)",
                    "schema": {"type": "number", "minimum": 0, "maximum": 300},
                },
            ],
        )
    },
    "/api/approvals/callback": {
        "post": _public(
            "Slack-style signed interactive callback (Approve / Deny buttons)",
            {
                "200": _json({"type": "object"}, "the decision was recorded: {ok, status, text}"),
                "400": _error("a malformed body, an unknown action, or a JSON deny without a reason"),
                "401": _error("a missing, bad or stale signature"),
                "403": _error("an unmapped user, the requester, or someone who is not an approver"),
                "404": _error("no such request, or callbacks are off (no [approvals] callback_secret)"),
                "409": _error("the request is closed or expired, or this approver already approved"),
                "413": _error("the body is too large"),
                "415": _error("neither form-encoded nor JSON"),
            },
            description=(
                "Signed with `[approvals] callback_secret` (X-Slack-Signature / X-Slack-Request-Timestamp); "
                "the body is a form with a `payload` field, or JSON."
            ),
            requestBody={
                "required": True,
                "content": {
                    "application/x-www-form-urlencoded": {
                        "schema": {"type": "object", "properties": {"payload": {"type": "string"}}}
                    },
                    "application/json": {"schema": {"type": "object"}},
                },
            },
        )
    },
    "/api/access-requests": {
        "post": _op(
            "ask for just-in-time access to a connection (an access_grant request)",
            {
                "201": _json(_ref("AccessRequest"), "the pending request, with its signed record"),
                "400": _error("a bad body, a duration over the policy's max_grant, or an ambiguous policy"),
                **_UNAUTHORIZED,
                "403": _error("no jit policy names the caller on this connection"),
                "404": _error("no such connection"),
                "429": _error("the caller already has as many access requests pending as one may (10)"),
            },
            requestBody=_body(
                {
                    "type": "object",
                    "required": ["connection", "for", "reason"],
                    "additionalProperties": False,
                    "properties": {
                        "connection": {"type": "string"},
                        "for": {"type": ["string", "number"], "description": "how long: '2h' or seconds"},
                        "reason": {"type": "string", "minLength": 1},
                        "policy": {"type": "string", "description": "the jit policy, when several apply"},
                    },
                }
            ),
        )
    },
    "/api/access-grants": {
        "get": _op(
            "the caller's running access grants",
            {
                "200": _json(
                    {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["id", "connection", "rule", "granted_at", "until"],
                            "properties": {
                                "id": {"type": "string"},
                                "connection": {"type": "string"},
                                "rule": {"type": "string"},
                                "granted_at": _MS,
                                "until": _MS,
                            },
                        },
                    },
                    "the grants",
                ),
                **_UNAUTHORIZED,
            },
        )
    },
    "/api/prompts": {
        "post": _op(
            "register an AI prompt; tag work with its id (docs/PROMPTS.md)",
            {
                "201": _json(
                    {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}},
                    "the new prompt's id",
                ),
                "400": _error("a bad body: not an object, a missing or bad field, an unknown field"),
                **_UNAUTHORIZED,
                "413": _error("the body is larger than 256 KiB"),
            },
            description=(
                "Any authenticated caller. `prompt` and `generated_code` are masked with every configured "
                "masking rule before they are stored."
            ),
            requestBody=_body(
                {
                    "type": "object",
                    "required": ["prompt", "assistant", "model"],
                    "additionalProperties": False,
                    "properties": {
                        "prompt": {"type": "string", "minLength": 1},
                        "generated_code": {"type": ["string", "null"]},
                        "assistant": {"type": "string", "minLength": 1, "maxLength": 200},
                        "model": {"type": "string", "minLength": 1, "maxLength": 200},
                        "human": {
                            "type": ["string", "null"],
                            "maxLength": 200,
                            "description": "the person the assistant worked for, if known",
                        },
                    },
                }
            ),
        )
    },
    "/api/prompts/{id}": {
        "get": _op(
            "a prompt and what it caused",
            {
                "200": _json(_ref("PromptReport"), "the prompt"),
                **_UNAUTHORIZED,
                "404": _error("no such prompt, or one the caller may not see (the same answer)"),
            },
            description=(
                "Admins and auditors see every prompt and all it caused; the identity that registered it "
                "sees it with its own work only."
            ),
            parameters=[
                {
                    "name": "id",
                    "in": "path",
                    "required": True,
                    "description": "the prompt id",
                    "schema": {"type": "string"},
                }
            ],
        )
    },
    "/api/sessions": {
        "get": _op(
            "recorded sessions the caller may see, newest first",
            {
                "200": _json({"type": "array", "items": _ref("Session")}, "the sessions"),
                "400": _error("a bad status or limit, or an unknown query parameter"),
                **_UNAUTHORIZED,
            },
            description=(
                "Admins and auditors see every session; anyone else the sessions of their own identity "
                "(the same subject and kind of credential: token or API key)."
            ),
            parameters=[
                {"name": "status", "in": "query", "schema": {"enum": ["open", "closed"]}},
                {"name": "connection", "in": "query", "schema": {"type": "string"}},
                {"name": "subject", "in": "query", "schema": {"type": "string"}},
                {
                    "name": "limit",
                    "in": "query",
                    "description": "how many (default 50)",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                },
            ],
        )
    },
    "/api/sessions/{id}": {
        "get": _op(
            "one session and its events (a page of them)",
            {
                "200": _json(_ref("SessionDetail"), "the session"),
                "400": _error("a bad after or limit, or an unknown query parameter"),
                **_UNAUTHORIZED,
                "404": _error("no such session, or one the caller may not see (the same answer)"),
            },
            description="Who sees a session: as for GET /api/sessions.",
            parameters=[
                _SESSION_ID,
                {
                    "name": "after",
                    "in": "query",
                    "description": "events after this seq (default 0: from the first)",
                    "schema": {"type": "integer", "minimum": 0},
                },
                {
                    "name": "limit",
                    "in": "query",
                    "description": "how many events (default 500)",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                },
            ],
        )
    },
    "/api/sessions/{id}/end": {
        "post": _op(
            "end a live session (admins)",
            {
                "200": _json(
                    {
                        "type": "object",
                        "required": ["id", "status"],
                        "properties": {"id": {"type": "string"}, "status": {"const": "closed"}},
                    },
                    "the session was ended",
                ),
                **_UNAUTHORIZED,
                "403": _error("not a gateway admin"),
                "404": _error("no live session has this id (unknown, or closed already)"),
            },
            description=(
                "The session's client gets SQLSTATE 57P01 with a message naming the admin; the "
                "session's record gets a session_ended_by_admin event (by: the admin)."
            ),
            parameters=[_SESSION_ID],
        )
    },
    "/api/signing-key": {
        "get": _public(
            "the public key that verifies approval records (no authentication)",
            {"200": _json(_ref("SigningKey"), "the key")},
        )
    },
    "/api/openapi.json": {
        "get": _public("this document", {"200": _json({"type": "object"}, "OpenAPI 3.1")}),
    },
}


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the control API."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "hoopgw control API",
            "version": __version__,
            "description": (
                "Health, API keys, SSH keys and certificates, approvals, AI prompts and recorded sessions "
                "of an hoopgw gateway "
                "(docs/APPROVALS.md, docs/PROMPTS.md, docs/API.md)."
            ),
        },
        "paths": _PATHS,
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a token (local issuer or OIDC) or an API key",
                }
            },
            "responses": {
                "Unauthorized": {
                    "description": "a missing or refused credential",
                    "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
                    "content": {"application/json": {"schema": _ref("Error")}},
                }
            },
        },
        "security": _BEARER,
    }
