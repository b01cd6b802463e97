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

Targets: **direct** (the sshd itself), **hoopgw**, a gateway the bench starts (``python -m hoopgw serve``,
a child process on free ports) whose ssh connection ``benchhost`` leads to this sshd with the sshd's client
key as the brokered credential and its host key pinned; masking on (credit_card and email, as the tests),
recording on (asciicast, the default cap of 64 MiB per session, so a long stream is recorded up to the cap
and only counted after it), a policy giving group ``dev`` exec, shell, file-read and file-write, and a key
of its own for the person ``bench`` registered with ``hoopgw ssh-keys add``. With ``--gateway PORT`` the
bench measures a gateway already listening on PORT instead (its ssh connection must lead to this sshd: use
``--sshd-port``/``--sshd-dir`` to give the sshd a known port and keys for that gateway's config).
``--variant LABEL=SPEC`` adds more gateways of the bench's own, measured in the same rounds: an A/B of a
patched source tree (``src=DIR``) or of a setting (``masking=off``, ``record_max_bytes=N``). ``--relay``
adds **relay**, a plain TCP relay (``bench/_tcp_relay.py``, no SSH) in front of the sshd: the floor any
proxy process pays on this machine for one more hop.

The order of targets rotates every round. Medians go to ``bench/results/ssh_e2e.json`` with the ratios
hoopgw/direct, the keystroke latency hoopgw adds, and the CPU seconds each gateway process used per run.
Loopback only; every run is bounded in time.

    .venv/bin/python bench/ssh_e2e.py --rounds 3
    .venv/bin/python bench/ssh_e2e.py --stream-bytes 100000000 --scp-bytes 32000000 --rounds 1
    .venv/bin/python bench/ssh_e2e.py --measure stream --variant patched=src=/tmp/sshbench
    .venv/bin/python bench/ssh_e2e.py --measure stream --variant nomask=masking=off,record_max_bytes=0
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

from hoopgw._pgcluster import free_port
from hoopgw.demo import GatewayProcess, gateway_env, toml_dumps
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
    #: the gateway's process (its CPU time is read around each run); None for direct or --gateway
    pid: int | None = None

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
    #: CPU seconds of the gateway process per run, per measurement ("stream", "scp", ...)
    cpu_s: dict[str, list[float]] = field(default_factory=dict)
    #: CPUs of the whole machine busy during each run (0..cpu_count), per measurement
    busy_cpus: dict[str, list[float]] = field(default_factory=dict)
    #: Every round trip in ns, all rounds pooled, per mode ("pty", "exec").
    keystroke_ns: dict[str, list[int]] = field(default_factory=lambda: {"pty": [], "exec": []})
    #: The median of each round, per mode.
    keystroke_round_median_us: dict[str, list[float]] = field(default_factory=lambda: {"pty": [], "exec": []})


class BenchError(RuntimeError):
    """A measured command failed or returned the wrong bytes."""


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("SSH_", "HOOPGW_"))}


def cpu_seconds(pid: int | None) -> float | None:
    """User plus system CPU time of process ``pid`` (all its threads) so far; None without one."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs so far, from ``/proc/stat`` ((0, 0) without it)."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle, iowait
    total = sum(ticks[:8])  # guest time is already counted in user
    return total - idle, total


@contextlib.contextmanager
def cpu_of(t: Target, samples: Samples, what: str) -> Iterator[None]:
    """Add the CPU seconds ``t``'s gateway process spends in the block to ``samples.cpu_s[what]``, and
    how many of the machine's CPUs were busy meanwhile to ``samples.busy_cpus[what]``."""
    before, (busy0, total0) = cpu_seconds(t.pid), machine_ticks()
    yield
    after, (busy1, total1) = cpu_seconds(t.pid), machine_ticks()
    if before is not None and after is not None:
        samples.cpu_s.setdefault(what, []).append(after - before)
    if total1 > total0:
        busy = (busy1 - busy0) / (total1 - total0) * (os.cpu_count() or 1)
        samples.busy_cpus.setdefault(what, []).append(busy)


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
                with cpu_of(t, samples[t.label], "stream"):
                    s = measure_stream(t, args.stream_bytes, args.timeout)
                samples[t.label].stream_s.append(s)
                samples[t.label].stream_mb_s.append(args.stream_bytes / s / 1e6)
                log(f"{tag} stream    {t.label:<8} {args.stream_bytes / s / 1e6:8.1f} MB/s ({s:.2f} s)"
                    + _cpu_note(samples[t.label], "stream", s))  # fmt: skip
        if "scp" in wanted and scp_src is not None:
            for t in order:
                dest = sshd.workdir / f"scp-{t.label}-{r}.bin"
                with cpu_of(t, samples[t.label], "scp"):
                    s, verified = measure_scp(t, scp_src, scp_digest, dest, args.timeout)
                if not verified:
                    warnings.append(f"scp through {t.label}: the upload is not on this sshd; not verified")
                samples[t.label].scp_s.append(s)
                samples[t.label].scp_mb_s.append(args.scp_bytes / s / 1e6)
                log(f"{tag} scp       {t.label:<8} {args.scp_bytes / s / 1e6:8.1f} MB/s ({s:.2f} s)"
                    + _cpu_note(samples[t.label], "scp", s))  # fmt: skip
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


