"""Prompt tags in SQL comments and application_name (hoopgw.audit._prompt)."""

from __future__ import annotations

import pytest

from hoopgw.audit._prompt import prompt_of, session_prompt, statement_prompt


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("/* hoop:prompt=p_123 */ UPDATE t SET a = 1", "p_123"),
        ("  \n/*hoop:prompt=abc-DEF*/UPDATE t SET a = 1", "abc-DEF"),
        ("UPDATE t SET a = 1 /* hoop:prompt=late */", None),  # only a leading comment counts
        ("/* note */ /* hoop:prompt=second */ UPDATE t", None),
        ("/* hoop:prompt=bad id */ UPDATE t", None),
        ("/* hoop:prompt=" + "x" * 65 + " */ UPDATE t", None),
        ("/* hoop:prompt=x;DROP */ UPDATE t", None),
        ("-- hoop:prompt=dash\nUPDATE t", None),
        ("", None),
    ],
)
def test_statement_prompt(sql: str, expected: str | None) -> None:
    assert statement_prompt(sql) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("hoop:prompt=p1", "p1"),
        ("my-agent hoop:prompt=p2", "p2"),
        ("my-agent hoop:prompt=p3 v2", "p3"),
        ("xhoop:prompt=p4", None),
        ("hoop:prompt=", None),
        ("psql", None),
        (None, None),
    ],
)
def test_session_prompt(name: str | None, expected: str | None) -> None:
    assert session_prompt(name) == expected


def test_the_statement_tag_wins() -> None:
    assert prompt_of("/* hoop:prompt=mine */ SELECT 1", "hoop:prompt=session") == "mine"
    assert prompt_of("SELECT 1", "hoop:prompt=session") == "session"
    assert prompt_of("SELECT 1", None) is None
