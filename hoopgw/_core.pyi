"""Type stubs for ``hoopgw._core``, the sans-IO Rust engine (checked by ``mypy.stubtest``).

Bytes in, events and (possibly rewritten) bytes out. Nothing here does I/O. Malformed network input
raises :class:`hoopgw.errors.PgProtocolError` (SQLSTATE 08P01); nothing here panics.
"""

from collections.abc import Callable
from typing import Final, final

__version__: Final[str]

#: Default guard for one protocol message, both directions (bytes, including the length word).
DEFAULT_MAX_MESSAGE_SIZE: Final[int]

# --------------------------------------------------------------------------------------------------
# Startup phase (untyped packets: length word, then a 32-bit code)
# --------------------------------------------------------------------------------------------------

@final
class StartupPacket:
    """One decoded startup-phase packet from a client."""

    #: "ssl" (SSLRequest), "gssenc" (GSSENCRequest), "cancel" (CancelRequest) or "startup".
    kind: str
    #: Protocol version (major, minor) of a StartupMessage; (0, 0) for the other kinds.
    protocol: tuple[int, int]
    #: Startup parameters in wire order (user, database, options, application_name, _pq_.*, ...).
    params: list[tuple[str, str]]
    #: CancelRequest backend process id (0 otherwise).
    process_id: int
    #: CancelRequest secret key (4 bytes for protocol 3.0, up to 256 bytes for 3.2; empty otherwise).
    secret_key: bytes

def decode_startup(data: bytes, max_size: int = 10000) -> tuple[int, StartupPacket | None]:
    """Decode one startup packet from the front of ``data``.

    Returns ``(consumed, packet)``; ``(0, None)`` when more bytes are needed. Raises
    PgProtocolError for a bad length, an unknown request code, or malformed parameters.
    """

# --------------------------------------------------------------------------------------------------
# Generic framing for the authentication phase (not the hot path)
# --------------------------------------------------------------------------------------------------

@final
class Framer:
    """Incremental splitter of typed messages (1 type byte + int32 length + body)."""

    def __init__(self, max_message_size: int = ...) -> None: ...
    def feed(self, data: bytes) -> None: ...
    def next_message(self) -> tuple[int, bytes] | None:
        """Return ``(type_byte, body)`` of the next complete message, or None."""
    def take_remaining(self) -> bytes:
        """Return and clear any buffered bytes that are not yet consumed."""
    @property
    def buffered(self) -> int: ...

# Decoders of single message bodies (body = bytes after the length word).
def decode_fields(body: bytes) -> dict[str, str]:
    """ErrorResponse / NoticeResponse body -> {field code char: value}, e.g. {"C": "28P01", "M": ...}."""

def decode_authentication(body: bytes) -> tuple[int, bytes]:
    """Authentication ('R') body -> (code, remaining data)."""

def decode_backend_key_data(body: bytes) -> tuple[int, bytes]:
    """BackendKeyData ('K') body -> (process id, secret key bytes)."""

def decode_parameter_status(body: bytes) -> tuple[str, str]: ...
def decode_password(body: bytes) -> bytes:
    """PasswordMessage ('p') body for cleartext passwords -> the password bytes (NUL stripped)."""

def decode_ready_for_query(body: bytes) -> str:
    """ReadyForQuery ('Z') body -> transaction status "I", "T" or "E"."""

# Encoders of whole messages (with type byte and length word).
def encode_message(type_byte: int, body: bytes) -> bytes: ...
def encode_startup_message(params: list[tuple[str, str]], protocol: tuple[int, int] = (3, 0)) -> bytes: ...
def encode_ssl_request() -> bytes: ...
def encode_cancel_request(process_id: int, secret_key: bytes) -> bytes: ...
def encode_authentication(code: int, data: bytes = b"") -> bytes: ...
def encode_password(data: bytes) -> bytes:
    """PasswordMessage / SASLResponse ('p') with raw ``data`` (caller adds a NUL for cleartext/md5)."""

