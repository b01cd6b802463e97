"""Shared pieces of the subcommands: the -c option, config loading, error reporting, formatting."""

from __future__ import annotations

import argparse
import os
import sys
import time
import unicodedata
from pathlib import Path
from typing import Any

import orjson

from hoopgw.config import Config, Problem, default_config_path, load_config, parse_duration
from hoopgw.errors import HoopError

# argparse's "subparsers" object has a private type; this alias keeps signatures readable.
Subparsers = Any


class CliError(HoopError):
    """A user-facing failure: the message is printed, the process exits with ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def add_config_option(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    """``-c/--config FILE`` (on every subcommand, so it may come anywhere on the line)."""
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        type=Path,
        default=None if top else argparse.SUPPRESS,
        help="config file (default: $HOOPGW_CONFIG or ./hoopgw.toml)",
    )


def new_parser(subparsers: Subparsers, name: str, help_text: str, **kwargs: Any) -> argparse.ArgumentParser:
    """A subcommand parser that takes ``-c``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name, help=help_text, description=help_text, **kwargs
    )
    add_config_option(parser)
    return parser


def config_path(args: argparse.Namespace) -> Path:
    """The config file named by ``-c`` or the default."""
    path: Path | None = getattr(args, "config", None)
    return path if path is not None else default_config_path()


def load(args: argparse.Namespace, *, allow_unsupported: bool = True) -> Config:
    """Load the config for a subcommand (raises ConfigError)."""
    return load_config(config_path(args), allow_unsupported=allow_unsupported)


def duration(text: str) -> float:
    """argparse ``type=`` for durations like 30s, 15m, 1h, 7d."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_int(text: str) -> int:
    """argparse ``type=`` for counts >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def printable(text: object, *, newlines: bool = True) -> str:
    """``text`` safe to write to a terminal: control and format characters as visible escapes.

    What the CLI shows comes partly from others — an agent's statement, a requester's or an approver's
    reason, a record file anyone may hand over. An escape sequence (erase the line, move the cursor,
    hide text), a carriage return or a right-to-left override could make a person read something else
    than what is there, e.g. approve a ``DELETE`` that looks like a ``SELECT``. Newlines (when
    ``newlines``) and tabs are kept; every other character of Unicode categories Cc, Cf, Zl and Zp is
    written as ``\\xNN``, ``\\uNNNN`` or ``\\UNNNNNNNN``.
    """
    out: list[str] = []
    for ch in str(text):
        if (ch == "\n" and newlines) or ch == "\t":
            out.append(ch)
        elif unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            code = ord(ch)
            out.append(
                f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
            )
        else:
            out.append(ch)
    return "".join(out)


def format_problem(problem: Problem) -> str:
    """``FILE: KEY: REASON`` (``FILE: REASON`` for whole-file problems)."""
    file, key, reason = problem
    return f"{file}: {key}: {reason}" if key else f"{file}: {reason}"


def print_json(value: Any) -> None:
    """Write ``value`` as one JSON document on stdout."""
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def format_time(ts: float | None) -> str:
    """``2024-05-01 12:00:03`` in UTC, or ``-``."""
    if ts is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


def format_seconds(seconds: float | None) -> str:
    """``850 ms``, ``12.3 s``, ``4m05s``, ``2h03m``."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.2f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


#: the environment variable commands that act for a person read their token from
TOKEN_ENV = "HOOPGW_TOKEN"  # noqa: S105 - the name of an environment variable


def add_api_options(
    parser: argparse.ArgumentParser, json_help: str, who: str = "your token or API key"
) -> None:
    """``-c``, ``--token`` and ``--json`` of a command that talks to the running gateway's API."""
    add_config_option(parser)
    parser.add_argument("--token", "-t", default=None, help=f"{who} (default: ${TOKEN_ENV})")
    parser.add_argument("--json", action="store_true", help=json_help)


def token_of(args: argparse.Namespace, where: str) -> str:
    """The caller's token from ``--token`` or ``$HOOPGW_TOKEN``; CliError naming ``where`` to get one."""
    token: str | None = args.token if args.token is not None else os.environ.get(TOKEN_ENV)
    if not token or not token.strip():
        raise CliError(f"no token: pass --token or set {TOKEN_ENV} ({where})")
    return token.strip()
