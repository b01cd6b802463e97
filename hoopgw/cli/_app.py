"""The ``hoopgw`` parser and entry point: dispatch, and turn user mistakes into messages, not tracebacks."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from hoopgw import __version__
from hoopgw.cli import (
    _access,
    _approvals,
    _audit,
    _check,
    _evidence,
    _keys,
    _login,
    _prompts,
    _replay,
    _run,
    _sessions,
    _signing_key,
    _sshkeys,
    _token,
)
from hoopgw.cli._common import CliError, add_config_option, format_problem, printable
from hoopgw.errors import ConfigError, HoopError

_MODULES: tuple[Callable[..., None], ...] = (
    _run.register,
    _check.register,
    _token.register,
    _sessions.register,
    _replay.register,
    _audit.register,
    _evidence.register,
    _keys.register,
    _login.register,
    _signing_key.register,
    _approvals.register,
    _access.register,
    _prompts.register,
    _sshkeys.register,
)


def build_parser() -> argparse.ArgumentParser:
    """The full ``hoopgw`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="hoopgw",
        description="hoopgw: an identity-aware access gateway for production data.",
    )
    parser.add_argument("--version", action="version", version=f"hoopgw {__version__}")
    add_config_option(parser, top=True)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in _MODULES:
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``hoopgw`` with ``argv`` (default: sys.argv[1:]); return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(format_problem(problem), file=sys.stderr)
        return 1
    except CliError as exc:
        print(printable(f"hoopgw: {exc}"), file=sys.stderr)  # may quote what others wrote
        return exc.code
    except HoopError as exc:
        print(printable(f"hoopgw: error: {exc}"), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        sys.stderr.close()
        return 1
