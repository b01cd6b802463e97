#!/usr/bin/env python3
"""End-to-end PostgreSQL throughput and latency: direct vs PgBouncer vs hoopgw, side by side.

One throwaway PostgreSQL (fsync off), then interleaved rounds of ``pgbench -c 8 -j 2 -T D`` and
``-c 1`` for each workload:

- **tpcb**: ``pgbench -i -s SCALE``, then ``pgbench -S`` (one-row primary-key SELECTs);
- **writes**: pgbench's built-in TPC-B (``-b tpcb-like``: three UPDATEs, a SELECT and an INSERT per
  transaction), to compare write-ahead audit (the default) with asynchronous audit;
- **pii**: a ``pgbench -f`` script that SELECTs 20 consecutive rows of ``pii_accounts``, a table with
  card numbers, SSNs, emails, IBANs and phones among ordinary columns (``--pii-rows`` rows,
  generated from a fixed seed), ~100 values to mask per query;

against:

- **direct**: PostgreSQL itself over TLS (``sslmode=require``), the baseline;
- **pgbouncer**: Debian's PgBouncer, transaction pooling, client TLS required, SCRAM for clients;
- **hoopgw**: the gateway (child process, recording on), client TLS, a local token as the password;
- **hoopgw-policy**: the same gateway, as a caller whose policy allows only ``read``: statement
  policy on (the ``hoopgw`` caller is allowed ``*``, for which the core skips classification). In tpcb.
- **hoopgw-async**: a gateway with ``[audit] write_ahead = false`` (statements recorded after they
  ran, within the flush interval). In writes, where ``hoopgw`` records each write durably first.
- **hoopgw-mask**: a second gateway, the same plus a ``[[masking]]`` block for the connection
  (detectors credit_card, us_ssn, iban, email, phone; style last4). By default only in the pii workload.

PgBouncer and hoopgw speak plain TCP to the upstream by default (``--upstream-sslmode``), so all
pay for exactly one TLS session per client. The order of targets rotates every round. Medians go to
``bench/results/pg_e2e.json`` (tpcb) and ``bench/results/pg_e2e_pii.json`` (pii) with the TPS ratios
and the latency each proxy adds at one client. Loopback only; every loop is bounded in count and time.

    .venv/bin/python bench/pg_e2e.py --rounds 5 --duration 10 --workload all
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from bench._mask_ref import make_pii, make_row
from bench._pgbouncer import PgBouncer, pgbouncer_version
from hoopgw._pgcluster import Role, TempCluster, free_port
from hoopgw.demo import GatewayError, GatewayProcess, toml_dumps

RESULTS = Path(__file__).resolve().parent / "results" / "pg_e2e.json"
PII_RESULTS = Path(__file__).resolve().parent / "results" / "pg_e2e_pii.json"
WRITES_RESULTS = Path(__file__).resolve().parent / "results" / "pg_e2e_writes.json"
TARGETS = ("direct", "pgbouncer", "hoopgw", "hoopgw-policy", "hoopgw-mask", "hoopgw-async")
WORKLOADS = ("tpcb", "pii", "writes")
#: Targets run by default, per workload.
WORKLOAD_TARGETS = {
    "tpcb": ("direct", "pgbouncer", "hoopgw", "hoopgw-policy"),
    "pii": ("direct", "pgbouncer", "hoopgw", "hoopgw-mask"),
    "writes": ("direct", "hoopgw", "hoopgw-async"),
}
#: The bench gateways' policies: "bench" may do anything (the Rust core then skips classification:
#: policy off), "bench-readers" may only read (every statement shape is classified once and then
#: checked against the session's allowed classes in the core: policy on).
POLICIES = [
    {"name": "bench", "subjects": ["group:bench"], "connections": ["*"], "allow": ["*"]},
    {"name": "readers", "subjects": ["group:bench-readers"], "connections": ["*"], "allow": ["read"]},
]
PII_ROWS_PER_QUERY = 20
#: The masking-on gateway's [[masking]] block.
MASKING = {
    "connections": ["bankdb"],
    "detectors": ["credit_card", "us_ssn", "iban", "email", "phone"],
    "style": "last4",
}


@dataclass(frozen=True)
class Endpoint:
    name: str
    port: int
    user: str
    password: str


@dataclass(frozen=True)
class Sample:
    tps: float
    latency_ms: float


def pgbench_bin() -> str:
    path = shutil.which("pgbench")
    if path is None:
        raise SystemExit("pgbench not found; run `make deps`")
    return path


def client_env(ep: Endpoint) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(
        PGHOST="127.0.0.1",
        PGPORT=str(ep.port),
        PGUSER=ep.user,
        PGPASSWORD=ep.password,
        PGDATABASE="bank",
        PGSSLMODE="require",
        PGCONNECT_TIMEOUT="10",
    )
    return env


def run_pgbench(
    ep: Endpoint,
    clients: int,
    duration: int,
    protocol: str,
    script: Path | None = None,
    *,
    builtin: str = "select-only",
) -> Sample:
    """``pgbench -b BUILTIN`` (default select-only: ``-S``), or the custom ``script`` (``-f``)."""
    env = client_env(ep)
    cmd = [
        pgbench_bin(), "-n", *(["-f", str(script)] if script else ["-b", builtin]), "-M", protocol,
        "-c", str(clients), "-j", str(min(clients, 2)), "-T", str(duration),
    ]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, env=env)
    tps = re.search(r"^tps = ([\d.]+)", res.stdout, re.M)
    lat = re.search(r"^latency average = ([\d.]+) ms", res.stdout, re.M)
    if res.returncode != 0 or tps is None or lat is None:
        raise RuntimeError(
            f"pgbench against {ep.name} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
        )
    return Sample(float(tps.group(1)), float(lat.group(1)))


@contextlib.contextmanager
def start_hoopgw(
    cluster: TempCluster,
    password: str,
    upstream_sslmode: str,
    workdir: Path,
    *,
    name: str = "hoopgw",
    masking: list[dict[str, Any]] | None = None,
    audit: dict[str, Any] | None = None,
) -> Iterator[tuple[Endpoint, Endpoint]]:
    """Start a gateway; yield its endpoints for the policy-off (allow *) and policy-on (read) users."""
    port, api = free_port(), free_port()
    cfg = workdir / "hoopgw.toml"
    doc: dict[str, Any] = {
        "gateway": {
            "data_dir": str(workdir / "var"),
            "api_listen": f"127.0.0.1:{api}",
            "log_level": "warning",
        },
        "identity": {"issuer": "local", "audience": "hoopgw"},
        "connections": [
            {
                "name": "bankdb",
                "type": "postgres",
                "listen": f"127.0.0.1:{port}",
                "upstream": cluster.url("app", db="bank", sslmode=upstream_sslmode),
                "password": "env:BENCH_UPSTREAM_PASSWORD",
            }
        ],
        "policy": POLICIES,
    }
    if masking:
        doc["masking"] = masking
    if audit:
        doc["audit"] = audit
    cfg.write_text(toml_dumps(doc))
    gw = GatewayProcess(
        config_path=cfg,
        api=("127.0.0.1", api),
        listens=[("127.0.0.1", port)],
        log_path=workdir / "gateway.log",
        env={"BENCH_UPSTREAM_PASSWORD": password},
    )
    gw.start(timeout=30)
    try:
        yield (
            Endpoint(name, port, "bench", gw.token("bench", ["bench"], ttl="4h")),
            Endpoint(f"{name}-policy", port, "reader", gw.token("reader", ["bench-readers"], ttl="4h")),
        )
    finally:
        gw.stop()


def summarize(samples: dict[str, dict[int, list[Sample]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for target, per_clients in samples.items():
        out[target] = {}
        for clients, ss in per_clients.items():
            out[target][f"c{clients}"] = {
                "tps_median": round(statistics.median(s.tps for s in ss), 1),
                "latency_ms_median": round(statistics.median(s.latency_ms for s in ss), 4),
                "tps": [round(s.tps, 1) for s in ss],
                "latency_ms": [round(s.latency_ms, 4) for s in ss],
            }
    return out


RATIO_PAIRS = (
    ("hoopgw", "pgbouncer"),
    ("hoopgw", "direct"),
    ("pgbouncer", "direct"),
    ("hoopgw-policy", "hoopgw"),
    ("hoopgw-policy", "pgbouncer"),
    ("hoopgw-mask", "hoopgw"),
    ("hoopgw-mask", "pgbouncer"),
    ("hoopgw-mask", "direct"),
    ("hoopgw", "hoopgw-async"),
    ("hoopgw-async", "direct"),
)


def ratios(results: dict[str, Any], clients: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a, b in RATIO_PAIRS:
        if a in results and b in results:
            out[f"{a}/{b}"] = {
                f"c{c}": round(results[a][f"c{c}"]["tps_median"] / results[b][f"c{c}"]["tps_median"], 3)
                for c in clients
            }
    return out


def added_latency_us(results: dict[str, Any]) -> dict[str, float]:
    if "direct" not in results or "c1" not in results["direct"]:
        return {}
    base = results["direct"]["c1"]["latency_ms_median"]
    return {
        t: round((results[t]["c1"]["latency_ms_median"] - base) * 1000, 1)
        for t in ("pgbouncer", "hoopgw", "hoopgw-policy", "hoopgw-mask", "hoopgw-async")
        if t in results and "c1" in results[t]
    }


def print_table(doc: dict[str, Any], clients: list[int]) -> None:
    res = doc["results"]
    cols = [f"TPS c={c}" for c in clients] + [f"lat ms c={c}" for c in clients]
    print(f"\nworkload {doc['workload']}")
    for note in doc.get("warnings", []):
        print(f"WARNING: {note}")
    print(f"{'target':<12}" + "".join(f"{c:>14}" for c in cols))
    for t, r in res.items():
        row = [f"{r[f'c{c}']['tps_median']:.0f}" for c in clients]
        row += [f"{r[f'c{c}']['latency_ms_median']:.3f}" for c in clients]
        print(f"{t:<12}" + "".join(f"{v:>14}" for v in row))
    for pair, v in doc["ratios"].items():
        print(f"{pair:<22} " + "  ".join(f"c{k[1:]}: {x:.3f}x" for k, x in v.items()))
    for t, us in doc["added_latency_us_c1"].items():
        print(f"added latency vs direct at c=1, {t}: {us:+.1f} us")
    for goal, ok in doc["goals"].items():
        print(f"goal {goal}: {'met' if ok else 'NOT met'}")
    print(f"\nwritten to {doc['output']}")


PII_SCHEMA = """
DROP TABLE IF EXISTS pii_accounts;
CREATE TABLE pii_accounts (
    id integer PRIMARY KEY,
    customer_id bigint NOT NULL,
    account_number text NOT NULL,
    full_name text NOT NULL,
    card_number text NOT NULL,
    ssn text NOT NULL,
    email text NOT NULL,
    iban text NOT NULL,
    phone text NOT NULL,
    balance numeric(12, 2) NOT NULL,
    opened_on date NOT NULL,
    updated_at timestamptz NOT NULL,
    status text NOT NULL,
    memo text NOT NULL
);
"""


def pii_rows(n: int, seed: int = 2024) -> Iterator[str]:
    """COPY text rows of ``pii_accounts``: five PII columns (cards in four formats) among ordinary ones."""
    rng = random.Random(seed)
    cards = ("card", "card_spaced", "card_dashed", "amex_spaced")
    for i in range(1, n + 1):
        # id, customer id, account number, amount, date, timestamp, name, status, kind, branch, memo
        base = make_row(rng, i, None)
        yield "\t".join(
            [
                str(i),
                base[1],
                base[2],
                base[6],
                make_pii(rng, cards[i % len(cards)]),
                make_pii(rng, "ssn"),
                make_pii(rng, "email"),
                make_pii(rng, rng.choice(("iban", "iban_spaced"))),
                make_pii(rng, rng.choice(("phone_e164", "phone_us"))),
                base[3],
                base[4],
                base[5],
                base[7],
                base[10],
            ]
        )


def load_pii_table(cluster: TempCluster, rows: int) -> None:
    data = "\n".join(pii_rows(rows))
    cluster.psql(
        f"{PII_SCHEMA}COPY pii_accounts FROM STDIN;\n{data}\n\\.\n"
        "ALTER TABLE pii_accounts OWNER TO app;\nVACUUM ANALYZE pii_accounts;\n",
        db="bank",
        timeout=600,
    )


def pii_script(workdir: Path, rows: int) -> Path:
    """The pgbench script of the pii workload: 20 consecutive rows from a random id."""
    path = workdir / "pii_select.sql"
    last = rows - PII_ROWS_PER_QUERY + 1
    path.write_text(
        f"\\set start random(1, {last})\n"
        f"SELECT * FROM pii_accounts WHERE id BETWEEN :start AND :start + {PII_ROWS_PER_QUERY - 1};\n"
    )
    return path


def psql_through(ep: Endpoint, sql: str) -> str:
    psql = shutil.which("psql") or str(Path(pgbench_bin()).with_name("psql"))
    res = subprocess.run(
        [psql, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
        capture_output=True, text=True, timeout=30, env=client_env(ep),
    )  # fmt: skip
    if res.returncode != 0:
        raise RuntimeError(f"psql through {ep.name} failed: {res.stderr.strip()}")
    return res.stdout.strip()


def check_masking(direct: Endpoint, masked: Endpoint) -> tuple[bool, dict[str, str]]:
    """Whether the masking-on gateway really masks: one row of PII columns, direct and through it."""
    sql = "SELECT card_number, ssn, email, iban, phone FROM pii_accounts WHERE id = 1"
    clear, through = psql_through(direct, sql), psql_through(masked, sql)
    return clear != through and "*" in through, {"direct": clear, "hoopgw-mask": through}


def run_workload(
    workload: str,
    endpoints: dict[str, Endpoint],
    clients: list[int],
    args: argparse.Namespace,
    script: Path | None,
) -> dict[str, dict[int, list[Sample]]]:
    builtin = "tpcb-like" if workload == "writes" else "select-only"
    # Warm-up: one short run per target, not recorded.
    for ep in endpoints.values():
        run_pgbench(ep, max(clients), 2, args.protocol, script, builtin=builtin)
    samples: dict[str, dict[int, list[Sample]]] = {t: {c: [] for c in clients} for t in endpoints}
    order = list(endpoints)
    for r in range(args.rounds):
        rotated = order[r % len(order) :] + order[: r % len(order)]
        for c in clients:
            for t in rotated:
                s = run_pgbench(endpoints[t], c, args.duration, args.protocol, script, builtin=builtin)
                samples[t][c].append(s)
                print(f"{workload} round {r + 1}/{args.rounds} c={c} {t:<11} tps={s.tps:10.1f} "
                      f"lat={s.latency_ms:.3f} ms", file=sys.stderr, flush=True)  # fmt: skip
    return samples


def goals_for(
    workload: str, rat: dict[str, Any], added: dict[str, float], clients: list[int]
) -> dict[str, bool]:
    goals: dict[str, bool] = {}
    if workload == "writes":
        for c in clients:
            if "hoopgw/hoopgw-async" in rat:
                goals[f"write-ahead audit / asynchronous audit >= 0.8 at {c} clients"] = (
                    rat["hoopgw/hoopgw-async"][f"c{c}"] >= 0.8
                )
        return goals
    if workload == "tpcb":
        if "hoopgw/pgbouncer" in rat and "c8" in rat["hoopgw/pgbouncer"]:
            goals["hoopgw TPS >= 1.0x PgBouncer at 8 clients"] = rat["hoopgw/pgbouncer"]["c8"] >= 1.0
        for c in clients:
            if "hoopgw-policy/hoopgw" in rat:
                goals[f"policy on / policy off >= 0.95 at {c} clients"] = (
                    rat["hoopgw-policy/hoopgw"][f"c{c}"] >= 0.95
                )
        if "hoopgw" in added and "pgbouncer" in added:
            goals["hoopgw added latency <= PgBouncer's + 10 us at 1 client"] = (
                added["hoopgw"] <= added["pgbouncer"] + 10
            )
        return goals
    for c in clients:
        if "hoopgw-mask/hoopgw" in rat:
            goals[f"masking on / masking off >= 0.9 at {c} clients"] = (
                rat["hoopgw-mask/hoopgw"][f"c{c}"] >= 0.9
            )
        if "hoopgw-mask/pgbouncer" in rat:
            goals[f"masking on / PgBouncer >= 0.8 at {c} clients"] = (
                rat["hoopgw-mask/pgbouncer"][f"c{c}"] >= 0.8
            )
    return goals


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workload", default="all", choices=[*WORKLOADS, "all"])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--duration", type=int, default=10, help="seconds per pgbench run")
    p.add_argument("--scale", type=int, default=10, help="pgbench -i scale (tpcb)")
    p.add_argument("--pii-rows", type=int, default=50_000, help="rows of pii_accounts (pii)")
    p.add_argument("--clients", default="8,1", help="comma-separated client counts")
    p.add_argument(
        "--targets",
        default="",
        help="comma-separated subset of " + ",".join(TARGETS) + " for every workload "
        "(default: direct,pgbouncer,hoopgw for tpcb, all four for pii)",
    )
    p.add_argument("--protocol", default="simple", choices=["simple", "extended", "prepared"])
    p.add_argument("--upstream-sslmode", default="disable", help="PgBouncer/hoopgw to PostgreSQL")
    p.add_argument("--out", type=Path, default=RESULTS, help="results of the tpcb workload")
    p.add_argument("--pii-out", type=Path, default=PII_RESULTS, help="results of the pii workload")
    p.add_argument("--writes-out", type=Path, default=WRITES_RESULTS, help="results of the writes workload")
    args = p.parse_args(argv)
    if not 1 <= args.rounds <= 50 or not 1 <= args.duration <= 600:
        p.error("--rounds must be 1..50 and --duration 1..600")
    if not PII_ROWS_PER_QUERY <= args.pii_rows <= 5_000_000:
        p.error(f"--pii-rows must be {PII_ROWS_PER_QUERY}..5000000")
    clients = [int(c) for c in args.clients.split(",")]
    workloads = list(WORKLOADS) if args.workload == "all" else [args.workload]
    explicit = [t for t in args.targets.split(",") if t]
    if unknown := set(explicit) - set(TARGETS):
        p.error(f"unknown targets: {', '.join(sorted(unknown))}")
    per_workload = {w: [t for t in TARGETS if t in (explicit or WORKLOAD_TARGETS[w])] for w in workloads}
    needed = {t for ts in per_workload.values() for t in ts}
    if "hoopgw-mask" in needed and "pii" in workloads:
        needed.add("direct")  # to check that masking-on really masks

    password = TempCluster.random_password()
    warnings: list[str] = []
    masking_check: dict[str, Any] = {}
    docs: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        cluster = TempCluster(
            settings={
                "shared_buffers": "256MB",
                "max_connections": 200,
                "autovacuum": False,
                "log_min_messages": "error",
            }
        )
        stack.callback(cluster.stop)
        cluster.start()
        cluster.add_role(Role("app", password=password))
        cluster.create_database("bank", owner="app")
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hoopgw-bench-")))
        if "tpcb" in workloads or "writes" in workloads:
            print(f"pgbench -i -s {args.scale} ...", file=sys.stderr, flush=True)
            subprocess.run(
                [pgbench_bin(), "-i", "-q", "-s", str(args.scale), "-h", str(cluster.socket_dir),
                 "-p", str(cluster.port), "-U", "app", "bank"],
                check=True, capture_output=True, timeout=600, env=cluster.server_env(),
            )  # fmt: skip
            cluster.psql("VACUUM ANALYZE", db="bank")
        script = None
        if "pii" in workloads:
            print(f"pii_accounts: {args.pii_rows} rows ...", file=sys.stderr, flush=True)
            load_pii_table(cluster, args.pii_rows)
            script = pii_script(workdir, args.pii_rows)
        pg_version = cluster.psql("SHOW server_version")

        endpoints: dict[str, Endpoint] = {}
        if "direct" in needed:
            endpoints["direct"] = Endpoint("direct", cluster.port, "app", password)
        if "pgbouncer" in needed:
            bouncer = PgBouncer(
                cluster, db="bank", user="app", password=password, server_sslmode=args.upstream_sslmode
            )
            stack.callback(bouncer.stop)
            bouncer.start()
            endpoints["pgbouncer"] = Endpoint("pgbouncer", bouncer.port, "app", password)
        if "hoopgw" in needed or "hoopgw-policy" in needed:
            (workdir / "plain").mkdir()
            off, on = stack.enter_context(
                start_hoopgw(cluster, password, args.upstream_sslmode, workdir / "plain")
            )
            endpoints["hoopgw"], endpoints["hoopgw-policy"] = off, on
        if "hoopgw-async" in needed:
            (workdir / "async").mkdir()
            endpoints["hoopgw-async"], _ = stack.enter_context(
                start_hoopgw(
                    cluster,
                    password,
                    args.upstream_sslmode,
                    workdir / "async",
                    name="hoopgw-async",
                    audit={"write_ahead": False},
                )
            )
        if "hoopgw-mask" in needed:
            (workdir / "mask").mkdir()
            try:
                endpoints["hoopgw-mask"], _ = stack.enter_context(
                    start_hoopgw(
                        cluster,
                        password,
                        args.upstream_sslmode,
                        workdir / "mask",
                        name="hoopgw-mask",
                        masking=[MASKING],
                    )
                )
            except (GatewayError, RuntimeError) as e:
                reason = str(e).strip().splitlines()
                warnings.append(
                    f"hoopgw-mask not run: the gateway with [[masking]] did not start: {reason[-1]}"
                )
                print(f"WARNING: {warnings[-1]}\n{e}", file=sys.stderr, flush=True)
        if "hoopgw-mask" in endpoints and "pii" in workloads:
            ok, sample = check_masking(endpoints["direct"], endpoints["hoopgw-mask"])
            masking_check = {"masked": ok, "sample_row": sample}
            if not ok:
                warnings.append(
                    "hoopgw-mask returns PII in clear (masking not wired in the gateway yet?): "
                    "its numbers are masking OFF"
                )
                print(f"WARNING: {warnings[-1]}: {sample}", file=sys.stderr, flush=True)

        for workload in workloads:
            eps = {t: endpoints[t] for t in per_workload[workload] if t in endpoints}
            started = time.time()
            load_start = os.getloadavg()
            samples = run_workload(workload, eps, clients, args, script if workload == "pii" else None)
            versions = {"postgresql": pg_version, "pgbouncer": pgbouncer_version()}
            notes = warnings if workload == "pii" else [w for w in warnings if "not run" in w]
            doc = build_doc(workload, samples, clients, args, argv, started, load_start, versions)
            doc["warnings"] = notes
            if workload == "pii":
                doc["masking_check"] = masking_check
                doc["settings"]["script"] = script.read_text() if script else ""
                if not masking_check.get("masked"):
                    doc["goals"] = {}  # masking on was not measured
            out = {"pii": args.pii_out, "writes": args.writes_out}.get(workload, args.out)
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(doc, indent=2) + "\n")
            tmp.replace(out)
            docs.append(doc)

    for doc in docs:
        print_table(doc, clients)
    return 0


def build_doc(
    workload: str,
    samples: dict[str, dict[int, list[Sample]]],
    clients: list[int],
    args: argparse.Namespace,
    argv: list[str] | None,
    started: float,
    load_start: tuple[float, float, float],
    versions: dict[str, str],
) -> dict[str, Any]:
    results = summarize(samples)
    rat = ratios(results, clients)
    added = added_latency_us(results)
    goals = goals_for(workload, rat, added, clients)
    notes = [
        "direct = PostgreSQL over TLS, so every target pays for one client TLS session",
        "pgbouncer = transaction pooling, client_tls_sslmode=require, SCRAM client auth",
        "hoopgw = recording on (embedded SQLite store), local token as the password",
        "target order rotates every round; medians over rounds",
    ]
    settings: dict[str, Any] = {
        "rounds": args.rounds,
        "duration_s": args.duration,
        "clients": clients,
        "protocol": args.protocol,
        "upstream_sslmode": args.upstream_sslmode,
    }
    if workload == "tpcb":
        settings["scale"] = args.scale
        settings["pgbench"] = (
            "pgbench -n -S -M PROTOCOL -c C -j min(C,2) -T D, sslmode=require for every target"
        )
    elif workload == "writes":
        settings["scale"] = args.scale
        settings["pgbench"] = (
            "pgbench -n -b tpcb-like -M PROTOCOL -c C -j min(C,2) -T D, sslmode=require for every target"
        )
        notes.append(
            "hoopgw = write-ahead audit: each UPDATE/INSERT is committed to the SQLite store "
            "(synchronous=FULL) before it is forwarded; hoopgw-async = [audit] write_ahead = false"
        )
    else:
        settings["pii_rows"] = args.pii_rows
        settings["pgbench"] = (
            "pgbench -n -f pii_select.sql -M PROTOCOL -c C -j min(C,2) -T D, sslmode=require"
        )
        settings["masking"] = MASKING
        notes.append("hoopgw-mask = hoopgw plus the [[masking]] block in settings.masking")
        notes.append(
            f"each query returns {PII_ROWS_PER_QUERY} rows x 14 columns, 5 of them PII (cards in 4 formats)"
        )
    settings["notes"] = notes
    return {
        "workload": workload,
        "command": " ".join(["bench/pg_e2e.py", *(argv if argv is not None else sys.argv[1:])]),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "elapsed_s": round(time.time() - started, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            # pgbench, PostgreSQL, PgBouncer and hoopgw share these CPUs; a high load average means
            # something else ran too and the numbers are noisier
            "loadavg_start": [round(x, 2) for x in load_start],
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        },
        "versions": versions,
        "settings": settings,
        "results": results,
        "ratios": rat,
        "added_latency_us_c1": added,
        "goals": goals,
        "output": str({"pii": args.pii_out, "writes": args.writes_out}.get(workload, args.out)),
    }


if __name__ == "__main__":
    sys.exit(main())
