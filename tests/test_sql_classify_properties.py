"""Property tests of statement classification (hoopgw.policy._classify) against docs/POLICY.md.

- literal values never change a cacheable classification (the Rust core caches by statement shape);
- classification never raises, whatever the text;
- a string of statements gets the union of its statements' classes;
- nothing nested escapes: an independent walk over pglast's own Python AST finds the same side effects.
"""

from __future__ import annotations

import os

import pglast
import pglast.ast
from hypothesis import given, settings
from hypothesis import strategies as st
from pglast.parser import scan

from hoopgw.policy import PG_CLASSES
from hoopgw.policy._classify import (
    DEFAULT_ADMIN_FUNCTIONS,
    DEFAULT_WRITE_FUNCTIONS,
    Classification,
    Classifier,
)

from .test_sql_classify import CORPUS, PREPARED

#: SQL_CLASSIFY_EXAMPLES=5000 for a longer hunt; the default keeps the file at a few seconds.
_N = int(os.environ.get("SQL_CLASSIFY_EXAMPLES", "200"))
PROPS = settings(max_examples=_N, deadline=None)
CLASSIFIER = Classifier()

# -- literal values do not matter to cacheable classifications

_LITERALS = {"SCONST", "USCONST", "ICONST", "FCONST", "BCONST", "XCONST"}
_TEXT = st.text(alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\0"), max_size=30)


def _literal(kind: str) -> st.SearchStrategy[str]:
    """Another valid literal of the same kind as a scanner token."""
    if kind == "SCONST":
        quoted = _TEXT.map(lambda s: "'" + s.replace("'", "''") + "'")
        escaped = _TEXT.map(lambda s: "E'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'")
        dollar = _TEXT.filter(lambda s: "$q$" not in s and not s.endswith("$")).map(lambda s: f"$q${s}$q$")
        return quoted | escaped | dollar
    if kind == "USCONST":
        return _TEXT.map(lambda s: "U&'" + s.replace("\\", "").replace("'", "''") + "'")
    if kind == "ICONST":
        return st.integers(0, 2**31 - 1).map(str)
    if kind == "FCONST":
        return st.tuples(st.integers(0, 10**6), st.integers(0, 999)).map(lambda t: f"{t[0]}.{t[1]}")
    if kind == "BCONST":
        return st.text(alphabet="01", max_size=16).map(lambda s: f"B'{s}'")
    assert kind == "XCONST"
    return st.text(alphabet="0123456789abcdefABCDEF", max_size=16).map(lambda s: f"X'{s}'")


def _cacheable_rows() -> list[str]:
    rows = []
    for sql, _ in CORPUS:
        if CLASSIFIER.classify(sql, PREPARED).cacheable and any(t.name in _LITERALS for t in scan(sql)):
            rows.append(sql)
    return rows


CACHEABLE_ROWS = _cacheable_rows()


def test_many_rows_have_literals() -> None:
    assert len(CACHEABLE_ROWS) >= 60


@PROPS
@given(data=st.data(), sql=st.sampled_from(CACHEABLE_ROWS))
def test_literal_values_do_not_change_cacheable_classes(data: st.DataObject, sql: str) -> None:
    original = CLASSIFIER.classify(sql, PREPARED)
    pieces, at = [], 0
    for token in scan(sql):
        if token.name in _LITERALS:
            pieces += [sql[at : token.start], data.draw(_literal(token.name), label=token.name)]
            at = token.end + 1
    changed = "".join([*pieces, sql[at:]])
    result = CLASSIFIER.classify(changed, PREPARED)
    assert result.classes == original.classes, (changed, result)
    assert result.cacheable


# -- never raises


_SOUP = st.sampled_from(
    [
        "SELECT", "DELETE", "UPDATE", "INSERT", "INTO", "FROM", "WHERE", "SET", "WITH", "AS", "RETURNING",
        "COPY", "TO", "STDOUT", "EXPLAIN", "ANALYZE", "PREPARE", "EXECUTE", "DO", "CREATE", "TABLE", "DROP",
        "BEGIN", "READ", "WRITE", "ROLE", "VALUES", "t", "x", "p", "(", ")", ",", ";", "=", "*", "1", "'x'",
        "$$", "$a$", "'", "E'\\'", "--", "\n", "/*", "*/", "pg_read_file(", "set_config(", "nextval(",
        "'role'", "$1", "::int", "U&'\\0041'", "\\", '"', "\0", "é", "\u2028",
    ]
)  # fmt: skip


def _check(result: Classification) -> None:
    assert isinstance(result, Classification)
    assert result.classes <= frozenset(PG_CLASSES)
    assert all(isinstance(r, str) and r for r in result.reasons)


@PROPS
@given(st.text())
def test_never_raises_on_any_text(text: str) -> None:
    _check(CLASSIFIER.classify(text))


@PROPS
@given(st.lists(_SOUP, max_size=40).map(" ".join))
def test_never_raises_on_token_soup(text: str) -> None:
    result = CLASSIFIER.classify(text, PREPARED)
    _check(result)
    if not result.classes:
        assert not pglast.parse_sql(text), "only an empty query has no classes"


# -- union of statements


_UNION_ROWS = [sql for sql, expected in CORPUS if "unknown" not in expected.split()]


@PROPS
@given(st.sampled_from(_UNION_ROWS), st.sampled_from(_UNION_ROWS))
def test_statements_add_up(a: str, b: str) -> None:
    ra, rb = CLASSIFIER.classify(a, PREPARED), CLASSIFIER.classify(b, PREPARED)
    both = CLASSIFIER.classify(f"{a}\n;\n{b}", PREPARED)
    assert both.classes == ra.classes | rb.classes
    assert both.cacheable == (ra.cacheable and rb.cacheable)
    assert both.prepares == ra.prepares + rb.prepares


# -- nothing nested escapes: an independent oracle over pglast's Python AST


def _oracle(sql: str) -> set[str]:
    """Classes that must be present: admin/write functions called anywhere, DML anywhere it runs."""
    must: set[str] = set()

    def visit(node: object, runs: bool) -> None:
        if isinstance(node, tuple | list):
            for item in node:
                visit(item, runs)
            return
        if not isinstance(node, pglast.ast.Node):
            return
        if isinstance(node, pglast.ast.FuncCall):
            last = (node.funcname or ())[-1:]
            name = (last[0].sval or "").lower() if last and isinstance(last[0], pglast.ast.String) else ""
            if name in DEFAULT_ADMIN_FUNCTIONS:
                must.add("admin")
            if name in DEFAULT_WRITE_FUNCTIONS:
                must.add("write")
        if runs and isinstance(node, pglast.ast.InsertStmt | pglast.ast.UpdateStmt | pglast.ast.DeleteStmt):
            must.add("write")
        if runs and isinstance(node, pglast.ast.UpdateStmt | pglast.ast.DeleteStmt) and not node.whereClause:
            must.add("write-without-where")
        if isinstance(node, pglast.ast.ExplainStmt):
            analyze = any(opt.defname == "analyze" for opt in node.options or ())
            visit(node.query, runs and analyze)
            return
        for field in node:
            visit(getattr(node, field), runs)

    visit(pglast.parse_sql(sql), runs=True)
    return must


_FUNCS = st.sampled_from(["pg_read_file", "pg_catalog.lo_import", "nextval", "upper", "coalesce", "DBLINK"])


def _exprs() -> st.SearchStrategy[str]:
    base = st.sampled_from(["1", "x", "t.y", "'a'", "$1", "NULL"])
    return st.recursive(
        base,
        lambda inner: st.one_of(
            st.tuples(_FUNCS, inner).map(lambda t: f"{t[0]}({t[1]})"),
            st.tuples(inner, inner).map(lambda t: f"({t[0]} + {t[1]})"),
            inner.map(lambda e: f"(SELECT {e} FROM t)"),
            inner.map(lambda e: f"CASE WHEN {e} THEN 1 END"),
            inner.map(lambda e: f"ARRAY[{e}]"),
            inner.map(lambda e: f"EXISTS (SELECT 1 FROM u WHERE u.a = {e})"),
            inner.map(lambda e: f"(WITH d AS (DELETE FROM t WHERE a = {e} RETURNING a) SELECT a FROM d)"),
        ),
        max_leaves=6,
    )


def _statements() -> st.SearchStrategy[str]:
    expr = _exprs()
    simple = st.one_of(
        expr.map(lambda e: f"SELECT {e}"),
        expr.map(lambda e: f"SELECT * FROM t WHERE {e} ORDER BY {e}"),
        expr.map(lambda e: f"SELECT * FROM t, LATERAL (SELECT {e}) l"),
        expr.map(lambda e: f"INSERT INTO t SELECT {e} RETURNING {e}"),
        expr.map(lambda e: f"UPDATE t SET a = {e}"),
        expr.map(lambda e: f"UPDATE t SET a = 1 WHERE {e}"),
        expr.map(lambda e: f"DELETE FROM t WHERE a IN (SELECT {e})"),
        expr.map(lambda e: f"VALUES ({e})"),
    )
    return st.recursive(
        simple,
        lambda inner: st.one_of(
            inner.map(lambda s: f"EXPLAIN {s}"),
            inner.map(lambda s: f"EXPLAIN (ANALYZE) {s}"),
            inner.map(lambda s: f"PREPARE q AS {s}"),
            inner.map(lambda s: f"CREATE TABLE n AS {s}"),
            inner.map(lambda s: f"COPY ({s}) TO STDOUT"),
            inner.map(lambda s: f"WITH c AS ({s}) SELECT * FROM c"),
        ),
        max_leaves=3,
    )


@PROPS
@given(_statements())
def test_nothing_nested_escapes(sql: str) -> None:
    try:
        must = _oracle(sql)
    except pglast.parser.ParseError:
        # the generator can build what PostgreSQL refuses (PREPARE inside EXPLAIN, ...): unknown, then
        assert CLASSIFIER.classify(sql).classes == {"unknown"}
        return
    result = CLASSIFIER.classify(sql)
    assert must <= result.classes, (sql, result)
