"""Example tests of the masking engine (hoopgw._core.Masker / MaskStream) against docs/MASKING.md.

Expected outputs are written out by hand or computed with the independent oracles of
tests/_support/pii.py; none is computed with the engine under test.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import sys
import threading
import time
from collections.abc import Callable

import pytest

from hoopgw._core import Masker, builtin_detectors

from ._support import pii

KEY = bytes(range(32))

BUILTINS = [
    "credit_card",
    "us_ssn",
    "iban",
    "email",
    "phone",
    "us_routing",
    "ipv4",
    "aws_access_key",
    "jwt",
    "password_assignment",
]

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0Ijox"
    "NTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
PAN19 = pii.make_pan("622202999999999999")
PAN12 = pii.make_pan("41111111111")
PAN20 = pii.make_pan("4111111111111111111")


def one(detector: str, style: str = "redact") -> Masker:
    return Masker([(detector, style)], hash_key=KEY)


def every(style: str = "redact") -> Masker:
    return Masker([(d, style) for d in BUILTINS], hash_key=KEY)


def test_builtin_detectors_are_the_documented_ones() -> None:
    assert builtin_detectors() == BUILTINS


# --------------------------------------------------------------------------------------------------
# Detectors, one by one: (detector, value). Each value is masked alone and inside a sentence.

POSITIVE = [
    ("credit_card", "4111 1111 1111 1111"),
    ("credit_card", "4111-1111-1111-1111"),
    ("credit_card", "4111111111111111"),
    ("credit_card", "3782 822463 10005"),  # Amex 4-6-5
    ("credit_card", "4222222222222"),  # 13 digits
    ("credit_card", "6011-0009-9013-9424"),
    ("credit_card", pii.format_pan(PAN19, " ")),  # 19 digits, 4-4-4-4-3
    ("credit_card", PAN19),
    ("credit_card", "411-111-111-111-1111"),  # groups of 3
    ("us_ssn", "123-45-6789"),
    ("us_ssn", "123 45 6789"),
    ("us_ssn", "899-99-9999"),
    ("us_ssn", "001-01-0001"),
    ("iban", "DE89 3704 0044 0532 0130 00"),
    ("iban", "DE89370400440532013000"),
    ("iban", "GB82WEST12345698765432"),
    ("iban", "GB82 WEST 1234 5698 7654 32"),
    ("iban", "FR14 2004 1010 0505 0001 3M02 606"),
    ("iban", "NL91ABNA0417164300"),
    ("iban", "NO9386011117947"),
    ("iban", pii.make_iban("MT", "MALT011000012345MTLCAST001S")),
    ("email", "alice@example.com"),
    ("email", "first.last+tag@mail.example.co.uk"),
    ("email", "x_y-z@sub-domain.example.io"),
    ("phone", "+14155552671"),
    ("phone", "+44 20 7946 0958"),
    ("phone", "+49-30-1234-5678"),
    ("phone", "+33.1.23.45.67.89"),
    ("phone", "+1 (415) 555-2671"),
    ("phone", "+1.4155552671"),  # EPP / WHOIS format (RFC 5733)
    ("phone", "(415) 555-2671"),
    ("phone", "415-555-2671"),
    ("phone", "415.555.2671"),
    ("us_routing", "021000021"),
    ("us_routing", "011000015"),
    ("us_routing", pii.make_aba(80, "123456")),
    ("us_routing", pii.make_aba(61, "000000")),
    ("ipv4", "192.168.1.10"),
    ("ipv4", "10.0.0.1"),
    ("ipv4", "0.0.0.0"),
    ("ipv4", "255.255.255.255"),
    ("aws_access_key", "AKIAIOSFODNN7EXAMPLE"),
    ("aws_access_key", "ASIAY34FZKBOKMUTVV7A"),
    ("aws_access_key", "AROA1234567890ABCDEF"),
    ("jwt", JWT),
]


def _ids(cases: list[tuple[str, str]]) -> list[str]:
    return [f"{d}:{v[:24]}" for d, v in cases]


def test_oracles_agree_with_positive_examples() -> None:
    for detector, value in POSITIVE:
        if detector == "credit_card":
            assert pii.luhn_ok(pii.digits_only(value)), value
        elif detector == "us_ssn":
            assert pii.ssn_ok(value), value
        elif detector == "iban":
            assert pii.iban_ok(value), value
        elif detector == "us_routing":
            assert pii.aba_ok(value), value
        elif detector == "email":
            assert pii.email_ok(value), value


@pytest.mark.parametrize(("detector", "value"), POSITIVE, ids=_ids(POSITIVE))
@pytest.mark.parametrize("style", ["redact", "last4"])
def test_detector_masks_value(detector: str, value: str, style: str) -> None:
    masker = one(detector, style)
    expected = pii.render(value, style, detector)
    assert masker.mask(value.encode()) == expected.encode()
    sentence = f"value: {value}, done\n"
    assert masker.mask(sentence.encode()) == f"value: {expected}, done\n".encode()
    assert masker.find(sentence.encode()) == [(detector, 7, 7 + len(value))]
    assert masker.mask_text(sentence) == f"value: {expected}, done\n"


@pytest.mark.parametrize(("detector", "value"), POSITIVE, ids=_ids(POSITIVE))
def test_every_detector_enabled_masks_value(detector: str, value: str) -> None:
    """With all detectors on, each value is still found as a whole by its own detector."""
    sentence = f"value: {value}, done".encode()
    masker = every()
    assert masker.find(sentence) == [(detector, 7, 7 + len(value))]
    assert masker.mask(sentence) == b"value: *****, done"


def test_documented_examples() -> None:
    assert one("credit_card", "last4").mask(b"4111-1111-1111-1111") == b"****-****-****-1111"
    assert one("credit_card", "last4").mask(b"4111 1111 1111 1111") == b"**** **** **** 1111"
    assert one("credit_card").mask(b"4111 1111 1111 1111") == b"*****"
    assert one("credit_card").mask(b"4111111111111111") == b"*****"
    assert one("us_ssn", "last4").mask(b"123-45-6789") == b"***-**-6789"
    assert one("iban", "last4").mask(b"DE89 3704 0044 0532 0130 00") == b"**** **** **** **** **30 00"
    assert one("email", "last4").mask(b"alice@example.com") == b"*****@******e.com"
    assert one("ipv4", "last4").mask(b"192.168.1.10") == b"***.**8.1.10"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("4111 1111 1111 1111", "**** **** **** 1111"),  # 16 letters and digits: the last four
        ("10.0.0.1", "**.*.0.1"),  # 5: at most half, 2
        ("0.0.0.0", "*.*.0.0"),
        ("1.2.3.4", "*.*.3.4"),
        ("a@b.co", "*@*.co"),
        ("abcdefgh", "****efgh"),
        ("abcd", "**cd"),
        ("x", "*"),
    ],
)
def test_last4_never_shows_a_short_value_whole(value: str, expected: str) -> None:
    """At most min(4, n // 2) of the n letters and digits are kept."""
    assert pii.last4(value) == expected
    masker = Masker(patterns=[("v", "[a-z0-9@. ]+", "last4")], columns=[("*.c", "last4")])
    assert masker.mask_text(value) == expected


@pytest.mark.parametrize(
    ("detector", "text", "masked"),
    [
        ("aws_access_key", "key AKIAIOSFODNN7EXAMPLE", "key *****"),
        ("jwt", f"Bearer {JWT}", "Bearer *****"),
        ("password_assignment", "password=hunter2xyz", "password=*****"),
        ("password_assignment", "PGPASSWORD=a", "PGPASSWORD=*****"),
    ],
)
def test_secrets_are_never_partly_shown(detector: str, text: str, masked: str) -> None:
    """last4 renders the secret detectors as redact; hash stays a token."""
    assert one(detector, "last4").mask_text(text) == masked
    assert every("last4").mask_text(text) == masked
    hashed = one(detector, "hash").mask_text(text)
    prefix = masked[: -len(pii.REDACTED)]
    assert hashed.startswith(prefix) and pii.TOKEN_RE.fullmatch(hashed[len(prefix) :]), hashed


@pytest.mark.parametrize("value", ["josé.garcía@example.com", "jörg@example.com", "info@münchen.de"])
def test_email_with_non_ascii_letters_is_masked_whole(value: str) -> None:
    """`local@domain.tld` with letters that are not ASCII: the whole address, not its ASCII tail."""
    masker = one("email")
    assert masker.mask_text(f"mail {value} ok") == "mail ***** ok"


def test_boundaries_count_non_ascii_letters_as_letters() -> None:
    words = Masker(words=[("Project Falcon", "redact")])
    for text in ("éProject Falcon", "Project Falconé", "ÜberProject Falcon"):
        assert words.mask_text(text) == text, text
    assert words.mask_text("«Project Falcon»") == "«*****»"
    keys = every()
    for text in (
        "éAKIAIOSFODNN7EXAMPLE",
        "AKIAIOSFODNN7EXAMPLEß",
        "ÜDE89370400440532013000",
        "中AKIAIOSFODNN7EXAMPLE",
    ):
        assert keys.mask_text(text) == text, text
    # non-ASCII punctuation and spaces are no letters
    assert keys.mask_text("«AKIAIOSFODNN7EXAMPLE»") == "«*****»"
    assert keys.mask_text("密钥\uff1aAKIAIOSFODNN7EXAMPLE") == "密钥\uff1a*****"  # fullwidth colon
    assert keys.mask_text("to:\u00a0bob@example.com\u00a0ok") == "to:\u00a0*****\u00a0ok"


def test_numbers_need_only_a_non_digit_boundary() -> None:
    """ "for numbers: not a digit": a card glued to letters is still a card."""
    assert one("credit_card").mask(b"x4111111111111111y") == b"x*****y"
    assert one("us_ssn").mask(b"ssn:123-45-6789;") == b"ssn:*****;"


NEGATIVE = [
    ("credit_card", "4111 1111 1111 1112"),  # Luhn
    ("credit_card", "4111111111111112"),
    ("credit_card", "4111 1111-1111 1111"),  # inconsistent separators
    ("credit_card", "4111  1111  1111  1111"),  # double spaces
    ("credit_card", "4111.1111.1111.1111"),  # dots are not card separators
    ("credit_card", "41 11 11 11 11 11 11 11"),  # groups of 2
    ("credit_card", PAN12),  # 12 digits, Luhn-valid
    ("credit_card", PAN20),  # 20 digits, Luhn-valid
    ("credit_card", "9999" + "4111111111111111" + "99999"),  # 25-digit id holding a card
    ("credit_card", "1" + "4111111111111111"),  # glued digit
    ("us_ssn", "000-12-3456"),
    ("us_ssn", "666-12-3456"),
    ("us_ssn", "900-12-3456"),
    ("us_ssn", "999-12-3456"),
    ("us_ssn", "123-00-4567"),
    ("us_ssn", "123-45-0000"),
    ("us_ssn", "123-45 6789"),  # mixed separators
    ("us_ssn", "123456789"),  # unseparated
    ("us_ssn", "1123-45-6789"),
    ("us_ssn", "123-45-67890"),
    ("iban", "DE89 3704 0044 0532 0130 01"),  # mod-97
    ("iban", "DE88370400440532013000"),
    ("iban", "DE893704004405320130001"),  # wrong length for DE (mod-97 fails too)
    ("iban", "DE89-3704-0044-0532-0130-00"),  # dashes
    ("iban", "DE89  3704 0044 0532 0130 00"),  # double space
    ("iban", "QQ" + pii.iban_check_digits("QQ", "370400440532013000") + "370400440532013000"),  # no country
    ("iban", "XDE89370400440532013000"),  # letter before
    ("email", "alice@localhost"),
    ("email", "alice@example.c"),
    ("email", "alice@example.123"),
    ("email", "user@host"),
    ("phone", "+1234567"),  # 7 digits
    ("phone", "+1234567890123456"),  # 16 digits
    ("phone", "415-555-267"),
    ("phone", "4155-552-671"),
    ("phone", "2024-01-15"),
    ("us_routing", "021000022"),  # checksum
    ("us_routing", "0210000210"),  # 10 digits
    ("us_routing", pii.make_aba(13, "100000")),  # checksum right, prefix 13 invalid
    ("us_routing", pii.make_aba(50, "100000")),  # prefix 50 invalid
    ("ipv4", "256.1.1.1"),
    ("ipv4", "1.2.3.256"),
    ("ipv4", "999.1.1.1"),
    ("ipv4", "1.2.3"),
    ("ipv4", "01.2.3.4"),
    ("ipv4", "1.2.3.004"),
    ("aws_access_key", "AKIAIOSFODNN7EXAMPL"),  # 15 after the prefix
    ("aws_access_key", "AKIAIOSFODNN7EXAMPLEX"),  # 17: no boundary
    ("aws_access_key", "XKIAIOSFODNN7EXAMPLE"),
    ("aws_access_key", "akiaiosfodnn7example"),
    ("aws_access_key", "AKIAiosfodnn7EXAMPLE"),
    ("jwt", "eyJhbGciOiJIUzI1NiJ9"),
    ("jwt", "abc.def.ghi"),
    ("password_assignment", "the password is long"),
    ("password_assignment", "password reset requested"),
]


def test_oracles_agree_with_negative_examples() -> None:
    for detector, value in NEGATIVE:
        if detector == "us_ssn":
            assert not pii.ssn_ok(value), value
        elif detector == "iban":
            assert not pii.iban_ok(value), value
        elif detector == "us_routing" and len(value) == 9:
            assert not pii.aba_ok(value), value
    assert pii.aba_sum(pii.make_aba(13, "100000")) == 0
    assert pii.luhn_ok("4111111111111111") and not pii.luhn_ok("14111111111111111")


@pytest.mark.parametrize(("detector", "value"), NEGATIVE, ids=_ids(NEGATIVE))
def test_detector_leaves_near_miss_alone(detector: str, value: str) -> None:
    data = f"value: {value}, done".encode()
    masker = one(detector)
    assert masker.find(data) == []
    assert masker.mask(data) is data


@pytest.mark.parametrize(
    "text",
    [
        "order id 1234567890123",
        "order id 1234567890123456",
        "amount 1,234,567.89 EUR",
        "total: 12345.67",
        "$ 1234567890.12",
        "2024-01-15",
        "15/01/2024 10:20",
        "2024-01-15T10:20:30.123456Z",
        "20240115",
        "9999" + "4111111111111111" + "99999",
        "256.1.1.1",
        "alice@localhost",
        "bob@example",
        "550e8400-e29b-41d4-a716-446655440000",
        "v1.2.3",
        "SELECT * FROM accounts WHERE id = 42",
        "deadbeefcafebabe",
        "ISBN 978-3-16-148410-0",
        "port 5432 pid 12345678",
        "password reset requested for user 42",
        "+1234567.89",  # a signed amount, not a phone
        "+100.00000",
        "at 12:30:45 id=42",
        "",
    ],
)
def test_ordinary_text_is_not_masked(text: str) -> None:
    for digits in ("1234567890123", "1234567890123456"):
        assert not pii.luhn_ok(digits)
    data = text.encode()
    masker = every()
    assert masker.find(data) == []
    assert masker.mask(data) is data
    assert masker.mask_text(text) == text


# --------------------------------------------------------------------------------------------------
# password_assignment: the value only


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("password=hunter2", "password=*****"),
        ("password=hunter2 next", "password=***** next"),
        ("PASSWORD=hunter2", "PASSWORD=*****"),
        ("Password = hunter2", "Password = *****"),
        ("passwd: hunter2", "passwd: *****"),
        ("pwd=hunter2", "pwd=*****"),
        ("secret=hunter2", "secret=*****"),
        ("token=hunter2", "token=*****"),
        ("api_key=hunter2", "api_key=*****"),
        ("API_KEY: hunter2", "API_KEY: *****"),
        ("secret='hunter2' rest", "secret='*****' rest"),
        ('password="hunter2" rest', 'password="*****" rest'),
        ('{"password": "hunter2", "user": "bob"}', '{"password": "*****", "user": "bob"}'),
        ("login user=bob password=hunter2\n", "login user=bob password=*****\n"),
        # the key may end an identifier
        ("PGPASSWORD=hunter2", "PGPASSWORD=*****"),
        ("export DB_PASSWORD=hunter2", "export DB_PASSWORD=*****"),
        ("MYSQL_PWD=hunter2", "MYSQL_PWD=*****"),
        ("AWS_SECRET_ACCESS_KEY=hunter2", "AWS_SECRET_ACCESS_KEY=*****"),
        ("aws_secret_access_key = hunter2", "aws_secret_access_key = *****"),
        ("PRIVATE_KEY='hunter2'", "PRIVATE_KEY='*****'"),
        ("auth_token: hunter2", "auth_token: *****"),
        ("GITHUB_TOKEN=hunter2", "GITHUB_TOKEN=*****"),
        ("X-Auth-Token: hunter2", "X-Auth-Token: *****"),
        ('{"clientSecret": "hunter2"}', '{"clientSecret": "*****"}'),
        ("spring.datasource.password=hunter2", "spring.datasource.password=*****"),
    ],
)
def test_password_assignment_masks_only_the_value(text: str, expected: str) -> None:
    masker = one("password_assignment")
    assert masker.mask(text.encode()) == expected.encode()
    start = text.index("hunter2")
    assert masker.find(text.encode()) == [("password_assignment", start, start + len("hunter2"))]


