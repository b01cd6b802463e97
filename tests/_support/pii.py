"""Generators of valid (and deliberately invalid) sensitive values, and independent oracles.

Everything here is written from docs/MASKING.md alone and never calls the masking engine: the tests use
these oracles to compute expected results, so that they check the Rust implementation independently.

Plain functions build values from explicit parts (usable from example tests); the ``st_*`` functions
are hypothesis strategies built on them.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from itertools import pairwise

from hypothesis import strategies as st

ASCII_DIGITS = frozenset(string.digits)
ASCII_ALNUM = frozenset(string.ascii_letters + string.digits)

# --------------------------------------------------------------------------------------------------
# Styles (oracles of docs/MASKING.md "Styles")

REDACTED = "*****"
TOKEN_RE = re.compile(r"tok_[0-9a-fA-F]{16}")


#: Detectors whose values are never partly shown: ``last4`` renders them as ``redact``.
SECRET_DETECTORS = frozenset({"aws_access_key", "jwt", "password_assignment"})


def last4(value: str) -> str:
    """``last4`` style: ASCII letters and digits become ``*`` except the last four, and at most half of
    them (``min(4, n // 2)`` of ``n`` are kept, so a short value is never shown whole)."""
    alnum_positions = [i for i, ch in enumerate(value) if ch in ASCII_ALNUM]
    keep = min(4, len(alnum_positions) // 2)
    hide = set(alnum_positions[: len(alnum_positions) - keep])
    return "".join("*" if i in hide else ch for i, ch in enumerate(value))


def render(value: str, style: str, detector: str | None = None) -> str:
    """The expected rendering of a value found by ``detector`` for the ``redact`` and ``last4`` styles."""
    if style == "redact" or (style == "last4" and detector in SECRET_DETECTORS):
        return REDACTED
    if style == "last4":
        return last4(value)
    raise ValueError(f"no static rendering for style {style!r}")


def digits_only(value: str) -> str:
    return "".join(ch for ch in value if ch in ASCII_DIGITS)


# --------------------------------------------------------------------------------------------------
# Credit cards: Luhn


def luhn_sum(digits: str) -> int:
    """Luhn sum modulo 10 (0 for a valid number); the rightmost digit is not doubled."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10


def luhn_ok(digits: str) -> bool:
    return len(digits) >= 2 and all(c in ASCII_DIGITS for c in digits) and luhn_sum(digits) == 0


def luhn_check_digit(body: str) -> str:
    """The digit that makes ``body + digit`` Luhn-valid."""
    return str((10 - luhn_sum(body + "0")) % 10)


def make_pan(body: str) -> str:
    """A Luhn-valid PAN: ``body`` followed by its check digit."""
    pan = body + luhn_check_digit(body)
    assert luhn_ok(pan)
    return pan


def break_luhn(pan: str, delta: int) -> str:
    """``pan`` with its check digit changed by ``delta`` (1..9): never Luhn-valid."""
    assert 1 <= delta <= 9
    bad = pan[:-1] + str((int(pan[-1]) + delta) % 10)
    assert not luhn_ok(bad)
    return bad


def pan_groups(n: int) -> list[int]:
    """Group sizes of a printed ``n``-digit PAN: groups of 4, a remainder of 1-2 merged into the last
    group, a remainder of 3 as its own group (13 -> 4,4,5; 15 -> 4,4,4,3; 19 -> 4,4,4,4,3)."""
    q, r = divmod(n, 4)
    sizes = [4] * q
    if r in (1, 2):
        sizes[-1] += r
    elif r == 3:
        sizes.append(3)
    assert sum(sizes) == n and all(3 <= s <= 7 for s in sizes)
    return sizes


def split_groups(digits: str, sizes: Sequence[int]) -> list[str]:
    out, i = [], 0
    for s in sizes:
        out.append(digits[i : i + s])
        i += s
    assert i == len(digits)
    return out


def format_pan(digits: str, sep: str = "") -> str:
    """``digits`` printed with ``sep`` ("" for none, " " or "-") between the groups of :func:`pan_groups`."""
    if not sep:
        return digits
    return sep.join(split_groups(digits, pan_groups(len(digits))))


def group_subruns(groups: Sequence[str]) -> list[str]:
    """Digits of every run of consecutive groups (whole runs of groups, as a lax engine could see them)."""
    return ["".join(groups[i:j]) for i in range(len(groups)) for j in range(i + 1, len(groups) + 1)]


def has_card_subrun(printed: str, sep: str) -> bool:
    """Whether any run of consecutive separated groups of ``printed`` is a 13-19 digit Luhn-valid number."""
    groups = printed.split(sep) if sep else [printed]
    return any(13 <= len(r) <= 19 and luhn_ok(r) for r in group_subruns(groups))


# --------------------------------------------------------------------------------------------------
# US social security numbers


def ssn_parts_ok(area: int, group: int, serial: int) -> bool:
    return area != 0 and area != 666 and area < 900 and group != 0 and serial != 0


def ssn_ok(value: str) -> bool:
    m = re.fullmatch(r"(\d{3})([- ])(\d{2})\2(\d{4})", value)
    return m is not None and ssn_parts_ok(int(m[1]), int(m[3]), int(m[4]))


def format_ssn(area: int, group: int, serial: int, sep: str = "-") -> str:
    return f"{area:03d}{sep}{group:02d}{sep}{serial:04d}"


# --------------------------------------------------------------------------------------------------
# IBAN: country lengths (ISO 13616 registry) and BBAN shapes (n digits, a upper letters, c alnum)

IBAN_BBAN: dict[str, str] = {
    "AT": "16n",
    "BE": "12n",
    "CH": "5n12c",
    "DE": "18n",
    "DK": "14n",
    "ES": "20n",
    "FI": "14n",
    "FR": "10n11c2n",
    "GB": "4a14n",
    "IE": "4a14n",
    "IT": "1a10n12c",
    "LU": "3n13c",
    "MT": "4a5n18c",
    "NL": "4a10n",
    "NO": "11n",
    "PL": "24n",
    "PT": "21n",
    "SE": "20n",
}


def _bban_spec(country: str) -> list[tuple[int, str]]:
    return [(int(n), k) for n, k in re.findall(r"(\d+)([nac])", IBAN_BBAN[country])]


IBAN_LENGTH: dict[str, int] = {c: 4 + sum(n for n, _ in _bban_spec(c)) for c in IBAN_BBAN}


def _iban_numeric(s: str) -> int:
    return int("".join(str(int(ch, 36)) for ch in s.upper()))


def iban_check_digits(country: str, bban: str) -> str:
    return f"{98 - _iban_numeric(bban + country + '00') % 97:02d}"


def make_iban(country: str, bban: str) -> str:
    iban = country + iban_check_digits(country, bban) + bban
    assert iban_ok(iban)
    return iban


def iban_ok(value: str) -> bool:
    """Oracle: a valid IBAN (unseparated or in groups of 4 separated by single spaces; country in the
    table, its length, alphanumeric, mod-97 = 1)."""
    s = value.replace(" ", "")
    if value not in (s, format_iban(s, grouped=True)):  # only groups of 4 by single spaces
        return False
    if not (len(s) >= 4 and s[:2] in IBAN_LENGTH and len(s) == IBAN_LENGTH[s[:2]]):
        return False
    if not (all(c in ASCII_ALNUM for c in s) and s[2:4].isdigit()):
        return False
    return _iban_numeric(s[4:] + s[:4]) % 97 == 1


def format_iban(iban: str, grouped: bool) -> str:
    """Unseparated, or printed in groups of 4 separated by single spaces (the last group shorter)."""
    if not grouped:
        return iban
    return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))


def wrong_check_digits(iban: str, new: int) -> str:
    """``iban`` with check digits ``new`` (0..99), which must not validate."""
    bad = f"{iban[:2]}{new:02d}{iban[4:]}"
    assert not iban_ok(bad)
    return bad


# --------------------------------------------------------------------------------------------------
# ABA routing numbers

ABA_PREFIXES = [*range(0, 13), *range(21, 33), *range(61, 73), 80]


def aba_sum(digits: str) -> int:
    d = [int(c) for c in digits]
    return (3 * (d[0] + d[3] + d[6]) + 7 * (d[1] + d[4] + d[7]) + (d[2] + d[5] + d[8])) % 10


def aba_ok(value: str) -> bool:
    return (
        len(value) == 9
        and all(c in ASCII_DIGITS for c in value)
        and int(value[:2]) in ABA_PREFIXES
        and aba_sum(value) == 0
    )


def make_aba(prefix: int, middle: str) -> str:
    """A routing number: 2-digit ``prefix``, 6 ``middle`` digits, then the ABA check digit."""
    assert len(middle) == 6
    body = f"{prefix:02d}{middle}"
    d = [int(c) for c in body]
    check = (-(3 * (d[0] + d[3] + d[6]) + 7 * (d[1] + d[4] + d[7]) + (d[2] + d[5]))) % 10
    return body + str(check)


# --------------------------------------------------------------------------------------------------
# Emails and phones

EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}")


def email_ok(value: str) -> bool:
    return EMAIL_RE.fullmatch(value) is not None


E164_RE = re.compile(r"\+\d+(?:([ .-])\d+(?:\1\d+)*)?")
#: ``+`` and two groups joined by a dot: a signed amount (``+1234567.89``), unless the first group is a
#: country code (1-3 digits, not starting with 0) and the second has at least 8 digits (``+1.4155552671``).
DOTTED_PHONE_RE = re.compile(r"\+[1-9]\d{0,2}\.\d{8,}")


def e164_ok(value: str) -> bool:
    if E164_RE.fullmatch(value) is None or not 8 <= len(digits_only(value)) <= 15:
        return False
    if value.count(".") == 1 and not any(c in value for c in " -"):
        return DOTTED_PHONE_RE.fullmatch(value) is not None
    return True


# --------------------------------------------------------------------------------------------------
# Hypothesis strategies

_lower = string.ascii_lowercase
_lower_digits = string.ascii_lowercase + string.digits


@st.composite
def st_pan(draw: st.DrawFn, min_len: int = 13, max_len: int = 19) -> str:
    """A Luhn-valid PAN of ``min_len``..``max_len`` digits (first digit non-zero)."""
    n = draw(st.integers(min_len, max_len))
    first = draw(st.sampled_from("123456789"))
    rest = draw(st.text(string.digits, min_size=n - 2, max_size=n - 2))
    return make_pan(first + rest)


SEPARATORS = ("", " ", "-")


@st.composite
def st_printed_pan(draw: st.DrawFn) -> tuple[str, str]:
    """(printed form, digits) of a valid PAN, unseparated or grouped by spaces or dashes."""
    pan = draw(st_pan())
    return format_pan(pan, draw(st.sampled_from(SEPARATORS))), pan


@st.composite
def st_ssn_parts(draw: st.DrawFn) -> tuple[int, int, int]:
    area = draw(st.integers(1, 899).filter(lambda a: a != 666))
    return area, draw(st.integers(1, 99)), draw(st.integers(1, 9999))


@st.composite
def st_ssn(draw: st.DrawFn) -> str:
    return format_ssn(*draw(st_ssn_parts()), sep=draw(st.sampled_from("- ")))


@st.composite
def st_invalid_ssn(draw: st.DrawFn) -> str:
    """SSN-shaped, but area 000/666/9xx, group 00 or serial 0000."""
    area, group, serial = draw(st_ssn_parts())
    how = draw(st.sampled_from(["area0", "area666", "area9xx", "group", "serial"]))
    if how == "area0":
        area = 0
    elif how == "area666":
        area = 666
    elif how == "area9xx":
        area = draw(st.integers(900, 999))
    elif how == "group":
        group = 0
    else:
        serial = 0
    value = format_ssn(area, group, serial, sep=draw(st.sampled_from("- ")))
    assert not ssn_ok(value)
    return value


@st.composite
def st_iban(draw: st.DrawFn) -> str:
    """A valid IBAN (unseparated) of one of the countries of :data:`IBAN_BBAN`."""
    country = draw(st.sampled_from(sorted(IBAN_BBAN)))
    parts = []
    for n, kind in _bban_spec(country):
        alphabet = {
            "n": string.digits,
            "a": string.ascii_uppercase,
            "c": string.ascii_uppercase + string.digits,
        }
        parts.append(draw(st.text(alphabet[kind], min_size=n, max_size=n)))
    return make_iban(country, "".join(parts))


@st.composite
def st_aba(draw: st.DrawFn) -> str:
    return make_aba(draw(st.sampled_from(ABA_PREFIXES)), draw(st.text(string.digits, min_size=6, max_size=6)))


@st.composite
def st_email(draw: st.DrawFn) -> str:
    atoms = st.text(_lower_digits, min_size=1, max_size=8)
    local = draw(st.lists(atoms, min_size=1, max_size=3))
    local_sep = draw(st.sampled_from([".", "_", "+", "-"]))
    labels = draw(st.lists(atoms, min_size=1, max_size=3))
    tld = draw(st.text(_lower, min_size=2, max_size=6))
    value = f"{local_sep.join(local)}@{'.'.join(labels)}.{tld}"
    assert email_ok(value)
    return value


@st.composite
def st_e164(draw: st.DrawFn) -> str:
    """``+`` and 8-15 digits, unseparated or in groups separated by one of space, dash or dot."""
    n = draw(st.integers(8, 15))
    digits = draw(st.sampled_from("123456789")) + draw(st.text(string.digits, min_size=n - 1, max_size=n - 1))
    sep = draw(st.sampled_from(["", " ", "-", "."]))
    if not sep:
        value = "+" + digits
    else:
        cc = draw(st.integers(1, 3))
        groups = [digits[:cc]]
        rest = digits[cc:]
        while rest:
            k = draw(st.integers(2, 4))
            if len(rest) - k == 1:  # no 1-digit group at the end
                k += 1
            groups.append(rest[:k])
            rest = rest[k:]
        if sep == "." and len(groups) == 2 and (len(groups[1]) < 8 or groups[0][0] == "0"):
            # `+` and two dot-joined groups that are no country code and number: an amount
            groups[1:] = [groups[1][:2], groups[1][2:]]
        value = "+" + sep.join(groups)
    assert e164_ok(value), value
    return value


def defang(text: str, max_digits: int) -> str:
    """``text`` with at most ``max_digits`` ASCII digits and no ASCII digit next to an ASCII letter (the
    others become ``#``), so that it cannot hold a card, SSN, routing number, IBAN or anything a digit
    detector would find."""
    out: list[str] = []
    seen = 0
    for i, ch in enumerate(text):
        if ch in ASCII_DIGITS:
            prev = text[i - 1] if i else ""
            nxt = text[i + 1] if i + 1 < len(text) else ""
            if seen >= max_digits or prev in ASCII_ALNUM - ASCII_DIGITS or nxt in ASCII_ALNUM - ASCII_DIGITS:
                out.append("#")
                continue
            seen += 1
        out.append(ch)
    return "".join(out)


def st_noise(max_digits: int = 8, max_size: int = 40) -> st.SearchStrategy[str]:
    """Arbitrary text (any code point but surrogates, digits included) that cannot hold a digit detector
    match: see :func:`defang`."""
    return st.text(st.characters(codec="utf-8"), max_size=max_size).map(lambda t: defang(t, max_digits))


#: Delimiters put right next to an embedded value: not letters or digits, not space, dash or dot (which
#: could glue the value to digits of the surrounding text as another separated group).
DELIMITERS = ["|", ";", ",", "\n", "\t", "(", ")", "[", "]", "<", ">", '"', "'", "/", "#", "!", "?", "\x00"]


def st_delimiter() -> st.SearchStrategy[str]:
    return st.sampled_from(DELIMITERS)


@st.composite
def st_chunks(draw: st.DrawFn, data: bytes, max_cuts: int = 12) -> list[bytes]:
    """``data`` cut at random points (empty pieces allowed)."""
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=max_cuts)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in pairwise(bounds)]
