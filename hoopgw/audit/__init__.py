"""The audit trail: the store (SQLite or PostgreSQL: schema, migrations, readers) and the batched
background writer."""

from __future__ import annotations

from hoopgw.audit._chain import Problem, Report, open_readonly, verify_chain
from hoopgw.audit._db import Store
from hoopgw.audit._ids import is_session_id, new_session_id
from hoopgw.audit._schema import DB_FILE, SCHEMA_VERSION
from hoopgw.audit._store import AuditStore
from hoopgw.audit._writer import AuditWriter, SessionInfo, Statement, statement_data

__all__ = [
    "DB_FILE",
    "SCHEMA_VERSION",
    "AuditStore",
    "AuditWriter",
    "Problem",
    "Report",
    "SessionInfo",
    "Statement",
    "Store",
    "is_session_id",
    "new_session_id",
    "open_readonly",
    "statement_data",
    "verify_chain",
]