def encode_sasl_initial_response(mechanism: str, data: bytes) -> bytes: ...
def encode_parameter_status(name: str, value: str) -> bytes: ...
def encode_backend_key_data(process_id: int, secret_key: bytes) -> bytes: ...
def encode_ready_for_query(status: str) -> bytes: ...
def encode_negotiate_protocol_version(newest_minor: int, unsupported: list[str]) -> bytes: ...
def encode_error(
    severity: str,
    sqlstate: str,
    message: str,
    detail: str | None = None,
    hint: str | None = None,
    notice: bool = False,
) -> bytes:
    """ErrorResponse ('E'), or NoticeResponse ('N') when ``notice``; severity e.g. "ERROR", "FATAL"."""

# --------------------------------------------------------------------------------------------------
# Relay phase: the per-session state machine (the hot path; one call per socket read)
# --------------------------------------------------------------------------------------------------

@final
class Statement:
    """One statement as the server answered it: the unit of the audit trail."""

    #: "query" (simple Query message, may hold several statements), "execute" (extended protocol
    #: Execute of a portal), "parse" (a Parse the server rejected), "function" (FunctionCall).
    kind: str
    #: The SQL text (for "execute": the text of the prepared statement the portal was bound from).
    sql: str
    #: Prepared statement name ("" = unnamed) for "execute"/"parse"; None for "query".
    statement_name: str | None
    #: Portal name for "execute"; None otherwise.
    portal: str | None
    #: Bind parameters as text (binary parameters as "\\x<hex>", NULL as None); None for "query".
    params: list[str | None] | None
    #: Command tags in order ("SELECT 1", "INSERT 0 3", "COPY 5", "" for an empty query).
    tags: list[str]
    #: Rows affected/returned, summed over the tags (DataRows counted when a tag has no count).
    rows: int
    #: "ok", "error" (the server returned ErrorResponse), "skipped" (not run: an earlier message
    #: in the same extended-protocol batch failed), or "suspended" (PortalSuspended; more to fetch).
    status: str
    #: (sqlstate, message) of the ErrorResponse, when status == "error".
    error: tuple[str, str] | None
    #: now_ns passed with the client bytes that completed the request / the server bytes that completed it.
    started_ns: int
    ended_ns: int
    #: ``(columns, rows)``: the first rows of the first result set that had rows, as forwarded to the
    #: client (masked), each value as text ("\\x<hex>" when binary, None for NULL) cut at the
    #: session's character limit ("…" appended); columns empty when the shape was not seen. None
    #: when there were no rows, for COPY, and when previews are off (:meth:`PgSession.set_preview`).
    preview: tuple[list[str], list[list[str | None]]] | None

