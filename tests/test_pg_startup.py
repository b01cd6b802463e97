"""Startup-packet validation: what a client may ask of the upstream session."""

from __future__ import annotations

import pytest

from hoopgw.proxy.pg._startup import StartupRefused, parse_options, split_options, validate_startup


def test_ordinary_parameters_pass_in_order() -> None:
    req = validate_startup(
        (3, 0),
        [
            ("user", "alice"),
            ("database", "bank"),
            ("application_name", "psql"),
            ("TimeZone", "UTC"),
            ("options", "-c search_path=app -c statement_timeout=5s --DateStyle=ISO"),
        ],
    )
    assert req.user == "alice"
    assert req.database == "bank"
    assert req.settings == (
        ("application_name", "psql"),
        ("TimeZone", "UTC"),
        ("search_path", "app"),
        ("statement_timeout", "5s"),
        ("DateStyle", "ISO"),
    )
    assert req.get("timezone") == "UTC"
    assert req.unsupported_options == ()


@pytest.mark.parametrize(
    "options",
    [
        "-c role=postgres",
        "-c session_authorization=postgres",
        "--session-authorization=postgres",
        "-c default_transaction_read_only=off",
        "-crole=postgres",
        "-c log_statement=none",
        "-c search_path=x -c ROLE=admin",
    ],
)
def test_protected_settings_in_options_are_refused(options: str) -> None:
    with pytest.raises(StartupRefused) as exc:
        validate_startup((3, 0), [("user", "a"), ("options", options)])
    assert exc.value.sqlstate == "42501"
    assert "cannot be chosen" in exc.value.message


@pytest.mark.parametrize(
    "name", ["role", "session_authorization", "transaction_read_only", "log_min_messages"]
)
def test_protected_settings_as_parameters_are_refused(name: str) -> None:
    with pytest.raises(StartupRefused):
        validate_startup((3, 0), [("user", "a"), (name, "x")])


def test_other_postgres_switches_are_refused() -> None:
    with pytest.raises(StartupRefused) as exc:
        validate_startup((3, 0), [("user", "a"), ("options", "-D /tmp")])
    assert "not allowed" in exc.value.message


@pytest.mark.parametrize("value", ["true", "database", "on", "1"])
def test_replication_is_refused(value: str) -> None:
    with pytest.raises(StartupRefused) as exc:
        validate_startup((3, 0), [("user", "a"), ("replication", value)])
    assert "replication" in exc.value.message


def test_replication_false_is_fine() -> None:
    assert validate_startup((3, 0), [("user", "a"), ("replication", "false")]).settings == ()


def test_newer_minor_and_pq_options_are_reported_for_negotiation() -> None:
    req = validate_startup((3, 2), [("user", "a"), ("_pq_.compression", "on")])
    assert req.protocol_minor == 2
    assert req.unsupported_options == ("_pq_.compression",)


def test_other_major_versions_and_missing_user() -> None:
    with pytest.raises(StartupRefused, match=r"unsupported frontend protocol 2\.0"):
        validate_startup((2, 0), [("user", "a")])
    with pytest.raises(StartupRefused, match="no PostgreSQL user"):
        validate_startup((3, 0), [("database", "x")])


def test_duplicate_and_malformed_names() -> None:
    with pytest.raises(StartupRefused, match="duplicate"):
        validate_startup((3, 0), [("user", "a"), ("user", "b")])
    with pytest.raises(StartupRefused, match="invalid setting name"):
        validate_startup((3, 0), [("user", "a"), ("bad name", "x")])


def test_options_splitting_follows_postgres_escaping() -> None:
    assert split_options(r"-c search_path=a\ b   -c x=1") == ["-c", "search_path=a b", "-c", "x=1"]
    assert parse_options(r"-c application_name=my\ app") == [("application_name", "my app")]
    with pytest.raises(StartupRefused, match="no value"):
        parse_options("-c search_path")


@pytest.mark.parametrize(
    "params",
    [
        [("client_encoding", "SJIS")],
        [("client_encoding", "big5")],
        [("client_encoding", "Shift_JIS")],
        [("options", "-c client_encoding=GBK")],
        [("client_encoding", "no-such-encoding")],
    ],
)
def test_client_encodings_that_hide_quotes_are_refused(params: list[tuple[str, str]]) -> None:
    with pytest.raises(StartupRefused, match="client_encoding") as info:
        validate_startup((3, 0), [("user", "a"), *params])
    assert info.value.sqlstate == "22023"


@pytest.mark.parametrize("value", ["UTF8", "utf-8", "LATIN1", "SQL_ASCII", "WIN1252", "EUC_JP"])
def test_ascii_safe_client_encodings_pass(value: str) -> None:
    req = validate_startup((3, 0), [("user", "a"), ("client_encoding", value)])
    assert req.get("client_encoding") == value


@pytest.mark.parametrize("name", ["standard_conforming_strings", "backslash_quote"])
def test_settings_that_change_lexing_are_refused(name: str) -> None:
    with pytest.raises(StartupRefused, match="cannot be chosen"):
        validate_startup((3, 0), [("user", "a"), (name, "off")])
