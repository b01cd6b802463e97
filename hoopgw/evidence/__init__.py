"""Evidence packs for examiners: export a time range of the audit store, verify a pack offline.

A pack is a directory of plain files (JSON lines, CSV, an HTML report) and ``MANIFEST.json``, the
SHA-256 of every file signed with the gateway's Ed25519 key. See docs/EVIDENCE.md.
"""

from __future__ import annotations

from hoopgw.evidence._export import ExportError, ExportResult, export_pack
from hoopgw.evidence._manifest import MANIFEST, MANIFEST_FILE, PACK_FILES, check_manifest, sign_manifest
from hoopgw.evidence._progress import Progress
from hoopgw.evidence._verify import Finding, VerifyResult, verify_pack

__all__ = [
    "MANIFEST",
    "MANIFEST_FILE",
    "PACK_FILES",
    "ExportError",
    "ExportResult",
    "Finding",
    "Progress",
    "VerifyResult",
    "check_manifest",
    "export_pack",
    "sign_manifest",
    "verify_pack",
]