@pytest.mark.parametrize(
    "text",
    ["passwords=x", "password_hash=x", "password2=x", "secret_key_id=x", "time 12:30 pwd", "Token::new()"],
)
def test_password_key_must_end_the_identifier(text: str) -> None:
    data = text.encode()
    assert one("password_assignment").mask(data) is data


def test_password_assignment_last4_and_hash() -> None:
    assert one("password_assignment", "last4").mask(b"password=hunter2") == b"password=*****"
    out = one("password_assignment", "hash").mask(b"password=hunter2")
    assert out.startswith(b"password=tok_")
    assert pii.TOKEN_RE.fullmatch(out[len(b"password=") :].decode())


def test_password_assignment_in_url_keeps_key() -> None:
    out = one("password_assignment").mask(b"https://h/x?token=abc123def&page=2")
    assert b"abc123def" not in out
    assert out.startswith(b"https://h/x?token=")


def test_long_password_value_is_masked_whole() -> None:
    """A long secret (an AWS session token is 400-1000 characters) is masked to its end by mask(): only
    a stream may stop at its window."""
    value = "FwoGZXIvYXdzE" + "A1b2C3d4" * 60  # 493 characters
    text = f"AWS_SESSION_TOKEN={value} next\n"
    assert one("password_assignment").mask_text(text) == "AWS_SESSION_TOKEN=***** next\n"


