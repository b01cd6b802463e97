"""``[[masking]]`` configuration, the hash key, per-connection maskers and masked logs (real engine)."""

from __future__ import annotations

import io
import logging
import stat
import sys
import threading
from pathlib import Path

import orjson
import pytest

from hoopgw import _core, log
from hoopgw.config import DETECTORS, Config, load_config, secret_problems
from hoopgw.config._masking import engine_regex_error
from hoopgw.demo import DemoStack, toml_dumps
from hoopgw.errors import ConfigError
from hoopgw.masking import KEY_FILE, KEY_SIZE, build_maskers, log_masker, masking_key

from ._support.procs import clean_env, run

CONNS = """
[gateway]
data_dir = "var"

[[connections]]
name = "bankdb"
type = "postgres"
listen = "127.0.0.1:15432"
upstream = "postgresql://app@db.internal/bank"

[[connections]]
name = "crm"
type = "postgres"
listen = "127.0.0.1:15433"
upstream = "postgresql://app@db.internal/crm"

[[connections]]
name = "plain"
type = "postgres"
listen = "127.0.0.1:15434"
upstream = "postgresql://app@db.internal/plain"
"""
CARD = "4111 1111 1111 1111"
KEY = b"k" * 32


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hoopgw.toml"
    path.write_text(text)
    return path


def load(tmp_path: Path, masking: str) -> Config:
    return load_config(write(tmp_path, CONNS + masking))


def problems_of(tmp_path: Path, masking: str) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, masking)
    return {key: reason for _file, key, reason in info.value.problems}


def regex_reason(regex: str) -> str:
    """What check reports for a bad regex: the engine's own message about it."""
    with pytest.raises(ValueError) as info:
        _core.Masker(patterns=[("p", regex, "redact")])
    message = str(info.value)
    assert message.startswith(f'pattern "p": invalid regex "{regex}": ') and "\n" not in message
    return message.removeprefix('pattern "p": ')


# --------------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------------


def test_detectors_are_the_engines() -> None:
    assert list(DETECTORS) == _core.builtin_detectors()


