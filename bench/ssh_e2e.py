#!/usr/bin/env python3
"""End-to-end SSH throughput and keystroke latency: OpenSSH directly vs through hoopgw, side by side.

One throwaway OpenSSH ``sshd`` (``tests/_support/sshd.py``: Debian's sshd on a loopback port with its own
keys), then interleaved rounds of, for each target:

- **connect**: ``ssh HOST true``: connection, key exchange, authentication and one exec (ms);
- **stream**: ``ssh -c aes128-gcm@openssh.com HOST 'head -c N /dev/zero' | wc -c`` (``--stream-bytes``,
  1 GB by default), timed from start to ``wc``'s count (the connection setup included), in MB/s;
- **scp**: upload of a random ``--scp-bytes`` file (256 MB) with ``scp -c aes128-gcm@openssh.com``
  (SFTP protocol, OpenSSH's default), in MB/s; the uploaded copy's SHA-256 is checked;
- **keystroke_pty**: 1-byte echo round trips over ``ssh -tt HOST 'stty raw -echo; exec cat'``: write one
  byte, wait for it to come back, ``--keystrokes`` times (median and p99 in µs);
- **keystroke_exec**: the same over ``ssh HOST cat`` without a pty.

Targets: **direct** (the sshd itself) and, with ``--gateway PORT``, **hoopgw** (a gateway already listening
on PORT whose SSH connection leads to this sshd; use ``--sshd-port``/``--sshd-dir`` to give the sshd a
known port and keys for the gateway's config). The order of targets rotates every round. Medians go to
``bench/results/ssh_e2e.json`` with the ratios hoopgw/direct and the keystroke latency hoopgw adds.
Loopback only; every run is bounded in time.

    .venv/bin/python bench/ssh_e2e.py --rounds 3
    .venv/bin/python bench/ssh_e2e.py --stream-bytes 100000000 --scp-bytes 32000000 --rounds 1
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import select
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from tests._support.sshd import CLIENT_OPTIONS, Sshd

RESULTS = Path(__file__).resolve().parent / "results" / "ssh_e2e.json"
CIPHER = "aes128-gcm@openssh.com"
MEASUREMENTS = ("connect", "stream", "scp", "keystroke_pty", "keystroke_exec")
#: The issue's speed targets.
MIN_THROUGHPUT_RATIO = 0.5
MAX_ADDED_KEYSTROKE_US = 100.0
_READY = b"HOOPGW-BENCH-READY"


@dataclass(frozen=True)
class Target:
    """Where a measurement connects: ``ssh -o User=USER -o Port=PORT -i KEY EXTRA... HOST``."""

    label: str
    host: str
    port: int
    user: str
    key: Path
    extra: tuple[str, ...] = ()

    def options(self) -> list[str]:
        """Client options shared by ssh and scp (no config files, no agent, no prompts, no host check)."""
        return [
            *CLIENT_OPTIONS,
            "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", f"User={self.user}",
            "-o", f"Port={self.port}",
            "-i", str(self.key),
            *self.extra,
        ]  # fmt: skip

    def ssh(self, *remote: str, options: tuple[str, ...] = ()) -> list[str]:
        return ["ssh", *self.options(), *options, self.host, *remote]


@dataclass
class Samples:
    """One target's raw numbers, appended round after round."""

    connect_ms: list[float] = field(default_factory=list)
    stream_mb_s: list[float] = field(default_factory=list)
    stream_s: list[float] = field(default_factory=list)
    scp_mb_s: list[float] = field(default_factory=list)
    scp_s: list[float] = field(default_factory=list)
    #: Every round trip in ns, all rounds pooled, per mode ("pty", "exec").
    keystroke_ns: dict[str, list[int]] = field(default_factory=lambda: {"pty": [], "exec": []})
    #: The median of each round, per mode.
    keystroke_round_median_us: dict[str, list[float]] = field(default_factory=lambda: {"pty": [], "exec": []})


class BenchError(RuntimeError):
    """A measured command failed or returned the wrong bytes."""


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("SSH_", "HOOPGW_"))}


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


# ---------------------------------------------------------------------------------------------- measurements
def measure_connect(t: Target, timeout: float) -> float:
    """Milliseconds for ``ssh HOST true``."""
    start = time.perf_counter()
    res = subprocess.run(
        t.ssh("true"), capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL, env=_clean_env()
    )
    elapsed = time.perf_counter() - start
    if res.returncode != 0:
        raise BenchError(
            f"ssh {t.label} true failed ({res.returncode}): {res.stderr.decode(errors='replace')}"
        )
    return elapsed * 1000


