"""Control HTTP API: health, API keys, approvals, access, prompts, sessions and the signing key."""

from hoopgw.api._app import ApiServer, build_app
from hoopgw.api._approvals import ApprovalApi, approval_detail, approval_json, approval_records
from hoopgw.api._keys import KeyApi
from hoopgw.api._openapi import openapi_document
from hoopgw.api._sessions import SessionApi, SessionReader

__all__ = [
    "ApiServer",
    "ApprovalApi",
    "KeyApi",
    "SessionApi",
    "SessionReader",
    "approval_detail",
    "approval_json",
    "approval_records",
    "build_app",
    "openapi_document",
]
