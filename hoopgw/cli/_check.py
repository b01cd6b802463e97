"""``hoopgw check``: validate the config and explain every mistake."""

from __future__ import annotations

import argparse
import sys

from hoopgw.cli._common import Subparsers, config_path, format_problem, new_parser
from hoopgw.config import check_config, secret_problems
from hoopgw.errors import ConfigError
from hoopgw.policy._engine import connections_without_policy


def register(subparsers: Subparsers) -> None:
    """Add the ``check`` subcommand."""
    parser = new_parser(
        subparsers,
        "check",
        "validate the config file: every problem is printed as FILE: KEY: REASON (exit 1 if any)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print OK or every problem; unresolvable secrets and unsupported features count as problems."""
    path = config_path(args)
    try:
        config, problems, unsupported = check_config(path)
    except ConfigError as exc:  # unreadable file or TOML syntax: nothing more can be checked
        config, problems, unsupported = None, exc.problems, []
    if config is not None:
        problems = problems + secret_problems(config)
    for problem in problems:
        print(format_problem(problem))
    for problem in unsupported:
        print(format_problem(problem) + " [unsupported]")
    if problems or unsupported:
        parts = [f"{len(problems)} problem{'s' * (len(problems) != 1)}"]
        if unsupported:
            parts.append(f"{len(unsupported)} unsupported feature{'s' * (len(unsupported) != 1)}")
        print(f"FAILED: {path}: {', '.join(parts)}")
        return 1
    assert config is not None
    for name in connections_without_policy(config):
        print(
            f'{path}: warning: no [[policy]] names connection "{name}" and it has no defaults: '
            "every login to it will be refused",
            file=sys.stderr,
        )
    n = len(config.connections)
    print(f"OK: {path} ({n} connection{'s' * (n != 1)})")
    return 0
