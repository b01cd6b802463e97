#!/usr/bin/env python3
"""The audit chain: ``audit verify`` speed and memory, and the writer's append cost as the store grows.

Stores are written by the real ``AuditWriter`` (hash chain, a signed checkpoint every 1000 events) into
temporary data_dirs, with TPC-B-like sessions: ``session_open``, BEGIN / 3 UPDATEs / SELECT / INSERT /
END per transaction (1 in 5 statements tagged with a prompt id), ``session_close``. Measured:

- **verify**: ``verify_chain`` over the whole store (what ``hoopgw audit verify`` runs), in a fresh
  subprocess per round so its peak RSS is its own: events/s and max RSS at 10^5 and 10^6 events
  (bounded memory: the RSS should not grow with the store). Target: >= 100k events/s.
- **append**: wall time to append ``--append`` more events (enqueue, then ``flush``) to a store that
  already holds 10^4 and 10^6 events: per-event cost, which must not grow with the store (O(1)).
- **hash**: ``event_hash`` alone on a typical statement event (the chain's share of the append cost).

    .venv/bin/python bench/audit_verify.py            # writes bench/results/audit.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

import orjson

from hoopgw.audit import DB_FILE, AuditWriter, SessionInfo, statement_data
from hoopgw.audit._chain import GENESIS, event_hash

RESULTS = Path(__file__).resolve().parent / "results" / "audit.json"
TARGET_EVENTS_S = 100_000
TPCB = (
    ("BEGIN;", "BEGIN"),
    ("UPDATE pgbench_accounts SET abalance = abalance + -2334 WHERE aid = 81234;", "UPDATE 1"),
    ("SELECT abalance FROM pgbench_accounts WHERE aid = 81234;", "SELECT 1"),
    ("UPDATE pgbench_tellers SET tbalance = tbalance + -2334 WHERE tid = 37;", "UPDATE 1"),
    ("UPDATE pgbench_branches SET bbalance = bbalance + -2334 WHERE bid = 4;", "UPDATE 1"),
    (
        "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (37, 4, 81234, -2334,"
        " CURRENT_TIMESTAMP);",
        "INSERT 0 1",
    ),
    ("END;", "COMMIT"),
)
STATEMENTS_PER_SESSION = 10 * len(TPCB)


@dataclass(frozen=True)
class Stmt:
    """The attributes of ``hoopgw._core.Statement`` that the writer reads."""

    sql: str
    tags: list[str]
    kind: str = "query"
    statement_name: str | None = None
    portal: str | None = None
    params: list[str | None] | None = None
    rows: int = 1
    status: str = "ok"
    error: tuple[str, str] | None = None
    started_ns: int = field(default_factory=time.time_ns)
    ended_ns: int = field(default_factory=lambda: time.time_ns() + 180_000)


def fill(data_dir: Path, events: int) -> float:
    """Append about ``events`` events (whole sessions) with the real writer; return events/s written."""
    writer = AuditWriter(data_dir, flush_interval=0.05, max_queue=1_000_000)
    statements = [Stmt(sql, [tag]) for sql, tag in TPCB]
    written = 0
    started = time.perf_counter()
    while written < events:
        sid = writer.new_session_id()
        writer.session_open(
            SessionInfo(sid, "postgres", "bankdb", "pgbench", ["dba"], "127.0.0.1:5000", "token", {})
        )
        n = min(STATEMENTS_PER_SESSION, max(0, events - written - 2))
        for i in range(n):
            writer.statement(sid, statements[i % len(statements)], "prompt-7" if i % 5 == 0 else None)
        writer.session_close(sid, "client_terminated")
        written += n + 2
        if writer.queued > 50_000:
            writer.flush()
    writer.close()
    return written / (time.perf_counter() - started)


def count(data_dir: Path) -> int:
    import sqlite3

    conn = sqlite3.connect(data_dir / DB_FILE)
    try:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
    finally:
        conn.close()


_VERIFY = """
import json, resource, sys, time
from pathlib import Path
from hoopgw.approvals import load_signing_key
from hoopgw.audit import DB_FILE, open_readonly, verify_chain
d = Path(sys.argv[1])
key = load_signing_key(d, create=False).public_key()
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
conn = open_readonly(d / DB_FILE)
r = verify_chain(conn, key)
print(json.dumps({"ok": r.ok, "events": r.events, "checkpoints": r.checkpoints, "seconds": r.seconds,
                  "rss_before_kb": rss0, "rss_max_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def verify_rounds(data_dir: Path, rounds: int) -> dict[str, Any]:
    """``verify_chain`` in a fresh process per round (the first round warms the page cache)."""
    runs = []
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    for _ in range(rounds + 1):
        out = subprocess.run(
            [sys.executable, "-c", _VERIFY, str(data_dir)],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
        runs.append(json.loads(out.stdout))
    runs = runs[1:]
    assert all(r["ok"] for r in runs), runs
    rates = [r["events"] / r["seconds"] for r in runs]
    return {
        "events": runs[0]["events"],
        "checkpoints": runs[0]["checkpoints"],
        "store_mb": round((data_dir / DB_FILE).stat().st_size / 1e6, 1),
        "seconds": [round(r["seconds"], 3) for r in runs],
        "events_per_s_median": round(statistics.median(rates)),
        "events_per_s_best": round(max(rates)),
        "rss_max_mb": round(max(r["rss_max_kb"] for r in runs) / 1024, 1),
        "rss_growth_mb": round(max(r["rss_max_kb"] - r["rss_before_kb"] for r in runs) / 1024, 1),
    }


def append_cost(data_dir: Path, extra: int, rounds: int) -> dict[str, Any]:
    """Per-event wall time to append ``extra`` events (enqueue + flush) to the store as it is."""
    size = count(data_dir)
    writer = AuditWriter(data_dir, flush_interval=0.01, max_queue=10 * extra)
    statements = [Stmt(sql, [tag]) for sql, tag in TPCB]
    sid = writer.new_session_id()
    writer.session_open(SessionInfo(sid, "postgres", "bankdb", "pgbench", ["dba"], None, "token", {}))
    writer.flush()
    per_event = []
    for _ in range(rounds):
        started = time.perf_counter()
        for i in range(extra):
            writer.statement(sid, statements[i % len(statements)], "prompt-7" if i % 5 == 0 else None)
        writer.flush()
        per_event.append((time.perf_counter() - started) / extra * 1e6)
    writer.close()
    return {
        "store_events": size,
        "appended": extra * rounds,
        "us_per_event": [round(u, 2) for u in per_event],
        "us_per_event_median": round(statistics.median(per_event), 2),
        "write_errors": writer.write_errors,
        "dropped": writer.dropped_total,
    }


def hash_cost() -> dict[str, Any]:
    data = orjson.dumps(statement_data(Stmt(TPCB[1][0], [TPCB[1][1]])))
    n = 200_000
    seconds = min(
        timeit.repeat(
            lambda: event_hash(1234567, 1.7e9, b"0123456789abcdef", b"statement", data, None, GENESIS),
            number=n,
            repeat=5,
        )
    )
    return {"payload_bytes": len(data), "us_per_event": round(seconds / n * 1e6, 3)}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100000,1000000", help="store sizes for verify (events)")
    parser.add_argument("--append-sizes", default="10000,1000000", help="store sizes for the append cost")
    parser.add_argument("--append", type=int, default=20_000, help="events appended per append round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    append_sizes = [int(s) for s in args.append_sizes.split(",")]
    started = time.time()
    load0 = os.getloadavg()
    result: dict[str, Any] = {
        "command": "bench/audit_verify.py " + " ".join(sys.argv[1:]),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "settings": {
            "rounds": args.rounds,
            "append": args.append,
            "checkpoint_every": 1000,
            "workload": "TPC-B-like sessions of 70 statements, 1 in 5 tagged with a prompt id",
        },
        "target_verify_events_per_s": TARGET_EVENTS_S,
        "hash": hash_cost(),
        "fill": {},
        "verify": {},
        "append": {},
    }
    print(
        f"event_hash: {result['hash']['us_per_event']} us/event ({result['hash']['payload_bytes']} B payload)"
    )
    with tempfile.TemporaryDirectory(prefix="hoopgw-audit-bench-") as tmp:
        stores: dict[int, Path] = {}
        for size in sorted(set(sizes) | set(append_sizes)):
            data_dir = Path(tmp) / f"s{size}"
            rate = fill(data_dir, size)
            stores[size] = data_dir
            result["fill"][str(size)] = {"events_per_s": round(rate)}
            print(f"filled {size:>9,} events at {rate:,.0f} events/s (writer, chained, checkpointed)")
        for size in sizes:
            v = verify_rounds(stores[size], args.rounds)
            result["verify"][str(size)] = v
            print(
                f"verify {v['events']:>9,} events: {v['events_per_s_median']:>9,} events/s median"
                f" (best {v['events_per_s_best']:,}), {v['checkpoints']} checkpoints,"
                f" max RSS {v['rss_max_mb']} MB (+{v['rss_growth_mb']} MB), store {v['store_mb']} MB"
            )
        for size in append_sizes:
            a = append_cost(stores[size], args.append, args.rounds)
            result["append"][str(size)] = a
            print(
                f"append at {a['store_events']:>9,} events: {a['us_per_event_median']} us/event"
                f" (rounds: {a['us_per_event']})"
            )
    small, large = (
        result["append"][str(s)]["us_per_event_median"] for s in (min(append_sizes), max(append_sizes))
    )
    worst = min(v["events_per_s_median"] for v in result["verify"].values())
    result["summary"] = {
        "verify_events_per_s_min": worst,
        "verify_target_met": worst >= TARGET_EVENTS_S,
        "append_ratio_large_vs_small": round(large / small, 2),
    }
    result["elapsed_s"] = round(time.time() - started, 1)
    result["machine"]["loadavg_start"] = [round(x, 2) for x in load0]
    result["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["summary"]), f"-> {args.out}")
    return 0 if result["summary"]["verify_target_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
