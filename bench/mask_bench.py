#!/usr/bin/env python3
"""Masking engine alone: hoopgw's Rust ``Masker`` vs Python ``re`` vs Hyperscan, same corpus, same run.

The corpus is digit-heavy bank rows (ids, amounts, dates, timestamps, names, statuses, account numbers
that fail Luhn, 9-digit ids that fail the ABA checksum), generated from a fixed seed, with one PII value
(cards with and without separators, SSNs, IBANs, emails, phones) in 0 %, 1 % and 50 % of the rows.
Every built-in detector is on, style ``last4``. Measured, one thread:

- **buffer**: MB/s over tab-separated rows (~``--buffer-mb`` MB): ``Masker.mask(buf)``;
- **fields**: ns per field over ``--fields`` single fields (~12 bytes average): ``Masker.mask_many``.

Contenders (what each one does is printed with the table):

- **hoopgw**: ``hoopgw._core.Masker`` - find, validate and rewrite, in Rust;
- **re**: one compiled alternation of the same detector regexes with lookaround boundaries, ``re.sub``
  with a Python function that validates (Luhn, SSN ranges, IBAN mod-97, ABA, octets) and rewrites;
- **hyperscan**: the same regexes in one Hyperscan block-mode database (``HS_FLAG_SOM_LEFTMOST``);
  scan, then Python keeps the leftmost-longest candidates and validates them; counts, no rewrite.

    .venv/bin/python bench/mask_bench.py --seconds 1
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from bench._mask_ref import DETECTORS, Corpus, HyperscanScanner, ReMasker, make_rows, rows_for_size
from hoopgw import _core

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PII_RATES = (0.0, 0.01, 0.5)
TARGET_MB_S = 1000.0
TARGET_VS_RE = 100.0
TARGET_NS_FIELD = 100.0

CONTENDERS = {
    "hoopgw": "hoopgw._core.Masker, all built-in detectors, style last4: find + validate + rewrite (Rust)",
    "re": "Python re: one alternation of the same regexes, re.sub with a Python validate+rewrite function",
    "hyperscan": "Hyperscan block mode, SOM_LEFTMOST, same regexes: scan + Python overlap resolution and "
    "validation (Luhn, SSN, IBAN, ABA, octets); counts only, no rewrite",
    "hs-raw": "the same Hyperscan scan with a Python callback that only counts match reports (no "
    "validation, no overlap resolution, no rewrite): a ceiling for Hyperscan driven from Python",
}


def load_hyperscan() -> tuple[Any, str]:
    try:
        import hyperscan  # type: ignore[import-not-found,unused-ignore]  # optional, no type stubs
    except ImportError as e:
        return None, f"not installed ({e}); `pip install hyperscan` (wheels for x86-64 Linux and macOS)"
    return hyperscan, f"hyperscan {getattr(hyperscan, '__version__', '?')}"


def make_masker() -> _core.Masker | None:
    if not hasattr(_core, "Masker"):  # an extension built before the masking engine
        return None
    return _core.Masker(detectors=[(name, "last4") for name in _core.builtin_detectors()])


def timed(fn: Callable[[], object], seconds: float, min_runs: int = 1) -> list[float]:
    """Seconds per call of ``fn``: at least ``min_runs`` calls, for about ``seconds``."""
    times: list[float] = []
    gc_was = gc.isenabled()
    gc.disable()
    try:
        deadline = time.perf_counter() + seconds
        while len(times) < min_runs or time.perf_counter() < deadline:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
            if len(times) >= 10_000:
                break
    finally:
        if gc_was:
            gc.enable()
    return times


def build_extension_mode() -> str:
    """'release' or 'debug', from the Makefile's stamps (the .so itself does not say)."""
    venv = Path(__file__).resolve().parent.parent / ".venv"
    if (venv / ".ext-release-stamp").exists():
        return "release"
    if (venv / ".ext-debug-stamp").exists():
        return "debug"
    return "unknown"


