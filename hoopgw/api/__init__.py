"""Control HTTP API (health now; approvals, sessions, prompts and the console later)."""

from hoopgw.api._app import ApiServer, build_app

__all__ = ["ApiServer", "build_app"]
