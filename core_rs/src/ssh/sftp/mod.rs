//! SFTP version 3 (draft-ietf-secsh-filexfer-02, as OpenSSH speaks it), both directions.
//!
//! - [`wire`]: packet types, the framer, a bounds-checked reader and the STATUS encoder;
//! - [`request`] / [`reply`]: decoding of client and server packets;
//! - [`ops`]: the decisions ([`Op`]) and the completed operation records ([`Record`]);
//! - [`session`]: the per-channel state machine ([`SftpSession`]).

pub mod ops;
pub mod reply;
pub mod request;
pub mod session;
mod table;
pub mod wire;

#[cfg(test)]
mod tests;

pub use ops::{Op, OpKind, Record, Status};
pub use session::{Chunk, SftpSession, DEFAULT_MAX_PACKET, MAX_HANDLES, MAX_PENDING};