@final
class PgSession:
    """Protocol state of one proxied session after authentication, both directions."""

    def __init__(self, max_message_size: int = ..., masker: Masker | None = None) -> None:
        """``masker``: mask server data to the client and recorded values (see docs/MASKING.md)."""
    def feed_client(self, data: bytes, now_ns: int) -> tuple[bytes, bool, bytes | None]:
        """Frames from the client.

        Returns ``(forward, terminate, reply)``: the complete frames to send upstream (the very
        ``data`` object when it holds only whole frames and nothing is buffered; may be empty),
        whether the client sent Terminate (the gateway forwards it, then closes), and what to write
        to the client at once: the answers to messages the policy denied while nothing was pending
        (None otherwise; denials behind pending requests come out of :meth:`feed_server` at their
        place). Partial frames are kept for the next call. Raises PgProtocolError on an unknown
        frontend message type or an oversized length.

        While a statement is held (:attr:`holding`) the read is kept and nothing is forwarded
        (PgProtocolError once more than twice ``max_message_size`` is kept), except that a
        Terminate from the client drops the held statement and what followed it, and is forwarded
        (``terminate`` True).
        """
    @property
    def holding(self) -> bool:
        """Whether a statement is held for a decision (:meth:`release` or :meth:`reject`)."""
    @property
    def held(self) -> tuple[str, str | None, str | None] | None:
        """The held message: ``(kind, sql, statement name)``, or None.

        ``kind`` is "query", "parse", "bind" or "function"; ``sql`` the text of a Query or Parse
        (for a Bind: of its statement when this session parsed it), None for a FunctionCall.
        """
    @property
    def held_batch(self) -> tuple[bool, list[list[tuple[int, bytes | None]]]]:
        """``(complete, binds)`` of the held statement's batch.

        ``complete``: a Query or FunctionCall always; a Parse or Bind once the Sync ending its batch
        has arrived. ``binds``: per Bind of the held statement received so far in the batch, in order
        (a held Bind is the first), ``[(format code, value or None for NULL)]``: once released, all
        of them run.
        """
    def release(self, now_ns: int) -> tuple[bytes, bool, bytes | None]:
        """Let the held statement go on as if the check had allowed it, then process what the
        client sent after it (checked as usual: it may be denied, or held again).

        Returns ``(forward, terminate, reply)`` like :meth:`feed_client`. After a released Parse or
        Bind, Binds of the same statement up to the next Sync are not checked again. Does nothing
        (``(b"", False, None)``) when nothing is held.
        """
    def reject(self, error: bytes, now_ns: int) -> tuple[bytes, bool, bytes | None]:
        """Answer the held statement with ``error`` (an ErrorResponse from :func:`encode_error`,
        else XX000) like a denial at its place in the response stream (+ ReadyForQuery for a Query
        or FunctionCall; for a Parse or Bind the rest of its batch is dropped up to the Sync), then
        go on as :meth:`release` does.
        """
    def set_write_ahead(self, mask: int, contained: int) -> None:
        """Write-ahead audit: note every Query or Execute with a class in ``mask`` (or with unknown
        classes) and every FunctionCall as an intent as it is forwarded (0: off). Inside an
        explicit transaction block, statements with classes only in ``contained`` are not strict;
        any other statement is a barrier."""
    def take_intents(self) -> tuple[list[Statement], bool, bool] | None:
        """What the last feed/release noted, or None: ``(intents, strict, barrier)``: the intents
        (masked; no tags, rows or error), whether its bytes must wait for them to be durable, and
        whether they must wait for every intent still in flight (they may end a transaction)."""
    def set_policy(
        self,
        cache: SqlCache | None,
        check: Callable[
            [str | None, int, str | None],
            tuple[int, bool, bytes | None] | tuple[int, bool, bytes | None, bool],
        ],
        allow_mask: int,
    ) -> None:
        """Check each Query, Parse, Bind and FunctionCall (also inside COPY-in) before forwarding it.

        ``check(sql, cached, name) -> (mask, cacheable, error)``: ``sql`` is the text (None for a
        FunctionCall), ``cached`` the class mask cached for its shape or -1, ``name`` the statement
        name of a Parse ("" for the unnamed statement; None for a Query). ``mask`` (u32) is cached
        for the shape when ``cacheable``;
        ``error`` None forwards, else denies, answering with these bytes (an ErrorResponse from
        :func:`encode_error`). A Query or unnamed Parse whose shape is cached with a mask inside
        ``allow_mask`` is forwarded without calling ``check``; named Parses and FunctionCalls are
        always checked. A Bind is checked again (``check(None, mask, statement name)``, ``mask`` -1
        for a statement this session did not Parse) when its statement's classes are not all inside
        ``allow_mask`` now. A denied Query/FunctionCall is answered with ``error`` + ReadyForQuery;
        after a denied Parse or Bind the messages up to Sync are dropped. ``check`` may also return
        ``(mask, cacheable, None, True)``: the message is held (:attr:`holding`), and so is
        everything the client sends after it, until :meth:`release` or :meth:`reject` (an
        ``error`` wins over the hold). For a Parse or Bind the messages of its batch before it were
        already forwarded. ``check`` raising (or
        returning the wrong shape) denies with XX000; the exception goes to ``sys.unraisablehook``.
        ``check`` must not use this session.
        """
    def set_preview(self, rows: int, chars: int) -> None:
        """Keep a preview of the first ``rows`` rows of each statement's result (0: off, the
        default) in :attr:`Statement.preview`, each value and column name cut at ``chars``
        characters; at most 4 KiB of text per statement. A multi-statement Query previews its
        first result set that has rows; COPY data is never previewed."""
    def set_param_guard(self, guard: list[tuple[str, list[str]]]) -> None:
        """Guard server parameters: ``[(name, accepted values)]``, ASCII case-insensitive.

        A ParameterStatus naming a guarded parameter with another value sets :attr:`tripped`; the
        caller must end the session (its statements are no longer parsed as the server parses them).
        """
    @property
    def tripped(self) -> str | None:
        """``name=value`` of the first guarded parameter the server changed to a value not accepted."""
    @property
    def allow_mask(self) -> int:
        """Classes (bits) the session runs without calling the check when the shape is cached."""
    @allow_mask.setter
    def allow_mask(self, value: int) -> None: ...
    def feed_server(self, data: bytes, now_ns: int) -> tuple[bytes, list[Statement] | None]:
        """Frames from the server.

        Returns ``(forward, done)``: complete frames for the client (``data`` itself when unchanged)
        and the statements completed by this read (None when none). Raises PgProtocolError on
        broken framing or an oversized length.
        """
    @property
    def tx_status(self) -> str:
        """Transaction status from the last ReadyForQuery: "I", "T" or "E"."""
    @property
    def pending(self) -> int:
        """Requests sent by the client that the server has not finished answering (0 = idle)."""
    @property
    def in_copy(self) -> bool: ...
    @property
    def catalog_request(self) -> tuple[list[int], list[int], tuple[str, int] | None] | None:
        """Names the masking engine needs before the server stream can go on, or None.

        ``(table oids, type oids, (sql, n) of the n-th COPY TO STDOUT of sql, or None)``. While it is
        set, server reads are held (``feed_server`` forwards nothing); answer with :meth:`resolve`.
        """
    def resolve(
        self,
        tables: list[tuple[int, str, str, dict[int, str]]],
        types: list[tuple[int, str]],
        copy: tuple[str, str, str, str, str, bool, list[tuple[int, int, int, str]]] | None = None,
    ) -> None:
        """Answer :attr:`catalog_request`, then call ``feed_server(b"", now)`` to resume.

        ``tables``: (oid, schema, name, {attnum: column}); ``types``: (oid, pg_type.typcategory);
        ``copy``: (format "text"/"csv"/"binary", delimiter, quote, escape, NULL marker, header,
        [(table oid, attnum, type oid, label)]) of the COPY, or None when it could not be described.
        Requested OIDs left out are taken as dropped.
        """
    @property
    def mask_counts(self) -> dict[str, int]:
        """Values masked on the way to the client so far, per detector (and "columns")."""

