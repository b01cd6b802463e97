"""Throughput of the PostgreSQL framing hot path on DataRow-heavy server traffic.

Run: ``pytest bench/test_bench_framer.py`` (not part of the normal test run). Each benchmark also
checks that what it measured is correct, and records frames/s in ``extra_info``.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest

from hoopgw import _core

ROWS = 20_000
READ_SIZE = 65_536


def msg(code: str, body: bytes = b"") -> bytes:
    return _core.encode_message(ord(code), body)


def data_row(i: int) -> bytes:
    values = [str(i).encode(), b"4111 1111 1111 %04d" % (i % 10_000), b"alice@example.com", b"x" * 40]
    return msg("D", struct.pack("!h", len(values)) + b"".join(struct.pack("!i", len(v)) + v for v in values))


def row_description() -> bytes:
    body = struct.pack("!h", 4)
    for name in ("id", "card", "email", "note"):
        body += name.encode() + b"\0" + struct.pack("!ihihih", 16384, 1, 25, -1, -1, 0)
    return msg("T", body)


def server_stream() -> bytes:
    rows = b"".join(data_row(i) for i in range(ROWS))
    return row_description() + rows + msg("C", b"SELECT %d\0" % ROWS) + _core.encode_ready_for_query("I")


STREAM = server_stream()
FRAMES = ROWS + 3
READS = [STREAM[i : i + READ_SIZE] for i in range(0, len(STREAM), READ_SIZE)]


def feed_session() -> tuple[int, list[_core.Statement]]:
    session = _core.PgSession()
    session.feed_client(msg("Q", b"select * from accounts\0"), 1)
    forwarded = 0
    done: list[_core.Statement] = []
    for read in READS:
        out, d = session.feed_server(read, 2)
        forwarded += len(out)
        if d:
            done.extend(d)
    return forwarded, done


def feed_framer() -> int:
    framer = _core.Framer()
    frames = 0
    for read in READS:
        framer.feed(read)
        while framer.next_message() is not None:
            frames += 1
    return frames


def record(benchmark: Any) -> None:
    mean = benchmark.stats.stats.mean
    benchmark.extra_info["frames_per_second"] = round(FRAMES / mean)
    benchmark.extra_info["megabytes_per_second"] = round(len(STREAM) / mean / 1e6, 1)


def test_session_feed_server(benchmark: Any) -> None:
    forwarded, done = benchmark(feed_session)
    assert forwarded == len(STREAM)
    [statement] = done
    assert (statement.tags, statement.rows, statement.status) == ([f"SELECT {ROWS}"], ROWS, "ok")
    record(benchmark)


def test_session_whole_frames_zero_copy(benchmark: Any) -> None:
    """Reads that end on frame boundaries are forwarded as the same object."""
    batch = b"".join(data_row(i) for i in range(500))
    session = _core.PgSession()
    session.feed_client(msg("Q", b"select\0"), 1)

    def run() -> bytes:
        out, _ = session.feed_server(batch, 2)
        return out

    assert benchmark(run) is batch
    benchmark.extra_info["frames_per_second"] = round(500 / benchmark.stats.stats.mean)


def test_framer(benchmark: Any) -> None:
    assert benchmark(feed_framer) == FRAMES
    record(benchmark)


@pytest.mark.parametrize("read_size", [1_024, 16_384, 262_144])
def test_session_read_sizes(benchmark: Any, read_size: int) -> None:
    reads = [STREAM[i : i + read_size] for i in range(0, len(STREAM), read_size)]

    def run() -> int:
        session = _core.PgSession()
        session.feed_client(msg("Q", b"select\0"), 1)
        return sum(len(session.feed_server(r, 2)[0]) for r in reads)

    assert benchmark(run) == len(STREAM)
    record(benchmark)
