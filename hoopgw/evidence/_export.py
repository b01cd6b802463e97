"""``export_pack``: write an evidence pack for a time range from the audit store (``data_dir``'s, or a
PostgreSQL one).

Everything is read in one snapshot of the store (a running gateway keeps writing), events are
streamed (memory does not grow with the store), and the pack is written into a temporary directory
next to ``out`` that is renamed into place once ``MANIFEST.json`` is signed: ``out`` either does not
exist or holds a complete pack. docs/EVIDENCE.md describes the files.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hoopgw.approvals import key_id, load_signing_key
from hoopgw.audit import open_readonly, verify_chain
from hoopgw.audit._db import DB_ERRORS, Store, as_store
from hoopgw.errors import HoopError, StoreError
from hoopgw.evidence._pack import PackWriter
from hoopgw.evidence._progress import Progress, ProgressFactory
from hoopgw.evidence._stats import Stats, statement_classifier
from hoopgw.policy._classify import Classifier


class ExportError(HoopError):
    """The pack cannot be written (``out`` is not empty, the range is empty of meaning, ...)."""


@dataclass(frozen=True, slots=True)
class ExportResult:
    """What was written: the pack's directory, its signed manifest, the chain check, the numbers."""

    out: Path
    manifest: dict[str, Any]
    chain: dict[str, Any]
    stats: Stats

    @property
    def chain_ok(self) -> bool:
        """The store's chain verified when the pack was made."""
        return bool(self.chain.get("ok"))


def _no_progress(label: str, total: int) -> Progress:
    return Progress(label, total, enabled=False)


def export_pack(
    data_dir: Path,
    out: Path,
    *,
    since: float | None = None,
    until: float | None = None,
    classifier: Classifier | None = None,
    progress: ProgressFactory = _no_progress,
    store: Store | None = None,
) -> ExportResult:
    """Write the evidence pack of ``[since, until)`` (seconds since the epoch; None: from the start,
    until now) into the new or empty directory ``out``; ExportError or StoreError when it cannot.

    ``store``: the audit store (default: the SQLite file in ``data_dir``, which holds the signing key
    either way)."""
    out = Path(out)
    created = time.time()
    until = created if until is None else until
    if since is not None and since >= until:
        raise ExportError("the range is empty: --since must be before --until")
    _check_out(out)
    key = load_signing_key(data_dir, create=False)
    db = as_store(data_dir) if store is None else store
    conn = open_readonly(db)
    try:
        head = int(conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])
        check = open_readonly(db)
        try:
            chain = verify_chain(check, key.public_key()).to_json()
        finally:
            check.close()
        chain.update(key_id=key_id(key.public_key()), verified_at=round(created * 1000))
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
        try:
            pack = PackWriter(conn, tmp, since, until, head, statement_classifier(classifier), progress)
            manifest = pack.write(key, chain, created)
            _fsync_dir(tmp)
            tmp.chmod(0o777 & ~_umask())  # mkdtemp made it 0700: as a plain mkdir would instead
            try:
                tmp.rename(out)  # onto a missing or empty directory only
            except OSError as exc:
                raise ExportError(f"cannot move the pack into {out}: {exc.strerror}") from None
            _fsync_dir(out.parent)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    except DB_ERRORS as exc:
        raise StoreError(f"cannot read the audit store {db.label}: {db.scrub(str(exc))}") from None
    finally:
        conn.close()
    return ExportResult(out, manifest, chain, pack.stats)


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        raise ExportError(f"{out} is not empty: an evidence pack goes into a new or empty directory")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create {out.parent}: {exc.strerror}") from None


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