def measure_stream(t: Target, nbytes: int, timeout: float) -> float:
    """Seconds for ``ssh -c CIPHER HOST 'head -c N /dev/zero' | wc -c`` (the count is checked)."""
    start = time.perf_counter()
    ssh = subprocess.Popen(
        t.ssh(f"head -c {nbytes} /dev/zero", options=("-c", CIPHER)),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_clean_env(),
    )  # fmt: skip
    assert ssh.stdout is not None and ssh.stderr is not None
    wc = subprocess.Popen(["wc", "-c"], stdin=ssh.stdout, stdout=subprocess.PIPE)
    ssh.stdout.close()  # wc holds the only read end: ssh gets SIGPIPE if wc dies
    try:
        out, _ = wc.communicate(timeout=timeout)
        elapsed = time.perf_counter() - start
        err = ssh.stderr.read()
        code = ssh.wait(10)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"stream through {t.label} took longer than {timeout} s") from e
    finally:
        _stop(ssh)
        _stop(wc)
        ssh.stderr.close()
    if code != 0 or out.strip() != str(nbytes).encode():
        raise BenchError(
            f"stream through {t.label}: ssh exit {code}, wc counted {out.strip()!r} of {nbytes}: "
            f"{err.decode(errors='replace')}"
        )
    return elapsed


def measure_scp(t: Target, src: Path, digest: str, dest: Path, timeout: float) -> tuple[float, bool]:
    """Seconds for ``scp -c CIPHER SRC HOST:DEST``; whether DEST (seen locally) has SRC's SHA-256."""
    cmd = ["scp", *t.options(), "-c", CIPHER, str(src), f"{t.host}:{dest}"]
    start = time.perf_counter()
    res = subprocess.run(
        cmd, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL, env=_clean_env()
    )
    elapsed = time.perf_counter() - start
    if res.returncode != 0:
        raise BenchError(
            f"scp through {t.label} failed ({res.returncode}): {res.stderr.decode(errors='replace')}"
        )
    try:
        if not dest.exists():
            return elapsed, False  # the target's host is not this machine's sshd: nothing to compare
        if sha256(dest) != digest:
            raise BenchError(f"scp through {t.label}: the uploaded file differs from the source")
        return elapsed, True
    finally:
        with contextlib.suppress(OSError):
            dest.unlink()


def _read_until(fd: int, want: bytes, deadline: float, buf: bytearray) -> None:
    """Read from ``fd`` into ``buf`` until it contains ``want``; BenchError at the deadline or EOF."""
    while want not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise BenchError(f"timed out waiting for {want!r} (got {bytes(buf[-80:])!r})")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                raise BenchError(f"EOF while waiting for {want!r} (got {bytes(buf[-80:])!r})")
            buf += chunk


