"""``[approvals]``: where held statements are announced and decided (docs/APPROVALS.md)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, Field

from hoopgw.config._secrets import SecretRef
from hoopgw.config._types import MODEL_CONFIG, Seconds
from hoopgw.config._upstream import check_http_url


def _url(value: object) -> str:
    return check_http_url(value)


HttpUrl = Annotated[str, BeforeValidator(_url)]


class WebhookConfig(BaseModel):
    """``[[approvals.webhooks]]``: a URL told when a request opens and when it closes.

    ``format = "json"`` posts the request as JSON; ``"slack"`` posts a Slack-compatible message with
    ``blocks`` (Approve / Deny buttons when ``[approvals] callback_secret`` is set).
    """

    model_config = MODEL_CONFIG

    url: HttpUrl
    format: Literal["json", "slack"] = "json"
    timeout: Seconds = Field(default=5.0, gt=0, le=60)


class ApprovalsConfig(BaseModel):
    """``[approvals]``: the URL shown to waiting clients, webhooks, and the interactive callback."""

    model_config = MODEL_CONFIG

    #: base URL of the console / API shown in notices (default: http://<gateway.api_listen>)
    url: HttpUrl | None = None
    webhooks: tuple[WebhookConfig, ...] = ()
    #: shared secret of ``POST /api/approvals/callback`` (Slack-style signed interactive callbacks);
    #: without it the endpoint is off
    callback_secret: SecretRef | None = None
    #: callbacks signed longer ago than this are refused (replay protection)
    callback_max_age: Seconds = Field(default=300.0, gt=0, le=3600)
