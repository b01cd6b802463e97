"""Classify PostgreSQL statement text into policy classes with the real parser (libpg_query via pglast).

One parse per cache miss: libpg_query's JSON tree is walked in full, so nothing nested escapes (CTEs,
subqueries, set operations, function arguments, ``COPY (query)``, ``EXPLAIN``, ``PREPARE``, ``CREATE TABLE
AS``, ``DECLARE``, rule actions, SQL-standard function bodies). The rules are documented in docs/POLICY.md
("Statement classes"); this module implements them and nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import pglast
import pglast.ast
from pglast.parser import parse_sql_json

from hoopgw.config._policy import SqlConfig
from hoopgw.policy._functions import DEFAULT_ADMIN_FUNCTIONS, DEFAULT_WRITE_FUNCTIONS
from hoopgw.policy._settings import (
    PROTECTED_PREFIXES,
    PROTECTED_SETTINGS,
    is_protected_setting,
    is_safe_client_encoding,
)

__all__ = [
    "DEFAULT_ADMIN_FUNCTIONS",
    "DEFAULT_WRITE_FUNCTIONS",
    "PROTECTED_PREFIXES",
    "PROTECTED_SETTINGS",
    "Classification",
    "Classifier",
]

#: A node's fields in libpg_query's JSON tree (``{"relname": "t", ...}``).
_Body = dict[str, Any]
#: A node waiting to be classified: its kind, its fields, and whether it is a statement of its own.
_Item = tuple[str, _Body, bool]


@dataclass(frozen=True, slots=True)
class Classification:
    """The policy classes of one statement string (all its statements together)."""

    #: subset of ``hoopgw.policy.PG_CLASSES``; empty for an empty query
    classes: frozenset[str]
    #: False when the result depends on literal values or session state (EXECUTE, set_config, ...)
    cacheable: bool
    #: short human explanations of the non-read classes, in statement order
    reasons: tuple[str, ...]
    #: SQL-level ``PREPARE name AS ...``: name -> classes of its body
    prepares: tuple[tuple[str, frozenset[str]], ...]


class Classifier:
    """Classifies statement text; the function lists come from ``[sql]`` (built-in defaults otherwise)."""

    __slots__ = ("admin_functions", "write_functions")

    def __init__(self, config: SqlConfig | None = None) -> None:
        config = config or SqlConfig()
        admin = DEFAULT_ADMIN_FUNCTIONS if config.admin_functions is None else config.admin_functions
        write = DEFAULT_WRITE_FUNCTIONS if config.write_functions is None else config.write_functions
        self.admin_functions = frozenset(admin) | frozenset(config.extra_admin_functions)
        self.write_functions = frozenset(write) | frozenset(config.extra_write_functions)

    def classify(self, sql: str, prepared: Mapping[str, frozenset[str]] | None = None) -> Classification:
        """Classify every statement in ``sql``; ``prepared`` maps the session's prepared statement names."""
        walk = _Walk(self, prepared or {})
        if "\0" in sql:
            # the server stops reading a query at NUL; the parser would too, but never trust that
            walk.unknown("NUL character in statement text")
            walk.cacheable = False
            return walk.result()
        try:
            tree = orjson.loads(parse_sql_json(sql))
        except orjson.JSONDecodeError:
            walk.unknown("statement nested too deeply to classify")
            walk.cacheable = False
            return walk.result()
        except Exception as exc:  # ParseError, and anything else the parser may raise
            walk.unknown(_parse_message(exc))
            # a literal's content can make the text unparsable (bad escapes, UESCAPE), so never cache
            walk.cacheable = False
            return walk.result()
        stmts = [raw["stmt"] for raw in tree.get("stmts", ()) if raw.get("stmt")]
        _restore_copy_filenames(sql, stmts)
        for stmt in reversed(stmts):
            walk.statement(stmt)
        walk.run()
        return walk.result()

    def function_call(self) -> Classification:
        """The FunctionCall protocol message: a call by OID the gateway cannot name, so ``admin``."""
        return Classification(
            classes=frozenset({"admin"}),
            cacheable=False,
            reasons=("FunctionCall protocol message (function called by OID)",),
            prepares=(),
        )


