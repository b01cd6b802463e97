"""``hoopgw prompts show ID``: a registered AI prompt and what it caused (docs/PROMPTS.md).

Read offline from the audit store in data_dir (an operator sees everything); without a readable store,
from the running gateway's API with the caller's token (``--token`` or ``$HOOPGW_TOKEN``), which shows
admins and auditors everything and the prompt's registrant their own work only.
"""

from __future__ import annotations

import argparse
import os
import urllib.parse
from typing import Any

from hoopgw.audit._db import Store
from hoopgw.audit._prompt import statement_prompt
from hoopgw.audit._prompts import prompt_report
from hoopgw.cli._common import (
    TOKEN_ENV,
    CliError,
    Subparsers,
    add_config_option,
    format_time,
    load,
    print_json,
    printable,
)
from hoopgw.cli._keys import api_base, api_request
from hoopgw.cli._sessions import event_lines, known_text
from hoopgw.errors import StoreError


def register(subparsers: Subparsers) -> None:
    """Add ``prompts show``."""
    parser = subparsers.add_parser(
        "prompts",
        help="AI prompt provenance: which prompt led to which statement",
        description="AI prompt provenance: registered prompts and the work tagged with them.",
    )
    add_config_option(parser)
    sub = parser.add_subparsers(dest="prompts_command", metavar="COMMAND", required=True)
    show = sub.add_parser(
        "show",
        help="show a prompt and what it caused",
        description=(
            "Show a registered prompt (as stored: masked) and every statement, result summary and "
            "approval request tagged with its id, oldest first, each with whether the tag can be "
            "trusted (known: the same identity registered the prompt; FOREIGN; UNKNOWN). Read from the "
            "audit store in data_dir; without one, from the gateway API with --token."
        ),
    )
    add_config_option(show)
    show.add_argument(
        "id", metavar="ID", help="the prompt id (as registered, or as a client tagged its work)"
    )
    show.add_argument(
        "--token", "-t", default=None, help=f"your token, to ask the gateway API (default: ${TOKEN_ENV})"
    )
    show.add_argument(
        "--json", action="store_true", help="print a JSON array of one object: the prompt and `caused`"
    )
    show.set_defaults(func=run_show)


def run_show(args: argparse.Namespace) -> int:
    """Print one prompt and what it caused."""
    config = load(args)
    store = Store.for_config(config)
    report: dict[str, Any] | None = None
    why = f"there is no readable audit store in {config.gateway.data_dir}"
    path = store.path
    try:
        if store.postgres or (path.is_file() and os.access(path, os.R_OK)):
            report = prompt_report(store, args.id)
            if report is None:
                raise CliError(
                    f"no prompt {args.id!r}: none is registered with this id, and no event or approval "
                    "request carries it"
                )
    except StoreError as exc:
        why = str(exc)
    if report is None:
        token = args.token if args.token is not None else os.environ.get(TOKEN_ENV)
        if not token or not token.strip():
            raise CliError(f"{why}; to ask the gateway API instead, pass --token or set {TOKEN_ENV}")
        report = api_request(
            config, token.strip(), "GET", "/api/prompts/" + urllib.parse.quote(args.id, safe="")
        )
        if not isinstance(report, dict):
            raise CliError(f"the gateway API at {api_base(config)} did not answer with a prompt")
    if args.json:
        print_json([report])
        return 0
    print(printable("\n".join(describe(report))))
    return 0


def _when(ts: float) -> str:
    return f"{format_time(ts)}.{int(ts * 1000) % 1000:03d}"


def _block(title: str, text: str | None) -> list[str]:
    if text is None:
        return [f"{title}: -"]
    return [f"{title}:", *("    " + line for line in text.split("\n"))]


def describe(report: dict[str, Any]) -> list[str]:
    """The text form of :func:`hoopgw.audit._prompts.prompt_report`'s answer."""
    out: list[str] = []
    if report.get("registered"):
        out += [
            f"prompt      {report['id']}",
            f"registered  {format_time(report['created_at'])} UTC by {report['registered_by']}",
            f"assistant   {report.get('assistant') or '-'}    model {report.get('model') or '-'}"
            f"    human {report.get('human') or '-'}",
            *_block("prompt (masked)", report.get("prompt")),
            *_block("generated code (masked)", report.get("generated_code")),
        ]
    else:
        out += [
            f"prompt      {report['id']}",
            "registered  NO: no prompt has this id; what follows only claims to come from it",
        ]
    caused = report.get("caused") or []
    out += ["", f"caused      {len(caused)} item(s)" if caused else "caused      nothing recorded"]
    for item in caused:
        out.append("")
        out += _item_lines(item)
    return out


def _who(item: dict[str, Any]) -> str:
    subject = item.get("subject")
    if subject is None:
        return "-"
    return f"{'key' if item.get('auth') == 'apikey' else 'user'}:{subject}"


def _item_lines(item: dict[str, Any]) -> list[str]:
    tag = known_text(item.get("prompt_known"))
    if item["kind"] == "approval_request":
        r = item["request"]
        out = [
            f"{_when(item['ts'])}  approval request {r['id']}  {r['status']}"
            f"{' (' + r['close_reason'] + ')' if r.get('close_reason') else ''}",
            f"    by {_who(item)} on {r.get('connection') or '-'}, rule {r.get('rule') or '-'}; tag: {tag}",
        ]
        out += ["    " + line for line in str(r.get("statement") or "-").split("\n")]
        if r.get("params_masked"):
            shown = ", ".join(
                f"${i}={'NULL' if p is None else repr(p)}" for i, p in enumerate(r["params_masked"], 1)
            )
            out.append(f"    params: {shown}")
        for d in r.get("decisions") or []:
            reason = f": {d['reason']}" if d.get("reason") else ""
            out.append(f"    {_when(d['decided_at'] / 1000)}  {d['approver']} {d['decision']}s{reason}")
        return out
    where = f"session {item['session_id']}" if item.get("session_id") else "gateway"
    data = item.get("data") or {}
    own = item.get("prompt_id")
    via = (
        "comment"
        if own is not None and statement_prompt(str(data.get("sql") or "")) == own
        else "application_name"
    )
    head = f"    {where} of {_who(item)}; tag (from {via}): {tag}"
    kind = item["kind"]
    if kind in ("session_open", "session_close"):
        what = "session opened" if kind == "session_open" else "session closed"
        if kind == "session_open":
            app = (data.get("params") or {}).get("application_name")
            what += f" on {data.get('connection') or '-'} (application_name {app!r})"
        elif data.get("reason"):
            what += f" ({data['reason']})"
        return [f"{_when(item['ts'])}  {what}", head]
    lines = event_lines(item)
    return [f"{format_time(item['ts'])[:10]} {lines[0]}", head, *lines[1:]] if lines else [head]
