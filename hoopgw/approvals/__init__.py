"""Approvals: signed records, the signing key, keyed statement digests, the store and the decision service,
and just-in-time access grants.

See docs/APPROVALS.md for the record format.
"""

from __future__ import annotations

from hoopgw.approvals._digest import DIGEST_KEY_FILE, digest_key_path, load_digest_key, statement_digest
from hoopgw.approvals._grants import (
    AmbiguousPolicy,
    NoGrantablePolicy,
    grant_ends,
    grantable_policy,
    jit_policies,
)
from hoopgw.approvals._records import (
    DECISION,
    GRANT,
    RECORD_VERSION,
    REQUEST,
    SCHEMAS,
    RecordError,
    canonical,
    check_binding,
    check_schema,
    load_records,
    record_digest,
    sign_record,
    verify_record,
)
from hoopgw.approvals._service import MAX_PENDING_GRANTS, ApprovalService, now_ms, tally
from hoopgw.approvals._signing import (
    SIGNING_KEY_FILE,
    key_id,
    load_public_key,
    load_signing_key,
    public_key_b64,
    public_key_pem,
    signing_key_path,
)
from hoopgw.approvals._store import (
    MAX_GRANT_MS,
    STATUSES,
    ActiveGrant,
    ApprovalError,
    ApprovalStore,
    RequestNotFound,
    Status,
    StoredDecision,
    StoredRequest,
    TooManyPending,
)

__all__ = [
    "DECISION",
    "DIGEST_KEY_FILE",
    "GRANT",
    "MAX_GRANT_MS",
    "MAX_PENDING_GRANTS",
    "RECORD_VERSION",
    "REQUEST",
    "SCHEMAS",
    "SIGNING_KEY_FILE",
    "STATUSES",
    "ActiveGrant",
    "AmbiguousPolicy",
    "ApprovalError",
    "ApprovalService",
    "ApprovalStore",
    "NoGrantablePolicy",
    "RecordError",
    "RequestNotFound",
    "Status",
    "StoredDecision",
    "StoredRequest",
    "TooManyPending",
    "canonical",
    "check_binding",
    "check_schema",
    "digest_key_path",
    "grant_ends",
    "grantable_policy",
    "jit_policies",
    "key_id",
    "load_digest_key",
    "load_public_key",
    "load_records",
    "load_signing_key",
    "now_ms",
    "public_key_b64",
    "public_key_pem",
    "record_digest",
    "sign_record",
    "signing_key_path",
    "statement_digest",
    "tally",
    "verify_record",
]