def _restore_copy_filenames(sql: str, stmts: list[Any]) -> None:
    """Put back the empty file names of ``COPY t FROM ''`` that libpg_query's JSON leaves out.

    The JSON omits empty strings, so ``COPY t FROM ''`` (a server file) would look like ``COPY t FROM
    STDIN``; both are one statement shape for the cache, so they must not classify differently. Only a
    COPY without a file name pays for this second parse (pglast's Python tree keeps ``''`` apart from None).
    """
    copies = [
        i
        for i, stmt in enumerate(stmts)
        if "CopyStmt" in stmt
        and "filename" not in stmt["CopyStmt"]
        and not stmt["CopyStmt"].get("is_program")
    ]
    if not copies:
        return
    parsed = [raw.stmt for raw in pglast.parse_sql(sql) if raw.stmt is not None]
    for i in copies:
        node = parsed[i] if i < len(parsed) else None
        # a tree that does not line up: assume the worst, a server file
        filename = node.filename if isinstance(node, pglast.ast.CopyStmt) else ""
        if filename is not None:
            stmts[i]["CopyStmt"]["filename"] = filename


def _parse_message(exc: Exception) -> str:
    if exc.args and isinstance(exc.args[0], str):
        return exc.args[0]
    return f"{type(exc).__name__} while parsing"


class _Walk:
    """The state of one classification: classes and reasons found so far."""

    __slots__ = (
        "cacheable",
        "classes",
        "fn_classes",
        "fn_reasons",
        "prepared",
        "prepares",
        "reasons",
        "rules",
        "stack",
    )

    def __init__(self, rules: Classifier, prepared: Mapping[str, frozenset[str]]) -> None:
        self.rules = rules
        self.prepared = prepared
        self.classes: set[str] = set()
        #: classes that came from function calls (what a plain EXPLAIN keeps of its statement)
        self.fn_classes: set[str] = set()
        self.fn_reasons: dict[str, None] = {}
        self.reasons: dict[str, None] = {}
        self.cacheable = True
        self.prepares: list[tuple[str, frozenset[str]]] = []
        #: nodes still to classify: (kind, body, is it a statement of its own)
        self.stack: list[_Item] = []

    def result(self) -> Classification:
        return Classification(
            frozenset(self.classes), self.cacheable, tuple(self.reasons), tuple(self.prepares)
        )

    def add(self, cls: str, reason: str | None = None, *, function: bool = False) -> None:
        self.classes.add(cls)
        if reason is not None:
            self.reasons[reason] = None
        if function:
            self.fn_classes.add(cls)
            if reason is not None:
                self.fn_reasons[reason] = None

    def unknown(self, reason: str) -> None:
        self.add("unknown", reason)

    def sub(self) -> _Walk:
        return _Walk(self.rules, self.prepared)

    # -- the walk

    def run(self) -> None:
        """Classify every node pushed so far, and what lies beneath them.

        Iterative, so a deeply nested statement never meets Python's recursion limit.
        """
        stack = self.stack
        while stack:
            kind, body, top = stack.pop()
            handler = _HANDLERS.get(kind)
            if handler is not None:
                handler(self, body, top)
                continue
            if kind.endswith("Stmt"):
                self.unknown(f"unsupported statement ({kind})")
            elif top:
                self.unknown(f"unexpected top-level node ({kind})")
            self.fields(kind, body)

    def fields(self, kind: str, body: _Body, skip: tuple[str, ...] = ()) -> None:
        """Queue the nodes in every field of a node (in field order)."""
        found: list[_Item] = []
        typed = _TYPED_FIELDS.get(kind)
        for name, value in body.items():
            if not isinstance(value, dict | list) or name in skip:
                continue
            if typed is not None and name in typed and isinstance(value, dict):
                found.append((typed[name], value, False))
            else:
                _collect(value, found)
        self.stack.extend(reversed(found))

    def statement(self, value: Any, top: bool = True) -> None:
        """Queue a wrapped statement held in a field (EXPLAIN's, COPY's, DECLARE's, ...)."""
        if isinstance(value, dict) and len(value) == 1:
            ((kind, body),) = value.items()
            if isinstance(body, dict):
                self.stack.append((kind, body, top))
                return
        self.unknown("unexpected statement shape")

    def merge(self, other: _Walk, *, only_functions: bool = False) -> None:
        self.classes |= other.fn_classes if only_functions else other.classes
        self.fn_classes |= other.fn_classes
        self.reasons.update(other.fn_reasons if only_functions else other.reasons)
        self.fn_reasons.update(other.fn_reasons)
        self.cacheable = self.cacheable and other.cacheable

    # -- function calls

    def call(self, name: str, args: list[Any], how: str = "") -> None:
        if name in self.rules.admin_functions:
            self.add("admin", f"calls {name}(){how}", function=True)
        if name in self.rules.write_functions:
            self.add("write", f"calls {name}(){how}", function=True)
        if name == "set_config":
            self.set_config(args)

    def set_config(self, args: list[Any]) -> None:
        # the setting name and value are literals, erased from the cache key: never cache
        self.cacheable = False
        setting = _string_const(args[0]) if args else None
        if setting is None:
            self.add("admin", "set_config() of a computed setting name", function=True)
        elif is_protected_setting(setting):
            self.add("admin", f"set_config() of protected setting {setting}", function=True)
        elif setting.lower() == "client_encoding":
            value = _string_const(args[1]) if len(args) > 1 else None
            if value is None or not is_safe_client_encoding(value):
                self.add("admin", "set_config() of an unsafe client_encoding", function=True)
            else:
                self.add("session", "set_config()", function=True)
        else:
            self.add("session", "set_config()", function=True)

    # -- settings

    def setting(self, body: _Body, top: bool) -> None:
        """A VariableSetStmt: SET/RESET, also inside ALTER ROLE/DATABASE/SYSTEM and function SET clauses."""
        kind = body.get("kind", "")
        name = str(body.get("name", ""))
        verb = "RESET" if kind.startswith("VAR_RESET") else "SET"
        if kind == "VAR_RESET_ALL":
            pass
        elif kind == "VAR_SET_MULTI":
            if name in ("TRANSACTION", "SESSION CHARACTERISTICS"):
                if _read_write(body.get("args", ())):
                    self.add("admin", f"SET {name} ... READ WRITE")
            elif name != "TRANSACTION SNAPSHOT":
                self.unknown(f"unsupported SET form ({name})")
        elif is_protected_setting(name):
            self.add("admin", f"{verb} {_setting_label(name)}")
        elif name.lower() == "client_encoding":
            # the value is a literal: never cache
            self.cacheable = False
            if kind == "VAR_SET_VALUE":
                args = body.get("args", ())
                value = _string_const(args[0]) if len(args) == 1 else None
                if value is None or not is_safe_client_encoding(value):
                    self.add("admin", "SET client_encoding to an encoding that is not ASCII-safe")
        if top:
            label = name if kind == "VAR_SET_MULTI" else _setting_label(name) or "ALL"
            self.add("session", f"{verb} {label}")
        self.fields("VariableSetStmt", body)