def _cpu_note(s: Samples, what: str, seconds: float) -> str:
    cpu, busy = s.cpu_s.get(what), s.busy_cpus.get(what)
    note = f", gateway CPU {cpu[-1]:.2f} s = {cpu[-1] / seconds:.0%} of a core" if cpu else ""
    return note + (f", {busy[-1]:.2f} of {os.cpu_count()} CPUs busy" if busy else "")


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
        for what in ("stream", "scp"):
            cpu, wall = s.cpu_s.get(what), (s.stream_s if what == "stream" else s.scp_s)
            if cpu and what in r:
                r[what]["gateway_cpu_s"] = _r(cpu, 2)
                r[what]["gateway_cpu_per_wall_median"] = round(
                    statistics.median(c / w for c, w in zip(cpu, wall, strict=True)), 2
                )
            if (busy := s.busy_cpus.get(what)) and what in r:
                r[what]["machine_busy_cpus"] = _r(busy, 2)
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
    """Per gateway target: ratios target/direct (throughput), added latency target - direct (µs, ms);
    and the issue's goals, judged on ``hoopgw``."""
    if "direct" not in results:
        return {}, {}, {}
    d = results["direct"]
    all_ratios: dict[str, Any] = {}
    all_added: dict[str, Any] = {}
    for label, g in results.items():
        if label == "direct":
            continue
        all_ratios[f"{label}/direct"] = {
            m: round(g[m]["mb_s_median"] / d[m]["mb_s_median"], 3)
            for m in ("stream", "scp")
            if m in d and m in g
        }
        added: dict[str, Any] = {
            m: round(g[m]["us_median"] - d[m]["us_median"], 1)
            for m in ("keystroke_pty", "keystroke_exec")
            if m in d and m in g
        }
        if "connect" in d and "connect" in g:
            added["connect_ms"] = round(g["connect"]["ms_median"] - d["connect"]["ms_median"], 2)
        all_added[label] = added
    ratios, added = all_ratios.get("hoopgw/direct", {}), all_added.get("hoopgw", {})
    goals = {f"{m} >= {MIN_THROUGHPUT_RATIO}x direct": v >= MIN_THROUGHPUT_RATIO for m, v in ratios.items()}
    if "keystroke_pty" in added:
        goals[f"added keystroke round trip (pty) <= {MAX_ADDED_KEYSTROKE_US:.0f} us"] = (
            added["keystroke_pty"] <= MAX_ADDED_KEYSTROKE_US
        )
    return all_ratios, all_added, goals


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
        ("stream gwCPU", "stream", "gateway_cpu_per_wall_median"),
        ("scp MB/s", "scp", "mb_s_median"),
        ("scp gwCPU", "scp", "gateway_cpu_per_wall_median"),
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


