"""Server settings a client may not change, and the client encodings the gateway can parse safely."""

from __future__ import annotations

import re

#: Settings a client may never choose (startup packet, SET, RESET, set_config, ALTER ... SET): they change
#: who the session acts as, switch off guardrails the gateway relies on, change how the server lexes SQL
#: (so the gateway's parse would differ from the server's), or hide the session from the server's own logs.
PROTECTED_SETTINGS = frozenset(
    {
        "role",
        "session_authorization",
        "default_transaction_read_only",
        "transaction_read_only",
        "row_security",
        "session_replication_role",
        "allow_system_table_mods",
        "ignore_system_indexes",
        "zero_damaged_pages",
        "ignore_checksum_failure",
        "lo_compat_privileges",
        "session_preload_libraries",
        "local_preload_libraries",
        "shared_preload_libraries",
        "temp_tablespaces",
        "default_tablespace",
        # the gateway parses with standard_conforming_strings on and backslash_quote off
        "standard_conforming_strings",
        "backslash_quote",
        # hide the session from monitoring, or crash / write files on the server
        "compute_query_id",
        "max_stack_depth",
        "jit_dump_bitcode",
    }
)
#: Prefixes of protected setting names (logging, tracing, audit extensions, the gateway's own).
PROTECTED_PREFIXES = (
    "log_",
    "debug_",
    "trace_",
    "track_",
    "pgaudit.",
    "hoop.",
    "pg_stat_statements.",
    "auto_explain.",
)

# Every encoding PostgreSQL accepts as a *server* encoding is ASCII-safe: no byte of a multi-byte
# character is below 0x80, so a quote or backslash byte is always that character. The client-only
# encodings SJIS, SHIFT_JIS_2004, BIG5, GBK, UHC, GB18030 and JOHAB are not, and are left out on purpose.
# Names are PostgreSQL's aliases after its own cleaning (lowercase, letters and digits only).
_SAFE_ENCODINGS = frozenset(
    {
        "utf8",
        "unicode",
        "sqlascii",
        "muleinternal",
        "euccn",
        "eucjp",
        "euckr",
        "euctw",
        "eucjis2004",
        "koi8",
        "koi8r",
        "koi8u",
        "alt",
        "win",
        "abc",
        "tcvn",
        "tcvn5712",
        "vscii",
        *(f"latin{i}" for i in range(1, 11)),
        *(f"iso8859{i}" for i in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 13, 14, 15, 16)),
        *(f"win{i}" for i in (866, 874, *range(1250, 1259))),
        *(f"windows{i}" for i in (866, 874, *range(1250, 1259))),
    }
)
_NOT_ALNUM = re.compile(r"[^a-z0-9]")


def is_protected_setting(name: str) -> bool:
    """Whether a client may not change ``name`` (case-insensitive, like PostgreSQL setting names)."""
    low = name.lower()
    return low in PROTECTED_SETTINGS or low.startswith(PROTECTED_PREFIXES)


def is_safe_client_encoding(value: str) -> bool:
    """Whether ``value`` names an ASCII-safe client encoding (UTF8, SQL_ASCII, LATIN1, WIN1252, ...)."""
    return _NOT_ALNUM.sub("", value.lower()) in _SAFE_ENCODINGS


#: PostgreSQL's canonical encoding names (what ParameterStatus reports for client_encoding).
PG_ENCODINGS = (
    "SQL_ASCII", "EUC_JP", "EUC_CN", "EUC_KR", "EUC_TW", "EUC_JIS_2004", "UTF8", "MULE_INTERNAL",
    "LATIN1", "LATIN2", "LATIN3", "LATIN4", "LATIN5", "LATIN6", "LATIN7", "LATIN8", "LATIN9", "LATIN10",
    "WIN1256", "WIN1258", "WIN866", "WIN874", "KOI8R", "WIN1251", "WIN1252", "ISO_8859_5", "ISO_8859_6",
    "ISO_8859_7", "ISO_8859_8", "WIN1250", "WIN1253", "WIN1254", "WIN1255", "WIN1257", "KOI8U",
    "SJIS", "BIG5", "GBK", "UHC", "GB18030", "JOHAB", "SHIFT_JIS_2004",
)  # fmt: skip
#: The canonical names :func:`is_safe_client_encoding` accepts.
SAFE_PG_ENCODINGS = tuple(e for e in PG_ENCODINGS if is_safe_client_encoding(e))
