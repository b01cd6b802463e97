"""``[approvals]``: where held statements are announced and decided (docs/APPROVALS.md)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, Field, ValidationInfo, model_validator
from pydantic_core import PydanticCustomError

from hoopgw.config._secrets import SecretRef
from hoopgw.config._types import MODEL_CONFIG, Seconds
from hoopgw.config._upstream import check_http_url
from hoopgw.errors import SecretError


def _url(value: object) -> str:
    return check_http_url(value)


HttpUrl = Annotated[str, BeforeValidator(_url)]


def _url_or_secret(value: object, info: ValidationInfo) -> str | SecretRef:
    """An http(s) URL, or an ``env:``/``file:`` reference to one (a Slack webhook URL is a secret)."""
    if isinstance(value, SecretRef):
        return value
    if isinstance(value, str) and value.startswith(("env:", "file:")):
        base = info.context.get("base_dir") if isinstance(info.context, dict) else None
        try:
            return SecretRef.parse(value, base)
        except ValueError as exc:
            raise PydanticCustomError("secret", str(exc)) from None
    return check_http_url(value)


class WebhookConfig(BaseModel):
    """``[[approvals.webhooks]]``: a URL told when a request opens and when it closes.

    ``format = "json"`` posts the request as JSON; ``"slack"`` posts a Slack-compatible message with
    ``blocks`` (Approve / Deny buttons when ``[approvals] callback_secret`` is set). ``url`` may be an
    ``env:``/``file:`` reference: a Slack incoming-webhook URL is itself a credential.
    """

    model_config = MODEL_CONFIG

    url: Annotated[str | SecretRef, BeforeValidator(_url_or_secret)]
    format: Literal["json", "slack"] = "json"
    timeout: Seconds = Field(default=5.0, gt=0, le=60)

    def resolve_url(self) -> str:
        """The URL to post to (a reference is read now); SecretError naming only the reference."""
        if isinstance(self.url, str):
            return self.url
        value = self.url.resolve().strip()
        try:
            return check_http_url(value)
        except PydanticCustomError:
            raise SecretError(f"{self.url.reference}: not an http(s) URL without credentials") from None


class CallbackUser(BaseModel):
    """``[[approvals.callback_users]]``: a chat-platform user who may click Approve / Deny, and who
    they are to the gateway (the signed callback proves the platform sent it, not who the user is)."""

    model_config = MODEL_CONFIG

    #: the platform's user id (Slack: ``U024BE7LH``), as the callback names the user
    user: str = Field(min_length=1, max_length=255)
    #: the gateway subject the decision is recorded under (matches ``user:SUBJECT`` approvers)
    subject: str = Field(min_length=1, max_length=255)
    #: the groups that subject has for deciding (matches ``group:NAME`` approvers)
    groups: tuple[Annotated[str, Field(min_length=1)], ...] = ()


class ApprovalsConfig(BaseModel):
    """``[approvals]``: the URL shown to waiting clients, webhooks, and the interactive callback."""

    model_config = MODEL_CONFIG

    #: base URL of the console / API shown in notices (default: http://<gateway.api_listen>)
    url: HttpUrl | None = None
    webhooks: tuple[WebhookConfig, ...] = ()
    #: shared secret of ``POST /api/approvals/callback`` (Slack-style signed interactive callbacks);
    #: without it the endpoint is off and Slack messages carry no buttons
    callback_secret: SecretRef | None = None
    #: signs outgoing webhooks (``X-Hoopgw-Signature``); a different secret from ``callback_secret``,
    #: so a receiver that checks signatures cannot also forge approvals
    webhook_secret: SecretRef | None = None
    #: callbacks signed longer ago than this are refused (replay protection)
    callback_max_age: Seconds = Field(default=300.0, gt=0, le=3600)
    #: who the chat-platform users allowed to decide through the callback are
    callback_users: tuple[CallbackUser, ...] = ()

    @model_validator(mode="after")
    def _callback_users(self) -> ApprovalsConfig:
        seen: set[str] = set()
        for user in self.callback_users:
            if user.user in seen:
                raise PydanticCustomError(
                    "callback_users",
                    "user {user} is listed twice in callback_users",
                    {"user": repr(user.user)},
                )
            seen.add(user.user)
        if self.callback_users and self.callback_secret is None:
            raise PydanticCustomError(
                "callback_users", "callback_users needs callback_secret (the callback is off without it)"
            )
        return self