# -- helpers over JSON nodes


def _collect(value: Any, found: list[_Item]) -> None:
    """Append the nodes in a field value: a wrapped node ``{"Kind": {...}}``, a list, or a plain struct."""
    if isinstance(value, list):
        for item in value:
            if isinstance(item, dict | list):
                _collect(item, found)
    elif isinstance(value, dict):
        if len(value) == 1:
            ((key, inner),) = value.items()
            if key[:1].isupper() and isinstance(inner, dict):
                found.append((key, inner, False))
                return
        for item in value.values():
            if isinstance(item, dict | list):
                _collect(item, found)


def _string_const(value: Any) -> str | None:
    """The text of a plain string literal node, else None."""
    if isinstance(value, dict):
        const = value.get("A_Const")
        if isinstance(const, dict) and isinstance(const.get("sval"), dict):
            text = const["sval"].get("sval", "")
            return text if isinstance(text, str) else None
    return None


def _last_name(names: Any) -> str:
    """The last component of a qualified name, lowercased (``pg_catalog.PG_READ_FILE`` -> pg_read_file)."""
    if isinstance(names, list) and names:
        last = names[-1]
        if isinstance(last, dict) and isinstance(last.get("String"), dict):
            return str(last["String"].get("sval", "")).lower()
    return ""


def _read_write(options: Any) -> bool:
    """Whether transaction options ask for READ WRITE (anything but an explicit READ ONLY counts)."""
    for item in options or ():
        elem = item.get("DefElem") if isinstance(item, dict) else None
        if isinstance(elem, dict) and elem.get("defname") == "transaction_read_only":
            arg = elem.get("arg")
            const = arg.get("A_Const") if isinstance(arg, dict) else None
            ival = const.get("ival") if isinstance(const, dict) else None
            if not (isinstance(ival, dict) and ival.get("ival") == 1):
                return True
    return False


