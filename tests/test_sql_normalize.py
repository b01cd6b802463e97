"""_core.normalize_sql against PostgreSQL's own lexer (pglast.parser.scan).

Whenever the normalizer returns a key, it must be exactly what PostgreSQL's tokens make of the
statement: non-literal tokens verbatim, literals erased, comments and whitespace runs as one space.
"""

from __future__ import annotations

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from pglast.parser import ParseError, scan

from hoopgw import _core

STRING, NUMBER = b"\x00", b"\x01"
STRING_TOKENS = {"SCONST", "USCONST", "BCONST", "XCONST"}
NUMBER_TOKENS = {"ICONST", "FCONST"}
COMMENTS = {"C_COMMENT", "SQL_COMMENT"}


def expected_key(sql: str) -> bytes | None:
    """The key built from PostgreSQL's tokens; None when PostgreSQL rejects the text."""
    try:
        tokens = scan(sql)
    except ParseError:
        return None
    out = bytearray()
    prev_end: int | None = None
    for t in tokens:
        if t.name in COMMENTS:
            continue
        if prev_end is not None and t.start > prev_end + 1:
            out += b" "
        if t.name in STRING_TOKENS:
            out += STRING
        elif t.name in NUMBER_TOKENS:
            out += NUMBER
        else:
            out += sql[t.start : t.end + 1].encode()
        prev_end = t.end
    return bytes(out)


def agrees(sql: str) -> bytes | None:
    """normalize_sql(sql), checked against PostgreSQL's lexer when it returns a key."""
    key = _core.normalize_sql(sql.encode())
    if key is not None:
        expected = expected_key(sql)
        if expected is not None:
            assert key == expected, sql
    return key


# -- strategies: pieces of SQL, well-formed and not -------------------------------------------------

words = st.one_of(
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,5}", fullmatch=True),
    st.sampled_from(["select", "from", "where", "E", "e", "U", "u", "B", "X", "N", "n", "a$b", "é", "date"]),
)
numbers = st.one_of(
    st.from_regex(r"[0-9]{1,4}(\.[0-9]{0,3})?([eE][+-]?[0-9]{1,2})?", fullmatch=True),
    st.from_regex(r"\.[0-9]{1,3}", fullmatch=True),
    st.sampled_from(["123abc", "0x1F", "0b101", "1_000", "1..2", "1e", "1e+", "1.e5", "1.5.", "007"]),
)
string_chars = st.sampled_from(
    ["a", "Z", " ", "'", "''", "\\", "\n", "--", "/*", "*/", "$", "$$", '"', "é", ";"]
)
strings = st.lists(string_chars, max_size=6).map(lambda cs: "'" + "".join(cs) + "'")
tags = st.sampled_from(["", "a", "fn", "_x1", "A"])


@st.composite
def dollar_quotes(draw: st.DrawFn) -> str:
    tag = draw(tags)
    body = "".join(
        draw(st.lists(st.sampled_from(["x", " ", "'", "$", f"${tag}", "$$", "\\", "\n", "$b$"]), max_size=5))
    )
    return f"${tag}${body}${tag}$"


quoted_idents = st.lists(st.sampled_from(["a", "B", '""', " ", "'", "$", "--"]), max_size=4).map(
    lambda cs: '"' + "".join(cs) + '"'
)
params = st.from_regex(r"\$[0-9]{1,2}", fullmatch=True)
operators = st.sampled_from(
    [
        "+",
        "-",
        "*",
        "/",
        "<",
        ">",
        "=",
        "::",
        "||",
        "->>",
        "<@",
        "!=",
        "%",
        "^",
        "~",
        "@",
        "#",
        "&",
        "|",
        "?",
        "(",
        ")",
        ",",
        ";",
        ".",
        "[",
        "]",
        ":",
        "`",
        "*/",
        "-/",
        "+-",
        "<>",
        "..",
    ]
)
comments = st.one_of(
    st.from_regex(r"--[a-z '*/-]{0,5}\n", fullmatch=True),
    st.lists(st.sampled_from(["x", " ", "/*", "*/", "*", "/", "'", "--"]), max_size=5).map(
        lambda cs: "/*" + "".join(cs) + "*/"
    ),
)
raw = st.sampled_from(["'", '"', "$", "\\", "/*", "--", "&", "{", "\x0b", "\x01", "U&", "E'", "é"])
spaces = st.sampled_from(["", " ", "\n", "\t", "\r\n", "\x0c", "  "])
pieces = st.one_of(words, numbers, strings, dollar_quotes(), quoted_idents, params, operators, comments, raw)


