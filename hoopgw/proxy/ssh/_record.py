"""The terminal recorder of an SSH channel: asciicast v2 frames, masked, as chained audit events.

A channel's recording is a run of ordinary audit events (docs/REPLAY.md, *SSH sessions*), so it is
chained, retained, exported and verified like every other record:

- ``terminal_start`` ``{"channel", "version": 2, "width", "height", "term", "command", "timestamp"}``
  when the recorder is made (``command`` is None for a shell, ``timestamp`` the wall clock);
- ``terminal`` ``{"channel", "seq", "frames"}``, chunks of asciicast v2 frames ``[t, code, text]``:
  ``t`` seconds since the start (millisecond precision), ``code`` ``"o"`` (output), ``"i"`` (input) or
  ``"r"`` (resize, text ``"WxH"``); emitted when ``chunk_bytes`` of text have accumulated, on a
  ``tick`` at least ``chunk_interval`` seconds after the last chunk, and on close;
- ``terminal_truncated`` ``{"channel", "at_bytes", "t"}`` once, when ``max_bytes`` is reached;
- ``command_line`` ``{"channel", "line", "t", "best_effort": True}`` for each line typed into a shell;
- ``terminal_end`` ``{"channel", "exit_status", "recorded_bytes", "dropped_bytes", "truncated"}``.

Output and input are masked before anything is kept, each through a stream of its own (a value split
across reads is still masked), then decoded as UTF-8 (invalid bytes become U+FFFD; a character split
across reads is decoded whole). A stream holds back up to the masker's window (the end of a line that
could still be the start of a value) until the next read completes the line or goes past the window,
and is never flushed before the channel closes: a value typed slowly (echoed key by key) is masked in
the recording as it is in a whole line. What was held back is dated when it was read, when the masking
kept its length (then the frame is cut where the new read begins), so a shell prompt keeps its time.

Command lines are a best-effort reading of the keys typed into a shell: printable characters, backspace
and DEL, Ctrl-U, Ctrl-W and Ctrl-C are understood; escape sequences (arrow keys, function keys, bracketed
paste markers) and tab are ignored, so history recall, completion, line editing and full-screen programs
are not understood. The authoritative record is the terminal output.
"""

from __future__ import annotations

import bisect
import codecs
import re
import time
from collections.abc import Callable
from typing import Any, Protocol

from hoopgw import _core

__all__ = ["LINE_MAX", "EventSink", "LineReader", "TerminalRecorder"]

#: The longest command line kept, in characters (the rest of a longer line is left out).
LINE_MAX = 4096
#: Input bytes of one read that are read for command lines (the rest of a bigger paste is not).
_LINE_READ_MAX = 64 * 1024

_Frame = list[Any]  # [t, code, text]


class EventSink(Protocol):
    """Where the recorder's events go (``AuditWriter`` in the gateway, a list in tests)."""

    def event(
        self, session_id: str | None, kind: str, payload: dict[str, Any], prompt_id: str | None = None
    ) -> None: ...


class _Side:
    """One direction (output or input): its mask stream, its UTF-8 decoder, when it was last read."""

    __slots__ = ("code", "decoder", "held_since", "last", "stream")

    def __init__(self, code: str, masker: _core.Masker | None, now: float) -> None:
        self.code = code
        self.stream = masker.stream() if masker is not None else None
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.held_since = now  # when the oldest byte the stream holds back was read
        self.last = now  # the time of this side's last frame: a side's frames stay in order