def test_large_jwt_is_masked_whole() -> None:
    """JWTs with many claims (group lists) pass 4 KiB; mask() masks them whole."""
    header = base64.urlsafe_b64encode(b'{"alg":"RS256","typ":"JWT"}').rstrip(b"=").decode()
    claims = '{"sub":"1","groups":[' + ",".join(f'"g{i:05d}"' for i in range(600)) + "]}"
    payload = base64.urlsafe_b64encode(claims.encode()).rstrip(b"=").decode()
    signature = base64.urlsafe_b64encode(bytes(range(256))).rstrip(b"=").decode()
    jwt = f"{header}.{payload}.{signature}"
    assert len(jwt) > 5000
    assert one("jwt").mask_text(f"Authorization: Bearer {jwt}\n") == "Authorization: Bearer *****\n"


def test_password_value_longer_than_the_window() -> None:
    text = "token=" + "a" * 300
    masker = one("password_assignment")
    assert masker.window < 300 + len("token=")
    assert masker.mask_text(text) == "token=*****"
    assert masker.mask_text(f"x {text} y") == "x token=***** y"


# --------------------------------------------------------------------------------------------------
# hash style


def test_hash_token_format_and_normalisation() -> None:
    masker = one("credit_card", "hash")
    token = masker.mask(b"4111111111111111")
    assert pii.TOKEN_RE.fullmatch(token.decode()), token
    assert masker.mask(b"4111 1111 1111 1111") == token
    assert masker.mask(b"4111-1111-1111-1111") == token
    assert masker.mask(b"4242424242424242") != token
    assert Masker([("credit_card", "hash")], hash_key=KEY).mask(b"4111111111111111") == token
    assert Masker([("credit_card", "hash")], hash_key=KEY[::-1]).mask(b"4111111111111111") != token
    ssn = one("us_ssn", "hash")
    assert ssn.mask(b"123-45-6789") == ssn.mask(b"123 45 6789")


