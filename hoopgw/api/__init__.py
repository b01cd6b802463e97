"""Control HTTP API: health, API keys, approvals, the signing key; sessions, prompts and the console later."""

from hoopgw.api._app import ApiServer, build_app
from hoopgw.api._approvals import ApprovalApi, approval_detail, approval_json, approval_records
from hoopgw.api._keys import KeyApi
from hoopgw.api._openapi import openapi_document

__all__ = [
    "ApiServer",
    "ApprovalApi",
    "KeyApi",
    "approval_detail",
    "approval_json",
    "approval_records",
    "build_app",
    "openapi_document",
]
