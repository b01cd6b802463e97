"""Gateway configuration: one TOML file, validated into frozen models; secrets stay references."""

from __future__ import annotations

from hoopgw.config._approvals import ApprovalsConfig, WebhookConfig
from hoopgw.config._audit import AuditConfig, SiemConfig
from hoopgw.config._duration import parse_duration
from hoopgw.config._listen import Listen
from hoopgw.config._load import (
    Problem,
    check_config,
    default_config_path,
    load_config,
    secret_problems,
    unsupported_features,
)
from hoopgw.config._masking import (
    COLUMN_STYLES,
    DETECTORS,
    MIN_MASKING_KEY_BYTES,
    STYLES,
    MaskingConfig,
    MaskRules,
    NamedPattern,
    masking_key_too_short,
)
from hoopgw.config._models import (
    CONNECTION_TYPES,
    Config,
    ConnectionConfig,
    GatewayConfig,
    HttpConnection,
    IdentityConfig,
    KubernetesConnection,
    PolicyConfig,
    PostgresConnection,
    SshConnection,
)
from hoopgw.config._policy import WEEKDAYS, PolicyRules, SqlConfig, TimeWindow
from hoopgw.config._secrets import SecretRef
from hoopgw.config._ssh import DEFAULT_COMMAND_CLASSES, SSH_CLASSES, SshConfig
from hoopgw.config._upstream import PgUpstream, SshUpstream

__all__ = [
    "COLUMN_STYLES",
    "CONNECTION_TYPES",
    "DEFAULT_COMMAND_CLASSES",
    "DETECTORS",
    "MIN_MASKING_KEY_BYTES",
    "SSH_CLASSES",
    "STYLES",
    "WEEKDAYS",
    "ApprovalsConfig",
    "AuditConfig",
    "Config",
    "ConnectionConfig",
    "GatewayConfig",
    "HttpConnection",
    "IdentityConfig",
    "KubernetesConnection",
    "Listen",
    "MaskRules",
    "MaskingConfig",
    "NamedPattern",
    "PgUpstream",
    "PolicyConfig",
    "PolicyRules",
    "PostgresConnection",
    "Problem",
    "SecretRef",
    "SiemConfig",
    "SqlConfig",
    "SshConfig",
    "SshConnection",
    "SshUpstream",
    "TimeWindow",
    "WebhookConfig",
    "check_config",
    "default_config_path",
    "load_config",
    "masking_key_too_short",
    "parse_duration",
    "secret_problems",
    "unsupported_features",
]
