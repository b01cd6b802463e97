"""``hoopgw token issue``: a token from the local issuer, printed alone on stdout."""

from __future__ import annotations

import argparse
import sys

from hoopgw.cli._common import CliError, Subparsers, add_config_option, duration, load
from hoopgw.identity import LocalIssuer


def register(subparsers: Subparsers) -> None:
    """Add ``token issue``."""
    parser = subparsers.add_parser("token", help="local-issuer tokens", description="local-issuer tokens")
    add_config_option(parser)
    sub = parser.add_subparsers(dest="token_command", metavar="COMMAND", required=True)
    issue = sub.add_parser(
        "issue",
        help="issue a token signed by the gateway (prints only the token)",
        description="Issue a token signed by the gateway's local issuer; prints only the token on stdout.",
    )
    add_config_option(issue)
    issue.add_argument("--subject", "-s", required=True, help="who the token is for, e.g. alice")
    issue.add_argument("--groups", "-g", default="", help="comma-separated groups, e.g. dba,ai-agents")
    issue.add_argument(
        "--ttl", type=duration, default=None, help="lifetime like 30m, 1h, 7d (default: identity.token_ttl)"
    )
    issue.set_defaults(func=run_issue)


def run_issue(args: argparse.Namespace) -> int:
    """Issue and print one token."""
    config = load(args)
    if config.identity.issuer != "local":
        raise CliError('token issue needs identity.issuer = "local" in the config')
    groups = [g.strip() for g in str(args.groups).split(",") if g.strip()]
    ttl: float = args.ttl if args.ttl is not None else config.identity.token_ttl
    issuer = LocalIssuer(config.gateway.data_dir, config.identity.audience)
    try:
        token = issuer.issue(args.subject, groups, ttl)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    sys.stdout.write(token + "\n")
    return 0