def test_hash_token_depends_on_the_detector() -> None:
    by_card = one("credit_card", "hash").mask(b"4111111111111111")
    by_pattern = Masker(patterns=[("cards", "4111111111111111", "hash")], hash_key=KEY).mask(
        b"4111111111111111"
    )
    assert pii.TOKEN_RE.fullmatch(by_pattern.decode())
    assert by_card != by_pattern


def test_hash_token_is_the_documented_hmac() -> None:
    """tok_ + 16 hex characters of HMAC-SHA256(key, counter name + NUL + normalised value)."""
    digest = hmac.new(KEY, b"credit_card\x00" + b"4111111111111111", hashlib.sha256).hexdigest()
    assert one("credit_card", "hash").mask(b"4111 1111 1111 1111").lower() == f"tok_{digest[:16]}".encode()


# --------------------------------------------------------------------------------------------------
# Custom patterns and words


def test_custom_patterns_with_their_counter_names() -> None:
    masker = Masker(
        patterns=[("employee", "EMP-[0-9]{6}", "redact"), ("ticket", "TCK-[A-Z]{3}-[0-9]+", "last4")]
    )
    text = b"EMP-123456 opened TCK-ABC-42 for EMP-654321"
    assert masker.mask(text) == b"***** opened ***-*BC-42 for *****"
    assert masker.find(text) == [("employee", 0, 10), ("ticket", 18, 28), ("employee", 33, 43)]
    assert masker.counter_names[:2] == ["employee", "ticket"]
    assert masker.counter_names[-1] == "columns"
    assert masker.has_detectors and not masker.has_columns
    for near in (b"EMP-12345", b"EMP-1234567", b"xEMP-123456", b"EMP-123456x"):
        assert masker.mask(near) is near, near