class TerminalRecorder:
    """Records one channel's terminal (masked) as audit events; see the module docstring.

    ``output``/``input`` take the raw bytes of the channel (stdout and stderr upstream, the client's
    keys) and cost one mask scan, one decode and a list append per read, with no loop over the bytes of
    the output. Not thread-safe: call it from the channel's event loop.
    """

    def __init__(
        self,
        sink: EventSink,
        session_id: str,
        *,
        channel: int,
        width: int,
        height: int,
        term: str | None,
        command: str | None,
        masker: _core.Masker | None,
        max_bytes: int,
        prompt_id: str | None = None,
        chunk_bytes: int = 64 * 1024,
        chunk_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        command_lines: bool | None = None,
    ) -> None:
        self._sink = sink
        self._session_id = session_id
        self._channel = channel
        self._masker = masker
        self._max = max(0, max_bytes)
        self._prompt_id = prompt_id
        self._chunk_bytes = chunk_bytes
        self._chunk_interval = chunk_interval
        self._clock = clock
        self._start = clock()
        self._out = _Side("o", masker, self._start)
        self._in = _Side("i", masker, self._start)
        self._frames: list[_Frame] = []
        self._frames_t: list[float] = []  # the frames' times, for inserting one dated earlier
        self._pending = 0  # text bytes in ``_frames``
        self._last_chunk = self._start
        self._last_t = 0.0  # the time of the last frame emitted in a chunk
        self._seq = 0
        self._recorded = 0
        self._dropped = 0
        self._truncated = False
        self._full = self._max == 0  # nothing more is recorded: only counted
        self._closed = False
        # command lines: a shell's input only (an exec channel's input is data, not commands), or
        # ``command_lines`` when the caller knows the exec runs an interactive shell (``ssh host bash``)
        lines = command is None if command_lines is None else command_lines
        self._lines = LineReader() if lines and self._max > 0 else None
        self._emit(
            "terminal_start",
            {
                "channel": channel,
                "version": 2,
                "width": width,
                "height": height,
                "term": term,
                "command": command,
                "timestamp": wall(),
            },
        )

    # -- the channel's data -----------------------------------------------------------------------
    def output(self, data: bytes) -> None:
        """Record upstream output (stdout and stderr of the channel), not masked yet.

        NUL bytes are left out: a terminal ignores them, and each would be stored as six characters of
        JSON (``\\u0000``), so binary output would fill the store six times faster than the cap says.
        """
        if self._full or self._closed:
            self._dropped += len(data)
            return
        if b"\0" in data:
            data = data.translate(None, b"\0")
            if not data:
                return
        self._feed(self._out, data)

    def masked_output(self, data: bytes) -> None:
        """Record output the caller has already masked (what the client was sent, from a stream of its
        own, flushes included): the recorder does not mask it again."""
        if self._full or self._closed:
            self._dropped += len(data)
            return
        if data:
            self._record(self._out, data, self._clock())

    def input(self, data: bytes) -> None:
        """Record client input (keys typed, pasted text, an exec channel's stdin), not masked yet."""
        if self._closed:
            return
        if self._lines is not None:
            now = self._clock()
            for line in self._lines.feed(data[:_LINE_READ_MAX]):
                self._command_line(line, now)
            if len(data) > _LINE_READ_MAX:
                self._lines.reset()
        if self._full:
            self._dropped += len(data)
            return
        self._feed(self._in, data)

    def resize(self, width: int, height: int) -> None:
        """Record a change of the terminal's size."""
        if self._full or self._closed:
            return
        self._add(self._t(self._clock()), "r", f"{width}x{height}")

    def tick(self) -> None:
        """Emit a chunk of the frames recorded so far when one is due (``chunk_interval``)."""
        if self._closed:
            return
        now = self._clock()
        if self._frames and now - self._last_chunk >= self._chunk_interval:
            self._chunk(now)

    def close(self, exit_status: int | None = None) -> None:
        """Flush everything, emit the last chunk and ``terminal_end`` (once; later calls do nothing)."""
        if self._closed:
            return
        for side in (self._out, self._in):
            self._flush_side(side)
        if self._lines is not None:
            self._lines.reset()  # a line never ended by Enter was never run
        if self._frames:
            self._chunk(self._clock())
        self._closed = True
        self._emit(
            "terminal_end",
            {
                "channel": self._channel,
                "exit_status": exit_status,
                "recorded_bytes": self._recorded,
                "dropped_bytes": self._dropped,
                "truncated": self._truncated,
            },
        )

    # -- state --------------------------------------------------------------------------------------
    @property
    def recorded_bytes(self) -> int:
        """Bytes of (masked) text recorded in frames so far."""
        return self._recorded

    @property
    def dropped_bytes(self) -> int:
        """Bytes received after the cap, not recorded (counted before masking)."""
        return self._dropped

    @property
    def truncated(self) -> bool:
        """Whether the cap (``max_bytes``) was reached and the recording cut short."""
        return self._truncated

    @property
    def mask_counts(self) -> dict[str, int]:
        """Values masked so far per counter, output and input together."""
        counts: dict[str, int] = {}
        for side in (self._out, self._in):
            if side.stream is not None:
                for name, n in side.stream.counts.items():
                    counts[name] = counts.get(name, 0) + n
        return counts

    # -- internals ----------------------------------------------------------------------------------
    def _t(self, now: float) -> float:
        return round(max(0.0, now - self._start), 3)

    def _feed(self, side: _Side, data: bytes) -> None:
        """Mask one read and record what the stream lets out, dating what it had held back."""
        now = self._clock()
        stream = side.stream
        if stream is None:
            self._record(side, data, now)
            return
        held = stream.buffered
        masked = stream.feed(data)
        left = stream.buffered
        if not masked:
            if not held:
                side.held_since = now
            return
        released = held + len(data) - left  # raw bytes the masked ones stand for
        if held and len(masked) == released:  # the masking kept the length: cut at the new read
            cut = min(held, len(masked))
            self._record(side, masked[:cut], side.held_since)
            if cut < len(masked) and not self._full:
                self._record(side, masked[cut:], now)
        else:
            self._record(side, masked, now)
        if held <= released:  # all that was held went out: what is held now was read now
            side.held_since = now

    def _flush_side(self, side: _Side) -> None:
        """At the end: record what ``side``'s stream held back, and its decoder's last bytes."""
        held = side.stream.flush() if side.stream is not None else b""
        if self._full:
            self._dropped += len(held)
            return
        if held:
            self._record(side, held, side.held_since)
        if not self._full:
            tail = side.decoder.decode(b"", final=True)
            if tail:
                self._add(self._t(side.last), side.code, tail)

    def _record(self, side: _Side, masked: bytes, now: float) -> None:
        now = max(now, side.last)
        side.last = now
        room = self._max - self._recorded
        if len(masked) >= room:
            self._dropped += len(masked) - room
            masked = masked[:room]
            self._recorded = self._max
            self._full = True
        else:
            self._recorded += len(masked)
        text = side.decoder.decode(masked)
        if text:
            self._add(self._t(now), side.code, text)
            self._pending += len(masked)
        if self._full:
            self._truncate(now)
        elif self._pending >= self._chunk_bytes:
            self._chunk(now)

    def _add(self, t: float, code: str, text: str) -> None:
        """Add a frame in time order (one dated before the chunk already emitted is dated with it)."""
        frames = self._frames
        t = max(t, self._last_t)
        if frames and t >= self._frames_t[-1]:
            last = frames[-1]
            if last[1] == code and last[0] == t and code != "r":
                last[2] += text  # the same direction within the same millisecond: one frame
                return
            frames.append([t, code, text])
            self._frames_t.append(t)
            return
        i = bisect.bisect_right(self._frames_t, t)
        frames.insert(i, [t, code, text])
        self._frames_t.insert(i, t)

    def _chunk(self, now: float) -> None:
        frames, self._frames, self._frames_t = self._frames, [], []
        self._pending = 0
        self._last_chunk = now
        if not frames:
            return
        self._last_t = frames[-1][0]
        self._seq += 1
        self._emit("terminal", {"channel": self._channel, "seq": self._seq, "frames": frames})

    def _truncate(self, now: float) -> None:
        """The cap is reached: emit what was recorded, then ``terminal_truncated``; count from now on."""
        self._truncated = True
        for side in (self._out, self._in):
            if side.stream is not None:
                self._dropped += len(side.stream.flush())  # masked and dropped: the streams stop here
        self._chunk(now)
        self._emit(
            "terminal_truncated", {"channel": self._channel, "at_bytes": self._recorded, "t": self._t(now)}
        )

    def _command_line(self, line: str, now: float) -> None:
        masked = self._masker.mask_text(line) if self._masker is not None else line
        self._emit(
            "command_line", {"channel": self._channel, "line": masked, "t": self._t(now), "best_effort": True}
        )

    def _emit(self, kind: str, payload: dict[str, Any]) -> None:
        self._sink.event(self._session_id, kind, payload, self._prompt_id)


