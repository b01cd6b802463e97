#!/usr/bin/env python3
"""Print the pinned Python requirements of pyproject.toml, one a line (``--extra dev`` adds extras).

`make install` feeds this to pip so that the dependencies install without building the extension,
which maturin then builds once, in the mode asked for.
"""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path


def requirements(pyproject: Path, extras: list[str]) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    reqs = list(project.get("dependencies", []))
    for extra in extras:
        reqs += project.get("optional-dependencies", {}).get(extra, [])
    return reqs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--extra", action="append", default=[])
    p.add_argument(
        "--pyproject", type=Path, default=Path(__file__).resolve().parent.parent / "pyproject.toml"
    )
    args = p.parse_args()
    print("\n".join(requirements(args.pyproject, args.extra)))


if __name__ == "__main__":
    main()