def measure(
    label: str, corpus: Corpus, buf: bytes, fields: list[bytes], args: argparse.Namespace, hs: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {"buffer_bytes": len(buf), "fields": len(fields)}
    masker = make_masker()
    contenders: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {}
    if masker is not None:
        contenders["hoopgw"] = (lambda: masker.mask(buf), lambda: masker.mask_many(fields))
    rx = ReMasker()
    contenders["re"] = (lambda: rx.mask(buf), lambda: rx.mask_many(fields))
    if hs is not None:
        hsc = HyperscanScanner(hs)
        contenders["hyperscan"] = (lambda: hsc.scan(buf), lambda: hsc.scan_many(fields))
        contenders["hs-raw"] = (lambda: hsc.scan_raw(buf), lambda: hsc.scan_raw_many(fields))
    # Interleaved: each round gives every contender a slice of the budget, so that load from
    # elsewhere on the machine hits them alike; the median over all calls is reported.
    times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in contenders}
    for whole, per_field in contenders.values():
        whole(), per_field()  # warm-up
    for _ in range(args.rounds):
        for name, (whole, per_field) in contenders.items():
            times[name][0].extend(timed(whole, args.seconds / args.rounds))
            times[name][1].extend(timed(per_field, args.seconds / args.rounds))
    for name, (t_buf, t_fld) in times.items():
        out[name] = {
            "mb_s": round(len(buf) / statistics.median(t_buf) / 1e6, 2),
            "ns_field": round(statistics.median(t_fld) / len(fields) * 1e9, 1),
            "mb_s_best": round(len(buf) / min(t_buf) / 1e6, 2),
            "ns_field_best": round(min(t_fld) / len(fields) * 1e9, 1),
            "calls": [len(t_buf), len(t_fld)],
        }
        print(
            f"  {label:>4} {name:<10} {out[name]['mb_s']:10.2f} MB/s {out[name]['ns_field']:10.1f} ns/field",
            file=sys.stderr,
            flush=True,
        )

    # What each contender found, on the buffer (once, outside the timing).
    counts: dict[str, dict[str, int]] = {"expected (generated)": dict(corpus.expected)}
    if masker is not None:
        counts["hoopgw"] = dict(Counter(name for name, _, _ in masker.find(buf)))
        masked = masker.mask(buf)
        out["hoopgw_output_len_equal"] = len(masked) == len(buf)
    rx.counts.clear()
    rx.mask(buf)
    counts["re"] = dict(rx.counts)
    if hs is not None:
        hsc.counts.clear()
        hsc.scan(buf)
        counts["hyperscan"] = dict(hsc.counts)
        out["hs-raw"]["match_reports"] = hsc.scan_raw(buf)
    out["counts"] = counts
    return out


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def report(doc: dict[str, Any]) -> None:
    print("\nwhat each contender does:")
    for name, what in doc["contenders"].items():
        print(f"  {name:<10} {what}")
    if doc["hoopgw_missing"]:
        print(f"  hoopgw     NOT MEASURED: {doc['hoopgw_missing']}")
    print(f"  hyperscan: {doc['hyperscan']}")
    print(f"\nextension build: {doc['machine']['extension_build']}; one thread; MB/s over the whole buffer")
    head = f"{'PII rows':>9} {'contender':<10} {'MB/s':>10} {'ns/field':>10}"
    head += f" {'hoopgw/x MB/s':>14} {'x/hoopgw ns':>12}"
    print(head)
    print("-" * len(head))
    for label, res in doc["results"].items():
        hg = res.get("hoopgw")
        for name in CONTENDERS:
            if name not in res:
                continue
            r = res[name]
            speed = ratio(hg["mb_s"], r["mb_s"]) if hg and name != "hoopgw" else None
            cost = ratio(r["ns_field"], hg["ns_field"]) if hg and name != "hoopgw" else None
            print(
                f"{label:>9} {name:<10} {r['mb_s']:>10.2f} {r['ns_field']:>10.1f} "
                f"{(f'{speed:.1f}x' if speed else '-'):>14} {(f'{cost:.1f}x' if cost else '-'):>12}"
            )
    print("\nmasked values found in the buffer (per detector):")
    for label, res in doc["results"].items():
        for who, c in res["counts"].items():
            total = sum(c.values())
            detail = ", ".join(f"{k}={v}" for k, v in sorted(c.items()))
            print(f"  {label:>4} {who:<21} total={total:<6} {detail}")
    print()
    for goal, ok in doc["goals"].items():
        print(f"goal {goal}: {'met' if ok else 'NOT met' if ok is False else 'not measured'}")
    print(f"\nwritten to {doc['output']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=1.0, help="time budget per contender and measurement")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds the budget is split into")
    p.add_argument("--buffer-mb", type=float, default=2.0, help="size of the whole-buffer corpus")
    p.add_argument("--fields", type=int, default=100_000, help="number of fields for mask_many")
    p.add_argument("--rates", default=",".join(str(r) for r in PII_RATES), help="fractions of PII rows")
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--no-hyperscan", action="store_true", help="skip the Hyperscan contender")
    p.add_argument(
        "--json-out",
        type=Path,
        default=RESULTS_DIR / f"mask-{time.strftime('%Y-%m-%d')}.json",
        help="results file (default bench/results/mask-<date>.json)",
    )
    args = p.parse_args(argv)
    if not 0.01 <= args.seconds <= 60 or not 0.01 <= args.buffer_mb <= 64 or not 100 <= args.fields <= 10**7:
        p.error("--seconds must be 0.01..60, --buffer-mb 0.01..64, --fields 100..10M")
    if not 1 <= args.rounds <= 100:
        p.error("--rounds must be 1..100")
    rates = [float(r) for r in args.rates.split(",")]

    hs, hs_status = (None, "skipped (--no-hyperscan)") if args.no_hyperscan else load_hyperscan()
    if hs is None:
        print(f"hyperscan: {hs_status} - continuing without it", file=sys.stderr)
    hoopgw_missing = ""
    if make_masker() is None:
        hoopgw_missing = "hoopgw._core.Masker is not in the built extension (make install to rebuild)"
        print(f"WARNING: {hoopgw_missing}; measuring the other contenders only", file=sys.stderr)
    mode = build_extension_mode()
    if mode != "release":
        print(f"WARNING: extension build is {mode}, not release: hoopgw numbers are not representative",
              file=sys.stderr)  # fmt: skip

    started = time.time()
    load_start = os.getloadavg()
    results: dict[str, Any] = {}
    corpus_info: dict[str, Any] = {}
    for rate in rates:
        label = f"{rate * 100:g}%"
        corpus = rows_for_size(int(args.buffer_mb * 1e6), rate, args.seed)
        buf = corpus.text()
        field_corpus = make_rows(args.fields // len(corpus.rows[0]) + 1, rate, args.seed + 1)
        fields = field_corpus.fields[: args.fields]
        corpus_info[label] = {
            "rows": len(corpus.rows),
            "buffer_bytes": len(buf),
            "fields": len(fields),
            "avg_field_bytes": round(sum(map(len, fields)) / len(fields), 2),
            "pii_values_in_buffer": sum(corpus.expected.values()),
            "example_row": b"\t".join(corpus.rows[0]).decode(),
        }
        print(f"corpus {label}: {corpus_info[label]['rows']} rows, {len(buf) / 1e6:.2f} MB; "
              f"{len(fields)} fields, {corpus_info[label]['avg_field_bytes']} bytes average",
              file=sys.stderr, flush=True)  # fmt: skip
        results[label] = measure(label, corpus, buf, fields, args, hs)

    goals: dict[str, bool | None] = {}
    low = [r for label, r in results.items() if label in ("0%", "1%")] or list(results.values())
    hg = [r["hoopgw"] for r in low if "hoopgw" in r]
    goals[f">= {TARGET_MB_S:g} MB/s per core, digit-heavy rows (0% and 1% PII), all detectors"] = (
        min(r["mb_s"] for r in hg) >= TARGET_MB_S if hg else None
    )
    vs_re = [r["hoopgw"]["mb_s"] / r["re"]["mb_s"] for r in results.values() if "hoopgw" in r]
    goals[f">= {TARGET_VS_RE:g}x Python re (whole buffer, every PII rate)"] = (
        min(vs_re) >= TARGET_VS_RE if vs_re else None
    )
    goals[f"<= {TARGET_NS_FIELD:g} ns per average field (every PII rate)"] = (
        max(r["hoopgw"]["ns_field"] for r in results.values() if "hoopgw" in r) <= TARGET_NS_FIELD
        if hg
        else None
    )
    ratios = {
        label: {
            "hoopgw/re MB/s": ratio(r.get("hoopgw", {}).get("mb_s"), r["re"]["mb_s"]),
            "re/hoopgw ns_field": ratio(r["re"]["ns_field"], r.get("hoopgw", {}).get("ns_field")),
            "hoopgw/hyperscan MB/s": ratio(
                r.get("hoopgw", {}).get("mb_s"), r.get("hyperscan", {}).get("mb_s")
            ),
            "hyperscan/hoopgw ns_field": ratio(
                r.get("hyperscan", {}).get("ns_field"), r.get("hoopgw", {}).get("ns_field")
            ),
            "hoopgw/hs-raw MB/s": ratio(r.get("hoopgw", {}).get("mb_s"), r.get("hs-raw", {}).get("mb_s")),
            "hs-raw/hoopgw ns_field": ratio(
                r.get("hs-raw", {}).get("ns_field"), r.get("hoopgw", {}).get("ns_field")
            ),
        }
        for label, r in results.items()
    }
    doc: dict[str, Any] = {
        "command": " ".join(["bench/mask_bench.py", *(argv if argv is not None else sys.argv[1:])]),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "elapsed_s": round(time.time() - started, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "extension_build": mode,
            "loadavg_start": [round(x, 2) for x in load_start],
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        },
        "settings": {
            "seconds": args.seconds,
            "rounds": args.rounds,
            "buffer_mb": args.buffer_mb,
            "fields": args.fields,
            "seed": args.seed,
            "detectors": list(DETECTORS),
            "style": "last4",
        },
        "contenders": CONTENDERS,
        "hoopgw_missing": hoopgw_missing,
        "hyperscan": hs_status,
        "corpus": corpus_info,
        "results": results,
        "ratios": ratios,
        "goals": goals,
        "output": str(args.json_out),
    }
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.json_out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(args.json_out)
    report(doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