@st.composite
def statements(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.tuples(pieces, spaces), min_size=1, max_size=14))
    return "".join(p + s for p, s in parts)


@settings(max_examples=1500)
@given(statements())
@example("SELECT abalance FROM pgbench_accounts WHERE aid = 4821;")
@example("select 1 /* a /* b */ c */ + 2 -- x")
@example("select 'a'\n'b'")
def test_keys_agree_with_the_postgresql_lexer(sql: str) -> None:
    agrees(sql)


# -- same shape, other literals: same key ------------------------------------------------------------

literal_values = st.one_of(
    strings.map(lambda s: ("S", s)),
    dollar_quotes().map(lambda s: ("S", s)),
    numbers.map(lambda n: ("N", n)),
)


@st.composite
def templates(draw: st.DrawFn) -> list[str]:
    """Statement pieces where "\\x00S" / "\\x00N" are literal slots."""
    plain = st.one_of(words, operators, params, quoted_idents)
    slots = st.sampled_from(["\x00S", "\x00N"])
    sep = st.sampled_from([" ", "\n", "  "])
    parts = draw(st.lists(st.tuples(st.one_of(plain, slots), sep), max_size=10))
    return [p + s for p, s in parts]


def single_literal(text: str, kinds: set[str]) -> bool:
    """True when PostgreSQL's lexer reads ``text`` as one literal token of ``kinds`` and nothing else."""
    try:
        tokens = scan(text)
    except ParseError:
        return False
    return len(tokens) == 1 and tokens[0].name in kinds and tokens[0].end + 1 == len(text.encode())


def fill(template: list[str], data: st.DataObject) -> str:
    out = []
    for part in template:
        if part.startswith("\x00"):
            kind = part[1]
            lit = data.draw(strings | dollar_quotes()) if kind == "S" else data.draw(numbers)
            # the slot must hold exactly one literal (three quotes in a row are an unterminated string)
            assume(single_literal(lit, STRING_TOKENS if kind == "S" else NUMBER_TOKENS))
            out.append(lit + part[2:])
        else:
            out.append(part)
    return "".join(out)


@settings(max_examples=500)
@given(templates(), st.data())
def test_literal_contents_do_not_change_the_key(template: list[str], data: st.DataObject) -> None:
    a = fill(template, data)
    b = fill(template, data)
    ka, kb = agrees(a), agrees(b)
    assume(ka is not None and kb is not None)
    assert ka == kb, (a, b)


# -- adversarial examples ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "select 'a\\' ; DROP TABLE t; --'",
        "select E'\\''",
        "select e'\\'' ; drop table t; --'",
        "select $a$ ' $b$ ' $a$, 1",
        "select $a$x$ab$a$; drop table t",
        "select a$b$ from t where x = $b$ ; drop table t; $b$",
        "select /* /* nested */ still a comment */ 1",
        "select /* /* nested */ */ 1 */ 2",
        "select 1 *--comment\n 2",
        "select 1 <-->- 2",
        "select 1 +/* c */- 2",
        "select 'a'\n'b'",
        "select 'a' -- c\n 'b', 1",
        "select 'a' 'b'",
        "select U&'\\0441' UESCAPE '!'",
        'select u&"x"',
        "select X'1F', B'101', N'x'",
        "select 123abc",
        "select 0x1F, 1_000",
        "select 1..2",
        "select $1, $12a",
        "select '--', '/*', \"a\"\"b\"",
        "select é, 'é'",
        "select\x0b1",
        "select $$",
        "select 'unterminated",
        "select /* unterminated",
    ],
)
def test_adversarial_examples_are_exact_or_refused(sql: str) -> None:
    agrees(sql)


def test_known_keys() -> None:
    assert _core.normalize_sql(b"SELECT abalance FROM pgbench_accounts WHERE aid = 4821;") == (
        b"SELECT abalance FROM pgbench_accounts WHERE aid = \x01;"
    )
    assert _core.normalize_sql(b"select 'x', $$y$$ -- c") == b"select \x00, \x00"
    for refused in [b"select 'a\\' ; DROP TABLE t; --'", b"select E'\\''", b"select a$b$", b"x\0"]:
        assert _core.normalize_sql(refused) is None
    assert _core.normalize_sql(b"select '" + b"x" * 70000 + b"'") is None