#: The bench gateway's masking (as the SSH tests': a card number or an e-mail address in output is masked).
MASKING: list[dict[str, Any]] = [
    {"connections": ["benchhost"], "detectors": ["credit_card", "email"], "style": "last4"}
]
#: The bench gateway's policy: group dev may run commands and shells and move files.
POLICY: list[dict[str, Any]] = [
    {
        "name": "bench",
        "subjects": ["group:dev"],
        "connections": ["benchhost"],
        "allow": ["shell", "exec", "file-read", "file-write"],
    }
]
#: ``--variant`` settings: what each changes in the gateway's config (``src`` picks the source tree).
VARIANT_KEYS = ("src", "masking", "record_max_bytes")


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    """``LABEL=KEY=VALUE,KEY=VALUE`` -> (LABEL, {KEY: VALUE}); ValueError when malformed."""
    label, _, spec = text.partition("=")
    if not label or label == "direct" or not label.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"bad variant label {label!r}")
    settings: dict[str, str] = {}
    for item in filter(None, spec.split(",")):
        key, eq, value = item.partition("=")
        if not eq or key not in VARIANT_KEYS:
            raise ValueError(f"bad variant setting {item!r} (known: {', '.join(VARIANT_KEYS)})")
        settings[key] = value
    if settings.get("masking", "on") not in ("on", "off"):
        raise ValueError("masking=on|off")
    if "record_max_bytes" in settings and not settings["record_max_bytes"].isdigit():
        raise ValueError("record_max_bytes=BYTES")
    return label, settings


def gateway_config(
    sshd: Sshd, workdir: Path, port: int, api: int, settings: dict[str, str]
) -> dict[str, Any]:
    """The TOML document of a bench gateway (see the module docstring)."""
    conn: dict[str, Any] = {
        "name": "benchhost",
        "type": "ssh",
        "listen": f"127.0.0.1:{port}",
        "upstream": f"ssh://{sshd.user}@127.0.0.1:{sshd.port}",
        "private_key": f"file:{sshd.client_key}",
        "host_key": sshd.host_key_fingerprint,
    }
    if "record_max_bytes" in settings:
        conn["record_max_bytes"] = int(settings["record_max_bytes"])
    doc: dict[str, Any] = {
        "gateway": {
            "data_dir": str(workdir / "var"),
            "api_listen": f"127.0.0.1:{api}",
            "log_level": "warning",
            "admins": ["user:admin"],
        },
        "identity": {"issuer": "local", "audience": "hoopgw"},
        "connections": [conn],
        "policy": POLICY,
    }
    if settings.get("masking", "on") == "on":
        doc["masking"] = MASKING
    return doc


@contextlib.contextmanager
def start_hoopgw(sshd: Sshd, workdir: Path, label: str, settings: dict[str, str]) -> Iterator[Target]:
    """Start a bench gateway in ``workdir``, register a key for ``bench``; yield its target."""
    workdir.mkdir(parents=True, exist_ok=True)
    port, api = free_port(), free_port()
    cfg = workdir / "hoopgw.toml"
    cfg.write_text(toml_dumps(gateway_config(sshd, workdir, port, api, settings)))
    env = {"PYTHONPATH": str(Path(settings["src"]).resolve())} if "src" in settings else {}
    gw = GatewayProcess(
        config_path=cfg, api=("127.0.0.1", api), listens=[("127.0.0.1", port)],
        log_path=workdir / "gateway.log", env=env,
    )  # fmt: skip
    gw.start(timeout=30)
    try:
        key = workdir / "id_bench"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bench", "-f", str(key)],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        admin = gw.token("admin", (), ttl="4h")
        add = gw.cli(
            "ssh-keys", "add", "--subject", "bench", "--groups", "dev", f"{key}.pub", "--token", admin
        )
        res = subprocess.run(
            add, capture_output=True, text=True, timeout=60, env=gateway_env(env),
        )  # fmt: skip
        if res.returncode != 0:
            raise BenchError(f"hoopgw ssh-keys add failed ({res.returncode}): {res.stderr.strip()}")
        assert gw.proc is not None
        yield Target(label, "127.0.0.1", port, "bench", key, pid=gw.proc.pid)
    finally:
        code = gw.stop()
        if code not in (0, None):
            print(f"WARNING: gateway {label} exited with {code}:\n{gw.log_tail()}", file=sys.stderr)


def build_targets(
    sshd: Sshd, args: argparse.Namespace, stack: contextlib.ExitStack, workdir: Path
) -> list[Target]:
    """``direct``, then ``hoopgw`` (started here, or the one at ``--gateway``), then the variants."""
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
    elif not args.direct_only:
        targets.append(stack.enter_context(start_hoopgw(sshd, workdir / "hoopgw", "hoopgw", {})))
    for label, settings in args.variant:
        targets.append(stack.enter_context(start_hoopgw(sshd, workdir / label, label, settings)))
    if args.relay:
        targets.append(stack.enter_context(start_relay(sshd, workdir / "relay.log")))
    return targets


