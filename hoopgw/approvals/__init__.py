"""Approvals: signed approval records, the approvals signing key and keyed statement digests.

See docs/APPROVALS.md for the record format.
"""

from __future__ import annotations

from hoopgw.approvals._digest import DIGEST_KEY_FILE, digest_key_path, load_digest_key, statement_digest
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
from hoopgw.approvals._signing import (
    SIGNING_KEY_FILE,
    key_id,
    load_public_key,
    load_signing_key,
    public_key_b64,
    public_key_pem,
    signing_key_path,
)

__all__ = [
    "DECISION",
    "DIGEST_KEY_FILE",
    "GRANT",
    "RECORD_VERSION",
    "REQUEST",
    "SCHEMAS",
    "SIGNING_KEY_FILE",
    "RecordError",
    "canonical",
    "check_binding",
    "check_schema",
    "digest_key_path",
    "key_id",
    "load_digest_key",
    "load_public_key",
    "load_records",
    "load_signing_key",
    "public_key_b64",
    "public_key_pem",
    "record_digest",
    "sign_record",
    "signing_key_path",
    "statement_digest",
    "verify_record",
]