def test_words_case_insensitive_whole_words() -> None:
    masker = Masker(words=[("Project Falcon", "redact"), ("a.b+c", "redact")])
    for text, expected in [
        (b"about Project Falcon.", b"about *****."),
        (b"PROJECT FALCON!", b"*****!"),
        (b"project falcon", b"*****"),
        (b"(a.b+c)", b"(*****)"),
        (b"A.B+C", b"*****"),
    ]:
        assert masker.mask(text) == expected, text
        assert [n for n, _, _ in masker.find(text)] == ["words"]
    for text in (b"Project Falconry", b"myProject Falcon", b"Project Falcon9", b"axbbc", b"a.b+cd"):
        assert masker.mask(text) is text, text
    assert masker.counter_names == ["words", "columns"]
    assert Masker(words=[("Project Falcon", "last4")]).mask(b"Project Falcon") == b"******* **lcon"


def test_counter_names_order() -> None:
    masker = Masker(
        [("email", "redact"), ("credit_card", "last4")],
        patterns=[("p1", "P1-[0-9]+", "redact"), ("p2", "P2-[0-9]+", "redact")],
        words=[("falcon", "redact"), ("eagle", "redact")],
        columns=[("*.ssn", "null"), ("public.t.c", "redact")],
    )
    assert masker.counter_names == ["email", "credit_card", "p1", "p2", "words", "columns"]
    assert masker.has_detectors and masker.has_columns
    cols = Masker(columns=[("*.ssn", "null")])
    assert cols.has_columns and not cols.has_detectors
    assert cols.counter_names[-1] == "columns"
    data = b"4111111111111111 a@b.co"
    assert cols.mask(data) is data


