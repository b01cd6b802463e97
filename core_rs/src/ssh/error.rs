//! Errors of the SFTP engine (raised to Python as `ValueError`; the gateway ends the channel).

use thiserror::Error;

/// Malformed or unsupported SFTP input.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SftpError {
    /// A length word of zero: a packet always holds at least its type byte.
    #[error("sftp packet length 0")]
    EmptyPacket,
    /// A length word above the configured guard.
    #[error("sftp packet length {length} exceeds limit {limit}")]
    TooLarge { length: u32, limit: usize },
    /// A complete packet that ends before a field it must hold.
    #[error("sftp {packet}: truncated {field}")]
    Truncated { packet: &'static str, field: &'static str },
    /// A handle longer than the protocol allows.
    #[error("sftp {packet}: handle of {len} bytes (at most 256)")]
    HandleTooLong { packet: &'static str, len: usize },
    /// A client request reusing the id of a request still awaiting its reply: replies are matched
    /// to requests by id, so the reply could be taken for the wrong request.
    #[error("sftp request id {0} reused while a request with that id is pending")]
    IdReused(u32),
    /// More client requests awaiting replies than the session tracks (forgetting one would let
    /// its id be reused unnoticed).
    #[error("more than {0} sftp requests pending")]
    TooManyPending(usize),
    /// The server negotiated a version other than 3.
    #[error("unsupported SFTP version {0}")]
    UnsupportedVersion(u32),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_lowercase_and_precise() {
        assert_eq!(SftpError::UnsupportedVersion(6).to_string(), "unsupported SFTP version 6");
        assert_eq!(
            SftpError::TooLarge { length: 4_000_000, limit: 1_048_576 }.to_string(),
            "sftp packet length 4000000 exceeds limit 1048576"
        );
        assert_eq!(
            SftpError::Truncated { packet: "open", field: "pflags" }.to_string(),
            "sftp open: truncated pflags"
        );
        assert_eq!(
            SftpError::IdReused(7).to_string(),
            "sftp request id 7 reused while a request with that id is pending"
        );
        assert_eq!(SftpError::TooManyPending(10_000).to_string(), "more than 10000 sftp requests pending");
    }
}
