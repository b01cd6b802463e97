"""``python -m hoopgw``."""

from __future__ import annotations

from hoopgw.cli import main

raise SystemExit(main())