def measure_keystrokes(t: Target, mode: str, count: int, warmup: int, timeout: float) -> list[int]:
    """Nanoseconds of ``count`` 1-byte echo round trips (after ``warmup`` unmeasured ones)."""
    if mode == "pty":
        cmd = t.ssh(f"stty raw -echo; echo {_READY.decode()}; exec cat", options=("-tt",))
    else:
        cmd = t.ssh(f"echo {_READY.decode()}; exec cat")
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,
        env=_clean_env(),
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    wfd, rfd = proc.stdin.fileno(), proc.stdout.fileno()
    rtts: list[int] = []
    try:
        deadline = time.monotonic() + timeout
        buf = bytearray()
        _read_until(rfd, _READY, deadline, buf)
        per_byte = max(1.0, timeout / 10)
        for i in range(warmup + count):
            byte = bytes([97 + i % 26])
            if time.monotonic() > deadline:
                raise BenchError(f"{count} keystrokes through {t.label} took longer than {timeout} s")
            buf.clear()
            start = time.perf_counter_ns()
            os.write(wfd, byte)
            _read_until(rfd, byte, time.monotonic() + per_byte, buf)
            elapsed = time.perf_counter_ns() - start
            if bytes(buf) != byte:
                raise BenchError(f"keystroke {i} through {t.label}: sent {byte!r}, got {bytes(buf)!r}")
            if i >= warmup:
                rtts.append(elapsed)
    except BenchError as e:
        _stop(proc)
        raise BenchError(f"{e}; ssh stderr: {proc.stderr.read().decode(errors='replace')}") from e
    finally:
        with contextlib.suppress(OSError):
            proc.stdin.close()  # EOF ends `cat` without a pty; a pty passes no EOF, so end ssh itself
        if mode == "pty" and proc.poll() is None:
            proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        _stop(proc)
        proc.stdout.close()
        proc.stderr.close()
    return rtts


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def make_source(path: Path, size: int) -> str:
    """A random (incompressible) file of ``size`` bytes; its SHA-256."""
    h = hashlib.sha256()
    with path.open("wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(left, 1 << 22))
            f.write(chunk)
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------- runs
def run_rounds(
    targets: list[Target],
    args: argparse.Namespace,
    sshd: Sshd,
    scp_src: Path | None,
    scp_digest: str,
    log: Callable[[str], None],
) -> tuple[dict[str, Samples], list[str]]:
    """``--rounds`` rounds; in each, every measurement runs once per target, the target order rotating."""
    samples = {t.label: Samples() for t in targets}
    warnings: list[str] = []
    wanted = set(args.measure)
    # warm-up: one connection per target (first-connection costs, page cache), not recorded
    for t in targets:
        measure_connect(t, args.timeout)
    for r in range(args.rounds):
        order = targets[r % len(targets) :] + targets[: r % len(targets)]
        tag = f"round {r + 1}/{args.rounds}"
        if "connect" in wanted:
            for t in order:
                ms = statistics.median(measure_connect(t, args.timeout) for _ in range(args.connects))
                samples[t.label].connect_ms.append(ms)
                log(f"{tag} connect   {t.label:<8} {ms:8.1f} ms")
        if "stream" in wanted:
            for t in order:
                s = measure_stream(t, args.stream_bytes, args.timeout)
                samples[t.label].stream_s.append(s)
                samples[t.label].stream_mb_s.append(args.stream_bytes / s / 1e6)
                log(f"{tag} stream    {t.label:<8} {args.stream_bytes / s / 1e6:8.1f} MB/s ({s:.2f} s)")
        if "scp" in wanted and scp_src is not None:
            for t in order:
                dest = sshd.workdir / f"scp-{t.label}-{r}.bin"
                s, verified = measure_scp(t, scp_src, scp_digest, dest, args.timeout)
                if not verified:
                    warnings.append(f"scp through {t.label}: the upload is not on this sshd; not verified")
                samples[t.label].scp_s.append(s)
                samples[t.label].scp_mb_s.append(args.scp_bytes / s / 1e6)
                log(f"{tag} scp       {t.label:<8} {args.scp_bytes / s / 1e6:8.1f} MB/s ({s:.2f} s)")
        for mode in ("pty", "exec"):
            if f"keystroke_{mode}" not in wanted:
                continue
            for t in order:
                ns = measure_keystrokes(t, mode, args.keystrokes, args.keystroke_warmup, args.timeout)
                samples[t.label].keystroke_ns[mode].extend(ns)
                med = statistics.median(ns) / 1000
                samples[t.label].keystroke_round_median_us[mode].append(med)
                log(f"{tag} key {mode:<5} {t.label:<8} {med:8.1f} us median, {pct(ns, 99) / 1000:.1f} us p99")
    return samples, sorted(set(warnings))


def pct(values: list[int] | list[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank)."""
    s = sorted(values)
    return float(s[min(len(s) - 1, max(0, round(q / 100 * len(s) + 0.5) - 1))])


def summarize(samples: dict[str, Samples]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, s in samples.items():
        r: dict[str, Any] = {}
        if s.connect_ms:
            r["connect"] = {"ms_median": round(statistics.median(s.connect_ms), 2), "ms": _r(s.connect_ms, 2)}
        if s.stream_mb_s:
            r["stream"] = {
                "mb_s_median": round(statistics.median(s.stream_mb_s), 1),
                "mb_s": _r(s.stream_mb_s, 1),
                "seconds": _r(s.stream_s, 3),
            }
        if s.scp_mb_s:
            r["scp"] = {
                "mb_s_median": round(statistics.median(s.scp_mb_s), 1),
                "mb_s": _r(s.scp_mb_s, 1),
                "seconds": _r(s.scp_s, 3),
            }
        for mode, ns in s.keystroke_ns.items():
            if ns:
                r[f"keystroke_{mode}"] = {
                    "us_median": round(statistics.median(ns) / 1000, 1),
                    "us_p99": round(pct(ns, 99) / 1000, 1),
                    "us_mean": round(statistics.fmean(ns) / 1000, 1),
                    "us_min": round(min(ns) / 1000, 1),
                    "round_trips": len(ns),
                    "us_median_per_round": _r(s.keystroke_round_median_us[mode], 1),
                }
        out[label] = r
    return out


def _r(values: list[float], digits: int) -> list[float]:
    return [round(v, digits) for v in values]


def compare(results: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, bool]]:
    """Ratios hoopgw/direct (throughput), added latency hoopgw - direct (µs, ms), and the issue's goals."""
    if "direct" not in results or "hoopgw" not in results:
        return {}, {}, {}
    d, g = results["direct"], results["hoopgw"]
    ratios = {
        m: round(g[m]["mb_s_median"] / d[m]["mb_s_median"], 3) for m in ("stream", "scp") if m in d and m in g
    }
    added: dict[str, Any] = {
        m: round(g[m]["us_median"] - d[m]["us_median"], 1)
        for m in ("keystroke_pty", "keystroke_exec")
        if m in d and m in g
    }
    if "connect" in d and "connect" in g:
        added["connect_ms"] = round(g["connect"]["ms_median"] - d["connect"]["ms_median"], 2)
    goals = {f"{m} >= {MIN_THROUGHPUT_RATIO}x direct": v >= MIN_THROUGHPUT_RATIO for m, v in ratios.items()}
    if "keystroke_pty" in added:
        goals[f"added keystroke round trip (pty) <= {MAX_ADDED_KEYSTROKE_US:.0f} us"] = (
            added["keystroke_pty"] <= MAX_ADDED_KEYSTROKE_US
        )
    return {"hoopgw/direct": ratios}, {"hoopgw": added}, goals


def openssh_version() -> str:
    res = subprocess.run(["ssh", "-V"], capture_output=True, text=True, timeout=10)
    return (res.stderr or res.stdout).strip()


def print_table(doc: dict[str, Any]) -> None:
    print()
    for note in doc.get("warnings", []):
        print(f"WARNING: {note}")
    cols = [
        ("connect ms", "connect", "ms_median"),
        ("stream MB/s", "stream", "mb_s_median"),
        ("scp MB/s", "scp", "mb_s_median"),
        ("key pty us", "keystroke_pty", "us_median"),
        ("pty p99", "keystroke_pty", "us_p99"),
        ("key exec us", "keystroke_exec", "us_median"),
        ("exec p99", "keystroke_exec", "us_p99"),
    ]
    print(f"{'target':<10}" + "".join(f"{c[0]:>14}" for c in cols))
    for label, r in doc["results"].items():
        vals = [r.get(m, {}).get(k) for _, m, k in cols]
        print(f"{label:<10}" + "".join(f"{'-' if v is None else v:>14}" for v in vals))
    for pair, v in doc["ratios"].items():
        print(f"{pair}: " + "  ".join(f"{m} {x:.3f}x" for m, x in v.items()))
    for label, v in doc["added_latency"].items():
        print(f"added by {label}: " + "  ".join(f"{m} {x:+.1f}" for m, x in v.items()))
    for goal, met in doc["goals"].items():
        print(f"goal {goal}: {'met' if met else 'NOT met'}")
    print(f"\nwritten to {doc['output']}")


@contextlib.contextmanager
def bench_sshd(args: argparse.Namespace) -> Iterator[Sshd]:
    base = Path(args.sshd_dir).resolve() if args.sshd_dir else None
    sshd = Sshd(base, port=args.sshd_port)
    sshd.start()
    try:
        yield sshd
    finally:
        sshd.stop()


def build_targets(sshd: Sshd, args: argparse.Namespace) -> list[Target]:
    """``direct`` and, with ``--gateway``, ``hoopgw``."""
    targets = [Target("direct", sshd.host, sshd.port, sshd.user, sshd.client_key)]
    if args.gateway:
        targets.append(
            Target(
                "hoopgw",
                args.gateway_host,
                args.gateway,
                args.gateway_user or sshd.user,
                Path(args.gateway_key) if args.gateway_key else sshd.client_key,
                tuple(args.gateway_option),
            )
        )
    return targets


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--stream-bytes", type=int, default=1_000_000_000, help="bytes of the stream run")
    p.add_argument("--scp-bytes", type=int, default=256 * 1024 * 1024, help="size of the uploaded file")
    p.add_argument("--keystrokes", type=int, default=1000, help="1-byte round trips per run")
    p.add_argument("--keystroke-warmup", type=int, default=50, help="unmeasured round trips first")
    p.add_argument("--connects", type=int, default=3, help="`ssh true` runs per round (median kept)")
    p.add_argument(
        "--measure",
        default=",".join(MEASUREMENTS),
        type=lambda s: [m for m in s.split(",") if m],
        help=f"comma-separated subset of {','.join(MEASUREMENTS)}",
    )
    p.add_argument("--timeout", type=float, default=300.0, help="bound on every single run (seconds)")
    p.add_argument("--gateway", type=int, metavar="PORT", help="also measure hoopgw listening on PORT")
    p.add_argument("--gateway-host", default="127.0.0.1")
    p.add_argument("--gateway-user", help="SSH user name at the gateway (default: the sshd's user)")
    p.add_argument("--gateway-key", help="private key for the gateway (default: the sshd's client key)")
    p.add_argument(
        "--gateway-option", action="append", default=[], metavar="ARG", help="extra ssh/scp argument (repeat)"
    )
    p.add_argument("--sshd-port", type=int, help="port of the bench's sshd (default: a free one)")
    p.add_argument("--sshd-dir", help="keep the bench sshd's keys and config here (default: a temp dir)")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if not 1 <= args.rounds <= 50:
        p.error("--rounds must be 1..50")
    if not 1_000 <= args.stream_bytes <= 100_000_000_000 or not 1_000 <= args.scp_bytes <= 16_000_000_000:
        p.error("--stream-bytes must be 1e3..1e11 and --scp-bytes 1e3..1.6e10")
    if not 10 <= args.keystrokes <= 1_000_000 or not 0 <= args.keystroke_warmup <= 10_000:
        p.error("--keystrokes must be 10..1000000 and --keystroke-warmup 0..10000")
    if not 1 <= args.connects <= 100:
        p.error("--connects must be 1..100")
    if unknown := set(args.measure) - set(MEASUREMENTS):
        p.error(f"unknown measurements: {', '.join(sorted(unknown))}")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    started = time.time()
    load_start = os.getloadavg()
    with contextlib.ExitStack() as stack:
        sshd = stack.enter_context(bench_sshd(args))
        log(f"sshd on {sshd.host}:{sshd.port} (user {sshd.user}, key {sshd.client_key}, {sshd.base_dir})")
        targets = build_targets(sshd, args)
        scp_src: Path | None = None
        digest = ""
        if "scp" in args.measure:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hoopgw-sshbench-")))
            scp_src = workdir / "upload.bin"
            log(f"writing a {args.scp_bytes} byte source file ...")
            digest = make_source(scp_src, args.scp_bytes)
        samples, warnings = run_rounds(targets, args, sshd, scp_src, digest, log)
        sshd_info = {"port": sshd.port, "user": sshd.user, "host_key": sshd.host_key_fingerprint}

    results = summarize(samples)
    ratios, added, goals = compare(results)
    doc: dict[str, Any] = {
        "command": " ".join(["bench/ssh_e2e.py", *(argv if argv is not None else sys.argv[1:])]),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "elapsed_s": round(time.time() - started, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            # ssh, sshd, the gateway and wc share these CPUs; a high load average means noisier numbers
            "loadavg_start": [round(x, 2) for x in load_start],
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        },
        "versions": {"openssh": openssh_version()},
        "settings": {
            "rounds": args.rounds,
            "stream_bytes": args.stream_bytes,
            "scp_bytes": args.scp_bytes,
            "keystrokes": args.keystrokes,
            "keystroke_warmup": args.keystroke_warmup,
            "connects_per_round": args.connects,
            "cipher": CIPHER,
            "measurements": args.measure,
            "targets": [
                {"label": t.label, "host": t.host, "port": t.port, "user": t.user, "extra": list(t.extra)}
                for t in targets
            ],
            "sshd": sshd_info,
            "notes": [
                "stream = ssh -c CIPHER HOST 'head -c N /dev/zero' | wc -c, connection setup included",
                "scp = upload of a random file (SFTP protocol), SHA-256 of the copy checked",
                "keystroke_pty = 1-byte echo round trips, ssh -tt HOST 'stty raw -echo; exec cat'",
                "keystroke_exec = the same over ssh HOST cat (no pty)",
                "MB = 10^6 bytes; target order rotates every round; throughput medians over rounds, "
                "keystroke percentiles over all round trips of all rounds",
            ],
        },
        "results": results,
        "ratios": ratios,
        "added_latency": added,
        "goals": goals,
        "warnings": warnings,
        "output": str(args.out),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(args.out)
    print_table(doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