# --------------------------------------------------------------------------------------------------
# SQL policy fast path
# --------------------------------------------------------------------------------------------------

def normalize_sql(sql: bytes) -> bytes | None:
    """The cache key of a statement's shape, or None when it cannot be derived safely.

    Comments dropped, whitespace runs collapsed to one space, string constants replaced by b"\\x00"
    and numeric constants by b"\\x01"; everything else verbatim. None for text whose literals could
    lex differently under another setting or server version (E'', U&'', a backslash in a string,
    unusual dollar quotes, number junk, ...), unterminated text, NUL/0x01 bytes, over 64 KiB.
    """

@final
class SqlCache:
    """Class masks of statement shapes (keys from :func:`normalize_sql`), shared by all sessions.

    Bounded at ``capacity`` entries: inserting a new key when full clears the cache first.
    A capacity of 0 disables it.
    """

    def __new__(cls, capacity: int) -> SqlCache: ...
    def get(self, key: bytes) -> int | None: ...
    def insert(self, key: bytes, mask: int) -> None: ...
    def clear(self) -> None: ...
    @property
    def capacity(self) -> int: ...
    def __len__(self) -> int: ...

# --------------------------------------------------------------------------------------------------
# Masking (docs/MASKING.md)
# --------------------------------------------------------------------------------------------------

