"""``hoopgw serve`` and ``hoopgw demo``: thin launchers (the work lives in hoopgw.server / hoopgw.demo)."""

from __future__ import annotations

import argparse
from pathlib import Path

from hoopgw.cli._common import CliError, Subparsers, load, new_parser
from hoopgw.config import secret_problems
from hoopgw.errors import ConfigError
from hoopgw.log import setup_logging


def register(subparsers: Subparsers) -> None:
    """Add ``serve`` and ``demo``."""
    serve = new_parser(subparsers, "serve", "run the gateway (refuses to start on any config problem)")
    serve.add_argument(
        "--log-format", choices=("json", "text"), default="json", help="log lines on stderr (default json)"
    )
    serve.set_defaults(func=run_serve)
    demo = new_parser(subparsers, "demo", "start a throwaway PostgreSQL with a fake bank behind the gateway")
    demo.add_argument(
        "--port-base",
        type=int,
        default=15432,
        help="PostgreSQL listener port; the control API uses the next one (free ports if taken)",
    )
    demo.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="keep the config, audit store and logs here (default: a temporary directory, removed at exit)",
    )
    demo.add_argument("--keep", action="store_true", help="keep the demo files at exit")
    demo.set_defaults(func=run_demo)


def run_serve(args: argparse.Namespace) -> int:
    """Validate strictly, then hand over to hoopgw.server.serve."""
    config = load(args, allow_unsupported=False)
    problems = secret_problems(config)
    if problems:
        raise ConfigError(problems)
    setup_logging(config.gateway.log_level, json=args.log_format == "json")
    try:
        from hoopgw.server import serve  # heavy (uvloop, listeners): only when serving
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("hoopgw"):
            raise CliError(f"hoopgw serve: the gateway cannot start: module {exc.name} is missing") from None
        raise
    return serve(config)


def run_demo(args: argparse.Namespace) -> int:
    """Hand over to hoopgw.demo.main with the parsed options."""
    try:
        from hoopgw.demo import main  # only when running the demo
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("hoopgw"):
            raise CliError(f"hoopgw demo: not available: module {exc.name} is missing") from None
        raise
    return main(args)
