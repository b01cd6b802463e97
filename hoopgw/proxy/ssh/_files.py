"""File transfers on a channel (SFTP, legacy scp, rsync): byte-exact, audited per operation, policed.

Nothing here rewrites file content or stores it: the core parses the SFTP packets (and the legacy scp
protocol) for the operation records and the policy decisions, and the bytes go on as they came.
"""

from __future__ import annotations

import asyncio
import logging
import posixpath
from typing import TYPE_CHECKING, Any

from hoopgw import _core

if TYPE_CHECKING:
    from hoopgw.policy._ssh import Transfer
    from hoopgw.proxy.ssh._access import SshAccess, Verdict
    from hoopgw.proxy.ssh._channel import ClientSession

log = logging.getLogger("hoopgw.ssh")

_RANK = {"allow": 0, "approve": 1, "deny": 2}
_STDOUT = None


class FileAudit:
    """The file operations of one channel: an SFTP subsystem, or an scp / rsync exec."""

    def __init__(self, channel: ClientSession, access: SshAccess, transfer: Transfer | None) -> None:
        self.channel = channel
        self.access = access
        self.transfer = transfer
        self.sftp = _core.SftpSession() if transfer is None else None
        legacy_scp = transfer is not None and transfer.kind == "scp"
        self.scp = _core.ScpStream() if legacy_scp else None
        #: SFTP chunks waiting behind a request held for approval (None: nothing held)
        self._held: list[tuple[bytes, dict[str, Any] | None]] | None = None
        self._broken = False

    @property
    def protocol(self) -> str:
        return "sftp" if self.transfer is None else self.transfer.kind

    # -- client -> target --------------------------------------------------------------------------
    def from_client(self, data: bytes) -> None:
        if self._broken:
            return
        if self.sftp is not None:
            try:
                chunks = self.sftp.feed_client(data)
            except ValueError as exc:
                self._malformed(str(exc))
                return
            if self._held is not None:
                self._held.extend(chunks)
            else:
                self._run(chunks)
            return
        if self.scp is not None and self.transfer is not None and self.transfer.write:
            self._records(self.scp.feed(data))
        self.channel.to_upstream(data)

    def _run(self, chunks: list[tuple[bytes, dict[str, Any] | None]]) -> None:
        for i, (raw, op) in enumerate(chunks):
            if op is None:
                self.channel.to_upstream(raw)
                continue
            verdict = self._verdict(op)
            decision = verdict.decision
            if decision.verdict == "allow":
                self.channel.to_upstream(raw)
            elif decision.verdict == "deny":
                self._refuse(op, verdict.message or "refused by policy")
            else:
                self._held = list(chunks[i + 1 :])
                if self.channel.chan is not None:
                    self.channel.chan.pause_reading()  # nothing more piles up while the approver decides
                task = asyncio.get_running_loop().create_task(self._approve(raw, op, verdict))
                self.channel.owner.keep(task)
                return

    async def _approve(self, raw: bytes, op: dict[str, Any], verdict: Verdict) -> None:
        ch = self.channel
        ok, message = await self.access.approve(
            verdict.decision, _describe(op), ch.owner.session_id, ch.prompt_id, lambda _text: None
        )
        if ok:
            ch.to_upstream(raw)
        else:
            self._refuse(op, message)
        held, self._held = self._held or [], None
        self._run(held)
        if self._held is None and ch.chan is not None and not self._broken:
            ch.chan.resume_reading()

    def _verdict(self, op: dict[str, Any]) -> Verdict:
        write = bool(op.get("write"))
        if op.get("unknown_handle") or (write and not op.get("path") and op.get("op") != "extended"):
            # a handle the core never saw opened (or no longer tracks): its path cannot be judged
            return self.access.refused("an operation on a file handle the gateway does not know")
        path = str(op.get("path") or "")
        checks = [(path, write)]
        target = str(op.get("target") or "")
        if target and op.get("op") in ("rename", "link"):
            checks.append((target, write))
        elif target and op.get("op") == "symlink":
            # a link made here is a door to its target: only for a caller who may read and write there
            where = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
            checks += [(where, False), (where, True)]
        worst: Verdict | None = None
        for p, w in checks:
            v = self.access.file(p, write=w)
            if worst is None or _RANK[v.decision.verdict] > _RANK[worst.decision.verdict]:
                worst = v
        assert worst is not None
        return worst

    def _refuse(self, op: dict[str, Any], message: str) -> None:
        assert self.sftp is not None
        self.channel.to_client(self.sftp.refuse(int(op["id"]), message))
        self.channel._event(
            "ssh_file",
            {
                "protocol": "sftp",
                **self._masked_paths({k: v for k, v in op.items() if k != "id"}),
                "status": "refused",
                "reason": self.channel._masked(message),
            },
        )

    def _malformed(self, why: str) -> None:
        """A packet the core cannot parse ends the channel (never the gateway)."""
        self._broken = True
        ch = self.channel
        ch._event("ssh_protocol_error", {"protocol": self.protocol, "error": why})
        ch.notice(f"hoopgw: malformed {self.protocol.upper()} packet ({why}); closing this channel\r\n")
        if ch.up is not None:
            ch.up.close()
        ch._finish(255, None)

    def client_eof(self) -> None:
        pass

    # -- target -> client --------------------------------------------------------------------------
    def from_server(self, data: bytes, datatype: int | None) -> None:
        if self.sftp is not None and datatype is _STDOUT and not self._broken:
            try:
                self._records(self.sftp.feed_server(data))
            except ValueError as exc:
                self.channel.to_client(data, datatype)
                self._malformed(str(exc))
                return
        elif (
            self.scp is not None
            and datatype is _STDOUT
            and self.transfer is not None
            and not self.transfer.write
        ):
            self._records(self.scp.feed(data))
        self.channel.to_client(data, datatype)

    def _records(self, records: list[dict[str, Any]]) -> None:
        for record in records:
            self.channel._event("ssh_file", {"protocol": self.protocol, **self._masked_paths(record)})

    def _masked_paths(self, record: dict[str, Any]) -> dict[str, Any]:
        """File names can hold what the masking rules mask (a card number as a name): masked like commands."""
        out = dict(record)
        for key in ("path", "target"):
            value = out.get(key)
            if isinstance(value, str) and value:
                out[key] = self.channel._masked(value)
        return out

    def finish(self) -> None:
        if self.sftp is not None:
            self._records(self.sftp.finish())
        if self.scp is not None:
            self._records(self.scp.finish())
        t = self.transfer
        if t is not None and t.kind != "scp":
            ch = self.channel
            self._records(
                [
                    {
                        "op": "transfer",
                        "write": t.write,
                        "path": t.paths[-1] if t.paths else "",
                        "bytes_in": ch.bytes_in,
                        "bytes_out": ch.bytes_out,
                    }
                ]
            )


def _describe(op: dict[str, Any]) -> str:
    what = str(op.get("op"))
    path = op.get("path") or ""
    target = op.get("target")
    flags = op.get("flags")
    parts = [f"sftp {what}", str(path)]
    if target:
        parts.append(f"-> {target}")
    if flags:
        parts.append(f"({','.join(flags)})")
    return " ".join(parts)
