#!/usr/bin/env python3
"""End-to-end PostgreSQL throughput and latency: direct vs PgBouncer vs hoopgw, side by side.

One throwaway PostgreSQL (fsync off), ``pgbench -i -s SCALE``, then interleaved rounds of
``pgbench -S -c 8 -j 2 -T D`` and ``-c 1`` against:

- **direct**: PostgreSQL itself over TLS (``sslmode=require``), the baseline;
- **pgbouncer**: Debian's PgBouncer, transaction pooling, client TLS required, SCRAM for clients;
- **hoopgw**: the gateway (child process, recording on), client TLS, a local token as the password.

PgBouncer and hoopgw speak plain TCP to the upstream by default (``--upstream-sslmode``), so all three
pay for exactly one TLS session per client. The order of targets rotates every round. Medians go to
``bench/results/pg_e2e.json`` with the ratios hoopgw/pgbouncer and hoopgw/direct and the latency each
proxy adds at one client. Loopback only; every loop is bounded in count and time.

    .venv/bin/python bench/pg_e2e.py --rounds 5 --duration 10
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
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

from bench._pgbouncer import PgBouncer, pgbouncer_version
from hoopgw._pgcluster import Role, TempCluster, free_port
from hoopgw.demo import GatewayProcess, toml_dumps

RESULTS = Path(__file__).resolve().parent / "results" / "pg_e2e.json"
TARGETS = ("direct", "pgbouncer", "hoopgw")


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


def run_pgbench(ep: Endpoint, clients: int, duration: int, protocol: str) -> Sample:
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
    cmd = [
        pgbench_bin(), "-n", "-S", "-M", protocol,
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
    cluster: TempCluster, password: str, upstream_sslmode: str, workdir: Path
) -> Iterator[Endpoint]:
    port, api = free_port(), free_port()
    cfg = workdir / "hoopgw.toml"
    cfg.write_text(
        toml_dumps(
            {
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
            }
        )
    )
    gw = GatewayProcess(
        config_path=cfg,
        api=("127.0.0.1", api),
        listens=[("127.0.0.1", port)],
        log_path=workdir / "gateway.log",
        env={"BENCH_UPSTREAM_PASSWORD": password},
    )
    gw.start(timeout=30)
    try:
        yield Endpoint("hoopgw", port, "bench", gw.token("bench", ["bench"], ttl="4h"))
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


def ratios(results: dict[str, Any], clients: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a, b in (("hoopgw", "pgbouncer"), ("hoopgw", "direct"), ("pgbouncer", "direct")):
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
        for t in ("pgbouncer", "hoopgw")
        if t in results and "c1" in results[t]
    }


def print_table(doc: dict[str, Any], clients: list[int]) -> None:
    res = doc["results"]
    cols = [f"TPS c={c}" for c in clients] + [f"lat ms c={c}" for c in clients]
    print(f"\n{'target':<11}" + "".join(f"{c:>14}" for c in cols))
    for t, r in res.items():
        row = [f"{r[f'c{c}']['tps_median']:.0f}" for c in clients]
        row += [f"{r[f'c{c}']['latency_ms_median']:.3f}" for c in clients]
        print(f"{t:<11}" + "".join(f"{v:>14}" for v in row))
    for pair, v in doc["ratios"].items():
        print(f"{pair:<20} " + "  ".join(f"c{k[1:]}: {x:.3f}x" for k, x in v.items()))
    for t, us in doc["added_latency_us_c1"].items():
        print(f"added latency vs direct at c=1, {t}: {us:+.1f} us")
    for goal, ok in doc["goals"].items():
        print(f"goal {goal}: {'met' if ok else 'NOT met'}")
    print(f"\nwritten to {doc['output']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--duration", type=int, default=10, help="seconds per pgbench run")
    p.add_argument("--scale", type=int, default=10, help="pgbench -i scale")
    p.add_argument("--clients", default="8,1", help="comma-separated client counts")
    p.add_argument(
        "--targets", default=",".join(TARGETS), help="comma-separated subset of " + ",".join(TARGETS)
    )
    p.add_argument("--protocol", default="simple", choices=["simple", "extended", "prepared"])
    p.add_argument("--upstream-sslmode", default="disable", help="PgBouncer/hoopgw to PostgreSQL")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if not 1 <= args.rounds <= 50 or not 1 <= args.duration <= 600:
        p.error("--rounds must be 1..50 and --duration 1..600")
    clients = [int(c) for c in args.clients.split(",")]
    targets = [t for t in args.targets.split(",") if t]
    if unknown := set(targets) - set(TARGETS):
        p.error(f"unknown targets: {', '.join(sorted(unknown))}")

    password = TempCluster.random_password()
    started = time.time()
    load_start = os.getloadavg()
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
        print(f"pgbench -i -s {args.scale} ...", file=sys.stderr, flush=True)
        subprocess.run(
            [pgbench_bin(), "-i", "-q", "-s", str(args.scale), "-h", str(cluster.socket_dir),
             "-p", str(cluster.port), "-U", "app", "bank"],
            check=True, capture_output=True, timeout=600, env=cluster.server_env(),
        )  # fmt: skip
        cluster.psql("VACUUM ANALYZE", db="bank")
        pg_version = cluster.psql("SHOW server_version")

        endpoints: dict[str, Endpoint] = {}
        if "direct" in targets:
            endpoints["direct"] = Endpoint("direct", cluster.port, "app", password)
        if "pgbouncer" in targets:
            bouncer = PgBouncer(
                cluster, db="bank", user="app", password=password, server_sslmode=args.upstream_sslmode
            )
            stack.callback(bouncer.stop)
            bouncer.start()
            endpoints["pgbouncer"] = Endpoint("pgbouncer", bouncer.port, "app", password)
        if "hoopgw" in targets:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hoopgw-bench-")))
            endpoints["hoopgw"] = stack.enter_context(
                start_hoopgw(cluster, password, args.upstream_sslmode, workdir)
            )

        # Warm-up: one short run per target, not recorded.
        for ep in endpoints.values():
            run_pgbench(ep, max(clients), 2, args.protocol)

        samples: dict[str, dict[int, list[Sample]]] = {t: {c: [] for c in clients} for t in endpoints}
        order = list(endpoints)
        for r in range(args.rounds):
            rotated = order[r % len(order) :] + order[: r % len(order)]
            for c in clients:
                for t in rotated:
                    s = run_pgbench(endpoints[t], c, args.duration, args.protocol)
                    samples[t][c].append(s)
                    print(f"round {r + 1}/{args.rounds} c={c} {t:<10} tps={s.tps:10.1f} "
                          f"lat={s.latency_ms:.3f} ms", file=sys.stderr, flush=True)  # fmt: skip

    results = summarize(samples)
    rat = ratios(results, clients)
    added = added_latency_us(results)
    goals: dict[str, bool] = {}
    if "hoopgw/pgbouncer" in rat and "c8" in rat["hoopgw/pgbouncer"]:
        goals["hoopgw TPS >= 1.0x PgBouncer at 8 clients"] = rat["hoopgw/pgbouncer"]["c8"] >= 1.0
    if "hoopgw" in added and "pgbouncer" in added:
        goals["hoopgw added latency <= PgBouncer's + 10 us at 1 client"] = (
            added["hoopgw"] <= added["pgbouncer"] + 10
        )
    doc: dict[str, Any] = {
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
        "versions": {"postgresql": pg_version, "pgbouncer": pgbouncer_version()},
        "settings": {
            "rounds": args.rounds,
            "duration_s": args.duration,
            "scale": args.scale,
            "clients": clients,
            "protocol": args.protocol,
            "pgbench": "pgbench -n -S -M PROTOCOL -c C -j min(C,2) -T D, sslmode=require for every target",
            "upstream_sslmode": args.upstream_sslmode,
            "notes": [
                "direct = PostgreSQL over TLS, so every target pays for one client TLS session",
                "pgbouncer = transaction pooling, client_tls_sslmode=require, SCRAM client auth",
                "hoopgw = recording on (embedded SQLite store), local token as the password",
                "target order rotates every round; medians over rounds",
            ],
        },
        "results": results,
        "ratios": rat,
        "added_latency_us_c1": added,
        "goals": goals,
        "output": str(args.out),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(args.out)
    print_table(doc, clients)
    return 0


if __name__ == "__main__":
    sys.exit(main())
