"""Throughput of the masking engine (``hoopgw._core.Masker``) on digit-heavy bank rows.

Run: ``pytest bench/test_bench_mask.py --benchmark-only`` (not part of the normal test run; ``make
bench`` runs it). Every built-in detector is on, style ``last4``; the corpus comes from
``bench/_mask_ref.py`` (fixed seed) with PII in 0 %, 1 % or 50 % of the rows. Each benchmark checks what
it measured and records MB/s or ns per field in ``extra_info``. ``bench/mask_bench.py`` compares the same
work against Python ``re`` and Hyperscan.
"""

from __future__ import annotations

from typing import Any

import pytest

from bench._mask_ref import DETECTORS, Corpus, ReMasker, make_rows, rows_for_size
from hoopgw import _core

BUFFER_BYTES = 1_000_000
FIELDS = 50_000
RATES = {"0%": 0.0, "1%": 0.01, "50%": 0.5}
_corpora: dict[tuple[str, str], Corpus] = {}


def corpus(kind: str, rate: str) -> Corpus:
    key = (kind, rate)
    if key not in _corpora:
        if kind == "buffer":
            _corpora[key] = rows_for_size(BUFFER_BYTES, RATES[rate])
        else:
            _corpora[key] = make_rows(FIELDS // 11 + 1, RATES[rate], seed=2025)
    return _corpora[key]


def all_detectors(style: str = "last4") -> _core.Masker:
    return _core.Masker(detectors=[(name, style) for name in DETECTORS], hash_key=b"k" * 32)


def check_counts(masker: _core.Masker, c: Corpus, buf: bytes) -> None:
    found = len(masker.find(buf))
    expected = sum(c.expected.values())
    assert abs(found - expected) <= max(2, expected // 50), (found, expected)  # within 2 %


@pytest.mark.parametrize("rate", list(RATES))
def test_mask_buffer(benchmark: Any, rate: str) -> None:
    c = corpus("buffer", rate)
    buf = c.text()
    masker = all_detectors()
    out = benchmark(masker.mask, buf)
    assert len(out) == len(buf)  # last4 keeps lengths
    if rate == "0%":
        assert out is buf  # nothing to mask in digit-heavy rows: no false positive, no copy
    check_counts(masker, c, buf)
    benchmark.extra_info["megabytes_per_second"] = round(len(buf) / benchmark.stats.stats.mean / 1e6, 1)


@pytest.mark.parametrize("rate", list(RATES))
def test_mask_many_fields(benchmark: Any, rate: str) -> None:
    fields = corpus("fields", rate).fields[:FIELDS]
    masker = all_detectors()
    out = benchmark(masker.mask_many, fields)
    assert len(out) == len(fields)
    changed = sum(a is not b for a, b in zip(out, fields, strict=True))
    if rate == "0%":
        assert changed == 0
    else:
        assert changed > 0
    benchmark.extra_info["ns_per_field"] = round(benchmark.stats.stats.mean / len(fields) * 1e9, 1)
    benchmark.extra_info["avg_field_bytes"] = round(sum(map(len, fields)) / len(fields), 1)


@pytest.mark.parametrize("style", ["redact", "last4", "hash"])
def test_mask_buffer_styles(benchmark: Any, style: str) -> None:
    """50 % PII rows: the rewrite path, per style."""
    buf = corpus("buffer", "50%").text()
    masker = all_detectors(style)
    out = benchmark(masker.mask, buf)
    assert out != buf
    benchmark.extra_info["megabytes_per_second"] = round(len(buf) / benchmark.stats.stats.mean / 1e6, 1)


def test_mask_stream(benchmark: Any) -> None:
    """The byte-stream path (SSH, HTTP) over 16 KiB reads, 1 % PII rows."""
    buf = corpus("buffer", "1%").text()
    reads = [buf[i : i + 16_384] for i in range(0, len(buf), 16_384)]
    masker = all_detectors()

    def run() -> int:
        stream = masker.stream()
        return sum(len(stream.feed(r)) for r in reads) + len(stream.flush())

    assert benchmark(run) == len(buf)
    benchmark.extra_info["megabytes_per_second"] = round(len(buf) / benchmark.stats.stats.mean / 1e6, 1)


def test_masker_compile(benchmark: Any) -> None:
    """Compiling every built-in detector (once per connection, at configuration load)."""
    masker = benchmark(all_detectors)
    assert set(DETECTORS) <= set(masker.counter_names)


def test_python_re_reference(benchmark: Any) -> None:
    """The pure-Python ``re`` equivalent, on a tenth of the buffer, for scale."""
    c = rows_for_size(BUFFER_BYTES // 10, 0.01)
    buf = c.text()
    rx = ReMasker()
    benchmark.pedantic(rx.mask, args=(buf,), rounds=3, iterations=1)
    rx.counts.clear()
    rx.mask(buf)
    assert sum(rx.counts.values()) == sum(c.expected.values())
    benchmark.extra_info["megabytes_per_second"] = round(len(buf) / benchmark.stats.stats.mean / 1e6, 2)
