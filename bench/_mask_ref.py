"""Masking benchmark support: a deterministic bank-like corpus and two reference maskers.

- :func:`make_rows` builds digit-heavy result rows (ids, amounts, dates, timestamps, names, statuses,
  account numbers that fail Luhn, 9-digit ids that fail the ABA checksum) with PII (cards with and
  without separators, SSNs, IBANs, emails, phones) in a given fraction of the rows.
- :class:`ReMasker` does what ``hoopgw._core.Masker`` does with every built-in detector and style
  ``last4``, in pure Python: one compiled alternation of all detector regexes, ``re.sub`` with a
  function that validates the candidate (Luhn, SSN ranges, IBAN mod-97, ABA, octets) and rewrites it.
- :class:`HyperscanScanner` compiles the same regexes into one Hyperscan block-mode database
  (``HS_FLAG_SOM_LEFTMOST``), scans, and in Python resolves overlaps (leftmost-longest) and validates
  the candidates with the same checks. It counts; it does not rewrite.

The regexes follow docs/MASKING.md closely enough for the counts to agree on this corpus; they are a
yardstick, not a second implementation to keep in sync.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Built-in detectors, in the order of docs/MASKING.md.
DETECTORS = (
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
)

# ---------------------------------------------------------------------------------------- validators

_ALNUM = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_DIGITS = frozenset(b"0123456789")


def luhn_check_digit(payload: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(payload)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def luhn_ok(digits: bytes) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = c - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def aba_ok(digits: bytes) -> bool:
    if len(digits) != 9:
        return False
    prefix = (digits[0] - 48) * 10 + digits[1] - 48
    if not (prefix <= 12 or 21 <= prefix <= 32 or 61 <= prefix <= 72 or prefix == 80):
        return False
    d = [c - 48 for c in digits]
    return (3 * (d[0] + d[3] + d[6]) + 7 * (d[1] + d[4] + d[7]) + d[2] + d[5] + d[8]) % 10 == 0


#: IBAN lengths by country (ISO 13616 registry).
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
    "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip


def iban_ok(text: bytes) -> bool:
    s = text.replace(b" ", b"").decode("ascii")
    if IBAN_LENGTHS.get(s[:2]) != len(s):
        return False
    return int("".join(str(int(c, 36)) for c in s[4:] + s[:4])) % 97 == 1


def ssn_ok(text: bytes) -> bool:
    area, group, serial = text[0:3], text[4:6], text[7:11]
    return area not in (b"000", b"666") and area[0] != 57 and group != b"00" and serial != b"0000"


def card_ok(text: bytes) -> bool:
    digits = bytes(c for c in text if c in _DIGITS)
    return 13 <= len(digits) <= 19 and luhn_ok(digits)


def phone_ok(text: bytes) -> bool:
    if text[:1] != b"+":
        return True  # the US shapes are exact
    return 8 <= sum(c in _DIGITS for c in text) <= 15


def ipv4_ok(text: bytes) -> bool:
    for octet in text.split(b"."):
        if len(octet) > 1 and octet[0] == 48:
            return False
        if int(octet) > 255:
            return False
    return True


def always(_text: bytes) -> bool:
    return True


VALIDATORS: dict[str, Callable[[bytes], bool]] = {
    "credit_card": card_ok,
    "us_ssn": ssn_ok,
    "iban": iban_ok,
    "email": always,
    "phone": phone_ok,
    "us_routing": aba_ok,
    "ipv4": ipv4_ok,
    "aws_access_key": always,
    "jwt": always,
    "password_assignment": always,
}


def last4(value: bytes) -> bytes:
    """Style ``last4``: letters and digits other than the last four become ``*``, separators kept."""
    keep = sum(c in _ALNUM for c in value) - 4
    out = bytearray(value)
    for i, c in enumerate(out):
        if keep <= 0:
            break
        if c in _ALNUM:
            out[i] = 42
            keep -= 1
    return bytes(out)


# ------------------------------------------------------------------------------------------- regexes

# (detector, core regex, boundary class). The boundary is a character that is not in the class, or the
# start/end of the input: digits for numbers, letters and digits for the rest (docs/MASKING.md).
_NUM = "0-9"
_WORD = "A-Za-z0-9"
PATTERNS: tuple[tuple[str, str, str], ...] = (
    ("password_assignment", r"(?:[Pp][Aa][Ss][Ss][Ww][Oo][Rr][Dd]|[Pp][Aa][Ss][Ss][Ww][Dd]|[Pp][Ww][Dd]"
     r"|[Ss][Ee][Cc][Rr][Ee][Tt]|[Tt][Oo][Kk][Ee][Nn]|[Aa][Pp][Ii]_[Kk][Ee][Yy])[ \t]*[=:][ \t]*['\"]?"
     r"[^ \t\r\n'\"]+", _WORD),
    ("jwt", r"eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", _WORD),
    ("aws_access_key", r"(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}", _WORD),
    ("email", r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}", _WORD),
    ("iban", r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}", _WORD),
    ("iban", r"[A-Z]{2}[0-9]{2}(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,3})?", _WORD),
    ("us_ssn", r"[0-9]{3}-[0-9]{2}-[0-9]{4}", _NUM),
    ("us_ssn", r"[0-9]{3} [0-9]{2} [0-9]{4}", _NUM),
    ("phone", r"\+[0-9]{1,3}(?:[ .-]?(?:\([0-9]{1,4}\)|[0-9]{1,4})){2,6}", _NUM),
    ("phone", r"\([0-9]{3}\) ?[0-9]{3}-[0-9]{4}", _NUM),
    ("phone", r"[0-9]{3}-[0-9]{3}-[0-9]{4}", _NUM),
    ("phone", r"[0-9]{3}\.[0-9]{3}\.[0-9]{4}", _NUM),
    ("credit_card", r"[0-9]{13,19}", _NUM),
    ("credit_card", r"[0-9]{3,7}(?:-[0-9]{3,7}){1,5}", _NUM),
    ("credit_card", r"[0-9]{3,7}(?: [0-9]{3,7}){1,5}", _NUM),
    ("us_routing", r"[0-9]{9}", _NUM),
    ("ipv4", r"(?:[0-9]{1,3}\.){3}[0-9]{1,3}", _NUM),
)  # fmt: skip


def _value_span(detector: str, text: bytes) -> tuple[int, int]:
    """The part of a match that is masked: the value of a password assignment, else all of it."""
    if detector == "password_assignment":
        m = _PW_VALUE.search(text)
        assert m is not None
        return m.start(1), m.end(1)
    return 0, len(text)


_PW_VALUE = re.compile(rb"[=:][ \t]*['\"]?([^ \t\r\n'\"]+)$")


class ReMasker:
    """Pure-Python ``re`` masker with every built-in detector, style ``last4``."""

    def __init__(self) -> None:
        # Arranged for sre (about 3x faster than a flat alternation with lookarounds in every branch):
        # a lookahead on the possible first characters, then the number detectors behind one digit
        # boundary (those starting with a digit behind one more lookahead), then the others.
        self.names = [name for name, _, _ in PATTERNS]
        groups = [(f"(?P<g{i}>{core})", core, cls) for i, (_, core, cls) in enumerate(PATTERNS)]
        digit = [g for g, core, cls in groups if cls == _NUM and core[0] == "["]
        punct = [g for g, core, cls in groups if cls == _NUM and core[0] != "["]
        word = [g for g, _, cls in groups if cls == _WORD]
        regex = (
            f"(?=[0-9A-Za-z(+])(?:(?<![0-9])(?:(?=[0-9])(?:{'|'.join(digit)})|{'|'.join(punct)})(?![0-9])"
            f"|(?<![A-Za-z0-9])(?:{'|'.join(word)})(?![A-Za-z0-9]))"
        )
        self.regex = re.compile(regex.encode())
        self.counts: Counter[str] = Counter()

    def _repl(self, m: re.Match[bytes]) -> bytes:
        group = m.lastgroup
        assert group is not None  # every alternative of the regex is a named group "gN"
        name = self.names[int(group[1:])]
        text = m.group()
        if not VALIDATORS[name](text):
            return text
        self.counts[name] += 1
        a, b = _value_span(name, text)
        return text[:a] + last4(text[a:b]) + text[b:]

    def mask(self, data: bytes) -> bytes:
        return self.regex.sub(self._repl, data)

    def mask_many(self, values: list[bytes]) -> list[bytes]:
        sub, repl = self.regex.sub, self._repl
        return [sub(repl, v) for v in values]


class HyperscanScanner:
    """The same regexes in one Hyperscan block-mode database; counts validated, non-overlapping matches.

    Hyperscan has no lookaround, so each pattern is ``[^class]core[^class]`` and the input is scanned
    with a newline before and after it (one copy per scan). It reports every end offset of every pattern
    (with ``HS_FLAG_SOM_LEFTMOST``, the leftmost start), so Python sorts the candidates, keeps the
    leftmost-longest valid ones and runs the same validators as :class:`ReMasker`. No rewriting.
    """

    def __init__(self, hyperscan: Any) -> None:
        self.hs = hyperscan
        self.names = [name for name, _, _ in PATTERNS]
        exprs = [f"[^{cls}]{core}[^{cls}]".encode() for _, core, cls in PATTERNS]
        self.db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        self.db.compile(
            expressions=exprs,
            ids=list(range(len(exprs))),
            elements=len(exprs),
            flags=[hyperscan.HS_FLAG_SOM_LEFTMOST] * len(exprs),
        )
        self.scratch = hyperscan.Scratch(self.db)
        self.counts: Counter[str] = Counter()
        self.raw_matches = 0
        self._hits: list[tuple[int, int, int]] = []

    def _on_match(self, pid: int, start: int, end: int, _flags: int, _ctx: object) -> None:
        # Offsets are into b"\n" + data + b"\n" and include one boundary byte on each side.
        self._hits.append((start, -(end - 2), pid))

    def _resolve(self, data: bytes) -> int:
        hits, self._hits = self._hits, []
        hits.sort()
        pos = found = 0
        for start, neg_end, pid in hits:
            if start < pos:
                continue
            end = -neg_end
            name = self.names[pid]
            if VALIDATORS[name](data[start:end]):
                self.counts[name] += 1
                found += 1
                pos = end
        return found

    def scan(self, data: bytes) -> int:
        self.db.scan(b"\n" + data + b"\n", match_event_handler=self._on_match, scratch=self.scratch)
        return self._resolve(data) if self._hits else 0

    def _count(self, _pid: int, _start: int, _end: int, _flags: int, _ctx: object) -> None:
        self.raw_matches += 1

    def scan_raw(self, data: bytes) -> int:
        """Scan only: every match report goes to a callback that counts it (no validation)."""
        self.raw_matches = 0
        self.db.scan(b"\n" + data + b"\n", match_event_handler=self._count, scratch=self.scratch)
        return self.raw_matches

    def scan_raw_many(self, values: list[bytes]) -> int:
        self.raw_matches = 0
        scan, count, scratch = self.db.scan, self._count, self.scratch
        for v in values:
            scan(b"\n" + v + b"\n", match_event_handler=count, scratch=scratch)
        return self.raw_matches

    def scan_many(self, values: list[bytes]) -> int:
        scan, on_match, scratch = self.db.scan, self._on_match, self.scratch
        found = 0
        for v in values:
            scan(b"\n" + v + b"\n", match_event_handler=on_match, scratch=scratch)
            if self._hits:
                found += self._resolve(v)
        return found


# -------------------------------------------------------------------------------------------- corpus

_FIRST = ("Alice", "Bruno", "Chen", "Dana", "Emeka", "Farah", "Gustav", "Hana", "Ivan", "Julia", "Kofi")
_LAST = ("Okafor", "Schmidt", "Nakamura", "Garcia", "Novak", "Haddad", "Rossi", "Patel", "Moreau", "Li")
_STATUS = ("active", "pending", "closed", "settled", "failed", "posted", "held")
_MEMO = (
    "monthly rent",
    "salary",
    "ATM withdrawal",
    "groceries",
    "to savings",
    "account fee",
    "refund",
    "",
    "interest",
)
_KIND = ("Card payment", "Direct debit", "SEPA transfer", "Wire transfer", "Standing order", "Cash deposit")
_DOMAINS = ("example.com", "bank-mail.co.uk", "corp.example.org", "mail.example.net")
#: PII kinds injected in rows, and the detector that should find each.
PII_KINDS = {
    "card": "credit_card",
    "card_spaced": "credit_card",
    "card_dashed": "credit_card",
    "amex_spaced": "credit_card",
    "ssn": "us_ssn",
    "iban": "iban",
    "iban_spaced": "iban",
    "email": "email",
    "phone_e164": "phone",
    "phone_us": "phone",
}


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def make_card(rng: random.Random, length: int = 16, prefix: str = "4") -> str:
    body = prefix + _digits(rng, length - len(prefix) - 1)
    return body + luhn_check_digit(body)


def make_iban(rng: random.Random) -> str:
    country, bban = rng.choice(
        [
            ("DE", _digits(rng, 18)),
            ("GB", "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(4)) + _digits(rng, 14)),
            ("FR", _digits(rng, 23)),
            ("NL", "ABNA" + _digits(rng, 10)),
        ]
    )
    check = 98 - int("".join(str(int(c, 36)) for c in bban + country + "00")) % 97
    return f"{country}{check:02d}{bban}"


def make_ssn(rng: random.Random) -> str:
    area = rng.choice([a for a in range(1, 900) if a != 666])
    return f"{area:03d}-{rng.randrange(1, 100):02d}-{rng.randrange(1, 10000):04d}"


def make_pii(rng: random.Random, kind: str) -> str:
    if kind == "card":
        return make_card(rng, rng.choice((15, 16, 16, 19)))
    if kind == "card_spaced":
        c = make_card(rng)
        return " ".join(c[i : i + 4] for i in range(0, 16, 4))
    if kind == "card_dashed":
        c = make_card(rng, prefix="55")
        return "-".join(c[i : i + 4] for i in range(0, 16, 4))
    if kind == "amex_spaced":
        c = make_card(rng, 15, "37")
        return f"{c[:4]} {c[4:10]} {c[10:]}"
    if kind == "ssn":
        return make_ssn(rng)
    if kind == "iban":
        return make_iban(rng)
    if kind == "iban_spaced":
        s = make_iban(rng)
        return " ".join(s[i : i + 4] for i in range(0, len(s), 4))
    if kind == "email":
        local = f"{rng.choice(_FIRST).lower()}.{rng.choice(_LAST).lower()}{rng.randrange(100)}"
        return f"{local}@{rng.choice(_DOMAINS)}"
    if kind == "phone_e164":
        return rng.choice(
            [f"+1 415 555 {_digits(rng, 4)}", f"+44 20 7946 {_digits(rng, 4)}", f"+49151{_digits(rng, 8)}"]
        )
    if kind == "phone_us":
        a, b, c = _digits(rng, 3), _digits(rng, 3), _digits(rng, 4)
        return rng.choice([f"({a}) {b}-{c}", f"{a}-{b}-{c}", f"{a}.{b}.{c}"])
    raise ValueError(kind)


def _account_number(rng: random.Random) -> str:
    n = _digits(rng, rng.choice((10, 12, 14, 16)))
    if len(n) >= 13 and luhn_ok(n.encode()):  # ids are not cards
        n = n[:-1] + str((int(n[-1]) + 1) % 10)
    return n


def _nine_digit_id(rng: random.Random) -> str:
    n = _digits(rng, 9)
    if aba_ok(n.encode()):  # nor routing numbers
        n = n[:-1] + str((int(n[-1]) + 1) % 10)
    return n


@dataclass
class Corpus:
    rows: list[list[bytes]]
    expected: Counter[str] = field(default_factory=Counter)

    @property
    def fields(self) -> list[bytes]:
        return [f for row in self.rows for f in row]

    def text(self) -> bytes:
        """The rows as tab-separated lines (like COPY TO STDOUT or psql -A output)."""
        return b"\n".join(b"\t".join(row) for row in self.rows) + b"\n"


def make_row(rng: random.Random, i: int, pii: str | None) -> list[str]:
    day = f"2024-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
    amount = f"{rng.randrange(-50_000, 500_000) / 100:.2f}"
    row = [
        str(1_000_000 + i),  # id
        _nine_digit_id(rng),  # customer id
        _account_number(rng),  # account number (not a card)
        amount,
        day,
        f"{day} {rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}.{_digits(rng, 6)}+00",
        f"{rng.choice(_FIRST)} {rng.choice(_LAST)}",
        rng.choice(_STATUS),
        rng.choice(_KIND),
        f"{rng.randrange(1, 300):04d}",  # branch
        rng.choice(_MEMO),
    ]
    if pii is not None:
        value = make_pii(rng, pii)
        row[-1] = rng.choice((value, value, f"ref {value}", f"{value} on file"))
    return row


def make_rows(n_rows: int, pii_rate: float, seed: int = 2024) -> Corpus:
    """``n_rows`` rows; ``pii_rate`` of them carry one PII value (kinds in turn) in the memo column."""
    rng = random.Random(seed)
    kinds = list(PII_KINDS)
    corpus = Corpus(rows=[])
    k = 0
    for i in range(n_rows):
        kind = None
        if rng.random() < pii_rate:
            kind = kinds[k % len(kinds)]
            k += 1
            corpus.expected[PII_KINDS[kind]] += 1
        corpus.rows.append([f.encode() for f in make_row(rng, i, kind)])
    return corpus


def rows_for_size(target_bytes: int, pii_rate: float, seed: int = 2024) -> Corpus:
    """About ``target_bytes`` of rows (tab-separated text)."""
    probe = make_rows(200, pii_rate, seed)
    per_row = len(probe.text()) / 200
    return make_rows(max(1, int(target_bytes / per_row)), pii_rate, seed)


def chunks(data: Sequence[bytes], n: int) -> Iterator[Sequence[bytes]]:
    for i in range(0, len(data), n):
        yield data[i : i + n]