# --------------------------------------------------------------------------------------------------
# Streams


def test_stream_counts_and_buffering() -> None:
    masker = Masker([("credit_card", "redact"), ("us_ssn", "redact"), ("email", "redact")])
    stream = masker.stream()
    out = [
        stream.feed(b"card 4111 1111 "),
        stream.feed(b"1111 1111 and 4242-4242-4242-4242\nssn 123-4"),
        stream.feed(b"5-6789 mail al"),
    ]
    assert 0 < stream.buffered <= masker.window
    out.append(stream.feed(b"ice@example.com\nbye\n"))
    assert stream.buffered == 0  # everything ends with a line break: nothing can still grow
    out.append(stream.flush())
    assert b"".join(out) == b"card ***** and *****\nssn ***** mail *****\nbye\n"
    counts = stream.counts
    assert counts["credit_card"] == 2
    assert counts["us_ssn"] == 1
    assert counts["email"] == 1
    assert counts.get("columns", 0) == 0


def test_stream_flush_emits_held_back_prompt() -> None:
    stream = one("credit_card").stream()
    out = stream.feed(b"enter card: 4111 1111")
    out += stream.flush()
    assert out == b"enter card: 4111 1111"
    assert stream.buffered == 0
    assert stream.feed(b"") + stream.flush() == b""


def test_stream_complete_lines_pass_through_at_once() -> None:
    stream = one("credit_card").stream()
    assert stream.feed(b"hello 4111111111111111 world\n") == b"hello ***** world\n"
    assert stream.buffered == 0


def test_window_covers_the_longest_forms() -> None:
    card19 = pii.make_pan("411111111111111111")
    card19_by_3 = " ".join(pii.split_groups(card19, [3, 3, 3, 3, 3, 4]))  # 24 bytes
    assert len(card19_by_3) == 24 and pii.luhn_ok(pii.digits_only(card19_by_3))
    cases = [
        ("credit_card", card19_by_3),
        ("credit_card", pii.format_pan(PAN19, "-")),
        ("iban", pii.format_iban(pii.make_iban("MT", "MALT011000012345MTLCAST001S"), grouped=True)),
        ("phone", "+123-456-789-012-345"),
    ]
    for detector, value in cases:
        masker = one(detector)
        assert masker.window >= len(value), (detector, masker.window, value)
        assert every().window >= masker.window
        assert masker.mask(value.encode()) == b"*****", value
        data = f"x {value} y".encode()
        stream = masker.stream()
        out = b"".join(stream.feed(data[i : i + 1]) for i in range(len(data))) + stream.flush()
        assert out == b"x ***** y", (detector, out)


# --------------------------------------------------------------------------------------------------
# Configuration errors


