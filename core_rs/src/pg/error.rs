//! Errors of the PostgreSQL protocol layer (raised to Python as `PgProtocolError`, SQLSTATE 08P01).

use std::fmt;

use thiserror::Error;

/// Malformed or unsupported PostgreSQL protocol input, or a value that cannot be encoded.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// A client sent a message type that is not valid after authentication.
    #[error("invalid frontend message type {}", TypeByte(*.0))]
    InvalidFrontendType(u8),
    /// A length word below the minimum (4 for typed messages, 8 for startup packets).
    #[error("invalid message length {0}")]
    InvalidLength(i64),
    /// A length word above the configured guard.
    #[error("message length {length} exceeds limit {limit}")]
    TooLarge { length: i64, limit: usize },
    /// A message body ended before a field that it announces.
    #[error("{message}: unexpected end of message")]
    Truncated { message: &'static str },
    /// A string field without its terminating NUL byte.
    #[error("{message}: missing nul terminator")]
    MissingTerminator { message: &'static str },
    /// Bytes left over after the last field of a message.
    #[error("{message}: {count} trailing bytes")]
    TrailingBytes { message: &'static str, count: usize },
    /// A text field that is not valid UTF-8.
    #[error("{message}: invalid utf-8 in {field}")]
    InvalidUtf8 { message: &'static str, field: &'static str },
    /// A field with a value outside its domain.
    #[error("{message}: invalid {field} {value}")]
    InvalidValue { message: &'static str, field: &'static str, value: i64 },
    /// A startup packet with a protocol version or request code this gateway does not speak.
    #[error("startup packet: unsupported protocol {major}.{minor}")]
    UnsupportedProtocol { major: u16, minor: u16 },
    /// The server kept sending while the session waited for a masking look-up.
    #[error("{0} bytes arrived from the server while masking waited for a catalog look-up")]
    HeldTooLong(usize),
    /// The client kept sending while one of its statements was held for a decision.
    #[error("{0} bytes arrived from the client while a statement was held")]
    ClientHeldTooLong(usize),
    /// A value that cannot be encoded (interior NUL, oversized field, ...).
    #[error("cannot encode {message}: {reason}")]
    Encode { message: &'static str, reason: &'static str },
}

/// Renders a message type byte as `0x07`, or `0x70 ('p')` when printable.
struct TypeByte(u8);

impl fmt::Display for TypeByte {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_ascii_graphic() {
            write!(f, "0x{:02x} ('{}')", self.0, char::from(self.0))
        } else {
            write!(f, "0x{:02x}", self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_lowercase_and_precise() {
        assert_eq!(ProtocolError::InvalidFrontendType(7).to_string(), "invalid frontend message type 0x07");
        assert_eq!(
            ProtocolError::InvalidFrontendType(b'p').to_string(),
            "invalid frontend message type 0x70 ('p')"
        );
        assert_eq!(
            ProtocolError::TooLarge { length: 2147483647, limit: 67108864 }.to_string(),
            "message length 2147483647 exceeds limit 67108864"
        );
        assert_eq!(
            ProtocolError::UnsupportedProtocol { major: 1234, minor: 5679 }.to_string(),
            "startup packet: unsupported protocol 1234.5679"
        );
    }
}