def _setting_label(name: str) -> str:
    low = name.lower()
    return {"role": "ROLE", "session_authorization": "SESSION AUTHORIZATION"}.get(low, low)


def _has_option(options: Any, name: str) -> bool:
    for item in options or ():
        elem = item.get("DefElem") if isinstance(item, dict) else None
        if isinstance(elem, dict) and str(elem.get("defname", "")).lower() == name:
            return True
    return False


_OBJECT_WORDS = {
    "MATVIEW": "MATERIALIZED VIEW",
    "FDW": "FOREIGN DATA WRAPPER",
    "TSCONFIGURATION": "TEXT SEARCH CONFIGURATION",
    "TSDICTIONARY": "TEXT SEARCH DICTIONARY",
    "TSPARSER": "TEXT SEARCH PARSER",
    "TSTEMPLATE": "TEXT SEARCH TEMPLATE",
    "OPCLASS": "OPERATOR CLASS",
    "OPFAMILY": "OPERATOR FAMILY",
    "TABCONSTRAINT": "CONSTRAINT",
    "DOMCONSTRAINT": "CONSTRAINT",
}


def _object(objtype: Any) -> str:
    """``OBJECT_FOREIGN_TABLE`` -> ``FOREIGN TABLE``."""
    word = str(objtype or "").removeprefix("OBJECT_")
    return _OBJECT_WORDS.get(word, word.replace("_", " ")) or "object"


_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")
_STMT_WORDS = {
    "CreateStmt": "CREATE TABLE",
    "IndexStmt": "CREATE INDEX",
    "ViewStmt": "CREATE VIEW",
    "RuleStmt": "CREATE RULE",
    "CreatedbStmt": "CREATE DATABASE",
    "DropdbStmt": "DROP DATABASE",
    "CreateSeqStmt": "CREATE SEQUENCE",
    "AlterSeqStmt": "ALTER SEQUENCE",
    "CreatePLangStmt": "CREATE LANGUAGE",
    "CreateTrigStmt": "CREATE TRIGGER",
    "CreateEventTrigStmt": "CREATE EVENT TRIGGER",
    "AlterEventTrigStmt": "ALTER EVENT TRIGGER",
    "CompositeTypeStmt": "CREATE TYPE",
    "CreateEnumStmt": "CREATE TYPE",
    "CreateRangeStmt": "CREATE TYPE",
    "AlterEnumStmt": "ALTER TYPE",
    "CreateFdwStmt": "CREATE FOREIGN DATA WRAPPER",
    "AlterFdwStmt": "ALTER FOREIGN DATA WRAPPER",
    "CreateForeignServerStmt": "CREATE SERVER",
    "AlterForeignServerStmt": "ALTER SERVER",
    "CreateAmStmt": "CREATE ACCESS METHOD",
    "CreateStatsStmt": "CREATE STATISTICS",
    "AlterStatsStmt": "ALTER STATISTICS",
    "CreateOpClassStmt": "CREATE OPERATOR CLASS",
    "CreateOpFamilyStmt": "CREATE OPERATOR FAMILY",
    "AlterOpFamilyStmt": "ALTER OPERATOR FAMILY",
    "AlterTSDictionaryStmt": "ALTER TEXT SEARCH DICTIONARY",
    "AlterTSConfigurationStmt": "ALTER TEXT SEARCH CONFIGURATION",
    "CreateTableSpaceStmt": "CREATE TABLESPACE",
    "DropTableSpaceStmt": "DROP TABLESPACE",
    "AlterTableSpaceOptionsStmt": "ALTER TABLESPACE",
    "AlterTableMoveAllStmt": "ALTER ... SET TABLESPACE",
    "AlterObjectSchemaStmt": "ALTER ... SET SCHEMA",
    "AlterObjectDependsStmt": "ALTER ... DEPENDS ON EXTENSION",
    "AlterOwnerStmt": "ALTER ... OWNER TO",
    "AlterExtensionContentsStmt": "ALTER EXTENSION ADD/DROP",
    "AlterDatabaseRefreshCollStmt": "ALTER DATABASE ... REFRESH COLLATION VERSION",
    "AlterDatabaseSetStmt": "ALTER DATABASE ... SET",
    "AlterRoleSetStmt": "ALTER ROLE ... SET",
    "ReplicaIdentityStmt": "ALTER TABLE ... REPLICA IDENTITY",
    "ImportForeignSchemaStmt": "IMPORT FOREIGN SCHEMA",
    "DefineStmt": "CREATE",
    "DoStmt": "DO block",
    "CommentStmt": "COMMENT ON",
    "SecLabelStmt": "SECURITY LABEL",
    "CheckPointStmt": "CHECKPOINT",
    "LoadStmt": "LOAD",
    "AlterSystemStmt": "ALTER SYSTEM",
    "ReassignOwnedStmt": "REASSIGN OWNED",
    "DropOwnedStmt": "DROP OWNED",
    "AlterDefaultPrivilegesStmt": "ALTER DEFAULT PRIVILEGES",
    "RefreshMatViewStmt": "REFRESH MATERIALIZED VIEW",
}