@contextlib.contextmanager
def start_relay(sshd: Sshd, log_path: Path) -> Iterator[Target]:
    """Start ``bench/_tcp_relay.py`` in front of the sshd; yield its target (the sshd's user and key)."""
    port = free_port()
    relay = Path(__file__).resolve().parent / "_tcp_relay.py"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(relay), str(port), sshd.host, str(sshd.port)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while b"ready" not in log_path.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"the TCP relay did not start: {log_path.read_text(errors='replace')}")
            time.sleep(0.05)
        yield Target("relay", "127.0.0.1", port, sshd.user, sshd.client_key, pid=proc.pid)
    finally:
        _stop(proc)


def git_describe() -> str | None:
    res = subprocess.run(
        ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, timeout=10,
        cwd=Path(__file__).resolve().parent,
    )  # fmt: skip
    return res.stdout.strip() or None


def core_build() -> str:
    """``release`` or ``debug``: how the loaded ``hoopgw._core`` was built (debug builds are large)."""
    from hoopgw import _core

    return "debug" if Path(_core.__file__ or "").stat().st_size > 20_000_000 else "release"


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
    p.add_argument("--direct-only", action="store_true", help="measure the sshd alone (no gateway)")
    p.add_argument(
        "--relay", action="store_true",
        help="also measure through a plain TCP relay (bench/_tcp_relay.py): the cost of one more hop",
    )  # fmt: skip

    def variant(text: str) -> tuple[str, dict[str, str]]:
        try:
            return parse_variant(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    p.add_argument(
        "--variant", action="append", default=[], type=variant, metavar="LABEL=SPEC",
        help="also measure a gateway of the bench's own, SPEC a comma-separated list of src=DIR (the source "
        "tree to run it from), masking=off, record_max_bytes=N (repeat)",
    )  # fmt: skip
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
    labels = [label for label, _ in args.variant]
    if len(set(labels)) != len(labels) or {"hoopgw", "relay"} & set(labels):
        p.error("--variant labels must differ from each other and from hoopgw and relay")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    started = time.time()
    load_start = os.getloadavg()
    with contextlib.ExitStack() as stack:
        sshd = stack.enter_context(bench_sshd(args))
        log(f"sshd on {sshd.host}:{sshd.port} (user {sshd.user}, key {sshd.client_key}, {sshd.base_dir})")
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hoopgw-sshbench-")))
        targets = build_targets(sshd, args, stack, workdir)
        for t in targets[1:]:
            log(f"{t.label} on {t.host}:{t.port} (user {t.user}, key {t.key})")
        scp_src: Path | None = None
        digest = ""
        if "scp" in args.measure:
            scp_src = workdir / "upload.bin"
            log(f"writing a {args.scp_bytes} byte source file ...")
            digest = make_source(scp_src, args.scp_bytes)
        samples, warnings = run_rounds(targets, args, sshd, scp_src, digest, log)
        if core_build() == "debug":
            warnings.append("hoopgw._core is a debug build: `make install` builds the release one")
        sshd_info = {"port": sshd.port, "user": sshd.user, "host_key": sshd.host_key_fingerprint}

    gateway_info: Any = "external (--gateway)" if args.gateway else {
        "masking": MASKING,
        "record_max_bytes": "the [ssh] default (64 MiB per session)",
        "variants": dict(args.variant),
    }  # fmt: skip
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
        "versions": {"openssh": openssh_version(), "hoopgw": git_describe(), "core_build": core_build()},
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
            "gateway": gateway_info,
            "sshd": sshd_info,
            "notes": [
                "stream = ssh -c CIPHER HOST 'head -c N /dev/zero' | wc -c, connection setup included",
                "scp = upload of a random file (SFTP protocol), SHA-256 of the copy checked",
                "keystroke_pty = 1-byte echo round trips, ssh -tt HOST 'stty raw -echo; exec cat'",
                "keystroke_exec = the same over ssh HOST cat (no pty)",
                "gateway_cpu_s = user+system CPU seconds of the gateway process during each run",
                "machine_busy_cpus = CPUs of the machine busy during each run (everything on it, other "
                "users included): near cpu_count means the run was bound by the machine, not one process",
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
