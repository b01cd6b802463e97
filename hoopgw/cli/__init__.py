"""The ``hoopgw`` command line (argparse); one module per subcommand."""

from __future__ import annotations

from hoopgw.cli._app import build_parser, main

__all__ = ["build_parser", "main"]