def _words(kind: str, body: _Body) -> str:
    """A statement's human name: ``AlterDomainStmt`` -> ``ALTER DOMAIN``, ``DropStmt`` -> ``DROP TABLE``."""
    if kind == "DropStmt":
        return f"DROP {_object(body.get('removeType'))}"
    if kind == "AlterTableStmt":
        return f"ALTER {_object(body.get('objtype'))}"
    if kind == "RenameStmt":
        return f"ALTER {_object(body.get('renameType'))} ... RENAME"
    if kind == "CreateFunctionStmt":
        return "CREATE PROCEDURE" if body.get("is_procedure") else "CREATE FUNCTION"
    if kind == "DefineStmt":
        return f"CREATE {_object(body.get('kind'))}"
    if kind in _STMT_WORDS:
        return _STMT_WORDS[kind]
    return _CAMEL.sub(" ", kind.removesuffix("Stmt")).upper()


# -- handlers: (walk, node body, is it a statement of its own)

_Handler = Callable[[_Walk, _Body, bool], None]


def _fixed(kind: str, *classes: str) -> _Handler:
    """A statement whose classes do not depend on its contents (its parts are still walked)."""

    def handle(walk: _Walk, body: _Body, top: bool) -> None:
        reason = _words(kind, body)
        for cls in classes:
            walk.add(cls, reason)
        walk.fields(kind, body)

    return handle


def _role_or_ddl(kind: str, field: str) -> _Handler:
    """COMMENT ON / SECURITY LABEL / RENAME: ``dcl`` on a role, ``ddl`` on anything else."""

    def handle(walk: _Walk, body: _Body, top: bool) -> None:
        walk.add("dcl" if body.get(field) == "OBJECT_ROLE" else "ddl", _words(kind, body))
        walk.fields(kind, body)

    return handle


def _select(walk: _Walk, body: _Body, top: bool) -> None:
    if "intoClause" in body:
        walk.add("ddl", "SELECT INTO")
    elif top:
        walk.add("read")
    if body.get("lockingClause"):
        walk.add("write", "SELECT ... FOR UPDATE/SHARE (row locks)")
    walk.fields("SelectStmt", body)


def _dml(verb: str, where_matters: bool) -> _Handler:
    kind = f"{verb.capitalize()}Stmt"

    def handle(walk: _Walk, body: _Body, top: bool) -> None:
        _system_target(walk, body.get("relation"), verb)
        if where_matters and "whereClause" not in body:
            walk.add("write", f"{verb} without WHERE")
            walk.add("write-without-where", f"{verb} without WHERE")
        else:
            walk.add("write", verb)
        walk.fields(kind, body)

    return handle


def _system_target(walk: _Walk, relation: Any, verb: str) -> None:
    """A write into a system catalog (``pg_catalog.*``, any ``pg_*`` name) is admin: updating
    ``pg_settings`` runs set_config(), and a privileged upstream role could edit ``pg_authid``."""
    if not isinstance(relation, dict):
        return
    name = str(relation.get("relname", "")).lower()
    schema = str(relation.get("schemaname", "")).lower()
    if name == "pg_settings":
        walk.add("admin", f"{verb} of pg_settings changes server settings")
    elif schema in ("pg_catalog", "information_schema") or name.startswith("pg_") or name in _INFO_TABLES:
        walk.add("admin", f"{verb} of system catalog {name}")


def _relation(walk: _Walk, body: _Body, top: bool) -> None:
    """A table reference: the views over the server's own configuration files are admin."""
    name = str(body.get("relname", "")).lower()
    if name in _CONFIG_FILE_VIEWS:
        walk.add("admin", f"reads {name} (server configuration files)", function=True)
    walk.fields("RangeVar", body)