def test_schema_and_merged_rules(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
[[masking]]
connections = ["bankdb"]
detectors = ["credit_card", "email", "credit_card"]
patterns = ["EMP-[0-9]{6}", { name = "ticket", regex = "TCK-[A-Z]{3}-[0-9]+" }]
words = ["Project Falcon"]
columns = ["*.account_number", "public.customers.full_name"]
style = "last4"
column_style = "null"

[[masking]]
connections = ["*"]
detectors = ["us_ssn"]
patterns = ["ACCT-[0-9]{8}"]
words = ["project falcon"]
style = "last4"
""",
    )
    first, second = config.masking
    assert first.style == "last4" and first.effective_column_style == "null"
    assert second.column_style is None and second.effective_column_style == "last4"
    assert first.words == ("Project Falcon",)
    bank = config.masking_rules("bankdb")
    assert bank is not None
    assert bank.detectors == (("credit_card", "last4"), ("email", "last4"), ("us_ssn", "last4"))
    assert bank.patterns == (
        ("pattern_1", "EMP-[0-9]{6}", "last4"),
        ("ticket", "TCK-[A-Z]{3}-[0-9]+", "last4"),
        ("pattern_2", "ACCT-[0-9]{8}", "last4"),  # bare regexes are numbered across the file
    )
    assert bank.words == (("Project Falcon", "last4"),)  # words match in any case: one rule
    assert bank.columns == (("*.account_number", "null"), ("public.customers.full_name", "null"))
    crm = config.masking_rules("crm")
    assert crm is not None and crm.detectors == (("us_ssn", "last4"),)
    assert crm.patterns == (("pattern_2", "ACCT-[0-9]{8}", "last4"),)
    plain = config.masking_rules("plain")  # "*" names every connection
    assert plain is not None and plain.detectors == (("us_ssn", "last4"),)


def test_every_masking_mistake(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        """
[[masking]]
connections = ["bankdb"]
detectors = ["credit_cards"]
style = "null"

[[masking]]
connections = ["bankdb"]
patterns = ["(unclosed", { name = "ticket", regex = "[z-a]" }, { name = "email", regex = "x" }, 7, ""]

[[masking]]
connections = ["bankdb"]
patterns = [{ name = "t2" }, { name = "t3", regex = "x", style = "hash" }]
words = ["", "   ", " Falcon", 5]
columns = ["account_number", "a..b", "s.t.c.d", ".c", "t. c"]
column_style = "blur"

[[masking]]
connections = []
style = "last4"

[[masking]]
connections = ["ghost", "bankdb"]
""",
    )
    assert problems["masking[0].detectors[0]"].startswith("unknown detector (known: credit_card, us_ssn,")
    assert (
        problems["masking[0].style"] == 'the "null" style is for column rules only: use column_style = "null"'
    )
    assert problems["masking[1].patterns[0]"] == regex_reason("(unclosed")
    assert problems["masking[1].patterns[1].regex"] == regex_reason("[z-a]")
    assert problems["masking[1].patterns[2].name"].startswith('pattern name "email" is reserved')
    assert problems["masking[1].patterns[3]"].startswith("must be a non-empty regular expression")
    assert problems["masking[1].patterns[4]"].startswith("must be a non-empty regular expression")
    assert problems["masking[2].patterns[0].regex"] == "required key is missing"
    assert problems["masking[2].patterns[1].style"] == "unknown key"
    assert problems["masking[2].words[0]"] == "must be a non-empty word or phrase"
    assert problems["masking[2].words[1]"] == "must be a non-empty word or phrase"
    assert problems["masking[2].words[2]"] == "must not start or end with spaces"
    assert problems["masking[2].words[3]"] == "must be a non-empty word or phrase"
    for k in range(5):
        assert problems[f"masking[2].columns[{k}]"].startswith(
            'must be a "table.column" or "schema.table.column"'
        )
    assert problems["masking[2].column_style"] == 'must be one of "redact", "last4", "hash" or "null"'
    assert problems["masking[3].connections"] == "must not be empty"
    assert problems["masking[4]"] == "a masking block needs detectors, patterns, words or columns"
    assert problems["masking[4].connections[0]"] == 'no connection is named "ghost"'
    assert "masking[4].connections[1]" not in problems


def test_engine_regex_error_is_the_engines_message() -> None:
    assert engine_regex_error("TCK-[A-Z]{3}-[0-9]+") is None
    assert engine_regex_error("(?<name") == regex_reason("(?<name")
    # Rust syntax, not Python's: a look-behind compiles in Python but not in the engine.
    assert engine_regex_error("(?<=x)y") is not None


def test_conflicting_styles(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        """
[[masking]]
connections = ["bankdb"]
detectors = ["email"]
patterns = [{ name = "ticket", regex = "TCK-[0-9]+" }]
words = ["Falcon"]
columns = ["*.account_number"]
style = "last4"

[[masking]]
connections = ["crm"]
detectors = ["email"]
style = "hash"

[[masking]]
connections = ["bankdb", "crm"]
detectors = ["email"]
style = "last4"

[[masking]]
connections = ["*"]
detectors = ["us_ssn", "email"]
patterns = [{ name = "ticket", regex = "TCK-[0-9]{4}" }]
words = ["FALCON"]
columns = ["*.account_number"]
style = "redact"
column_style = "last4"
""",
    )
    assert problems == {
        "masking[2].detectors[0]": (
            'detector "email" already masked with style hash on connection crm (masking[1])'
        ),
        "masking[3].detectors[1]": (
            'detector "email" already masked with style last4 on connection bankdb (masking[0])'
        ),
        "masking[3].patterns[0]": (
            'pattern "ticket" already masked with style last4 on connection bankdb (masking[0])'
        ),
        "masking[3].words[0]": (
            'word "FALCON" already masked with style last4 on connection bankdb (masking[0])'
        ),
    }  # the column rule has style last4 in both blocks: no conflict
    null = '[[masking]]\nconnections = ["bankdb"]\ndetectors = ["email"]\ncolumns = ["t.c"]\n'
    problems = problems_of(tmp_path, null + null.replace("\n", '\nstyle = "null"\n', 1))
    assert problems == {  # a wrong style is not also a conflict
        "masking[1].style": 'the "null" style is for column rules only: use column_style = "null"'
    }


def test_same_pattern_name_with_another_regex(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        """
[[masking]]
connections = ["bankdb"]
patterns = [{ name = "ticket", regex = "TCK-[0-9]+" }]
[[masking]]
connections = ["crm"]
patterns = [{ name = "ticket", regex = "OTHER" }]
[[masking]]
connections = ["bankdb"]
patterns = [{ name = "ticket", regex = "TCK-[0-9]+" }, { name = "ticket", regex = "X" }]
""",
    )
    assert problems == {
        "masking[2].patterns[1]": (
            'pattern "ticket" already has another regex on connection bankdb (masking[0])'
        )
    }


def test_check_reports_bad_regex(tmp_path: Path) -> None:
    path = write(
        tmp_path, CONNS + '[[masking]]\nconnections = ["bankdb"]\npatterns = ["EMP-[0-9]{6}", "a{2,1}"]\n'
    )
    result = run([sys.executable, "-m", "hoopgw", "check", "-c", str(path)], env=clean_env())
    assert result.returncode == 1, result.stdout + result.stderr
    reason = regex_reason("a{2,1}")
    assert f"{path}: masking[0].patterns[1]: {reason}" in result.stdout
    assert "masking[0].patterns[0]" not in result.stdout
    assert result.stdout.rstrip().endswith(f"FAILED: {path}: 1 problem")
    assert "Traceback" not in result.stderr


def test_check_accepts_masking(tmp_path: Path) -> None:
    path = write(
        tmp_path, CONNS + '[[masking]]\nconnections = ["*"]\ndetectors = ["email"]\ncolumns = ["*.ssn"]\n'
    )
    result = run([sys.executable, "-m", "hoopgw", "check", "-c", str(path)], env=clean_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == f"OK: {path} (3 connections)\n"


# --------------------------------------------------------------------------------------------------
# The hash key
# --------------------------------------------------------------------------------------------------


def test_masking_key_from_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config(write(tmp_path, CONNS.replace('data_dir = "var"', 'masking_key = "env:HOOPGW_MK"')))
    monkeypatch.setenv("HOOPGW_MK", "0123456789abcdef")
    assert secret_problems(config) == []
    assert masking_key(config) == b"0123456789abcdef"
    assert not (config.gateway.data_dir / KEY_FILE).exists()
    monkeypatch.setenv("HOOPGW_MK", "short-key")
    reason = "env:HOOPGW_MK: the masking key must be at least 16 bytes (it has 9)"
    assert secret_problems(config) == [(str(config.path), "gateway.masking_key", reason)]
    with pytest.raises(ConfigError) as info:
        masking_key(config)
    assert info.value.problems == [(str(config.path), "gateway.masking_key", reason)]
    assert "short-key" not in str(info.value)
    monkeypatch.delenv("HOOPGW_MK")
    with pytest.raises(ConfigError, match="HOOPGW_MK is not set"):
        masking_key(config)


def test_masking_key_must_be_a_reference(tmp_path: Path) -> None:
    path = write(tmp_path, CONNS.replace('data_dir = "var"', 'masking_key = "inline-secret-value"'))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [
        (str(path), "gateway.masking_key", "secrets must be references (env:NAME or file:PATH), never inline")
    ]


def test_masking_key_file_created_once(tmp_path: Path) -> None:
    config = load(tmp_path, "")
    key_file = tmp_path / "var" / KEY_FILE
    assert not key_file.exists()
    key = masking_key(config)
    assert len(key) == KEY_SIZE and key_file.read_bytes() == key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert masking_key(config) == key  # reused, not replaced
    assert masking_key(load(tmp_path, "")) == key
    assert sorted(p.name for p in key_file.parent.iterdir()) == [KEY_FILE]  # no temporary files left


def test_masking_key_file_concurrent_creation(tmp_path: Path) -> None:
    config = load(tmp_path, "")
    keys: list[bytes] = []
    start = threading.Barrier(8)

    def one() -> None:
        start.wait()
        keys.append(masking_key(config))

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(keys) == 8 and len(set(keys)) == 1
    assert (tmp_path / "var" / KEY_FILE).read_bytes() == keys[0]


def test_masking_key_file_wrong_size_or_unreadable(tmp_path: Path) -> None:
    config = load(tmp_path, "")
    key_file = tmp_path / "var" / KEY_FILE
    key_file.parent.mkdir()
    key_file.write_bytes(b"x" * 10)
    with pytest.raises(ConfigError) as info:
        masking_key(config)
    [(file, key, reason)] = info.value.problems
    assert (file, key) == (str(config.path), "gateway.masking_key")
    assert reason.startswith(f"not set, and {key_file}: the key file holds 10 bytes, not 32: restore it")
    key_file.write_bytes(b"x" * 33)
    with pytest.raises(ConfigError, match="holds more than 32 bytes, not 32"):
        masking_key(config)
    assert key_file.read_bytes() == b"x" * 33  # never replaced
    key_file.unlink()
    key_file.mkdir()
    with pytest.raises(ConfigError, match="Is a directory"):
        masking_key(config)


# --------------------------------------------------------------------------------------------------
# One Masker per connection
# --------------------------------------------------------------------------------------------------


def test_build_maskers_merges_blocks(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
[[masking]]
connections = ["bankdb"]
detectors = ["credit_card"]
style = "last4"

[[masking]]
connections = ["bankdb", "crm"]
detectors = ["email"]
patterns = [{ name = "ticket", regex = "TCK-[0-9]+" }]
words = ["Project Falcon"]
columns = ["*.account_number"]
column_style = "null"
""",
    )
    maskers = build_maskers(config, KEY)
    assert set(maskers) == {"bankdb", "crm"}  # "plain" has no masking: no entry
    bank, crm = maskers["bankdb"], maskers["crm"]
    assert bank.mask(CARD.encode()) == b"**** **** **** 1111"
    assert crm.mask(CARD.encode()) == CARD.encode()  # credit_card is only on bankdb
    text = "mail bob@example.com about TCK-42 and project falcon"
    assert bank.mask_text(text) == "mail ***** about ***** and *****"
    assert crm.mask_text(text) == "mail ***** about ***** and *****"
    assert bank.counter_names == ["credit_card", "email", "ticket", "words", "columns"]
    assert bank.has_columns and crm.has_columns