# -- command lines ------------------------------------------------------------------------------------
_TOKENS = re.compile(rb"[^\x00-\x1f\x7f]+|[\x00-\x1f\x7f]")
_NORMAL, _ESC, _CSI, _SS3 = range(4)
_CTRL_C, _CTRL_U, _CTRL_W, _BS, _DEL, _ESC_BYTE = 0x03, 0x15, 0x17, 0x08, 0x7F, 0x1B


class LineReader:
    """Best-effort command lines from the keys typed into a shell (bytes in, lines out).

    Keeps at most ``LINE_MAX`` characters of a line (in UTF-8 bytes: four per character at most). The
    state (a line being typed, an escape sequence split across reads) carries over from read to read.
    """

    def __init__(self, max_chars: int = LINE_MAX) -> None:
        self._max = max_chars * 4
        self._buf = bytearray()
        self._state = _NORMAL

    def reset(self) -> None:
        """Forget the line being typed."""
        self._buf.clear()
        self._state = _NORMAL

    def feed(self, data: bytes) -> list[str]:
        """The lines ended (by CR or LF) in ``data``; empty and blank lines are left out."""
        out: list[str] = []
        buf = self._buf
        for match in _TOKENS.finditer(data):
            token = match.group()
            if self._state != _NORMAL:
                token = self._escape(token)
                if not token:
                    continue
            byte = token[0]
            if byte >= 0x20 and byte != _DEL:  # printable text (a run of it)
                room = self._max - len(buf)
                if room > 0:
                    buf += token[:room]
            elif byte in (0x0D, 0x0A):
                text = _decode(buf)
                buf.clear()
                if text.strip():
                    out.append(text[:LINE_MAX])
            elif byte in (_BS, _DEL):
                _drop_char(buf)
            elif byte in (_CTRL_C, _CTRL_U):
                buf.clear()
            elif byte == _CTRL_W:
                _drop_word(buf)
            elif byte == _ESC_BYTE:
                self._state = _ESC
            # other control keys (tab, Ctrl-D, Ctrl-L, ...) are left out
        return out

    def _escape(self, token: bytes) -> bytes:
        """Consume the escape sequence in progress from ``token``; what follows it, if anything."""
        for i, byte in enumerate(token):
            if self._state == _ESC:
                if byte == 0x5B:  # ESC [
                    self._state = _CSI
                elif byte == 0x4F:  # ESC O x
                    self._state = _SS3
                elif byte == _ESC_BYTE:
                    pass  # ESC ESC: still an escape
                else:
                    self._state = _NORMAL  # ESC x (Alt-x): ignored
                    return token[i + 1 :] if byte >= 0x20 else token[i:]
            elif self._state == _SS3 or 0x40 <= byte <= 0x7E:  # ESC O x, or a CSI's final byte
                self._state = _NORMAL
                return token[i + 1 :]
            elif byte < 0x20:  # a control byte inside a sequence cancels it (and counts itself)
                self._state = _NORMAL
                return token[i:]
        return b""


def _decode(buf: bytearray) -> str:
    return buf.decode("utf-8", errors="replace")


def _drop_char(buf: bytearray) -> None:
    """Remove the last character (its UTF-8 continuation bytes and its first byte)."""
    while buf and 0x80 <= buf[-1] <= 0xBF:
        buf.pop()
    if buf:
        buf.pop()


def _drop_word(buf: bytearray) -> None:
    """Ctrl-W: remove the spaces before the cursor, then the word before them."""
    while buf and buf[-1] == 0x20:
        buf.pop()
    while buf and buf[-1] != 0x20:
        buf.pop()