#: The tables of information_schema (reachable unqualified through search_path).
_INFO_TABLES = frozenset({"sql_features", "sql_implementation_info", "sql_parts", "sql_sizing"})

#: Views that read the server's configuration files (like the pg_read_file family).
_CONFIG_FILE_VIEWS = frozenset({"pg_hba_file_rules", "pg_ident_file_mappings", "pg_file_settings"})


def _truncate(walk: _Walk, body: _Body, top: bool) -> None:
    for relation in body.get("relations", ()):
        if isinstance(relation, dict):
            _system_target(walk, relation.get("RangeVar", relation), "TRUNCATE")
    walk.add("write", "TRUNCATE")
    walk.add("write-without-where", "TRUNCATE")
    walk.fields("TruncateStmt", body)


def _copy(walk: _Walk, body: _Body, top: bool) -> None:
    if body.get("is_program"):
        walk.add("admin", "COPY ... PROGRAM (runs a server command)")
    elif "filename" in body:
        walk.add("admin", "COPY with a server file")
    if body.get("is_from"):
        _system_target(walk, body.get("relation"), "COPY FROM")
        walk.add("write", "COPY FROM")
    elif "query" in body:
        walk.statement(body["query"])
    else:
        walk.add("read")
    walk.fields("CopyStmt", body, skip=("query",))


def _explain(walk: _Walk, body: _Body, top: bool) -> None:
    # ANALYZE runs the statement; its value is not looked at (ANALYZE false counts, conservatively)
    if _has_option(body.get("options"), "analyze"):
        walk.statement(body.get("query"))
    else:
        walk.add("read")
        # a plain EXPLAIN only plans, but the planner may evaluate function calls: keep their classes
        inner = walk.sub()
        inner.statement(body.get("query"))
        inner.run()
        walk.merge(inner, only_functions=True)
    walk.fields("ExplainStmt", body, skip=("query",))


def _declare(walk: _Walk, body: _Body, top: bool) -> None:
    walk.statement(body.get("query"))
    walk.fields("DeclareCursorStmt", body, skip=("query",))


def _fetch(walk: _Walk, body: _Body, top: bool) -> None:
    walk.add("read")


def _prepare(walk: _Walk, body: _Body, top: bool) -> None:
    walk.add("session", "PREPARE")
    inner = walk.sub()
    inner.statement(body.get("query"))
    inner.run()
    walk.prepares.append((str(body.get("name", "")), frozenset(inner.classes)))
    walk.merge(inner)
    walk.fields("PrepareStmt", body, skip=("query",))


def _execute(walk: _Walk, body: _Body, top: bool) -> None:
    name = str(body.get("name", ""))
    walk.cacheable = False
    classes = walk.prepared.get(name)
    if classes is None:
        walk.unknown(f'EXECUTE of unknown prepared statement "{name}"')
    else:
        for cls in sorted(classes):
            walk.add(cls, None if cls == "read" else f"EXECUTE {name} ({cls})")
    walk.fields("ExecuteStmt", body)


def _create_table_as(walk: _Walk, body: _Body, top: bool) -> None:
    is_view = body.get("objtype") == "OBJECT_MATVIEW"
    walk.add("ddl", "CREATE MATERIALIZED VIEW" if is_view else "CREATE TABLE AS")
    walk.fields("CreateTableAsStmt", body)


def _transaction(walk: _Walk, body: _Body, top: bool) -> None:
    kind = str(body.get("kind", ""))
    if kind in ("TRANS_STMT_PREPARE", "TRANS_STMT_COMMIT_PREPARED", "TRANS_STMT_ROLLBACK_PREPARED"):
        walk.add("admin", kind.removeprefix("TRANS_STMT_").replace("_", " ") + " (two-phase commit)")
    elif kind in ("TRANS_STMT_BEGIN", "TRANS_STMT_START") and _read_write(body.get("options")):
        walk.add("admin", "BEGIN ... READ WRITE")
    elif kind.startswith("TRANS_STMT_"):
        walk.add("session", kind.removeprefix("TRANS_STMT_").replace("_", " "))
    else:
        walk.unknown(f"unsupported transaction statement ({kind})")
    walk.fields("TransactionStmt", body)


def _variable_set(walk: _Walk, body: _Body, top: bool) -> None:
    walk.setting(body, top)