from collections.abc import Sequence  # noqa: E402  (this section is appended to the stub)

@final
class Masker:
    """A compiled masking configuration: immutable, shared by every session of a connection.

    Raises ValueError with a precise message for an unknown detector or style, an invalid regex, a
    bad column glob, style "null" outside column rules, or a hash style without a 16-byte key.
    """

    def __new__(
        cls,
        detectors: Sequence[tuple[str, str]] = ...,
        patterns: Sequence[tuple[str, str, str]] = ...,
        words: Sequence[tuple[str, str]] = ...,
        columns: Sequence[tuple[str, str]] = ...,
        hash_key: bytes = ...,
    ) -> Masker: ...
    def mask(self, data: bytes) -> bytes:
        """The masked bytes; ``data`` itself when nothing matched (GIL released from 64 KiB)."""
    def mask_text(self, text: str) -> str:
        """The masked text; ``text`` itself when nothing matched."""
    def mask_many(self, values: list[bytes]) -> list[bytes]:
        """Each value masked on its own; unchanged values are the very objects passed in."""
    def find(self, data: bytes) -> list[tuple[str, int, int]]:
        """``(counter name, start, end)`` of every match, sorted and non-overlapping."""
    def stream(self) -> MaskStream:
        """A new stream masker sharing this configuration."""
    @property
    def counter_names(self) -> list[str]:
        """Enabled detectors (config order), custom pattern names, "words", then "columns"."""
    @property
    def window(self) -> int:
        """Longest possible match: the most bytes a stream holds back."""
    @property
    def has_detectors(self) -> bool: ...
    @property
    def has_columns(self) -> bool: ...

@final
class MaskStream:
    """Masking of a byte stream read by read: a value split across reads is still masked."""

    def feed(self, data: bytes) -> bytes:
        """Masked bytes that are safe to emit now (complete lines; at most ``window`` held back)."""
    def flush(self) -> bytes:
        """Everything held back, masked (end of stream, or idle)."""
    @property
    def buffered(self) -> int:
        """Bytes held back."""
    @property
    def counts(self) -> dict[str, int]:
        """Non-zero counters of the values masked so far."""

def builtin_detectors() -> list[str]:
    """Names of the built-in detectors."""

# --------------------------------------------------------------------------------------------------
# SSH file transfers: SFTP v3 and legacy scp (watched, never rewritten). Malformed SFTP input raises
# ValueError (the gateway ends the channel); scp never raises.
# --------------------------------------------------------------------------------------------------

