"""Control HTTP API: health and API keys now; approvals, sessions, prompts and the console later."""

from hoopgw.api._app import ApiServer, build_app
from hoopgw.api._keys import KeyApi

__all__ = ["ApiServer", "KeyApi", "build_app"]