def _vacuum(walk: _Walk, body: _Body, top: bool) -> None:
    walk.add("admin", "VACUUM" if body.get("is_vacuumcmd") else "ANALYZE")
    walk.fields("VacuumStmt", body)


def _subscription(kind: str) -> _Handler:
    def handle(walk: _Walk, body: _Body, top: bool) -> None:
        reason = _words(kind, body)
        walk.add("ddl", reason)
        walk.add("admin", f"{reason} (connects to another server)")
        walk.fields(kind, body)

    return handle


def _grant(kind: str) -> _Handler:
    def handle(walk: _Walk, body: _Body, top: bool) -> None:
        walk.add("dcl", "GRANT" if body.get("is_grant") else "REVOKE")
        walk.fields(kind, body)

    return handle


def _nested_only(kind: str) -> _Handler:
    """Nodes that are statements only inside others (RETURN of a SQL-standard function body)."""

    def handle(walk: _Walk, body: _Body, top: bool) -> None:
        if top:
            walk.unknown(f"unsupported statement ({kind})")
        walk.fields(kind, body)

    return handle


def _func_call(walk: _Walk, body: _Body, top: bool) -> None:
    args = body.get("args") or []
    walk.call(_last_name(body.get("funcname")), args if isinstance(args, list) else [])
    walk.fields("FuncCall", body)


def _column_ref(walk: _Walk, body: _Body, top: bool) -> None:
    # attribute notation: t.f is the call f(t) when t is a row; conservative, any known name counts
    fields = body.get("fields")
    if isinstance(fields, list) and len(fields) > 1:
        name = _last_name(fields)
        if name:
            walk.call(name, [fields[0]], how=" (attribute notation)")


def _indirection(walk: _Walk, body: _Body, top: bool) -> None:
    for item in body.get("indirection") or ():
        name = _last_name([item])
        if name:
            walk.call(name, [body.get("arg")], how=" (attribute notation)")
    walk.fields("A_Indirection", body)


def _leaf(walk: _Walk, body: _Body, top: bool) -> None:
    """Nodes with nothing beneath them worth walking (fast path)."""


_DDL = [
    "AlterCollationStmt",
    "AlterDatabaseRefreshCollStmt",
    "AlterDatabaseSetStmt",
    "AlterDatabaseStmt",
    "AlterDomainStmt",
    "AlterEnumStmt",
    "AlterEventTrigStmt",
    "AlterExtensionContentsStmt",
    "AlterExtensionStmt",
    "AlterFdwStmt",
    "AlterForeignServerStmt",
    "AlterFunctionStmt",
    "AlterObjectDependsStmt",
    "AlterObjectSchemaStmt",
    "AlterOpFamilyStmt",
    "AlterOperatorStmt",
    "AlterOwnerStmt",
    "AlterPolicyStmt",
    "AlterPublicationStmt",
    "AlterSeqStmt",
    "AlterStatsStmt",
    "AlterTSConfigurationStmt",
    "AlterTSDictionaryStmt",
    "AlterTableMoveAllStmt",
    "AlterTableSpaceOptionsStmt",
    "AlterTableStmt",
    "AlterTypeStmt",
    "AlterUserMappingStmt",
    "CompositeTypeStmt",
    "CreateAmStmt",
    "CreateCastStmt",
    "CreateConversionStmt",
    "CreateDomainStmt",
    "CreateEnumStmt",
    "CreateEventTrigStmt",
    "CreateExtensionStmt",
    "CreateFdwStmt",
    "CreateForeignServerStmt",
    "CreateForeignTableStmt",
    "CreateFunctionStmt",
    "CreateOpClassStmt",
    "CreateOpFamilyStmt",
    "CreatePLangStmt",
    "CreatePolicyStmt",
    "CreatePublicationStmt",
    "CreateRangeStmt",
    "CreateSchemaStmt",
    "CreateSeqStmt",
    "CreateStatsStmt",
    "CreateStmt",
    "CreateTableSpaceStmt",
    "CreateTransformStmt",
    "CreateTrigStmt",
    "CreateUserMappingStmt",
    "CreatedbStmt",
    "DefineStmt",
    "DropStmt",
    "DropTableSpaceStmt",
    "DropUserMappingStmt",
    "DropdbStmt",
    "ImportForeignSchemaStmt",
    "IndexStmt",
    "ReplicaIdentityStmt",
    "RuleStmt",
    "ViewStmt",
    "DoStmt",
]
_DCL = ["CreateRoleStmt", "AlterRoleStmt", "DropRoleStmt", "AlterRoleSetStmt", "AlterDefaultPrivilegesStmt"]
_DCL += ["ReassignOwnedStmt", "DropOwnedStmt"]
_ADMIN = ["ClusterStmt", "ReindexStmt", "CheckPointStmt", "LoadStmt", "AlterSystemStmt"]
_SESSION = {
    "VariableShowStmt": "SHOW",
    "DiscardStmt": "DISCARD",
    "ListenStmt": "LISTEN",
    "UnlistenStmt": "UNLISTEN",
    "DeallocateStmt": "DEALLOCATE",
    "ClosePortalStmt": "CLOSE",
    "ConstraintsSetStmt": "SET CONSTRAINTS",
}


