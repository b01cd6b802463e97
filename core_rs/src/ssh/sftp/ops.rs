//! What the SFTP engine reports: decisions the gateway takes ([`Op`]) and completed operations
//! ([`Record`]).

use std::borrow::Cow;

/// The kind of a decision or a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    Open,
    Opendir,
    Close,
    Remove,
    Rename,
    Mkdir,
    Rmdir,
    Setstat,
    Fsetstat,
    Symlink,
    Link,
    Extended,
}

impl OpKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Opendir => "opendir",
            Self::Close => "close",
            Self::Remove => "remove",
            Self::Rename => "rename",
            Self::Mkdir => "mkdir",
            Self::Rmdir => "rmdir",
            Self::Setstat => "setstat",
            Self::Fsetstat => "fsetstat",
            Self::Symlink => "symlink",
            Self::Link => "link",
            Self::Extended => "extended",
        }
    }
}

/// One client request the gateway decides on before it is forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    pub id: u32,
    pub kind: OpKind,
    /// The path (lossy UTF-8); for `fsetstat` the path of the handle, "" if the handle is unknown;
    /// "" for extended.
    pub path: String,
    /// The second path of rename (new name), symlink and link (the existing file).
    pub target: Option<String>,
    /// The request name of an extended request.
    pub name: Option<String>,
    /// The `pflags` of an open.
    pub pflags: Option<u32>,
    /// Whether the request can change the filesystem.
    pub write: bool,
    /// A request on a handle the session does not know (never returned by the server, already
    /// closed, or dropped for room): its path cannot be told, so the gateway should refuse it.
    pub unknown_handle: bool,
}

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The server's `SSH_FX_*` status code (0 is ok).
    Code(u32),
    /// A reply of another type than expected (e.g. NAME to an open).
    Unexpected,
    /// Refused by the gateway (never reached the server).
    Refused,
    /// The channel ended before the reply.
    NoReply,
    /// The channel ended with the handle open.
    Unclosed,
}

impl Status {
    pub const OK: Self = Self::Code(0);

    /// `ok`, the `SSH_FX_*` name lowercased (`no_such_file`), `status_N` for unknown codes,
    /// `unexpected reply`, `refused`, `no reply` or `unclosed`.
    pub fn name(self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            Self::Code(0) => "ok",
            Self::Code(1) => "eof",
            Self::Code(2) => "no_such_file",
            Self::Code(3) => "permission_denied",
            Self::Code(4) => "failure",
            Self::Code(5) => "bad_message",
            Self::Code(6) => "no_connection",
            Self::Code(7) => "connection_lost",
            Self::Code(8) => "op_unsupported",
            Self::Code(n) => return Cow::Owned(format!("status_{n}")),
            Self::Unexpected => "unexpected reply",
            Self::Refused => "refused",
            Self::NoReply => "no reply",
            Self::Unclosed => "unclosed",
        })
    }
}

/// One completed (or abandoned) operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub kind: OpKind,
    pub path: String,
    pub target: Option<String>,
    pub name: Option<String>,
    /// Open flags (open records only).
    pub pflags: Option<u32>,
    /// `(bytes_read, bytes_written)` (close records of file handles only).
    pub bytes: Option<(u64, u64)>,
    pub status: Status,
}

impl Record {
    /// The record of a decided request.
    pub fn of(op: Op, status: Status) -> Self {
        Self {
            kind: op.kind,
            path: op.path,
            target: op.target,
            name: op.name,
            pflags: op.pflags,
            bytes: None,
            status,
        }
    }
}
