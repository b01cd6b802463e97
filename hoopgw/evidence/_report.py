"""``report.html``: the pack summarised for an examiner, one self-contained page.

It opens offline: inline CSS, inline SVG charts (``_svg``), no script, no font, no image, and a
Content-Security-Policy that forbids the browser to load anything at all. Every value from the store
is escaped.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from hoopgw.evidence._stats import CLASS_RANK, LATENCY_BUCKETS, Stats
from hoopgw.evidence._svg import columns, hbars

_MAX_DAYS = 92  # beyond this many days, sessions are charted per month

#: the browser may load nothing: no script, image, font, frame or connection; only the inline style
_CSP = "default-src 'none'; style-src 'unsafe-inline'"
_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .5em 0; } td, th { padding: .2em .8em; text-align: left; }
th { background: #f2f2f2; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafafa; } .ok { color: #1a7f37; } .bad { color: #b00020; }
code { background: #f5f5f5; padding: 0 .3em; } .chart { display: block; margin: .5em 0; }
"""


@dataclass(frozen=True, slots=True)
class ReportInfo:
    """What the report says about the pack itself."""

    created_at: int  # ms
    since: int | None  # ms
    until: int  # ms
    key_id: str
    chain: dict[str, Any]  # Report.to_json() of the whole store
    first_seq: int | None
    last_seq: int | None
    files: Sequence[str]


def _time(ms: int | None) -> str:
    if ms is None:
        return "the beginning"
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _table(head: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    out = ["<table><tr>", *(f"<th>{escape(h)}</th>" for h in head), "</tr>"]
    count = 0
    for row in rows:
        count += 1
        out.append("<tr>")
        for cell in row:
            if isinstance(cell, int | float) and not isinstance(cell, bool):
                out.append(f'<td class="n">{cell:,}</td>')
            else:
                out.append(f"<td>{escape(str(cell))}</td>")
        out.append("</tr>")
    if not count:
        out.append(f'<tr><td colspan="{len(head)}">none</td></tr>')
    out.append("</table>")
    return "".join(out)


def _days(per_day: dict[str, int]) -> list[tuple[str, int]]:
    """Sessions per day from the first to the last day (zeros included), or per month if that is long."""
    if not per_day:
        return []
    first, last = dt.date.fromisoformat(min(per_day)), dt.date.fromisoformat(max(per_day))
    span = (last - first).days + 1
    if span <= _MAX_DAYS:
        days = (first + dt.timedelta(days=i) for i in range(span))
        return [(d.isoformat(), per_day.get(d.isoformat(), 0)) for d in days]
    months: dict[str, int] = {}
    year, month = first.year, first.month
    while (year, month) <= (last.year, last.month):
        months[f"{year:04d}-{month:02d}"] = 0
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    for day, count in per_day.items():
        months[day[:7]] += count
    return list(months.items())


def _chain(chain: dict[str, Any]) -> str:
    if chain.get("ok"):
        cp = chain.get("last_checkpoint")
        sealed = (
            f"; last signed checkpoint at seq {cp['seq']}" if isinstance(cp, dict) else "; no checkpoint yet"
        )
        return (
            f'<p class="ok">The audit chain verified: {chain.get("events", 0):,} events'
            f" (seq {chain.get('first_seq')}..{chain.get('last_seq')}){escape(sealed)}.</p>"
        )
    problem = chain.get("problem") or {}
    return (
        f'<p class="bad">The audit chain FAILED verification at seq {escape(str(problem.get("seq")))}'
        f" ({escape(str(problem.get('code')))}): {escape(str(problem.get('message')))}</p>"
    )


def _latency(stats: Stats) -> str:
    if not stats.latencies:
        return "<p>No request was decided in this range.</p>"
    lat = sorted(stats.latencies)
    p90 = lat[min(len(lat) - 1, int(len(lat) * 0.9))]
    rows = [("median", f"{statistics.median(lat):,.1f} s"), ("90th percentile", f"{p90:,.1f} s"),
            ("longest", f"{lat[-1]:,.1f} s")]  # fmt: skip
    return _table(("time to decision", ""), rows)


def render(info: ReportInfo, stats: Stats) -> str:
    """The whole page."""
    span = f"{_time(info.since)} to {_time(info.until)}"
    seqs = f" (seq {info.first_seq}..{info.last_seq})" if info.first_seq is not None else ""
    summary = [
        ("range", span),
        ("generated", _time(info.created_at)),
        ("events", f"{stats.events:,}{seqs}"),
        ("sessions", f"{stats.sessions:,}"),
        ("statements", f"{stats.statements:,} ({stats.statement_errors:,} with errors)"),
        ("denials", f"{stats.denials:,}"),
        ("approval requests", f"{stats.approval_requests:,} ({stats.approval_decisions:,} decisions)"),
        ("prompts", f"{stats.prompts:,}"),
        ("values masked", f"{sum(stats.masked.values()):,}"),
        ("signed checkpoints in range", f"{stats.checkpoints:,}"),
        ("signing key id", info.key_id),
    ]
    classes = sorted(stats.statement_classes.items(), key=lambda kv: _rank(kv[0]))
    status = sorted(stats.approval_status.items())
    buckets = [(label, stats.approval_latency.get(label, 0)) for _, label in LATENCY_BUCKETS]
    top = stats.top_identities()
    body = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        f"<title>hoopgw evidence: {escape(span)}</title><style>{_CSS}</style></head><body>",
        f"<h1>hoopgw evidence pack</h1><p>{escape(span)}</p>",
        _table(("", ""), summary),
        "<h2>Integrity</h2>",
        _chain(info.chain),
        *(f'<p class="bad">Warning: {escape(w)}.</p>' for w in stats.warnings),
        "<p>Every file of this pack is listed with its SHA-256 in <code>MANIFEST.json</code>, signed with the"
        " gateway's Ed25519 key (<code>public_key.pem</code>; compare it with the key the operator gave you"
        " out of band). Check the whole pack offline with"
        " <code>hoopgw evidence verify DIR --public-key FILE</code>.</p>",
        _table(("file",), ((name,) for name in info.files)),
        "<h2>Sessions per day</h2>",
        columns("Sessions per day", _days(stats.sessions_per_day)),
        _table(("type", "sessions"), sorted(stats.session_types.items())),
        "<h2>Statements by class</h2>",
        "<p>The policy class of each recorded statement (the most significant one when it holds"
        " several).</p>",
        hbars("Statements by class", classes),
        "<h2>Denials</h2>",
        hbars(
            "Denied statements by class", sorted(stats.denial_classes.items(), key=lambda kv: _rank(kv[0]))
        ),
        _table(("policy", "denials"), stats.denial_rules.most_common()),
        "<h2>Approvals</h2>",
        hbars("Approval requests by status", status),
        hbars("Time from request to decision", buckets if stats.latencies else []),
        _latency(stats),
        "<h2>Masking</h2>",
        "<p>Values masked before they reached the client and the audit store, per detector.</p>",
        hbars("Masked values by detector", stats.masked.most_common()),
        "<h2>Top identities</h2>",
        hbars("Sessions by identity", [(name, who.sessions) for name, who in top]),
        _table(
            ("identity", "sessions", "statements", "denials"),
            ((name, who.sessions, who.statements, who.denials) for name, who in top),
        ),
        "<h2>Events by kind</h2>",
        _table(("kind", "events"), sorted(stats.event_kinds.items())),
        "</body></html>",
    ]
    return "\n".join(body) + "\n"


def _rank(cls: str) -> int:
    return CLASS_RANK.index(cls) if cls in CLASS_RANK else len(CLASS_RANK)