@pytest.mark.parametrize(
    ("kwargs", "needles"),
    [
        ({"detectors": [("credit_crad", "redact")]}, ["credit_crad"]),
        ({"detectors": [("credit_card", "blur")]}, ["blur"]),
        ({"detectors": [("credit_card", "null")]}, ["null"]),
        ({"detectors": [("credit_card", "redact"), ("credit_card", "last4")]}, ["credit_card"]),
        ({"patterns": [("bad", "([a-z", "redact")]}, ["bad"]),
        ({"patterns": [("p", "P-[0-9]+", "null")]}, ["null"]),
        ({"words": [("falcon", "null")]}, ["null"]),
        ({"columns": [("*.ssn", "blur")]}, ["blur"]),
        ({"detectors": [("credit_card", "hash")]}, ["key"]),
        ({"detectors": [("credit_card", "hash")], "hash_key": b"short"}, ["key"]),
        ({"detectors": [("credit_card", "hash")], "hash_key": b"x" * 15}, ["key"]),
        ({"words": [("falcon", "hash")], "hash_key": b""}, ["key"]),
        ({"columns": [("*.ssn", "hash")], "hash_key": b"x" * 8}, ["key"]),
    ],
)
def test_config_errors(kwargs: dict[str, object], needles: list[str]) -> None:
    with pytest.raises(ValueError, match=r".") as err:
        Masker(**kwargs)  # type: ignore[arg-type]  # deliberately ill-typed configurations
    message = str(err.value)
    for needle in needles:
        assert needle in message, message


def test_valid_configs() -> None:
    Masker()
    Masker([("credit_card", "hash")], hash_key=b"x" * 16)
    Masker(columns=[("*.ssn", "null"), ("public.customers.full_name", "last4")])
    Masker(patterns=[("ticket", "TCK-[A-Z]{3}-[0-9]+", "redact")], words=[("Project Falcon", "last4")])


# --------------------------------------------------------------------------------------------------
# Large buffers: GIL released, thread-safe, same result

BLOCK_IN = (
    b"row 1 card 4111 1111 1111 1111 ok\n"
    b"row 2 ssn 123-45-6789 mail alice@example.com\n"
    b"row 3 nothing to see here, id 1234567890123, amount 12.50\n"
)
BLOCK_OUT = (
    b"row 1 card **** **** **** 1111 ok\n"
    b"row 2 ssn ***-**-6789 mail *****@******e.com\n"
    b"row 3 nothing to see here, id 1234567890123, amount 12.50\n"
)


def big_masker() -> Masker:
    return Masker([("credit_card", "last4"), ("us_ssn", "last4"), ("email", "last4")])


@pytest.fixture(scope="module")
def big() -> tuple[bytes, bytes]:
    n = (8 << 20) // len(BLOCK_IN) + 1
    return BLOCK_IN * n, BLOCK_OUT * n


def test_large_buffer_from_two_threads(big: tuple[bytes, bytes]) -> None:
    data, expected = big
    masker = big_masker()
    single = masker.mask(data)
    assert single == expected
    results: list[bytes] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.append(masker.mask(data))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 2
    assert all(r == single for r in results)


def _ticks_during(call: Callable[[bytes], bytes], arg: bytes) -> tuple[float, float, list[float], bytes]:
    """Runs ``call(arg)`` while another Python thread records a tick every millisecond it gets to run."""
    ticks: list[float] = []
    stop = threading.Event()

    def spin() -> None:
        last = 0.0
        while not stop.is_set():
            now = time.perf_counter()
            if now - last > 0.001:
                ticks.append(now)
                last = now

    old = sys.getswitchinterval()
    sys.setswitchinterval(0.05)
    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        time.sleep(0.02)
        t0 = time.perf_counter()
        result = call(arg)
        t1 = time.perf_counter()
    finally:
        stop.set()
        spinner.join()
        sys.setswitchinterval(old)
    return t0, t1, ticks, result


def test_large_buffer_masked_without_the_gil(big: tuple[bytes, bytes]) -> None:
    """While one thread masks a large buffer, another Python thread keeps running. With the GIL held,
    the other thread could only run after the call returns (the second half of the measured time)."""
    data, expected = big
    masker = big_masker()
    for _ in range(3):
        t0, t1, ticks, result = _ticks_during(masker.mask, data)
        assert result == expected
        if t1 - t0 >= 0.1:
            break
        data, expected = data * 4, expected * 4  # a fast build: make the call long enough to observe
    else:
        pytest.fail(f"masking {len(data)} bytes took only {t1 - t0:.3f}s: too fast to observe the GIL")
    first_half = [t for t in ticks if t0 < t < t0 + (t1 - t0) / 2]
    assert first_half, f"no other Python thread ran during the {t1 - t0:.3f}s of mask()"