def _session(reason: str, kind: str) -> _Handler:
    def handle(walk: _Walk, body: _Body, top: bool) -> None:
        walk.add("session", reason)
        walk.fields(kind, body)

    return handle


def _write(reason: str, kind: str) -> _Handler:
    def handle(walk: _Walk, body: _Body, top: bool) -> None:
        walk.add("write", reason)
        walk.fields(kind, body)

    return handle


_HANDLERS: dict[str, _Handler] = {
    **{kind: _fixed(kind, "ddl") for kind in _DDL},
    **{kind: _fixed(kind, "dcl") for kind in _DCL},
    **{kind: _fixed(kind, "admin") for kind in _ADMIN},
    **{kind: _session(reason, kind) for kind, reason in _SESSION.items()},
    **{kind: _subscription(kind) for kind in ("CreateSubscriptionStmt", "AlterSubscriptionStmt")},
    "DropSubscriptionStmt": _subscription("DropSubscriptionStmt"),
    "GrantStmt": _grant("GrantStmt"),
    "GrantRoleStmt": _grant("GrantRoleStmt"),
    "CommentStmt": _role_or_ddl("CommentStmt", "objtype"),
    "SecLabelStmt": _role_or_ddl("SecLabelStmt", "objtype"),
    "RenameStmt": _role_or_ddl("RenameStmt", "renameType"),
    "SelectStmt": _select,
    "InsertStmt": _dml("INSERT", where_matters=False),
    "UpdateStmt": _dml("UPDATE", where_matters=True),
    "DeleteStmt": _dml("DELETE", where_matters=True),
    "MergeStmt": _dml("MERGE", where_matters=False),
    "TruncateStmt": _truncate,
    "RangeVar": _relation,
    "LockStmt": _write("LOCK", "LockStmt"),
    "CallStmt": _write("CALL", "CallStmt"),
    "NotifyStmt": _write("NOTIFY", "NotifyStmt"),
    "RefreshMatViewStmt": _write("REFRESH MATERIALIZED VIEW", "RefreshMatViewStmt"),
    "CopyStmt": _copy,
    "ExplainStmt": _explain,
    "DeclareCursorStmt": _declare,
    "FetchStmt": _fetch,
    "PrepareStmt": _prepare,
    "ExecuteStmt": _execute,
    "CreateTableAsStmt": _create_table_as,
    "TransactionStmt": _transaction,
    "VariableSetStmt": _variable_set,
    "VacuumStmt": _vacuum,
    "ReturnStmt": _nested_only("ReturnStmt"),
    "FuncCall": _func_call,
    "ColumnRef": _column_ref,
    "A_Indirection": _indirection,
    "A_Const": _leaf,
    "String": _leaf,
    "ParamRef": _leaf,
    "A_Star": _leaf,
    "RoleSpec": _leaf,
}

#: Fields whose node type is fixed, so libpg_query's JSON leaves out the ``{"Kind": ...}`` wrapper.
_TYPED_FIELDS: dict[str, dict[str, str]] = {
    "SelectStmt": {"larg": "SelectStmt", "rarg": "SelectStmt"},
    "CallStmt": {"funccall": "FuncCall"},
    "AlterRoleSetStmt": {"setstmt": "VariableSetStmt"},
    "AlterDatabaseSetStmt": {"setstmt": "VariableSetStmt"},
    "AlterSystemStmt": {"setstmt": "VariableSetStmt"},
    "AlterDefaultPrivilegesStmt": {"action": "GrantStmt"},
}