def test_build_maskers_star_and_hash(tmp_path: Path) -> None:
    config = load(tmp_path, '[[masking]]\nconnections = ["*"]\ndetectors = ["credit_card"]\nstyle = "hash"\n')
    maskers = build_maskers(config, KEY)
    assert set(maskers) == {"bankdb", "crm", "plain"}
    token = maskers["bankdb"].mask_text(CARD)
    assert token.startswith("tok_") and len(token) == 20
    assert maskers["crm"].mask_text("4111111111111111") == token  # same key, same normalised value
    assert build_maskers(config, b"other-key-0123456789")["bankdb"].mask_text(CARD) != token
    assert build_maskers(load(tmp_path, ""), KEY) == {}


def test_demo_masking_config(tmp_path: Path) -> None:
    text = CONNS + toml_dumps({"masking": DemoStack.masking_doc()})
    config = load_config(write(tmp_path, text))
    bank = build_maskers(config, masking_key(config))["bankdb"]
    assert bank.mask_text(f"card {CARD}, ssn 123-45-6789") == "card **** **** **** 1111, ssn ***-**-6789"
    assert bank.has_columns and "plain" not in build_maskers(config, KEY)


# --------------------------------------------------------------------------------------------------
# Logs
# --------------------------------------------------------------------------------------------------


