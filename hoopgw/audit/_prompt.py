"""Prompt tags: which AI prompt a statement says it comes from (DESIGN.md "Prompt provenance").

A client tags its work with a prompt id in ``application_name`` (``hoop:prompt=<id>``, alone or among
other words) or per statement in a leading SQL comment (``/* hoop:prompt=<id> */``, before any other
text; the statement's own tag wins over the session's). A tag is a claim, not a proof: it is
recorded as given (ids are 1-64 characters of letters, digits, ``_`` and ``-``; anything else is no
tag), and checked against registered prompts elsewhere.
"""

from __future__ import annotations

import re

_ID = r"([A-Za-z0-9_-]{1,64})"
_COMMENT = re.compile(r"\A\s*/\*\s*hoop:prompt=" + _ID + r"\s*\*/")
_APP_NAME = re.compile(r"(?:\A|\s)hoop:prompt=" + _ID + r"(?:\s|\Z)")


def statement_prompt(sql: str) -> str | None:
    """The prompt id of a leading ``/* hoop:prompt=<id> */`` comment, or None."""
    m = _COMMENT.match(sql)
    return m.group(1) if m else None


def session_prompt(application_name: str | None) -> str | None:
    """The prompt id in an ``application_name`` such as ``"agent hoop:prompt=abc"``, or None."""
    if not application_name:
        return None
    m = _APP_NAME.search(application_name)
    return m.group(1) if m else None


def prompt_of(sql: str, application_name: str | None) -> str | None:
    """The statement's own tag, else the session's."""
    return statement_prompt(sql) or session_prompt(application_name)
