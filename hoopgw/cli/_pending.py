"""Commands of the design that are not built yet: they exist (with --help) and exit 2."""

from __future__ import annotations

import argparse
import sys

from hoopgw.cli._common import Subparsers, add_config_option, new_parser

# name -> (help, {subcommand: (help, [positional args], [options])})
_Leaf = tuple[str, list[str], list[str]]
_Spec = tuple[str, dict[str, _Leaf]]
_TOKEN_OPTION = "--token"  # noqa: S105 - an option name
PENDING: dict[str, _Spec] = {
    "ssh-keys": (
        "registered SSH public keys",
        {
            "add": ("register a public key", ["FILE"], [_TOKEN_OPTION]),
            "list": ("list keys", [], ["--json", _TOKEN_OPTION]),
            "remove": ("remove a key", ["ID"], [_TOKEN_OPTION]),
        },
    ),
}
_FLAGS = {"--json"}


def register(subparsers: Subparsers) -> None:
    """Add every pending command."""
    for name, (help_text, subs) in PENDING.items():
        parser = new_parser(subparsers, name, f"{help_text} (not supported yet)")
        parser.set_defaults(func=_not_yet, command_name=name)
        if subs:
            sub = parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND", required=True)
            add_pending_subcommands(sub, name, subs)


def add_pending_subcommands(sub: Subparsers, name: str, subs: dict[str, _Leaf]) -> None:
    """Add the not-yet-built subcommands ``subs`` of command ``name`` (each exits 2)."""
    for sub_name, (sub_help, positionals, options) in subs.items():
        leaf = sub.add_parser(sub_name, help=sub_help, description=f"{sub_help} (not supported yet)")
        add_config_option(leaf)
        for pos in positionals:
            leaf.add_argument(pos.lower(), metavar=pos)
        for opt in options:
            if opt in _FLAGS:
                leaf.add_argument(opt, action="store_true")
            else:
                leaf.add_argument(opt)
        leaf.set_defaults(func=_not_yet, command_name=f"{name} {sub_name}")


def _not_yet(args: argparse.Namespace) -> int:
    print(f"hoopgw {args.command_name}: not supported yet", file=sys.stderr)
    return 2


__all__ = ["PENDING", "add_config_option", "add_pending_subcommands", "register"]