def test_log_masker_has_every_detector_but_ipv4() -> None:
    masker = log_masker()
    assert masker is log_masker()
    assert masker.counter_names == [*(d for d in DETECTORS if d != "ipv4"), "columns"]
    assert masker.mask_text(f"paid with {CARD}") == "paid with *****"
    assert masker.mask_text("client 10.1.2.3:5432") == "client 10.1.2.3:5432", "addresses stay traceable"


def test_logs_are_masked() -> None:
    jwt = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
    stream = io.StringIO()
    log.setup_logging("debug", json=True, stream=stream)
    try:
        log.info(f"charged {CARD}", customer="bob@example.com", ids=["123-45-6789"], n=4111111111111111)
        logging.getLogger("other").warning(
            "ssn %s for %s", "123-45-6789", jwt, extra={"iban": "DE44500105175407324931"}
        )
        try:
            raise ValueError(f"duplicate key (pan)=({CARD})")
        except ValueError:
            log.exception("insert failed", token=jwt)
    finally:
        logging.getLogger().handlers.clear()
    out = stream.getvalue()
    for secret in (CARD, "bob@example.com", "123-45-6789", "DE44500105175407324931", jwt):
        assert secret not in out
    first, second, third = (orjson.loads(line) for line in out.splitlines())
    assert first["event"] == "charged *****"
    assert first["customer"] == "*****" and first["ids"] == ["*****"]
    assert first["n"] == 4111111111111111  # numbers are not strings: left alone
    assert second["event"] == "ssn ***** for [redacted]"  # the JWT redaction runs first
    assert second["iban"] == "*****"
    assert third["token"] == "[redacted]"
    assert "duplicate key (pan)=(*****)" in third["exception"]


def test_masking_key_file_unreadable(tmp_path: Path) -> None:
    config = load(tmp_path, "")
    key_file = tmp_path / "var" / KEY_FILE
    masking_key(config)
    key_file.unlink()
    key_file.mkdir()  # unreadable as a file, even for root
    with pytest.raises(ConfigError, match="masking_key"):
        masking_key(config)
