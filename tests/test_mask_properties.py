"""Property tests of the masking engine (hoopgw._core.Masker / MaskStream) against docs/MASKING.md.

Expected results come from the independent oracles of tests/_support/pii.py (Luhn, mod-97, SSN rules,
the styles), never from the engine itself, except where a property relates two engine entry points
(stream vs whole buffer, find vs mask).
"""

from __future__ import annotations

import os
import string
from itertools import pairwise

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hoopgw._core import Masker, MaskStream, builtin_detectors

from ._support import pii

#: MASK_EXAMPLES=5000 for a longer hunt; the default keeps the file at a few seconds.
_N = int(os.environ.get("MASK_EXAMPLES", "200"))
PROPS = settings(max_examples=_N, deadline=None)
FEW = settings(max_examples=max(1, _N // 2), deadline=None)
KEY = b"k" * 32
STYLES = st.sampled_from(["redact", "last4"])


def card_masker(style: str) -> Masker:
    return Masker([("credit_card", style)], hash_key=KEY)


def all_masker(style: str = "redact") -> Masker:
    return Masker(
        [(name, style) for name in builtin_detectors()],
        patterns=[("ticket", "TCK-[A-Z]{3}-[0-9]{1,8}", style)],
        words=[("q7x", style)],
        hash_key=KEY,
    )


def run_stream(masker: Masker, chunks: list[bytes]) -> tuple[bytes, MaskStream]:
    """Feeds every chunk then flushes; checks the hold-back bound on the way."""
    stream = masker.stream()
    out = []
    for c in chunks:
        out.append(stream.feed(c))
        assert 0 <= stream.buffered <= masker.window
    out.append(stream.flush())
    assert stream.buffered == 0
    return b"".join(out), stream


@st.composite
def embedded(draw: st.DrawFn, value: st.SearchStrategy[str], max_digits: int) -> tuple[str, str, str]:
    """(prefix, value, suffix): the value between two delimiters, inside noise that cannot match."""
    prefix = draw(pii.st_noise(max_digits)) + draw(pii.st_delimiter())
    suffix = draw(pii.st_delimiter()) + draw(pii.st_noise(max_digits))
    return prefix, draw(value), suffix


def check_masked(masker: Masker, counter: str, parts: tuple[str, str, str], style: str) -> bytes:
    """Masks prefix+value+suffix and compares with the oracle; returns the input."""
    prefix, value, suffix = parts
    whole = (prefix + value + suffix).encode()
    expected = (prefix + pii.render(value, style, counter) + suffix).encode()
    out = masker.mask(whole)
    assert out == expected, (whole, out, expected)
    start = len(prefix.encode())
    assert masker.find(whole) == [(counter, start, start + len(value.encode()))]
    return whole


# --------------------------------------------------------------------------------------------------
# Cards


@PROPS
@given(embedded(pii.st_printed_pan().map(lambda p: p[0]), max_digits=12), STYLES)
def test_valid_pan_anywhere_is_masked(parts: tuple[str, str, str], style: str) -> None:
    prefix, printed, suffix = parts
    out = card_masker(style).mask((prefix + printed + suffix).encode())
    digits = pii.digits_only(printed)
    assert printed.encode() not in out
    assert digits.encode() not in out
    if style == "last4":
        assert pii.last4(printed).encode() in out
    check_masked(card_masker(style), "credit_card", parts, style)


@PROPS
@given(embedded(pii.st_printed_pan().map(lambda p: p[0]), max_digits=12), STYLES, st.data())
def test_valid_pan_split_across_chunks_is_masked(
    parts: tuple[str, str, str], style: str, data: st.DataObject
) -> None:
    masker = card_masker(style)
    whole = (parts[0] + parts[1] + parts[2]).encode()
    chunks = data.draw(pii.st_chunks(whole))
    out, stream = run_stream(masker, chunks)
    assert out == masker.mask(whole)
    assert out == (parts[0] + pii.render(parts[1], style, "credit_card") + parts[2]).encode()
    assert stream.counts.get("credit_card", 0) == 1


@PROPS
@given(
    pii.st_pan(),
    st.integers(1, 9),
    st.sampled_from(pii.SEPARATORS),
    pii.st_noise(12),
    pii.st_delimiter(),
    pii.st_delimiter(),
    pii.st_noise(12),
)
def test_digit_runs_failing_luhn_are_left_alone(
    pan: str, delta: int, sep: str, pre: str, d1: str, d2: str, post: str
) -> None:
    printed = pii.format_pan(pii.break_luhn(pan, delta), sep)
    assume(not pii.has_card_subrun(printed, sep))
    whole = (pre + d1 + printed + d2 + post).encode()
    masker = card_masker("redact")
    assert masker.mask(whole) is whole
    assert masker.find(whole) == []


# --------------------------------------------------------------------------------------------------
# SSN, IBAN, routing numbers, emails, phones


@PROPS
@given(embedded(pii.st_ssn(), max_digits=8), STYLES)
def test_valid_ssn_is_masked(parts: tuple[str, str, str], style: str) -> None:
    check_masked(Masker([("us_ssn", style)]), "us_ssn", parts, style)


@PROPS
@given(embedded(pii.st_invalid_ssn(), max_digits=8))
def test_invalid_ssn_is_left_alone(parts: tuple[str, str, str]) -> None:
    whole = "".join(parts).encode()
    masker = Masker([("us_ssn", "redact")])
    assert masker.mask(whole) is whole
    assert masker.find(whole) == []


@PROPS
@given(embedded(pii.st_iban(), max_digits=8), st.booleans(), STYLES)
def test_valid_iban_is_masked(parts: tuple[str, str, str], grouped: bool, style: str) -> None:
    prefix, iban, suffix = parts
    printed = pii.format_iban(iban, grouped)
    check_masked(Masker([("iban", style)]), "iban", (prefix, printed, suffix), style)


@PROPS
@given(embedded(pii.st_iban(), max_digits=8), st.booleans(), st.integers(0, 99), st.data())
def test_iban_with_wrong_check_digits_is_left_alone(
    parts: tuple[str, str, str], grouped: bool, new: int, data: st.DataObject
) -> None:
    prefix, iban, suffix = parts
    if data.draw(st.booleans(), label="break check digits (else one BBAN character)"):
        assume(not pii.iban_ok(f"{iban[:2]}{new:02d}{iban[4:]}"))
        bad = pii.wrong_check_digits(iban, new)
    else:
        i = data.draw(st.integers(4, len(iban) - 1), label="position")
        alphabet = string.digits if iban[i].isdigit() else string.ascii_uppercase
        ch = data.draw(st.sampled_from(alphabet.replace(iban[i], "")), label="replacement")
        bad = iban[:i] + ch + iban[i + 1 :]
        assert not pii.iban_ok(bad)
    whole = (prefix + pii.format_iban(bad, grouped) + suffix).encode()
    masker = Masker([("iban", "redact")])
    assert masker.mask(whole) is whole


@PROPS
@given(embedded(pii.st_aba(), max_digits=8), STYLES)
def test_valid_routing_number_is_masked(parts: tuple[str, str, str], style: str) -> None:
    check_masked(Masker([("us_routing", style)]), "us_routing", parts, style)


@PROPS
@given(embedded(pii.st_email(), max_digits=8), STYLES)
def test_valid_email_is_masked(parts: tuple[str, str, str], style: str) -> None:
    prefix, value, suffix = parts
    parts = (prefix.replace("@", "#"), value, suffix.replace("@", "#"))  # noise must not hold an email
    check_masked(Masker([("email", style)]), "email", parts, style)


@PROPS
@given(embedded(pii.st_e164(), max_digits=7), STYLES)
def test_valid_e164_phone_is_masked(parts: tuple[str, str, str], style: str) -> None:
    check_masked(Masker([("phone", style)]), "phone", parts, style)


# --------------------------------------------------------------------------------------------------
# No match -> the very same object


SAFE_ASCII = string.ascii_lowercase + string.digits + " \n\t\r,;!?()[]{}<>*#/_~'\"|\\^`$%&"


@PROPS
@given(
    st.text(
        st.one_of(st.sampled_from(SAFE_ASCII), st.characters(min_codepoint=128, codec="utf-8")),
        max_size=200,
    ).map(lambda t: pii.defang(t, 8))
)
def test_text_without_matches_is_returned_as_is(text: str) -> None:
    """Lowercase words, at most 8 digits never next to a letter, no @ . = : + -: nothing can match."""
    data = text.encode()
    masker = all_masker()
    assert masker.find(data) == []
    assert masker.mask(data) is data
    assert masker.mask_text(text) == text
    out, _ = run_stream(masker, [data[: len(data) // 2], data[len(data) // 2 :]])
    assert out == data


# --------------------------------------------------------------------------------------------------
# hash style


def token_of(masker: Masker, value: str) -> str:
    out = masker.mask(f"<{value}>".encode())
    assert out.startswith(b"<") and out.endswith(b">"), out
    token = out[1:-1].decode()
    assert pii.TOKEN_RE.fullmatch(token), token
    return token


@PROPS
@given(pii.st_pan(), pii.st_pan(), st.sampled_from([" ", "-"]))
def test_hash_tokens(pan: str, other: str, sep: str) -> None:
    masker = Masker([("credit_card", "hash")], hash_key=KEY)
    token = token_of(masker, pan)
    assert token_of(masker, pan) == token
    assert token_of(Masker([("credit_card", "hash")], hash_key=KEY), pan) == token
    assert token_of(masker, pii.format_pan(pan, sep)) == token
    assert token_of(Masker([("credit_card", "hash")], hash_key=b"x" * 32), pan) != token
    if other != pan:
        assert token_of(masker, other) != token
    both = masker.mask(f"{pan}|{pii.format_pan(pan, sep)}".encode())
    assert both == f"{token}|{token}".encode()


@PROPS
@given(pii.st_ssn_parts())
def test_hash_ssn_normalised(parts: tuple[int, int, int]) -> None:
    masker = Masker([("us_ssn", "hash")], hash_key=KEY)
    assert token_of(masker, pii.format_ssn(*parts, sep="-")) == token_of(
        masker, pii.format_ssn(*parts, sep=" ")
    )


# --------------------------------------------------------------------------------------------------
# Arbitrary input: never raise; find() well-formed; stream == whole


def ipv4_text() -> st.SearchStrategy[str]:
    return st.lists(st.integers(0, 300), min_size=4, max_size=5).map(lambda xs: ".".join(map(str, xs)))


PII_PIECE = st.one_of(
    pii.st_printed_pan().map(lambda p: p[0]),
    pii.st_ssn(),
    pii.st_invalid_ssn(),
    st.tuples(pii.st_iban(), st.booleans()).map(lambda t: pii.format_iban(*t)),
    pii.st_email(),
    pii.st_e164(),
    pii.st_aba(),
    ipv4_text(),
    st.text(string.ascii_uppercase + string.digits, min_size=16, max_size=16).map(lambda s: "AKIA" + s),
    st.just("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"),
    st.sampled_from(["password=", "PASSWD: ", "token = '", "api_key=", "secret:"]),
    st.text(string.ascii_letters + string.digits, max_size=12),
    st.text(string.digits, min_size=1, max_size=30),
    st.sampled_from([" ", "-", ".", "\n", "@", "+", "(", ")", "'", "TCK-ABC-12", "Q7X", "\r\n"]),
    st.text(st.characters(codec="utf-8"), max_size=10),
)


@st.composite
def pii_soup(draw: st.DrawFn) -> bytes:
    """Sensitive values, near misses, separators and noise glued together in any order."""
    return "".join(draw(st.lists(PII_PIECE, max_size=12))).encode()


ANY_BYTES = st.one_of(st.binary(max_size=300), pii_soup())


def check_spans(masker: Masker, data: bytes) -> None:
    names = set(masker.counter_names)
    spans = masker.find(data)
    for name, start, end in spans:
        assert name in names
        assert 0 <= start < end <= len(data)
    for (_, _, end), (_, start, _) in pairwise(spans):
        assert end <= start, spans


@PROPS
@given(ANY_BYTES, st.sampled_from(["redact", "last4", "hash"]))
def test_find_spans_sorted_disjoint_in_bounds(data: bytes, style: str) -> None:
    masker = all_masker(style)
    check_spans(masker, data)
    out = masker.mask(data)
    assert isinstance(out, bytes)
    if not masker.find(data):
        assert out is data


@PROPS
@given(ANY_BYTES, st.sampled_from(["redact", "last4", "hash"]))
def test_mask_never_raises(data: bytes, style: str) -> None:
    masker = all_masker(style)
    masker.mask(data)
    masker.mask_many([data, data[:7], b""])
    masker.mask_text(data.decode("utf-8", "replace"))


@PROPS
@given(pii_soup(), st.sampled_from(["redact", "last4", "hash"]), st.data())
def test_stream_equals_whole_buffer(data: bytes, style: str, d: st.DataObject) -> None:
    masker = all_masker(style)
    chunks = d.draw(pii.st_chunks(data))
    out, stream = run_stream(masker, chunks)
    assert out == masker.mask(data)
    found: dict[str, int] = {}
    for name, _, _ in masker.find(data):
        found[name] = found.get(name, 0) + 1
    assert {k: v for k, v in stream.counts.items() if v} == found


@FEW
@given(st.binary(max_size=400), st.data())
def test_stream_never_raises_on_binary(data: bytes, d: st.DataObject) -> None:
    masker = all_masker("last4")
    out, _ = run_stream(masker, d.draw(pii.st_chunks(data)))
    assert out == masker.mask(data)


@FEW
@given(pii.st_pan(), st.integers(1, 400), st.integers(1, 400), st.data())
def test_card_inside_longer_digit_run_is_not_masked(
    pan: str, left: int, right: int, d: st.DataObject
) -> None:
    """A card inside a longer digit run (even longer than the window) is part of an id, also streamed."""
    run = "1" * left + pan + "2" * right
    assume(len(run) > 19 or not pii.luhn_ok(run))
    data = f"id {run} end\n".encode()
    masker = card_masker("redact")
    assert masker.mask(data) is data
    out, _ = run_stream(masker, d.draw(pii.st_chunks(data)))
    assert out == data


@FEW
@given(st.lists(ANY_BYTES, max_size=6))
def test_mask_many_is_mask_per_value(values: list[bytes]) -> None:
    masker = all_masker("last4")
    assert masker.mask_many(values) == [masker.mask(v) for v in values]


# --------------------------------------------------------------------------------------------------
# Neighbouring values: a match must not eat part of the next value and leave the rest in clear

NANP = st.tuples(
    st.text(string.digits, min_size=3, max_size=3),
    st.text(string.digits, min_size=3, max_size=3),
    st.text(string.digits, min_size=4, max_size=4),
    st.sampled_from(["({}) {}-{}", "{}-{}-{}", "{}.{}.{}"]),
).map(lambda t: t[3].format(*t[:3]))

SENSITIVE = st.one_of(
    pii.st_printed_pan().map(lambda p: p[0]),
    pii.st_ssn(),
    st.tuples(pii.st_iban(), st.booleans()).map(lambda t: pii.format_iban(*t)),
    # `+` and two dot-joined groups (`+1.4155552671`) has its own tests (test_valid_e164_phone_is_masked,
    # test_mask_engine); kept out here so that a failure of this property is about overlaps
    pii.st_e164().filter(lambda v: v.count(".") != 1),
    NANP,
    pii.st_aba(),
    pii.st_email(),
)


@PROPS
@given(st.lists(SENSITIVE, min_size=2, max_size=3), st.sampled_from([" ", "\t", ", "]))
def test_neighbouring_values_leave_nothing_in_clear(values: list[str], sep: str) -> None:
    """Values that are each sensitive by the table of docs/MASKING.md, side by side: whatever the
    engine decides about their overlap, no letter or digit of them may come out."""
    masker = all_masker("redact")
    out = masker.mask(sep.join(values).encode())
    assert not any(chr(b) in pii.ASCII_ALNUM for b in out), (values, out)
