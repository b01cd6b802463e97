"""What one authenticated SSH caller may do on one connection: policy verdicts and approvals."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hoopgw.errors import HoopError
from hoopgw.policy._engine import Decision, SessionPolicy, policies_for
from hoopgw.policy._ssh import exec_classes, file_classes, forward_classes, ssh_refusal
from hoopgw.proxy._grants import access_grants

if TYPE_CHECKING:
    from hoopgw.config import SshConnection
    from hoopgw.identity import Principal
    from hoopgw.server import Gateway

log = logging.getLogger("hoopgw.ssh")


@dataclass(frozen=True, slots=True)
class Verdict:
    """A decision with the one-line message a refused caller is shown."""

    decision: Decision
    message: str | None

    @property
    def allowed(self) -> bool:
        return self.decision.verdict == "allow"


class SshAccess:
    """The counted policies of one caller on one SSH connection, asked per request."""

    def __init__(self, gateway: Gateway, cfg: SshConnection, principal: Principal) -> None:
        self.gateway = gateway
        self.cfg = cfg
        self.principal = principal
        self.policy: SessionPolicy = policies_for(
            gateway.config, principal, cfg.name, access_grants(gateway, principal, cfg.name)
        )

    @property
    def empty(self) -> bool:
        return self.policy.empty

    def _verdict(self, classes: frozenset[str], what: str) -> Verdict:
        decision = self.policy.decide_classes(classes)
        if decision.verdict == "allow":
            return Verdict(decision, None)
        return Verdict(decision, ssh_refusal(decision, self.principal.subject, self.cfg.name, what))

    def command(self, command: str) -> Verdict:
        ssh = self.gateway.config.ssh
        classes = exec_classes(command, ssh.command_classes, self.policy.named("exec:"))
        return self._verdict(classes, "this command")

    def shell(self) -> Verdict:
        return self._verdict(frozenset({"shell"}), "interactive shells")

    def file(self, path: str, *, write: bool) -> Verdict:
        globs = self.policy.named("file-write:" if write else "file-read:")
        return self._verdict(file_classes(path, write, globs), f"{'writing' if write else 'reading'} {path}")

    def refused(self, why: str) -> Verdict:
        """A refusal that no policy can lift (the request cannot be judged)."""
        return Verdict(Decision("deny", None, ("file-write",)), f"hoopgw: refused: {why}")

    def files_at_all(self) -> Verdict:
        """Opening a file-transfer channel (SFTP): allowed when reading or writing files is allowed."""
        first: Verdict | None = None
        for direction in ("file-read", "file-write"):
            named = [f"{direction}:{glob}" for glob in self.policy.named(f"{direction}:")]
            for cls in (direction, *named):
                verdict = self._verdict(frozenset({cls}), "file transfers")
                if verdict.decision.verdict != "deny":
                    # each operation is decided on its own path; the channel itself is only opened
                    return _allow(verdict)
                first = first or verdict
        assert first is not None
        return first

    def forward(self, kind: str, host: str, port: int) -> Verdict:
        classes = forward_classes(kind, host, port, self.policy.named("forward:"))
        return self._verdict(classes, f"{kind} port forwarding")

    async def approve(
        self,
        decision: Decision,
        what: str,
        session_id: str,
        prompt_id: str | None,
        notify: Any,
    ) -> tuple[bool, str]:
        """Hold ``what`` (a command line, a file operation) for approval; (approved, message).

        ``notify(text)`` shows the waiting client where the request is (stderr of the channel).
        """
        rules = decision.rules
        assert rules is not None and decision.rule is not None
        gw = self.gateway
        service = gw.approvals
        shown = gw.mask_text_for(self.cfg.name, what)
        open_request = functools.partial(
            service.open_request,
            self.principal,
            self.cfg.name,
            what,
            [],
            prompt_id,
            decision.rule,
            rules.approvers,
            rules.approvals_required,
            rules.approval_timeout,
            None,
            statement_masked=shown,
            one_of_each_group=rules.one_of_each_group,
        )
        try:
            record = await asyncio.get_running_loop().run_in_executor(None, open_request)
        except (HoopError, OSError, ValueError) as exc:
            gw.writer.event(session_id, "approval_error", {"error": str(exc)}, prompt_id)
            return False, f"hoopgw could not open an approval request: {exc}; it was not run"
        rid = record["id"]
        gw.writer.event(
            session_id,
            "approval_requested",
            {
                "request_id": rid,
                "subject": self.principal.subject,
                "connection": self.cfg.name,
                "rule": decision.rule,
                "classes": list(decision.classes),
                "command": shown,
                "prompt_id": record["prompt_id"],
                "expires_at": record["expires_at"],
            },
            prompt_id,
        )
        url = gw.approvals_url
        where = f" or POST {url}/api/approvals/{rid}/approve" if url else ""
        n = record["approvals_required"]
        expires = dt.datetime.fromtimestamp(record["expires_at"] / 1000, dt.UTC).isoformat(timespec="seconds")
        notify(
            f"hoopgw: held for approval: request {rid}\r\n"
            f'hoopgw: policy "{decision.rule}" needs {n} approval{"s" if n != 1 else ""} from '
            f"{', '.join(record['approvers'])}; expires at {expires}\r\n"
            f"hoopgw: an approver runs: hoopgw approvals approve {rid}{where}\r\n"
        )
        try:
            closed = await service.wait(rid)
        except asyncio.CancelledError:
            service.void(rid, "the client went away")
            raise
        gw.writer.event(
            session_id,
            "approval_closed",
            {"request_id": rid, "status": closed.status, "reason": closed.close_reason},
            prompt_id,
        )
        if closed.status == "approved":
            return True, f"hoopgw: approval request {rid} approved"
        why = f": {closed.close_reason}" if closed.close_reason else ""
        return False, f"hoopgw: approval request {rid} was {closed.status}{why}; it was not run"


def _allow(verdict: Verdict) -> Verdict:
    """An approvable class makes the channel openable: each operation is held on its own."""
    d = verdict.decision
    return Verdict(Decision("allow", d.rule, d.classes), None)


def now_ms() -> int:
    return int(time.time() * 1000)
