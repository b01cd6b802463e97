//! SSH file-transfer protocols, parsed for the audit and the policy of the SSH gateway.
//!
//! The gateway relays the byte streams of SSH channels unchanged; these engines only watch them:
//!
//! - [`sftp`]: SFTP version 3 (draft-ietf-secsh-filexfer-02, as OpenSSH speaks it), both
//!   directions, with a decision point for every request that changes the filesystem or opens a
//!   file;
//! - [`scp`]: the legacy `scp -t` / `scp -f` protocol (`scp -O`), the direction that carries the
//!   control lines and the file bytes.

pub mod error;
pub mod scp;
pub mod sftp;

pub use error::SftpError;
pub use scp::{ScpRecord, ScpStream};
pub use sftp::{Chunk, Op, OpKind, Record, SftpSession, Status};
