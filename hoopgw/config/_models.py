"""The configuration schema: frozen pydantic models, one per TOML block."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from hoopgw.config._approvals import ApprovalsConfig
from hoopgw.config._audit import AuditConfig
from hoopgw.config._listen import Listen
from hoopgw.config._masking import MaskingConfig, MaskRules, merge_rules, named_patterns
from hoopgw.config._policy import PolicyRules, SqlConfig, TimeWindow
from hoopgw.config._secrets import SecretRef
from hoopgw.config._ssh import BUILTIN_CLASSES, GLOB_PREFIXES, SshConfig
from hoopgw.config._types import MODEL_CONFIG, ConfigPath, Name, Seconds, Subject, base_dir
from hoopgw.config._upstream import PgUpstream, SshUpstream, check_http_url, is_loopback_host

CONNECTION_TYPES = ("postgres", "ssh", "kubernetes", "http")
_HOST_KEY = re.compile(r"SHA256:[A-Za-z0-9+/]{43}=?\Z")


class GatewayConfig(BaseModel):
    """``[gateway]``: process-wide settings."""

    model_config = MODEL_CONFIG

    data_dir: ConfigPath = Field(default=Path("var"), validate_default=True)
    api_listen: Listen | None = None
    tls_cert: SecretRef | None = None
    tls_key: SecretRef | None = None
    masking_key: SecretRef | None = None
    admins: tuple[Subject, ...] = ()
    auditors: tuple[Subject, ...] = ()
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    shutdown_timeout: Seconds = 30.0
    login_timeout: Seconds = 15.0
    idle_timeout: Seconds | None = None
    max_message_size: int = Field(default=64 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    audit_flush_interval: Seconds = 0.2

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path, info: ValidationInfo) -> Path:
        base = base_dir(info)
        if not value.is_absolute() and base is not None:
            value = base / value
        return Path(value).absolute()

    @field_validator("api_listen")
    @classmethod
    def _api_on_loopback(cls, value: Listen | None) -> Listen | None:
        if value is not None and not is_loopback_host(value.host):
            raise PydanticCustomError(
                "api_listen",
                "the control API speaks plain HTTP (bearer tokens, new API keys): listen on a loopback "
                "address such as 127.0.0.1:8009 and put a TLS proxy in front for remote use",
            )
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> GatewayConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise PydanticCustomError("tls", "tls_cert and tls_key must be given together")
        return self


def _issuer(value: object) -> str:
    if not isinstance(value, str):
        raise PydanticCustomError("issuer", 'must be "local" or an https OIDC issuer URL')
    if value == "local":
        return value
    url = urlsplit(value)
    if url.scheme == "https" and url.hostname:
        return value
    if url.scheme == "http" and url.hostname and is_loopback_host(url.hostname):
        return value
    if url.scheme == "http":
        raise PydanticCustomError("issuer", "OIDC issuers must use https (plain http only on loopback)")
    raise PydanticCustomError("issuer", 'must be "local" or an https OIDC issuer URL')


class IdentityConfig(BaseModel):
    """``[identity]``: who signs the tokens callers present."""

    model_config = MODEL_CONFIG

    issuer: Annotated[str, BeforeValidator(_issuer)] = "local"
    audience: str = Field(default="hoopgw", min_length=1)
    groups_claim: str = Field(default="groups", min_length=1)
    #: claim holding the user's email (optional in tokens; None: not read)
    email_claim: str | None = "email"
    #: claim naming the user (the subject of ``user:`` rules)
    subject_claim: str = Field(default="sub", min_length=1)
    token_ttl: Seconds = 3600.0
    #: clock-skew tolerance for exp / nbf / iat
    leeway: Seconds = 30.0
    #: how long a session may outlive the token (or API key) it started with
    session_grace: Seconds = 60.0
    #: OIDC: accepted signature algorithms
    algorithms: tuple[Literal["RS256", "ES256", "EdDSA"], ...] = Field(
        default=("RS256", "ES256", "EdDSA"), min_length=1
    )
    #: OIDC: the client id ``hoopgw login`` uses for the device flow (default: the audience)
    client_id: str | None = None
    #: OIDC: scopes ``hoopgw login`` asks for
    scopes: tuple[str, ...] = ("openid", "profile", "email")
    #: OIDC: an unknown ``kid`` refetches the JWKS at most this often
    jwks_refetch_interval: Seconds = 30.0
    #: OIDC: a fetched JWKS is reused for this long
    jwks_cache_ttl: Seconds = 3600.0
    #: OIDC: claims every token must carry with one of these values, e.g. ``{ tid = "<tenant id>" }`` for
    #: a multi-tenant issuer, ``{ hd = "bank.example" }`` for a Google Workspace domain
    required_claims: dict[str, tuple[str, ...]] = Field(default_factory=dict)

    @field_validator("required_claims", mode="before")
    @classmethod
    def _claim_values(cls, value: object) -> object:
        if isinstance(value, dict):
            return {k: (v,) if isinstance(v, str) else tuple(v) if isinstance(v, list) else v
                    for k, v in value.items()}  # fmt: skip
        return value


class PostgresConnection(BaseModel):
    """``[[connections]]`` with ``type = "postgres"``."""

    model_config = MODEL_CONFIG

    type: Literal["postgres"] = "postgres"
    name: Name
    listen: Listen
    upstream: PgUpstream
    password: SecretRef | None = None
    #: rules for every authenticated caller of this connection (counted like one more policy)
    defaults: PolicyRules | None = None


class SshConnection(BaseModel):
    """``[[connections]]`` with ``type = "ssh"``.

    Several ssh connections may share one ``listen`` address: the SSH user name ``NAME@CONNECTION``
    picks the target (docs/SSH.md).
    """

    model_config = MODEL_CONFIG

    type: Literal["ssh"] = "ssh"
    name: Name
    listen: Listen
    upstream: SshUpstream
    #: the brokered upstream credential: exactly one of a private key (OpenSSH or PEM file) or a password
    private_key: SecretRef | None = None
    password: SecretRef | None = None
    #: the pinned upstream host key: an SHA256 fingerprint (``ssh-keygen -lf``), a known_hosts file, or both
    host_key: str | None = None
    known_hosts: ConfigPath | None = None
    #: rules for every authenticated caller of this connection (counted like one more policy)
    defaults: PolicyRules | None = None
    #: recorded terminal output per session (overrides ``[ssh] record_max_bytes``)
    record_max_bytes: int | None = Field(default=None, ge=0)

    @field_validator("host_key")
    @classmethod
    def _fingerprint(cls, value: str | None) -> str | None:
        if value is not None and not _HOST_KEY.match(value):
            raise PydanticCustomError(
                "host_key", 'must be an SHA256 fingerprint as printed by "ssh-keygen -lf" (SHA256:...)'
            )
        return value

    @model_validator(mode="after")
    def _credential_and_pin(self) -> SshConnection:
        if (self.private_key is None) == (self.password is None):
            raise PydanticCustomError(
                "ssh",
                'give exactly one upstream credential: private_key = "file:PATH" or password = "env:NAME"',
            )
        if self.host_key is None and self.known_hosts is None:
            raise PydanticCustomError(
                "ssh",
                'pin the upstream host key: host_key = "SHA256:..." (ssh-keygen -lf) or known_hosts = PATH',
            )
        return self


def _http(value: object) -> str:
    return check_http_url(value)


class KubernetesConnection(BaseModel):
    """``[[connections]]`` with ``type = "kubernetes"`` (API server behind the gateway)."""

    model_config = MODEL_CONFIG

    type: Literal["kubernetes"] = "kubernetes"
    name: Name
    listen: Listen
    upstream: Annotated[str, BeforeValidator(_http)]
    token: SecretRef | None = None
    ca_cert: SecretRef | None = None


class HttpConnection(BaseModel):
    """``[[connections]]`` with ``type = "http"``."""

    model_config = MODEL_CONFIG

    type: Literal["http"] = "http"
    name: Name
    listen: Listen
    upstream: Annotated[str, BeforeValidator(_http)]
    token: SecretRef | None = None


ConnectionConfig = Annotated[
    PostgresConnection | SshConnection | KubernetesConnection | HttpConnection, Field(discriminator="type")
]


class PolicyConfig(PolicyRules):
    """``[[policy]]``: who may do what where (deny beats approve beats allow)."""

    name: Name
    subjects: tuple[Subject, ...] = Field(min_length=1)
    connections: tuple[str, ...] = Field(min_length=1)
    window: TimeWindow | None = None


class Config(BaseModel):
    """One gateway's whole configuration (``load_config`` builds it)."""

    model_config = MODEL_CONFIG | ConfigDict(validate_by_name=True, validate_by_alias=True)

    path: Path
    gateway: GatewayConfig = Field(default_factory=lambda: GatewayConfig())
    identity: IdentityConfig = Field(default_factory=lambda: IdentityConfig())
    connections: tuple[ConnectionConfig, ...] = ()
    masking: tuple[MaskingConfig, ...] = ()
    policies: tuple[PolicyConfig, ...] = Field(default=(), alias="policy")
    sql: SqlConfig = Field(default_factory=lambda: SqlConfig())
    approvals: ApprovalsConfig = Field(default_factory=lambda: ApprovalsConfig())
    audit: AuditConfig = Field(default_factory=lambda: AuditConfig())
    ssh: SshConfig = Field(default_factory=lambda: SshConfig())

    @model_validator(mode="after")
    def _known_classes(self) -> Config:
        """Every policy class that is not built in names a command class of ``[ssh] command_classes``."""
        known = self.ssh.command_classes
        errors: list[InitErrorDetails] = []
        places: list[tuple[tuple[int | str, ...], PolicyRules]] = [
            (("policy", i), p) for i, p in enumerate(self.policies)
        ]
        places += [
            (("connections", i, "defaults"), c.defaults)
            for i, c in enumerate(self.connections)
            if isinstance(c, PostgresConnection | SshConnection) and c.defaults is not None
        ]
        for loc, rules in places:
            for field in ("allow", "approve", "deny"):
                for k, name in enumerate(getattr(rules, field)):
                    if name in BUILTIN_CLASSES or name in known or name.startswith(GLOB_PREFIXES):
                        continue
                    error = PydanticCustomError(
                        "class",
                        "unknown class {value}: not a built-in class nor a command class of "
                        "[ssh] command_classes (those are {known})",
                        {"value": repr(name), "known": ", ".join(sorted(known)) or "none"},
                    )
                    errors.append({"type": error, "loc": (*loc, field, k), "input": name})
        if errors:
            raise ValidationError.from_exception_data("Config", errors)
        return self

    def connection(
        self, name: str
    ) -> PostgresConnection | SshConnection | KubernetesConnection | HttpConnection:
        """The connection called ``name`` (KeyError when there is none)."""
        for conn in self.connections:
            if conn.name == name:
                return conn
        raise KeyError(name)

    def masking_rules(self, connection: str) -> MaskRules | None:
        """The masking rules of ``connection``: every block naming it (or ``"*"``) added up; None if none."""
        blocks = [
            (block, named)
            for block, named in zip(self.masking, named_patterns(self.masking), strict=True)
            if connection in block.connections or "*" in block.connections
        ]
        return merge_rules(blocks) if blocks else None