@final
class SftpSession:
    """Both directions of one ``sftp`` subsystem channel (SFTP version 3, as OpenSSH speaks it).

    Decisions (op dicts from :meth:`feed_client`) have ``id``, ``op``, ``path`` and ``write``, plus
    ``flags`` (open), ``target`` (rename: the new name; symlink and link: the existing file, with
    ``path`` the link) and ``name`` (extended, with ``path`` ""). ``op`` is one of open, opendir,
    remove, rename (also posix-rename@openssh.com), mkdir, rmdir, setstat (also
    lsetstat@openssh.com), fsetstat (the handle's path), symlink, link (hardlink@openssh.com),
    extended (any other extension request; ``write`` True). Requests that change nothing (STAT,
    LSTAT, FSTAT, READDIR, REALPATH, READLINK, statvfs, fstatvfs, limits, expand-path, fsync,
    home-directory, users-groups-by-id), READ, WRITE, CLOSE, INIT and unknown packet types pass
    without a decision and are not recorded themselves.

    Two rules keep a decision's path the one the server acts on. Replies are matched to requests
    by id, so a request reusing the id of a request still awaiting its reply (any request with an
    id: all but INIT, pass-through and unknown packet types included) is a protocol violation:
    :meth:`feed_client` raises ValueError (OpenSSH's ``sftp`` never does it; the gateway ends the
    channel). And a decision on a handle the session does not know (never returned by the server,
    closed, or dropped for the handle cap) has ``path`` "" and ``unknown_handle`` True (the key is
    absent otherwise): its path cannot be told, so the gateway refuses it.

    Records have ``op``, ``path`` and ``status`` (``ok``, the SSH_FX name lowercased such as
    ``no_such_file``, ``status_N`` for unknown codes, ``refused``, ``no reply``, ``unclosed``,
    ``unexpected reply``), plus the decision's ``flags``/``target``/``name``. A file handle also
    gets a ``close`` record with ``bytes_read`` (DATA replies to its READs) and ``bytes_written``
    (WRITEs answered OK); directory handles get no close record. At most 10,000 requests may
    await replies (OpenSSH's ``sftp`` keeps 64): one more raises ValueError, as forgetting one would
    let its id be reused unnoticed. At most 10,000 handles are tracked: past that, the oldest file
    handle is recorded at once as ``unclosed`` and forgotten (see :attr:`dropped`); later requests
    on it are on an unknown handle.
    """

    def __init__(self, max_packet: int = 1_048_576) -> None: ...
    def feed_client(self, data: bytes) -> list[tuple[bytes, dict[str, object] | None]]:
        """Client->server bytes, in order, as chunks: a chunk with an op dict is exactly one request
        packet to decide on (forward its bytes, or answer :meth:`refuse` instead); a chunk with None
        is bytes to forward as they are (consecutive packets coalesced). Partial packets are held
        until complete. Raises ValueError on a malformed packet (length 0 or above ``max_packet``,
        a field cut short inside a complete packet, a handle above 256 bytes), on a request id
        reused while pending (``sftp request id N reused while a request with that id is
        pending``) and on more than 10,000 requests pending; every later call (to
        :meth:`feed_server` too) raises it again. Paths are decoded lossily."""
    def refuse(self, request_id: int, message: str) -> bytes:
        """An SSH_FXP_STATUS packet (SSH_FX_PERMISSION_DENIED, ``message``, language "") to send the
        client instead of request ``request_id``; its record (status ``refused``) comes out of the
        next :meth:`feed_server` or :meth:`finish`. Records nothing for an id that is not a pending
        decision."""
    def feed_server(self, data: bytes) -> list[dict[str, object]]:
        """Server->client bytes (forwarded unchanged by the caller): records of refused requests,
        then those completed by ``data``. Raises ValueError on a malformed packet and
        ``unsupported SFTP version N`` when the server's VERSION is not 3."""
    def finish(self) -> list[dict[str, object]]:
        """At channel end: queued refusals, decided requests never answered (``no reply``), then
        ``close`` records (``unclosed``) for file handles still open. Resets the tracking."""
    @property
    def version(self) -> int | None:
        """The version the server announced (3), None before its VERSION."""
    @property
    def dropped(self) -> int:
        """Handles whose tracking was dropped for the handle cap."""

@final
class ScpStream:
    """The legacy scp protocol (``scp -O``): the direction that carries the control lines and the
    file bytes (client->server for ``scp -t``, server->client for ``scp -f``).

    Records: ``{"op": "file", "path", "mode", "size", "status": "ok"}`` once a file's bytes have
    passed (``path`` relative, joined with the D directories entered), ``{"op": "mkdir", "path",
    "mode"}`` for D lines, ``{"op": "error", "message"}`` for the peer's \\x01/\\x02 lines. T lines
    are checked and ignored, E leaves a directory, \\0 acknowledgements between records are
    skipped. A protocol violation (or a control line above 4096 bytes) gives one ``error`` record
    whose message starts with ``scp protocol violation:`` and the stream stops parsing.
    """

    def __init__(self) -> None: ...
    def feed(self, data: bytes) -> list[dict[str, object]]:
        """The records completed by ``data``; never raises."""
    def finish(self) -> list[dict[str, object]]:
        """At stream end: a file cut short (``"status": "incomplete"``, ``"transferred": n``), or an
        ``error`` record for a control line cut short."""
    @property
    def stopped(self) -> bool:
        """Whether a protocol violation stopped the parsing."""
