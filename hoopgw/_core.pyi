"""Type stubs for ``hoopgw._core``, the sans-IO Rust engine (checked by ``mypy.stubtest``).

Bytes in, events and (possibly rewritten) bytes out. Nothing here does I/O. Malformed network input
raises :class:`hoopgw.errors.PgProtocolError` (SQLSTATE 08P01); nothing here panics.
"""

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

@final
class PgSession:
    """Protocol state of one proxied session after authentication, both directions."""

    def __init__(self, max_message_size: int = ...) -> None: ...
    def feed_client(self, data: bytes, now_ns: int) -> tuple[bytes, bool]:
        """Frames from the client.

        Returns ``(forward, terminate)``: the complete frames to send upstream (the very ``data``
        object when it holds only whole frames and nothing is buffered), and whether the client sent
        Terminate (the gateway forwards it, then closes). Partial frames are kept for the next call.
        Raises PgProtocolError on an unknown frontend message type or an oversized length.
        """
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