# --------------------------------------------------------------------------------------------------
# Neighbouring values: whatever wins an overlap, nothing of either value may stay in clear


@pytest.mark.parametrize(
    "text",
    [
        "+1 415 555 2671 4111 1111 1111 1111",  # phone, then a card
        "+1 415 555 2671 123-45-6789",  # phone, then an SSN
        "+33 1 23 45 67 89 123 45 6789",
        "3782 822463 10005 4002 1111 1111 1113",  # Amex, then a Visa (4-6-5-4 is Luhn-valid too)
        "123-45-6789 4111-1111-1111-1111",
        "021000021 4111111111111111",
        "4111-1111-1111-1111-415-555-2671",
        "BE68 5390 0754 7034 1111 1111 1118",  # an IBAN whose last group starts a card
        "+1 415 555 2671 1234-5@ex.com",  # a phone running into an email's local part
    ],
)
def test_neighbouring_values_leave_nothing_in_clear(text: str) -> None:
    out = every().mask(text.encode())
    assert not any(chr(b) in pii.ASCII_ALNUM for b in out), out


@pytest.mark.parametrize(
    "text",
    [
        "+1 415 555 2671 4111 1111 1111 1111",
        "+1 415 555 2671 123-45-6789",
        "+33 1 23 45 67 89 123 45 6789",
        "3782 822463 10005 4002 1111 1111 1113",
        "BE68 5390 0754 7034 1111 1111 1118",
        "+1 415 555 2671 1234-5@ex.com",
    ],
)
def test_overlapping_values_are_one_span(text: str) -> None:
    masker = every()
    assert masker.mask(text.encode()) == b"*****"
    assert len(masker.find(text.encode())) == 1, "one span, counted once"
    stream = masker.stream()
    assert stream.feed(text.encode()) + stream.flush() == b"*****"
    assert sum(stream.counts.values()) == 1


def test_overlaps_are_merged_and_attributed_to_the_leftmost() -> None:
    m = Masker([("phone", "redact"), ("credit_card", "redact")])
    assert m.mask(b"+1 415 555 2671 4111 1111 1111 1111") == b"*****"
    assert m.find(b"+1 415 555 2671 4111 1111 1111 1111") == [("phone", 0, 35)]
    m = Masker([("phone", "redact"), ("us_ssn", "redact")])
    assert m.mask(b"+1 415 555 2671 123-45-6789") == b"*****"
    m = Masker([("credit_card", "redact")])
    assert m.mask(b"3782 822463 10005 4002 1111 1111 1113") == b"*****"
    # rendered with the leftmost detector's style
    m = Masker([("phone", "last4"), ("credit_card", "redact")])
    assert m.mask(b"+1 415 555 2671 4111 1111 1111 1111") == b"+* *** *** **** **** **** **** 1111"
    stream = m.stream()
    out = stream.feed(b"+1 415 555 2671 4111 11") + stream.feed(b"11 1111 1111\n") + stream.flush()
    assert out == b"+* *** *** **** **** **** **** 1111\n"
    assert stream.counts == {"phone": 1}
    # custom patterns and words overlapping built-in matches or each other
    m = Masker(
        [("credit_card", "redact")],
        patterns=[("ab", "alpha beta", "redact"), ("bg", "beta gamma", "redact")],
        words=[("1111 ok", "redact")],
    )
    assert m.mask(b"card 4111 1111 1111 1111 ok") == b"card *****"
    assert m.find(b"card 4111 1111 1111 1111 ok") == [("credit_card", 5, 27)]
    assert m.mask(b"alpha beta gamma delta") == b"***** delta"
    assert m.find(b"alpha beta gamma delta") == [("ab", 0, 16)]


def test_neighbouring_values_oracle() -> None:
    assert pii.luhn_ok("378282246310005") and pii.luhn_ok("4002111111111113")
    assert pii.luhn_ok("3782822463100054002")  # the 19-digit window the engine prefers
    assert pii.ssn_ok("123-45-6789") and pii.ssn_ok("123 45 6789")
    assert pii.e164_ok("+1 415 555 2671") and pii.e164_ok("+33 1 23 45 67 89")
    assert pii.luhn_ok("7034111111111118") and pii.iban_ok("BE68539007547034")
    assert pii.e164_ok("+1.4155552671") and not pii.e164_ok("+1234567.89") and not pii.e164_ok("+100.00000")
