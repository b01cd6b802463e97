"""One session channel (shell, exec or subsystem), relayed to the same request on the target host.

The client's request is decided first (policy, approval, write-ahead record of the command), then the
same request is opened upstream and bytes flow both ways: terminal output masked with the core's
streaming masker and recorded as asciicast; file transfers (SFTP, scp, rsync) byte-exact, audited
per operation and put under policy.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import re
from typing import TYPE_CHECKING, Any

import asyncssh

from hoopgw import _core
from hoopgw.errors import HoopError
from hoopgw.policy._ssh import transfer_of
from hoopgw.proxy.ssh._access import Verdict
from hoopgw.proxy.ssh._files import FileAudit
from hoopgw.proxy.ssh._record import TerminalRecorder
from hoopgw.proxy.ssh._tuning import UPSTREAM_MAX_PKTSIZE, UPSTREAM_WINDOW
from hoopgw.proxy.ssh._upstream import UpstreamError

if TYPE_CHECKING:
    from hoopgw.policy._ssh import Transfer
    from hoopgw.proxy.ssh._server import SshClientConnection

log = logging.getLogger("hoopgw.ssh")

#: exit status of a command the gateway refused (like a shell's "cannot execute")
REFUSED_STATUS = 126
#: exit status when the target cannot be reached (like ssh's own connection errors)
UNREACHABLE_STATUS = 255
#: a prompt id from HOOP_PROMPT_ID must look like one
_PROMPT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}\Z")
#: with a pty, output reads this small are shown at once even when the masker holds part of them
#: back (keystroke echo); larger ones wait at most ``[ssh] idle_flush`` for what follows
_ECHO_BYTES = 64
_STDERR = asyncssh.EXTENDED_DATA_STDERR


class ClientSession(asyncssh.SSHServerSession[bytes]):
    """The client's side of one session channel."""

    def __init__(self, owner: SshClientConnection, number: int) -> None:
        self.owner = owner
        self.number = number
        self.chan: asyncssh.SSHServerChannel[bytes] | None = None
        self.kind = ""  # "shell" | "exec" | "subsystem"
        self.command: str | None = None
        self.subsystem: str | None = None
        self.term: tuple[str, int, int, dict[int, int]] | None = None  # (type, width, height, modes)
        self.transfer: Transfer | None = None
        self.prompt_id: str | None = None
        self.up: asyncssh.SSHClientChannel[bytes] | None = None
        self.files: FileAudit | None = None
        self.recorder: TerminalRecorder | None = None
        self._masks: dict[int | None, _core.MaskStream] = {}
        self._flush_timer: asyncio.TimerHandle | None = None
        self._early: list[tuple[str, Any]] = []  # client data/eof that came before the upstream was open
        self._task: asyncio.Task[None] | None = None
        self._exit: tuple[int | None, tuple[str, bool, str] | None] = (None, None)
        self._ended = False
        self.bytes_in = 0
        self.bytes_out = 0
        self._classes: frozenset[str] = frozenset()
        #: the client's environment that goes on to the target ([ssh] accept_env), and the names left out
        self.env: dict[str, str] = {}
        self.env_dropped: list[str] = []

    # -- asyncssh callbacks: the client ---------------------------------------------------------------
    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        self.chan = chan

    def pty_requested(self, term_type: str, term_size: tuple[int, int, int, int], term_modes: Any) -> bool:
        self.term = (term_type, term_size[0], term_size[1], dict(term_modes))
        return True

    def shell_requested(self) -> bool:
        self.kind = "shell"
        return True

    def exec_requested(self, command: str) -> bool:
        self.kind = "exec"
        self.command = command
        return True

    def subsystem_requested(self, subsystem: str) -> bool:
        if subsystem != "sftp":
            return False
        self.kind = "subsystem"
        self.subsystem = subsystem
        return True

    def session_started(self) -> None:
        assert self.chan is not None
        self.chan.pause_reading()  # nothing goes upstream before the request is decided
        env = dict(self.chan.get_environment())  # as it stands now: later requests change nothing
        prompt = env.get("HOOP_PROMPT_ID")
        if prompt and _PROMPT_ID.match(prompt):
            self.prompt_id = prompt
        accepted = self.owner.gateway.config.ssh.accept_env
        self.env = {k: v for k, v in env.items() if any(fnmatch.fnmatchcase(k, g) for g in accepted)}
        self.env_dropped = sorted(k for k in env if k not in self.env)
        self._task = asyncio.get_running_loop().create_task(self._start())

    def data_received(self, data: bytes, datatype: int | None) -> None:
        if self.up is None:
            self._early.append(("data", data))
            return
        self._from_client(data)

    def eof_received(self) -> bool:
        if self.up is None:
            self._early.append(("eof", None))
        else:
            self._client_eof()
        return True  # keep the channel half-open: output may still come

    def terminal_size_changed(self, width: int, height: int, pixwidth: int, pixheight: int) -> None:
        if self.term is not None:
            self.term = (self.term[0], width, height, self.term[3])
        if self.up is not None:
            self.up.change_terminal_size(width, height, pixwidth, pixheight)
        if self.recorder is not None:
            self.recorder.resize(width, height)

    def signal_received(self, signal: str) -> None:
        if self.up is not None:
            self.up.send_signal(signal)

    def break_received(self, msec: int) -> bool:
        if self.up is not None:
            self.up.send_break(msec)
            return True
        return False

    def pause_writing(self) -> None:
        if self.up is not None:
            self.up.pause_reading()

    def resume_writing(self) -> None:
        if self.up is not None:
            self.up.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.client_gone()

    # -- start: decide, record, open upstream ------------------------------------------------------------
    async def _start(self) -> None:
        try:
            if await self._decide() and await self._write_ahead() and await self._open_upstream():
                self._flush_early()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("ssh channel failed", extra={"session": self.owner.session_id})
            self._refuse("hoopgw: internal error while starting this channel", UNREACHABLE_STATUS)

    def _what(self) -> str:
        if self.kind == "exec":
            return self.command or ""
        if self.kind == "subsystem":
            return f"subsystem {self.subsystem}"
        return "shell"

    async def _decide(self) -> bool:
        access = self.owner.access
        assert access is not None
        if self.kind == "exec":
            assert self.command is not None
            self.transfer = transfer_of(self.command)
            verdict = self._transfer_verdict(self.transfer) if self.transfer else access.command(self.command)
        elif self.kind == "shell":
            verdict = access.shell()
        else:
            verdict = access.files_at_all()
        decision = verdict.decision
        self._classes = frozenset(decision.classes)
        self._event(
            "ssh_request",
            {
                "request": self.kind,
                "command": self._masked(self.command) if self.command is not None else None,
                "subsystem": self.subsystem,
                "pty": self.term[0] if self.term else None,
                "transfer": self._transfer_json(),
                "env": sorted(self.env),
                "env_dropped": self.env_dropped[:50],
                "classes": sorted(decision.classes),
                "verdict": decision.verdict,
                "rule": decision.rule,
            },
        )
        if decision.verdict == "allow":
            return True
        if decision.verdict == "approve":
            ok, message = await access.approve(
                decision, self._what(), self.owner.session_id, self.prompt_id, self.notice
            )
            if ok:
                self.notice(message + "\r\n")
                return True
            self._refuse(message, REFUSED_STATUS)
            return False
        self._refuse(verdict.message or "hoopgw: refused by policy", REFUSED_STATUS)
        return False

    @property
    def _runs_a_shell(self) -> bool:
        """An exec whose classes say it is an interactive shell (``ssh host bash``): its input is typed
        commands, recorded as command lines like a shell's."""
        return "shell" in self._classes

    def _transfer_verdict(self, transfer: Transfer) -> Verdict:
        access = self.owner.access
        assert access is not None
        worst: Verdict | None = None
        rank = {"allow": 0, "approve": 1, "deny": 2}
        for path in transfer.paths or (".",):
            v = access.file(path, write=transfer.write)
            if worst is None or rank[v.decision.verdict] > rank[worst.decision.verdict]:
                worst = v
        assert worst is not None
        return worst

    def _transfer_json(self) -> dict[str, Any] | None:
        t = self.transfer
        if t is None:
            return None
        paths = [self._masked(p) or "" for p in t.paths]
        return {"kind": t.kind, "write": t.write, "paths": paths, "recursive": t.recursive}

    async def _write_ahead(self) -> bool:
        """Record the command durably before it reaches the target (as SQL writes are)."""
        if self.kind != "exec":
            return True
        loop = asyncio.get_running_loop()
        done: asyncio.Future[str | None] = loop.create_future()

        def told(error: str | None) -> None:
            loop.call_soon_threadsafe(_settle, done, error)

        try:
            self.owner.gateway.writer.durable_event(
                self.owner.session_id,
                "ssh_exec",
                {
                    "channel": self.number,
                    "command": self._masked(self.command or ""),
                    "transfer": self._transfer_json(),
                },
                self.prompt_id,
                told,
            )
            error = await done
        except HoopError as exc:
            error = str(exc)
        if error is None:
            return True
        self._refuse(
            f"hoopgw: the audit store cannot record this command ({error}); it was not run", REFUSED_STATUS
        )
        return False

    async def _open_upstream(self) -> bool:
        owner = self.owner
        assert self.chan is not None
        try:
            conn = await owner.upstream()
        except UpstreamError as exc:
            self._event("ssh_upstream_error", {"error": str(exc)})
            self._refuse(f"hoopgw: {exc}", UNREACHABLE_STATUS)
            return False
        kwargs: dict[str, Any] = {
            "encoding": None,
            "env": self.env or None,
            "window": UPSTREAM_WINDOW,
            "max_pktsize": UPSTREAM_MAX_PKTSIZE,
        }
        if owner.agent_path is not None:
            # the target's agent requests go to the client's agent (allowed by policy: see _server).
            # asyncssh reads this connection setting when it opens a session and when the target opens
            # an agent channel; it is set here because the agent request came after the connection.
            conn._agent_forward_path = owner.agent_path  # asyncssh 2.24.1, pinned
        if self.term is not None:
            term_type, width, height, modes = self.term
            kwargs.update(term_type=term_type, term_size=(width, height), term_modes=modes)
        try:
            if self.kind == "subsystem":
                chan, _ = await conn.create_session(
                    lambda: UpstreamSession(self), subsystem=self.subsystem, **kwargs
                )
            elif self.kind == "exec":
                chan, _ = await conn.create_session(lambda: UpstreamSession(self), self.command, **kwargs)
            else:
                chan, _ = await conn.create_session(lambda: UpstreamSession(self), **kwargs)
        except (asyncssh.Error, OSError) as exc:
            self._event("ssh_upstream_error", {"error": str(exc)})
            self._refuse(f"hoopgw: the target host refused the channel: {exc}", UNREACHABLE_STATUS)
            return False
        if self.owner.closed or self._ended:
            chan.close()
            return False
        self.up = chan
        self._set_up_processing()
        return True

    def _set_up_processing(self) -> None:
        owner = self.owner
        gw = owner.gateway
        cfg = owner.cfg
        assert cfg is not None
        if self.kind == "subsystem" or self.transfer is not None:
            access = owner.access
            assert access is not None
            self.files = FileAudit(self, access, self.transfer)
            return
        masker = owner.listener.maskers.get(cfg.name)
        if masker is not None and masker.has_detectors:
            self._masks = {None: masker.stream(), _STDERR: masker.stream()}
        ssh_cfg = gw.config.ssh
        cap = cfg.record_max_bytes if cfg.record_max_bytes is not None else ssh_cfg.record_max_bytes
        width, height = (self.term[1], self.term[2]) if self.term else (80, 24)
        self.recorder = TerminalRecorder(
            gw.writer,
            owner.session_id,
            channel=self.number,
            width=width or 80,
            height=height or 24,
            term=self.term[0] if self.term else None,
            command=self._masked(self.command) if self.command is not None else None,
            masker=masker,
            max_bytes=cap,
            prompt_id=self.prompt_id,
            command_lines=self.kind == "shell" or self._runs_a_shell,
        )

    def _flush_early(self) -> None:
        early, self._early = self._early, []
        for what, data in early:
            if what == "data":
                self._from_client(data)
            else:
                self._client_eof()
        if self.chan is not None and not self._ended:
            self.chan.resume_reading()

    # -- relaying -------------------------------------------------------------------------------------------
    def _from_client(self, data: bytes) -> None:
        up = self.up
        assert up is not None
        self.bytes_in += len(data)
        if self.files is not None:
            self.files.from_client(data)
            return
        if self.recorder is not None:
            self.recorder.input(data)
        up.write(data)

    def to_upstream(self, data: bytes) -> None:
        """Bytes the file audit lets through."""
        if self.up is not None and data:
            self.up.write(data)

    def to_client(self, data: bytes, datatype: int | None = None) -> None:
        if self.chan is not None and data and not self._ended:
            self.chan.write(data, datatype)

    def from_upstream(self, data: bytes, datatype: int | None) -> None:
        self.bytes_out += len(data)
        if self.files is not None:
            self.files.from_server(data, datatype)
            return
        stream = self._masks.get(datatype)
        if stream is None:
            if self.recorder is not None:
                self.recorder.output(data)
            self.to_client(data, datatype)
            return
        if self.recorder is not None:
            # the recording masks on its own and is never flushed early (a value written or echoed
            # digit by digit is still masked there); the live view flushes held bytes when idle
            self.recorder.output(data)
        self._emit(stream.feed(data), datatype)
        if stream.buffered:
            if self.term is not None and len(data) <= _ECHO_BYTES:
                self._emit(stream.flush(), datatype)
            else:
                self._schedule_flush()

    def _emit(self, masked: bytes, datatype: int | None) -> None:
        """Masked output to the client."""
        self.to_client(masked, datatype)

    def _schedule_flush(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
        delay = float(self.owner.gateway.config.ssh.idle_flush)
        self._flush_timer = asyncio.get_running_loop().call_later(delay, self._flush_masks)

    def _flush_masks(self) -> None:
        self._flush_timer = None
        for datatype, stream in self._masks.items():
            if stream.buffered:
                self._emit(stream.flush(), datatype)

    def _client_eof(self) -> None:
        if self.files is not None:
            self.files.client_eof()
        if self.up is not None:
            self.up.write_eof()

    def upstream_eof(self) -> None:
        self._flush_masks()
        if self.chan is not None and not self._ended:
            self.chan.write_eof()

    def upstream_exit(self, status: int | None, signal: tuple[str, bool, str] | None) -> None:
        if status is not None:
            self._exit = (status, self._exit[1])
        if signal is not None:
            self._exit = (self._exit[0], signal)

    def upstream_closed(self, exc: Exception | None) -> None:
        """The target closed the channel (or the whole connection died): end the client's channel."""
        self._flush_masks()
        status, signal = self._exit
        if exc is not None or (status is None and signal is None and self.owner.upstream_dead()):
            self.notice(f"hoopgw: the connection to the target host was lost{f': {exc}' if exc else ''}\r\n")
            status = UNREACHABLE_STATUS
        self._finish(status, signal)

    def _finish(self, status: int | None, signal: tuple[str, bool, str] | None) -> None:
        if self._ended:
            return
        self._ended = True
        self._close_records(status, signal)
        chan = self.chan
        if chan is None:
            return
        try:
            if signal is not None:
                chan.exit_with_signal(signal[0], signal[1], signal[2])
            else:
                chan.exit(status if status is not None else 0)
        except (OSError, asyncssh.Error):
            chan.close()

    def _close_records(self, status: int | None, signal: tuple[str, bool, str] | None) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        if self.files is not None:
            self.files.finish()
        if self.recorder is not None:
            self.recorder.close(status)
        if self.kind:
            self._event(
                "ssh_exit",
                {
                    "channel": self.number,
                    "request": self.kind,
                    "exit_status": status,
                    "signal": signal[0] if signal else None,
                    "bytes_in": self.bytes_in,
                    "bytes_out": self.bytes_out,
                },
            )
        self.owner.channel_ended(self)

    def client_gone(self) -> None:
        """The client closed the channel or the connection: close upstream, keep the records."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self.up is not None:
            self.up.close()
        if not self._ended:
            self._ended = True
            self._close_records(None, None)

    def recheck(self) -> None:
        """A policy time window opened or closed: end the channel if its request is no longer allowed."""
        access = self.owner.access
        if access is None or self.up is None or self._ended:
            return
        if self.kind == "exec" and self.command is not None:
            verdict = self._transfer_verdict(self.transfer) if self.transfer else access.command(self.command)
        elif self.kind == "shell":
            verdict = access.shell()
        else:
            verdict = access.files_at_all()
        if verdict.allowed:
            return
        self._event(
            "policy_window_closed", {"request": self.kind, "classes": sorted(verdict.decision.classes)}
        )
        self.notice(f"{verdict.message or 'hoopgw: no longer allowed'}; the policy's time window closed\r\n")
        self.up.close()
        self._finish(REFUSED_STATUS, None)

    # -- helpers ------------------------------------------------------------------------------------
    def tick(self) -> None:
        if self.recorder is not None:
            self.recorder.tick()

    def mask_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for stream in self._masks.values():
            for name, n in stream.counts.items():
                counts[name] = counts.get(name, 0) + n
        return counts

    def notice(self, text: str) -> None:
        """A line for the person at the client (stderr: never mixed into a command's output)."""
        self.to_client(text.encode(), _STDERR)

    def _refuse(self, message: str, status: int) -> None:
        self.notice(message.rstrip("\r\n") + "\r\n")
        self._finish(status, None)

    def _masked(self, text: str | None) -> str | None:
        if text is None:
            return None
        cfg = self.owner.cfg
        return self.owner.gateway.mask_text_for(cfg.name, text) if cfg is not None else text

    def _event(self, kind: str, data: dict[str, Any]) -> None:
        data.setdefault("channel", self.number)
        self.owner.gateway.writer.event(self.owner.session_id, kind, data, self.prompt_id)


class UpstreamSession(asyncssh.SSHClientSession[bytes]):
    """The target's side of one session channel: everything goes to the client's side."""

    def __init__(self, client: ClientSession) -> None:
        self.client = client

    def data_received(self, data: bytes, datatype: int | None) -> None:
        self.client.from_upstream(data, datatype)

    def eof_received(self) -> bool:
        self.client.upstream_eof()
        return True

    def exit_status_received(self, status: int) -> None:
        self.client.upstream_exit(status, None)

    def exit_signal_received(self, signal: str, core_dumped: bool, msg: str, lang: str) -> None:
        self.client.upstream_exit(None, (signal, core_dumped, msg))

    def pause_writing(self) -> None:
        if self.client.chan is not None:
            self.client.chan.pause_reading()

    def resume_writing(self) -> None:
        if self.client.chan is not None:
            self.client.chan.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.upstream_closed(exc)


def _settle(future: asyncio.Future[str | None], error: str | None) -> None:
    if not future.done():
        future.set_result(error)
